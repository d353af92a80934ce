package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// TestRevokeHonoursRateLimit: a revoke is an /auth request like any other
// (DESIGN §7.2): a 429 answering it holds every later /auth request until its
// Retry-After, and a revoke is not sent while a 429's Retry-After runs.
func TestRevokeHonoursRateLimit(t *testing.T) {
	e := newEnv(t, credsV1, 3)
	e.mustHandle(`{}`) // generation 1
	e.rdp.RevokeFn = func(string, string) error {
		return &rdp.RateLimitError{Endpoint: "revoke", RetryAfter: 5 * time.Minute}
	}
	if _, err := e.handle(`{"action":"revoke"}`); err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("revoke answered 429: err = %v", err)
	}
	st := e.authState()
	if st.LastFailure != reasonRateLimited || st.Failures != 1 || !st.NotBefore.Equal(t0.Add(5*time.Minute)) || st.LeaseOwner != "" || st.Revoked {
		t.Fatalf("auth state after a 429 on revoke = %+v", st)
	}
	// A forced refresh within the Retry-After sends nothing.
	e.clk.Add(time.Minute)
	res, err := e.handle(`{"action":"refresh","force":true}`)
	if err != nil || res.Outcome != OutcomeBackoff {
		t.Fatalf("forced refresh during Retry-After: %+v, %v", res, err)
	}
	// Nor does another revoke.
	e.rdp.RevokeFn = nil
	res, err = e.handle(`{"action":"revoke"}`)
	if err == nil || res.Outcome != OutcomeBackoff || !strings.Contains(err.Error(), "Retry-After") {
		t.Fatalf("revoke during Retry-After: %+v, %v", res, err)
	}
	if got := e.rdp.Calls(); !slices.Equal(got, []string{grantPassword, grantRevoke}) {
		t.Fatalf("auth calls = %v", got)
	}
	// After the Retry-After the revoke goes through.
	e.clk.Add(4 * time.Minute)
	if res := e.mustHandle(`{"action":"revoke"}`); res.Outcome != OutcomeRevoked {
		t.Fatalf("revoke after Retry-After: %+v", res)
	}
}

// TestRevokeFailureBacksOff: a failed revoke is a failed /auth request and
// counts towards the persisted exponential backoff.
func TestRevokeFailureBacksOff(t *testing.T) {
	e := newEnv(t, credsV1, 3)
	e.mustHandle(`{}`)
	e.rdp.RevokeFn = func(string, string) error {
		return &rdp.APIError{Endpoint: "revoke", StatusCode: 503, Message: "Service Unavailable"}
	}
	if _, err := e.handle(`{"action":"revoke"}`); err == nil {
		t.Fatal("no error")
	}
	if st := e.authState(); st.Failures != 1 || st.LastFailure != reasonServer || !st.NotBefore.Equal(t0.Add(time.Minute)) || st.LeaseOwner != "" {
		t.Fatalf("auth state after a failed revoke = %+v", st)
	}
}

// TestStaleStateDoesNotBypassBackoff: a run that read the auth state before
// an overlapping run recorded a 429 (or a revoke) must not send its request:
// the reservation re-reads the state and honours Retry-After and the hold.
func TestStaleStateDoesNotBypassBackoff(t *testing.T) {
	for _, tc := range []struct {
		name     string
		meantime func(st *state.AuthState)
		want     string
	}{
		{name: "429 recorded meanwhile", want: OutcomeBackoff, meantime: func(st *state.AuthState) {
			st.Failures, st.LastFailure, st.LastFailureAt, st.NotBefore = 1, reasonRateLimited, t0, t0.Add(10*time.Minute)
		}},
		{name: "failure backoff recorded meanwhile", want: OutcomeBackoff, meantime: func(st *state.AuthState) {
			st.Failures, st.LastFailure, st.LastFailureAt, st.NotBefore = 3, reasonServer, t0, t0.Add(4*time.Minute)
		}},
		{name: "revoked meanwhile", want: OutcomeHeld, meantime: func(st *state.AuthState) {
			st.Revoked, st.RevokedAt = true, t0
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, credsV1, 3)
			e.seed(0, 1, 9*time.Minute, time.Minute)
			// The credentials secret is read after the run decided from its
			// first read of the auth state and before its first /auth request.
			done := false
			e.sm.GetErr = func(id string) error {
				if id == credsSecretID && !done {
					done = true
					e.setAuth(tc.meantime)
				}
				return nil
			}
			res, err := e.handle(`{}`)
			if err != nil || res.Outcome != tc.want {
				t.Fatalf("result %+v, %v; want outcome %s", res, err, tc.want)
			}
			if calls := e.rdp.Calls(); len(calls) != 0 {
				t.Fatalf("auth requests sent: %v", calls)
			}
			if st := e.authState(); len(st.Requests) != 0 || st.LeaseOwner != "" {
				t.Fatalf("auth state = %+v", st)
			}
		})
	}
}

// TestHangingAuthRecordsFailure: an /auth request that hangs until the
// invocation's deadline is cut short in time to record the failure, so
// consecutive failures still back off across invocations.
func TestHangingAuthRecordsFailure(t *testing.T) {
	e := newEnv(t, credsV1, 3)
	e.rdp.Password = func(rdp.PasswordGrant) (*rdp.Token, error) {
		<-e.rdp.ctx.Done() // RDP never answers
		return nil, e.rdp.ctx.Err()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := e.h.Handle(ctx, []byte(`{}`))
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "record auth failure") {
		t.Fatalf("failure not recorded: %v", err)
	}
	if st := e.authState(); st.Failures != 1 || st.LastFailure != reasonNetwork || !st.NotBefore.Equal(t0.Add(time.Minute)) || st.LeaseOwner != "" {
		t.Fatalf("auth state = %+v", st)
	}
}
