package state_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/state"
)

// The queue-credentials item against moto: the generation claim is a
// conditional write (two refresher runs never both write), reports are
// recorded per generation.
func TestQueueCredsState(t *testing.T) {
	authBackends(t, func(t *testing.T, newTable func(t *testing.T) *state.Table) {
		ctx := context.Background()
		tb := newTable(t)
		st, err := tb.GetQueueCredsState(ctx)
		if err != nil || st.Generation != 0 || st.Reported() {
			t.Fatalf("empty state %+v %v", st, err)
		}
		if err := tb.ClaimQueueCredsGeneration(ctx, 0, 1, authT0); err != nil {
			t.Fatal(err)
		}
		if err := tb.ClaimQueueCredsGeneration(ctx, 0, 1, authT0); !errors.Is(err, state.ErrConflict) {
			t.Fatalf("second claim of generation 1: %v, want ErrConflict", err)
		}
		if err := tb.ReportQueueCredentials(ctx, 1, "receive: ExpiredToken"); err != nil {
			t.Fatal(err)
		}
		st, _ = tb.GetQueueCredsState(ctx)
		if st.Generation != 1 || !st.WrittenAt.Equal(authT0) || !st.Reported() || st.Reports != 1 || st.Reason != "receive: ExpiredToken" {
			t.Fatalf("state %+v", st)
		}
		if err := tb.ClaimQueueCredsGeneration(ctx, 1, 2, authT0.Add(10*time.Minute)); err != nil {
			t.Fatal(err)
		}
		st, _ = tb.GetQueueCredsState(ctx)
		if st.Generation != 2 || st.Reported() {
			t.Fatalf("after renewal %+v: the old report must not count", st)
		}
	})
}
