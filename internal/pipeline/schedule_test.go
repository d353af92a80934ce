package pipeline

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/lambdarun"
)

func TestSchedule(t *testing.T) {
	tests := []struct {
		name      string
		every     time.Duration
		work      time.Duration // how long each invocation takes
		pauseAt   time.Duration // pause after this long (0: never)
		runFor    time.Duration
		minRuns   int64
		maxRuns   int64
		wantSkips bool
	}{
		{name: "fires at once and on every tick", every: 20 * time.Millisecond, runFor: 210 * time.Millisecond, minRuns: 6, maxRuns: 12},
		{name: "skips ticks while busy", every: 10 * time.Millisecond, work: 60 * time.Millisecond, runFor: 200 * time.Millisecond, minRuns: 2, maxRuns: 4, wantSkips: true},
		{name: "pause stops it", every: 20 * time.Millisecond, pauseAt: 50 * time.Millisecond, runFor: 300 * time.Millisecond, minRuns: 2, maxRuns: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls, concurrent, maxConcurrent atomic.Int64
			fn := &fakeFunction{invoke: func(ctx context.Context, payload []byte) (lambdarun.Result, error) {
				if string(payload) != "{}" {
					t.Errorf("payload %q, want {}", payload)
				}
				n := concurrent.Add(1)
				defer concurrent.Add(-1)
				if n > maxConcurrent.Load() {
					maxConcurrent.Store(n)
				}
				calls.Add(1)
				select {
				case <-time.After(tt.work):
				case <-ctx.Done():
				}
				return lambdarun.Result{Payload: []byte("null")}, nil
			}}
			s := &Schedule{Name: "f", Every: tt.every, Function: fn}
			ctx, cancel := context.WithTimeout(context.Background(), tt.runFor)
			defer cancel()
			if tt.pauseAt > 0 {
				time.AfterFunc(tt.pauseAt, s.Pause)
			}
			s.Run(ctx)
			n := calls.Load()
			if n < tt.minRuns || n > tt.maxRuns {
				t.Errorf("%d invocations, want %d..%d", n, tt.minRuns, tt.maxRuns)
			}
			if maxConcurrent.Load() > 1 {
				t.Errorf("%d concurrent invocations", maxConcurrent.Load())
			}
			if got := s.Stats().Skipped > 0; got != tt.wantSkips {
				t.Errorf("skipped ticks: %v, want %v", got, tt.wantSkips)
			}
		})
	}
}
