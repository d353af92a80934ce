package main

import (
	"testing"
	"time"
)

// ringReads is how many times the ring was read from Secrets Manager.
func ringReads(e *env) int {
	return e.sm.Calls("BatchGetSecretValue") + e.sm.Calls("GetSecretValue")
}

// TestRingCachedAcrossWarmRuns: while the ring state shows no write, runs
// reuse the ring an earlier run read, also to refresh; a write (by this or
// another instance) makes the next run read the ring again; a forced run
// always reads it.
func TestRingCachedAcrossWarmRuns(t *testing.T) {
	e := newEnv(t, credsV1, 3)
	if res := e.mustHandle(`{}`); res.Outcome != OutcomeRefreshed {
		t.Fatalf("first run: %+v", res)
	}
	e.sm.ResetCalls()
	for i := range 4 { // 10-minute tokens, 2-minute margin: fresh for 7 more minutes
		e.clk.Advance(time.Minute)
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
	e.clk.Advance(4 * time.Minute) // 1 minute left: due
	if res, err := other.Handle(t.Context(), []byte(`{}`)); err != nil || res.Outcome != OutcomeRefreshed {
		t.Fatalf("other instance: %+v %v", res, err)
	}
	e.sm.ResetCalls()
	res := e.mustHandle(`{}`)
	if res.Outcome != OutcomeFresh || ringReads(e) != 1 {
		t.Errorf("after another instance's write: %+v, %d ring reads, want fresh and 1", res, ringReads(e))
	}

	// Nearing expiry: the refresh works from the cached ring (the refresh
	// token the other instance wrote) and reads only the credentials.
	e.sm.ResetCalls()
	e.clk.Advance(8*time.Minute + 30*time.Second)
	if res := e.mustHandle(`{}`); res.Outcome != OutcomeRefreshed || res.Grant != grantRefresh || e.sm.Calls("BatchGetSecretValue") != 0 {
		t.Errorf("due run: %+v with %d ring reads, want a refresh grant from the cached ring", res, e.sm.Calls("BatchGetSecretValue"))
	}
	e.sm.ResetCalls()
	if res := e.mustHandle(`{"action":"refresh","force":true}`); res.Outcome != OutcomeRefreshed || e.sm.Calls("BatchGetSecretValue") != 1 {
		t.Errorf("forced run: %+v with %d ring reads, want 1", res, e.sm.Calls("BatchGetSecretValue"))
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
		e.clk.Advance(time.Minute)
		e.mustHandle(`{}`)
	}
	if n := e.sm.Calls("BatchGetSecretValue"); n < 3 {
		t.Errorf("3 runs with an unusable slot read the ring %d times, want every run", n)
	}
}

func ptr(s string) *string { return &s }
