package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/tokenring/ringtest"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// failPuts makes the fake Secrets Manager fail the PutSecretValue calls
// fail says to fail (n counts every call, from 1).
func failPuts(e *env, fail func(n int, id string) bool) {
	var mu sync.Mutex
	n := 0
	e.sm.PutErr = func(id string) error {
		mu.Lock()
		defer mu.Unlock()
		n++
		if fail(n, id) {
			return ringtest.ErrInjected
		}
		return nil
	}
}

// TestRotatedRefreshTokenSurvivesWriteFailures: with pre-issued refresh-token
// credentials RDP replaces the refresh token on every refresh, so a failed
// ring write is retried in the same run (the same slot, then another
// eligible one) and the next run refreshes with the rotated token.
func TestRotatedRefreshTokenSurvivesWriteFailures(t *testing.T) {
	tests := []struct {
		name         string
		fail         func(n int, id string) bool
		wantSlot     int
		wantGen      int64
		wantFailures float64
	}{
		{"first write fails", func(n int, _ string) bool { return n == 1 }, 1, 2, 1},
		{"every write of one slot fails", func(_ int, id string) bool { return id == "cfsync/token-1" }, 2, 3, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, credsPreIssued, 3)
			e.seed(0, 1, 9*time.Minute, time.Minute)
			failPuts(e, tc.fail)
			res := e.mustHandle(`{}`)
			if res.Outcome != OutcomeRefreshed || res.Slot != e.ids[tc.wantSlot] || res.Generation != tc.wantGen {
				t.Fatalf("result %+v, want generation %d in slot %d\nlogs: %s", res, tc.wantGen, tc.wantSlot, e.logs)
			}
			if s := e.slot(tc.wantSlot); s.RefreshToken != "RT-secret-1" || s.Generation != tc.wantGen {
				t.Fatalf("slot %d = %v, want the rotated refresh token", tc.wantSlot, s)
			}
			if got := sum(e.metric("RingWriteFailures")); got != tc.wantFailures {
				t.Errorf("RingWriteFailures = %v, want %v", got, tc.wantFailures)
			}
			e.sm.PutErr = nil
			e.clk.Advance(9 * time.Minute)
			if res := e.mustHandle(`{}`); res.Outcome != OutcomeRefreshed || e.rdp.lastRT != "RT-secret-1" {
				t.Fatalf("next run: %+v refreshed with %q, want the rotated RT-secret-1", res, e.rdp.lastRT)
			}
		})
	}
}

// TestEveryRingWriteFails: when no slot can be written the run fails with
// the cause, counts every failed write, and never writes a slot twice
// within SECRET_MIN_WRITE_INTERVAL.
func TestEveryRingWriteFails(t *testing.T) {
	e := newEnv(t, credsPreIssued, 3)
	failPuts(e, func(int, string) bool { return true })
	res, err := e.handle(`{}`)
	if !errors.Is(err, ringtest.ErrInjected) || res.Outcome != OutcomeFailed {
		t.Fatalf("result %+v, err %v", res, err)
	}
	if got := sum(e.metric("RingWriteFailures")); got != 3*writeAttempts {
		t.Errorf("RingWriteFailures = %v, want %d", got, 3*writeAttempts)
	}
	if !e.logHas("new token could not be stored in the ring") || strings.Contains(e.logs.String()+err.Error(), "RT-secret") {
		t.Errorf("logs / error: %s / %v", e.logs, err)
	}
	rs, _ := e.table.GetRingState(context.Background())
	if len(rs.Slots) != 3 {
		t.Errorf("ring state %+v: each tried slot counts as written (the write may have landed)", rs)
	}
}

// TestLostRaceKeepsRotatedRefreshToken: another invocation claimed the
// generation while this one was inside RDP; the rotated refresh token is
// stored one generation higher instead of being discarded.
func TestLostRaceKeepsRotatedRefreshToken(t *testing.T) {
	e := newEnv(t, credsPreIssued, 3)
	e.seed(0, 1, 9*time.Minute, time.Minute)
	e.rdp.Refresh = func(string, string) (*rdp.Token, error) {
		st, _ := e.table.GetRingState(context.Background())
		if _, err := e.table.ClaimGeneration(context.Background(), st, 2, e.ids[1], t0); err != nil {
			t.Fatal(err)
		}
		return e.rdp.issue(true), nil
	}
	res := e.mustHandle(`{}`)
	if res.Outcome != OutcomeRefreshed || res.Generation != 3 || res.Slot != e.ids[2] {
		t.Fatalf("result %+v, want generation 3 in slot 2\nlogs: %s", res, e.logs)
	}
	if s := e.slot(2); s.RefreshToken != "RT-secret-1" {
		t.Fatalf("slot 2 = %v, want the rotated refresh token", s)
	}
}
