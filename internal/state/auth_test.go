package state_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/state"
)

func testAuthStateOptimisticLock(t *testing.T, newTable func(t *testing.T) *state.Table) {
	ctx := context.Background()
	tb := newTable(t)
	a, err := tb.GetAuthState(ctx)
	if err != nil || a.Version != 0 || len(a.Requests) != 0 {
		t.Fatalf("empty auth state = %+v, %v", a, err)
	}
	b := *a // a second, overlapping refresher read the same state
	a.Requests = append(a.Requests, authT0.UnixMilli())
	a.SessionStart = authT0
	if err := tb.PutAuthState(ctx, a); err != nil {
		t.Fatalf("first put: %v", err)
	}
	if a.Version != 1 {
		t.Fatalf("version after put = %d", a.Version)
	}
	b.Requests = append(b.Requests, authT0.UnixMilli())
	if err := tb.PutAuthState(ctx, &b); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("stale put: %v, want ErrConflict", err)
	}
	a.Failures, a.LastFailure, a.NotBefore = 2, "session_quota", authT0.Add(2*time.Minute)
	a.Revoked, a.RevokedAt = true, authT0
	if err := tb.PutAuthState(ctx, a); err != nil {
		t.Fatalf("second put: %v", err)
	}
	got, err := tb.GetAuthState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 2 || got.Failures != 2 || got.LastFailure != "session_quota" || !got.NotBefore.Equal(authT0.Add(2*time.Minute)) ||
		!got.SessionStart.Equal(authT0) || !got.Revoked || len(got.Requests) != 1 || got.Requests[0] != authT0.UnixMilli() {
		t.Fatalf("auth state = %+v", got)
	}
}

func TestAuthBudgetWindow(t *testing.T) {
	ms := func(d time.Duration) int64 { return authT0.Add(d).UnixMilli() }
	tests := []struct {
		name     string
		requests []int64
		now      time.Duration
		budget   int
		wantIn   int
		wantFree time.Duration // relative to authT0
	}{
		{name: "empty", now: 0, budget: 3, wantIn: 0, wantFree: 0},
		{name: "under budget", requests: []int64{ms(-4 * time.Minute), ms(-time.Minute)}, budget: 3, wantIn: 2, wantFree: 0},
		{name: "old requests leave the window", requests: []int64{ms(-6 * time.Minute), ms(-5 * time.Minute), ms(-time.Minute)}, budget: 2, wantIn: 1, wantFree: 0},
		{name: "full: wait for the oldest", requests: []int64{ms(-4 * time.Minute), ms(-3 * time.Minute), ms(-time.Minute)}, budget: 3, wantIn: 3,
			wantFree: time.Minute + time.Millisecond},
		{name: "over budget: wait for enough to leave", requests: []int64{ms(-4 * time.Minute), ms(-3 * time.Minute), ms(-2 * time.Minute), ms(-time.Minute)}, budget: 2, wantIn: 4,
			wantFree: 3*time.Minute + time.Millisecond},
		// A request stamped by an invocation whose clock runs ahead is in
		// the window too: it was sent, and RDP counts it.
		{name: "request stamped ahead by a skewed clock counts", requests: []int64{ms(-time.Minute), ms(2 * time.Second)}, budget: 2, wantIn: 2,
			wantFree: 4*time.Minute + time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &state.AuthState{Requests: append([]int64(nil), tc.requests...)}
			now := authT0.Add(tc.now)
			if got := s.RequestsIn(now, 5*time.Minute); got != tc.wantIn {
				t.Errorf("RequestsIn = %d, want %d", got, tc.wantIn)
			}
			if got := s.NextFree(now, 5*time.Minute, tc.budget); !got.Equal(authT0.Add(tc.wantFree)) {
				t.Errorf("NextFree = %s, want %s", got.Sub(authT0), tc.wantFree)
			}
			s.Prune(now, 5*time.Minute)
			if len(s.Requests) != tc.wantIn {
				t.Errorf("after Prune %d requests, want %d", len(s.Requests), tc.wantIn)
			}
		})
	}
}
