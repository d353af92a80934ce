package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/pkg/rdp"
)

// wrongPassword is RDP's answer to a wrong username or password (400
// access_denied, docs/rdp.md), as the client returns it.
func wrongPassword() error {
	return &rdp.AuthError{Endpoint: "password grant", StatusCode: 400, Code: "access_denied",
		Description: "Invalid username or password."}
}

// TestWrongPasswordBacksOff: a rejected username or password is never
// retried in the same run, backs off exponentially across runs, and says
// so with a distinct log line (no secret) and the AuthCredentialsRejected
// metric, because retrying gets the account blocked.
func TestWrongPasswordBacksOff(t *testing.T) {
	for _, tc := range []struct {
		name      string
		setup     func(e *env)
		wantCalls []string
	}{
		{name: "sign-on", wantCalls: []string{grantPassword}},
		{name: "refresh token refused, then the password", setup: func(e *env) {
			e.seed(0, 1, 9*time.Minute, time.Minute)
			e.rdp.Refresh = func(string, string) (*rdp.Token, error) {
				return nil, &rdp.AuthError{StatusCode: 400, Code: "invalid_grant"}
			}
		}, wantCalls: []string{grantRefresh, grantPassword}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, credsV1, 3)
			if tc.setup != nil {
				tc.setup(e)
			}
			e.rdp.Password = func(rdp.PasswordGrant) (*rdp.Token, error) { return nil, wrongPassword() }
			res, err := e.handle(`{}`)
			if !errors.Is(err, rdp.ErrInvalidCredentials) || res.Outcome != OutcomeFailed {
				t.Fatalf("result %+v, err %v", res, err)
			}
			if got := e.rdp.Calls(); !slices.Equal(got, tc.wantCalls) {
				t.Fatalf("auth calls %v, want %v (no retry)", got, tc.wantCalls)
			}
			if got := sum(e.metric("AuthCredentialsRejected", "Function", "token-refresher")); got != 1 {
				t.Errorf("AuthCredentialsRejected = %v, want 1\n%s", got, e.emf)
			}
			if !e.logHas("RDP rejected the username or password") {
				t.Errorf("no distinct log line: %s", e.logs)
			}
			for _, secret := range []string{"user-secret", "pw-secret", "appkey-secret"} {
				if strings.Contains(e.logs.String()+err.Error(), secret) {
					t.Errorf("%s revealed", secret)
				}
			}
			st := e.authState()
			if st.LastFailure != reasonInvalidCredentials || !st.NotBefore.Equal(t0.Add(time.Minute)) {
				t.Fatalf("auth state %+v, want invalid_credentials backing off 1m", st)
			}
			calls := len(e.rdp.Calls())
			// Every minute for an hour: requests only when the backoff has
			// passed, each doubling it (1, 2, 4, 8, 16, 30 minutes).
			for range 60 {
				e.clk.Advance(time.Minute)
				_, _ = e.handle(`{}`)
			}
			if got := len(e.rdp.Calls()) - calls; got > 5*len(tc.wantCalls) {
				t.Errorf("%d auth requests in the hour after a wrong password, want ≤ %d", got, 5*len(tc.wantCalls))
			}
			if st := e.authState(); st.Failures < 5 || st.NotBefore.Sub(st.LastFailureAt) != 30*time.Minute {
				t.Errorf("auth state after an hour %+v, want the backoff capped at 30m", st)
			}
		})
	}
}
