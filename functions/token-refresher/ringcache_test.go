package main

import (
	"testing"
	"time"
)

// ringReads is how many times the ring was read from Secrets Manager.
func ringReads(e *env) int {
	return e.sm.Calls("BatchGetSecretValue") + e.sm.Calls("GetSecretValue")
}

// TestRingCachedAcrossWarmRuns: runs that find the newest token fresh and
// the ring state unchanged reuse the ring read by an earlier run; a write
// (by this or another instance) or a token nearing expiry makes the next
// run read the ring again, and the refresh then works from that read.
func TestRingCachedAcrossWarmRuns(t *testing.T) {
	e := newEnv(t, credsV1, 3)
	if res := e.mustHandle(`{}`); res.Outcome != OutcomeRefreshed {
		t.Fatalf("first run: %+v", res)
	}
	e.sm.ResetCalls()
	for i := range 4 { // 10-minute tokens, 2-minute margin: fresh for 7 more minutes
		e.clk.Add(time.Minute)
		if res := e.mustHandle(`{}`); res.Outcome != OutcomeFresh {
			t.Fatalf("idle run %d: %+v", i, res)
		}
	}
	// The first idle run sees the write the first run made; the others reuse it.
	if n := ringReads(e); n != 1 {
		t.Errorf("4 idle runs read the ring %d times, want 1", n)
	}

	// Another instance (its own cache) refreshes: this one's next run sees
	// the ring state move and reads again.
	other := *e.h
	other.cache = nil
	e.clk.Add(4 * time.Minute) // 1 minute left: due
	if res, err := other.Handle(t.Context(), []byte(`{}`)); err != nil || res.Outcome != OutcomeRefreshed {
		t.Fatalf("other instance: %+v %v", res, err)
	}
	e.sm.ResetCalls()
	res := e.mustHandle(`{}`)
	if res.Outcome != OutcomeFresh || ringReads(e) != 1 {
		t.Errorf("after another instance's write: %+v, %d ring reads, want fresh and 1", res, ringReads(e))
	}

	// Nearing expiry: the cached copy is not used; the run reads and refreshes.
	e.sm.ResetCalls()
	e.clk.Add(8*time.Minute + 30*time.Second)
	if res := e.mustHandle(`{}`); res.Outcome != OutcomeRefreshed || ringReads(e) < 1 {
		t.Errorf("due run: %+v with %d ring reads", res, ringReads(e))
	}
}

// TestRingCacheSkipsUnusableSlots: a ring with a slot that cannot be read
// is read again by every run (the warning is logged each time).
func TestRingCacheSkipsUnusableSlots(t *testing.T) {
	e := newEnv(t, credsV1, 3)
	e.mustHandle(`{}`)
	e.sm.Create("cfsync/token-2", ptr("not a token"))
	e.sm.ResetCalls()
	for range 3 {
		e.clk.Add(time.Minute)
		e.mustHandle(`{}`)
	}
	if n := e.sm.Calls("BatchGetSecretValue"); n < 3 {
		t.Errorf("3 runs with an unusable slot read the ring %d times, want every run", n)
	}
}

func ptr(s string) *string { return &s }
