package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/state"
)

// TestNoUsableTokenFailsTheRun: a run that ends with no token readers can
// use (none, or within their TOKEN_SKEW — 30 s by default — of expiry) and wrote none fails
// with ErrNoUsableToken, naming why, so that Lambda's Errors (and
// TokenRefresherErrorsAlarm) report it; while the newest token is usable,
// or when another run is at work, the same outcomes are not failures.
func TestNoUsableTokenFailsTheRun(t *testing.T) {
	backoff := func(e *env) {
		e.setAuth(func(st *state.AuthState) {
			st.Failures, st.LastFailure, st.NotBefore = 2, "invalid_grant", t0.Add(time.Minute)
		})
	}
	tests := []struct {
		name        string
		setup       func(e *env)
		event       string
		wantOutcome string
		wantErr     string // "" = no error
	}{
		{"backoff, empty ring", backoff, `{}`, OutcomeBackoff, "outcome backoff, ring has no token, next attempt at 2025-03-01T12:01:00Z, last auth failure: invalid_grant"},
		{"backoff, token with 20 s left", func(e *env) { e.seed(0, 1, 9*time.Minute, 20*time.Second); backoff(e) }, `{}`, OutcomeBackoff, "outcome backoff, expiring"},
		{"backoff, token with 90 s left", func(e *env) { e.seed(0, 1, 9*time.Minute, 90*time.Second); backoff(e) }, `{}`, OutcomeBackoff, ""},
		{"held after a revoke, empty ring", func(e *env) {
			e.setAuth(func(st *state.AuthState) { st.Revoked, st.RevokedAt = true, t0.Add(-time.Hour) })
		}, `{}`, OutcomeHeld, "outcome held"},
		{"busy: another run holds the auth lease", func(e *env) {
			e.setAuth(func(st *state.AuthState) { st.LeaseOwner, st.LeaseUntil = "other", t0.Add(time.Minute) })
		}, `{}`, OutcomeBusy, ""},
		{"fresh", func(e *env) { e.seed(0, 1, time.Minute, 9*time.Minute) }, `{}`, OutcomeFresh, ""},
		// Compressed timing (the demo): a 20 s margin and readers' TOKEN_SKEW 5s; a
		// token with 25 s left is fresh for the refresher and usable for readers.
		{"fresh, 25 s left, TOKEN_SKEW 5s", func(e *env) {
			e.h.Opts.RefreshMargin, e.h.Opts.ReaderSkew = 20*time.Second, 5*time.Second
			e.seed(0, 1, time.Minute, 25*time.Second)
		}, `{}`, OutcomeFresh, ""},
		{"fresh, 25 s left, TOKEN_SKEW 30s", func(e *env) {
			e.h.Opts.RefreshMargin = 20 * time.Second
			e.seed(0, 1, time.Minute, 25*time.Second)
		}, `{}`, OutcomeFresh, "outcome fresh"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, credsV1, 3)
			tc.setup(e)
			res, err := e.handle(tc.event)
			if res.Outcome != tc.wantOutcome {
				t.Fatalf("outcome %q, want %q (%v)", res.Outcome, tc.wantOutcome, err)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v, want none", err)
				}
				return
			}
			if !errors.Is(err, ErrNoUsableToken) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want ErrNoUsableToken with %q", err, tc.wantErr)
			}
			if !e.logHas(`"msg":"token refresh failed"`) {
				t.Errorf("no error log line: %s", e.logs)
			}
		})
	}
}
