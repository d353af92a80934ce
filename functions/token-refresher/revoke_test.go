package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/pkg/rdp"
)

func TestRevoke(t *testing.T) {
	e := newEnv(t, credsV1, 3)
	e.mustHandle(`{}`) // generation 1
	first := e.slot(0)
	writes := len(e.sm.Writes())
	res := e.mustHandle(`{"action":"revoke"}`)
	if res.Outcome != OutcomeRevoked || res.Action != ActionRevoke || e.rdp.revoked != first.RefreshToken {
		t.Fatalf("revoke: %+v, revoked %q", res, e.rdp.revoked)
	}
	if st := e.authState(); !st.Revoked || len(st.Requests) != 2 {
		t.Fatalf("auth state = %+v", st)
	}
	if sum(e.metric("AuthRequests", "grant", "revoke")) != 1 {
		t.Errorf("revoke not counted")
	}
	// Slots are not rewritten; scheduled runs hold, even when a report comes in.
	_ = e.table.ReportInvalidToken(context.Background(), 1, "401 token revoked")
	for range 3 {
		e.clk.Advance(time.Minute)
		if res := e.mustHandle(`{}`); res.Outcome != OutcomeHeld {
			t.Fatalf("after revoke: %+v", res)
		}
	}
	if len(e.sm.Writes()) != writes || len(e.rdp.Calls()) != 2 {
		t.Fatalf("writes %d, calls %v", len(e.sm.Writes()), e.rdp.Calls())
	}
	e.clk.Advance(10 * time.Minute)
	res = e.mustHandle(`{"action":"refresh","force":true}`)
	if res.Outcome != OutcomeRefreshed || res.Grant != grantPassword || res.Generation != 2 {
		t.Fatalf("forced refresh: %+v", res)
	}
	if e.authState().Revoked {
		t.Fatal("hold not cleared")
	}
}

func TestRevokeFailureIsAnError(t *testing.T) {
	e := newEnv(t, credsV1, 3)
	e.mustHandle(`{}`)
	e.rdp.RevokeFn = func(string, string) error {
		return &rdp.AuthError{Endpoint: "revoke", StatusCode: 401, Code: "invalid_client"}
	}
	_, err := e.handle(`{"action":"revoke"}`)
	if err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("err = %v", err)
	}
	if e.authState().Revoked {
		t.Fatal("hold recorded although RDP refused the revoke")
	}
}

// TestRevokeHonoursRateLimit: a revoke is an /auth request like any other
// (docs/design.md#auth-budget): a 429 answering it holds every later /auth request until its
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
	e.clk.Advance(time.Minute)
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
	e.clk.Advance(4 * time.Minute)
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
