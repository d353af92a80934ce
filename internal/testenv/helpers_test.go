package testenv

import (
	"testing"
	"time"
)

func TestWaitUntil(t *testing.T) {
	calls := 0
	if !WaitUntil(time.Second, time.Millisecond, func() bool { calls++; return calls == 3 }) || calls != 3 {
		t.Errorf("WaitUntil: %d calls, want true on the 3rd", calls)
	}
	start := time.Now()
	if WaitUntil(50*time.Millisecond, 10*time.Millisecond, func() bool { return false }) {
		t.Error("WaitUntil of a condition never met returned true")
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > time.Second {
		t.Errorf("WaitUntil gave up after %s, want the 50ms timeout", d)
	}
}
