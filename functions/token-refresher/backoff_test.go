package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

func TestBackoffIsCapped(t *testing.T) {
	e := newEnv(t, credsV1, 3)
	e.rdp.Password = func(rdp.PasswordGrant) (*rdp.Token, error) {
		return nil, &rdp.AuthError{Endpoint: "password grant", StatusCode: 400, Code: "invalid_grant"}
	}
	var waits []time.Duration
	for range 8 {
		if _, err := e.handle(`{}`); err == nil {
			t.Fatal("no error")
		}
		st := e.authState()
		w := st.NotBefore.Sub(e.clk.Now())
		waits = append(waits, w)
		e.clk.Advance(w)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i, w := range want {
		if waits[i] != w*time.Minute {
			t.Fatalf("backoffs = %v, want %v minutes", waits, want)
		}
	}
	if n := len(e.rdp.Calls()); n != 8 {
		t.Fatalf("%d password grants in 8 attempts", n)
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
