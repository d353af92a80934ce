package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCeiling(t *testing.T) {
	p := Policy{Base: 100 * time.Millisecond, Max: time.Second}
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{
		{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {4, 800 * time.Millisecond},
		{5, time.Second}, {100, time.Second},
	} {
		if got := p.Ceiling(tc.n); got != tc.want {
			t.Errorf("Ceiling(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
	if got := (Policy{}).Ceiling(3); got != 0 {
		t.Errorf("zero policy: Ceiling = %v, want 0", got)
	}
	if got := (Policy{Base: time.Second}).Ceiling(200); got <= 0 {
		t.Errorf("uncapped: Ceiling(200) = %v, want positive (no overflow)", got)
	}
}

func TestDelayFullJitter(t *testing.T) {
	p := Policy{Base: time.Second, Max: 8 * time.Second}
	var low bool
	for range 2000 {
		d := p.Delay(3)
		if d < 0 || d > 4*time.Second {
			t.Fatalf("Delay(3) = %v, outside [0, 4s]", d)
		}
		if d < time.Second { // equal jitter would never go below 2s
			low = true
		}
	}
	if !low {
		t.Error("Delay(3) never fell below 1s in 2000 draws: not full jitter")
	}
}

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a cancelled context = %v, want context.Canceled", err)
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep(1ms) = %v", err)
	}
}
