package testenv

import (
	"context"
	"errors"
	"os/exec"
	"strings"
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

func TestPoll(t *testing.T) {
	calls := 0
	if err := Poll(context.Background(), time.Millisecond, func() bool { calls++; return calls == 3 }); err != nil || calls != 3 {
		t.Errorf("Poll: %v after %d calls, want nil on the 3rd", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	calls = 0
	err := Poll(ctx, time.Hour, func() bool { calls++; cancel(); return false })
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("Poll with its context canceled while it waits: %v after %d calls, want context.Canceled after 1", err, calls)
	}
	calls = 0
	if err := Poll(ctx, time.Hour, func() bool { calls++; return true }); err != nil || calls != 1 {
		t.Errorf("Poll of a condition met at once under an ended context: %v after %d calls, want nil after 1", err, calls)
	}
}

// TestStartMotoExits: a moto_server that exits at once fails StartMoto at
// once, saying so (not after the 60 s start-up wait).
func TestStartMotoExits(t *testing.T) {
	bin, err := exec.LookPath("false")
	if err != nil {
		t.Skip("no false(1) on PATH")
	}
	t.Setenv("MOTO_SERVER", bin)
	start := time.Now()
	m, err := StartMoto(context.Background(), "")
	if err == nil {
		m.Stop()
	}
	if err == nil || !strings.Contains(err.Error(), "exited") || time.Since(start) > 10*time.Second {
		t.Errorf("StartMoto of a moto_server that exits = %v after %s, want an error saying it exited, at once", err, time.Since(start))
	}
}
