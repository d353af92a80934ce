package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cfsync/cfsync/pkg/rdp"
)

// ringReads is how many times the ring was read from Secrets Manager (a
// run that refreshes also reads the credentials secret: GetSecretValue).
func ringReads(e *env) int {
	return e.sm.Calls("BatchGetSecretValue")
}

// slotRT is the refresh token now in the ring slot named id.
func (e *env) slotRT(id string) string {
	e.t.Helper()
	return e.slot(slices.Index(e.ids, id)).RefreshToken
}

// TestRingCachedAcrossWarmRuns: a warm instance keeps the ring it read, and
// after its own write the ring as that write left it, while the ring state
// is the one it kept it with: runs reuse it, also to refresh; another
// instance's write makes the next run read the ring again; a forced run
// always reads it.
func TestRingCachedAcrossWarmRuns(t *testing.T) {
	e := newEnv(t, credsV1, 3)
	first := e.mustHandle(`{}`)
	if first.Outcome != OutcomeRefreshed {
		t.Fatalf("first run: %+v", first)
	}
	e.sm.ResetCalls()
	for i := range 4 { // 10-minute tokens, 2-minute margin: fresh for 7 more minutes
		e.clk.Advance(time.Minute)
		if res := e.mustHandle(`{}`); res.Outcome != OutcomeFresh || res.Generation != first.Generation {
			t.Fatalf("idle run %d: %+v, want fresh at generation %d", i, res, first.Generation)
		}
	}
	// The runs after this instance's own write keep the ring it wrote.
	if n := ringReads(e); n != 0 {
		t.Errorf("4 idle runs after this instance's write read the ring %d times, want 0", n)
	}

	// Another instance (its own cache) refreshes: this one's next run sees
	// the ring state move and reads again.
	other := *e.h
	other.cache = nil
	e.clk.Advance(4 * time.Minute) // 1 minute left: due
	byOther, err := other.Handle(t.Context(), []byte(`{}`))
	if err != nil || byOther.Outcome != OutcomeRefreshed {
		t.Fatalf("other instance: %+v %v", byOther, err)
	}
	otherRT := e.slotRT(byOther.Slot)
	e.sm.ResetCalls()
	res := e.mustHandle(`{}`)
	if res.Outcome != OutcomeFresh || res.Generation != byOther.Generation || ringReads(e) != 1 {
		t.Errorf("after another instance's write: %+v, %d ring reads, want fresh at generation %d and 1 read", res, ringReads(e), byOther.Generation)
	}

	// Nearing expiry: the refresh works from the cached ring (the refresh
	// token the other instance wrote) and reads only the credentials.
	e.sm.ResetCalls()
	e.clk.Advance(8*time.Minute + 30*time.Second)
	due := e.mustHandle(`{}`)
	if due.Outcome != OutcomeRefreshed || due.Grant != grantRefresh || e.rdp.lastRT != otherRT || ringReads(e) != 0 {
		t.Errorf("due run: %+v with %d ring reads, want a refresh grant with the other instance's refresh token from the cached ring", due, ringReads(e))
	}

	// The runs after that write use the token it wrote without a read, up
	// to the next refresh, which uses the refresh token it wrote.
	dueRT := e.slotRT(due.Slot)
	e.sm.ResetCalls()
	e.clk.Advance(time.Minute)
	if res := e.mustHandle(`{}`); res.Outcome != OutcomeFresh || res.Generation != due.Generation || ringReads(e) != 0 {
		t.Errorf("run after this instance's write: %+v with %d ring reads, want fresh at generation %d and no read", res, ringReads(e), due.Generation)
	}
	e.clk.Advance(7 * time.Minute)
	if res := e.mustHandle(`{}`); res.Outcome != OutcomeRefreshed || e.rdp.lastRT != dueRT || ringReads(e) != 0 {
		t.Errorf("next due run: %+v with %d ring reads, want a refresh with the refresh token this instance wrote, no read", res, ringReads(e))
	}

	e.sm.ResetCalls()
	if res := e.mustHandle(`{"action":"refresh","force":true}`); res.Outcome != OutcomeRefreshed || ringReads(e) != 1 {
		t.Errorf("forced run: %+v with %d ring reads, want 1", res, ringReads(e))
	}
}

// TestRingCacheAfterWriteTrouble: a run whose token landed only after a
// failed write of another slot (which may have landed too), or after
// another instance's claim, does not keep the ring it wrote: the next run
// reads it. A write retried in the same slot (idempotent per generation)
// is kept.
func TestRingCacheAfterWriteTrouble(t *testing.T) {
	tests := []struct {
		name      string
		arrange   func(e *env)
		wantReads int
	}{
		{"write retried in the same slot", func(e *env) { failPuts(e, func(n int, _ string) bool { return n == 1 }) }, 0},
		{"write lands in another slot", func(e *env) {
			failPuts(e, func(_ int, id string) bool { return id == e.ids[1] })
		}, 1},
		{"another instance claimed the generation", func(e *env) {
			e.rdp.Refresh = func(string, string) (*rdp.Token, error) {
				st, _ := e.table.GetRingState(context.Background())
				if _, err := e.table.ClaimGeneration(context.Background(), st, 2, e.ids[1], t0); err != nil {
					e.t.Fatal(err)
				}
				return e.rdp.issue(true), nil
			}
		}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, credsPreIssued, 3)
			e.seed(0, 1, 9*time.Minute, time.Minute)
			tc.arrange(e)
			written := e.mustHandle(`{}`)
			if written.Outcome != OutcomeRefreshed {
				t.Fatalf("write run: %+v\nlogs: %s", written, e.logs)
			}
			e.sm.PutErr, e.rdp.Refresh = nil, nil
			e.sm.ResetCalls()
			e.clk.Advance(time.Minute)
			if res := e.mustHandle(`{}`); res.Outcome != OutcomeFresh || res.Generation != written.Generation || ringReads(e) != tc.wantReads {
				t.Errorf("next run: %+v with %d ring reads, want fresh at generation %d and %d reads", res, ringReads(e), written.Generation, tc.wantReads)
			}
		})
	}
}

// TestRingCacheSkipsUnusableSlots: a ring with a slot that cannot be read
// is read again by every run (the warning is logged each time), also after
// this instance wrote another slot.
func TestRingCacheSkipsUnusableSlots(t *testing.T) {
	e := newEnv(t, credsV1, 3)
	e.sm.Create("cfsync/token-2", ptr("not a token"))
	if res := e.mustHandle(`{}`); res.Outcome != OutcomeRefreshed {
		t.Fatalf("first run: %+v", res)
	}
	e.sm.ResetCalls()
	for range 3 {
		e.clk.Advance(time.Minute)
		e.mustHandle(`{}`)
	}
	if n := ringReads(e); n != 3 {
		t.Errorf("3 runs with an unusable slot read the ring %d times, want every run", n)
	}
}

func ptr(s string) *string { return &s }
