package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
)

func TestParseEvent(t *testing.T) {
	valid := map[string]Event{
		`{}`: {Scheduled: true, Action: ActionRefresh},
		`{"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events","detail":{}}`: {Scheduled: true, Action: ActionRefresh},
		`{"action":"refresh"}`:                           {Action: ActionRefresh},
		`{"action":"refresh","force":true}`:              {Action: ActionRefresh, Force: true},
		`{"force":true}`:                                 {Action: ActionRefresh, Force: true},
		`{"action":"revoke"}`:                            {Action: ActionRevoke},
		`{"action":"revoke","force":false}`:              {Action: ActionRevoke},
		` {"action":"refresh","force":false,"extra":1} `: {Action: ActionRefresh},
	}
	for in, want := range valid {
		if got, err := ParseEvent([]byte(in)); err != nil || got != want {
			t.Errorf("ParseEvent(%s) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	// Malformed events: ErrMalformedEvent, with what is wrong.
	malformed := map[string]string{
		``:                                   "JSON object",
		`not json`:                           "JSON object",
		`[]`:                                 "JSON object",
		`null`:                               "JSON object",
		`"refresh"`:                          "JSON object",
		`{"action":"refresh"`:                "JSON object",
		`{"action":"rotate"}`:                `field "action": unknown action "rotate"`,
		`{"action":7}`:                       `field "action" must be a string`,
		`{"action":null}`:                    `unknown action ""`,
		`{"action":"refresh","force":"yes"}`: `field "force" must be true or false`,
		`{"force":null}`:                     `field "force" must be true or false`,
		`{"action":"revoke","force":true}`:   `"force" applies to action "refresh" only`,
	}
	for in, want := range malformed {
		if _, err := ParseEvent([]byte(in)); err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrMalformedEvent) {
			t.Errorf("ParseEvent(%q): err = %v, want ErrMalformedEvent containing %q", in, err, want)
		}
	}
}

// decision is a case of TestDecisions.
type decision struct {
	name        string
	creds       string
	slots       int
	setup       func(e *env)
	event       string
	wantOutcome string
	wantReason  string
	wantCalls   []string // /auth requests, in order
	wantSlot    int      // slot written (-1: none)
	wantGen     int64
	check       func(t *testing.T, e *env, res Result)
}

// sessionAged is a scheduled run whose token is about to expire, in a
// session that started age ago: it refreshes with grant into slot 1.
func sessionAged(name, creds string, age time.Duration, grant string) decision {
	return decision{
		name: name, creds: creds, slots: 3,
		setup: func(e *env) {
			e.seed(0, 1, 8*time.Minute, 2*time.Minute)
			e.setAuth(func(st *state.AuthState) { st.SessionStart = t0.Add(-age) })
		},
		event: `{}`, wantOutcome: OutcomeRefreshed, wantCalls: []string{grant}, wantSlot: 1, wantGen: 2,
	}
}

// TestDecisions drives h.Handle through the refresher's decision table.
func TestDecisions(t *testing.T) {
	tests := []decision{
		{
			name: "empty ring: password grant into the first slot", creds: credsV1, slots: 3,
			event: `{}`, wantOutcome: OutcomeRefreshed, wantReason: dueEmpty, wantCalls: []string{grantPassword}, wantSlot: 0, wantGen: 1,
			check: func(t *testing.T, e *env, res Result) {
				st := e.authState()
				if !st.SessionStart.Equal(t0) || st.Failures != 0 || len(st.Requests) != 1 || st.LeaseOwner != "" {
					t.Errorf("auth state = %+v", st)
				}
				if g := e.rdp.lastPW; !g.TakeExclusiveSignOnControl || g.Username != "user-secret" || g.ClientID != "appkey-secret" {
					t.Errorf("password grant = %+v", g.TakeExclusiveSignOnControl)
				}
				rs, _ := e.table.GetRingState(context.Background())
				if rs.Generation != 1 || !rs.Slots[e.ids[0]].WrittenAt.Equal(t0) {
					t.Errorf("ring state = %+v", rs)
				}
				if sum(e.metric("RingWrites")) != 1 || sum(e.metric("AuthRequests", "grant", "password")) != 1 {
					t.Errorf("metrics: %s", e.emf)
				}
				if v := e.metric("TokenRemainingSeconds"); len(v) != 1 || v[0] != 600 {
					t.Errorf("TokenRemainingSeconds = %v", v)
				}
			},
		},
		{
			name: "fresh token: nothing to do", creds: credsV1, slots: 3,
			setup: func(e *env) { e.seed(0, 1, 4*time.Minute, 6*time.Minute) },
			event: `{}`, wantOutcome: OutcomeFresh, wantSlot: -1, wantGen: 1,
			check: func(t *testing.T, e *env, res Result) {
				if v := e.metric("TokenRemainingSeconds"); len(v) != 1 || v[0] != 360 {
					t.Errorf("TokenRemainingSeconds = %v", v)
				}
			},
		},
		{
			name: "expiring within the margin: refresh grant with the ring's refresh token", creds: credsV1, slots: 3,
			setup: func(e *env) {
				e.seed(0, 1, 8*time.Minute, 2*time.Minute)
				e.setAuth(func(st *state.AuthState) { st.SessionStart = t0.Add(-8 * time.Minute) })
			},
			event: `{}`, wantOutcome: OutcomeRefreshed, wantReason: dueExpiring, wantCalls: []string{grantRefresh}, wantSlot: 1, wantGen: 2,
			check: func(t *testing.T, e *env, res Result) {
				if e.rdp.lastRT != "RT-seed-1" {
					t.Errorf("refresh grant used %q", e.rdp.lastRT)
				}
				if !e.authState().SessionStart.Equal(t0.Add(-8 * time.Minute)) {
					t.Errorf("session start moved on a refresh grant")
				}
			},
		},
		{
			name: "least recently written slot is chosen", creds: credsV1, slots: 3,
			setup: func(e *env) {
				e.seed(1, 1, 30*time.Minute, -20*time.Minute)
				e.seed(2, 2, 20*time.Minute, -10*time.Minute)
				e.seed(0, 3, 10*time.Minute, time.Minute)
			},
			event: `{}`, wantOutcome: OutcomeRefreshed, wantReason: dueExpiring, wantCalls: []string{grantRefresh}, wantSlot: 1, wantGen: 4,
		},
		{
			name: "generation continues above the state's even if the ring is behind", creds: credsV1, slots: 3,
			setup: func(e *env) {
				e.seed(0, 1, 9*time.Minute, time.Minute)
				st, _ := e.table.GetRingState(context.Background())
				if _, err := e.table.ClaimGeneration(context.Background(), st, 7, "cfsync/token-2", t0.Add(-time.Hour)); err != nil {
					t.Fatal(err)
				}
			},
			event: `{}`, wantOutcome: OutcomeRefreshed, wantCalls: []string{grantRefresh}, wantSlot: 1, wantGen: 8,
		},
		{
			name: "reader's report for the newest generation forces a refresh", creds: credsV1, slots: 3,
			setup: func(e *env) {
				e.seed(0, 1, 12*time.Minute, -2*time.Minute)
				e.seed(1, 2, 2*time.Minute, 8*time.Minute)
				if err := e.table.ReportInvalidToken(context.Background(), 2, "401 token revoked"); err != nil {
					t.Fatal(err)
				}
			},
			event: `{}`, wantOutcome: OutcomeRefreshed, wantReason: dueReported, wantCalls: []string{grantRefresh}, wantSlot: 2, wantGen: 3,
		},
		{
			name: "a report for an older generation is ignored", creds: credsV1, slots: 3,
			setup: func(e *env) {
				e.seed(0, 1, 12*time.Minute, -2*time.Minute)
				e.seed(1, 2, 2*time.Minute, 8*time.Minute)
				_ = e.table.ReportInvalidToken(context.Background(), 1, "401")
			},
			event: `{}`, wantOutcome: OutcomeFresh, wantSlot: -1, wantGen: 2,
		},
		{
			name: "force refreshes a fresh token", creds: credsV1, slots: 3,
			setup: func(e *env) { e.seed(0, 1, 11*time.Minute, 9*time.Minute) },
			event: `{"action":"refresh","force":true}`, wantOutcome: OutcomeRefreshed, wantReason: dueForced, wantCalls: []string{grantRefresh}, wantSlot: 1, wantGen: 2,
		},
		{
			name: "dead refresh token: one password grant", creds: credsV1, slots: 3,
			setup: func(e *env) {
				e.seed(0, 1, 9*time.Minute, time.Minute)
				e.rdp.Refresh = func(string, string) (*rdp.Token, error) {
					return nil, &rdp.AuthError{Endpoint: "refresh grant", StatusCode: 400, Code: "invalid_grant", Description: "Invalid refresh token."}
				}
			},
			event: `{}`, wantOutcome: OutcomeRefreshed, wantCalls: []string{grantRefresh, grantPassword}, wantSlot: 1, wantGen: 2,
			check: func(t *testing.T, e *env, res Result) {
				st := e.authState()
				if st.Failures != 0 || !st.SessionStart.Equal(t0) || len(st.Requests) != 2 {
					t.Errorf("auth state = %+v", st)
				}
				if sum(e.metric("AuthFailures", "reason", "invalid_grant")) != 1 {
					t.Errorf("AuthFailures{invalid_grant} missing: %s", e.emf)
				}
			},
		},
		sessionAged("session near its maximum lifetime: password grant instead of refresh", credsV1, 18*time.Hour-11*time.Minute, grantPassword),
		sessionAged("session with time left: refresh grant", credsV1, 18*time.Hour-13*time.Minute, grantRefresh),
		sessionAged("without exclusive sign-on the old session is refreshed until it ends", credsV1NoExcl, 18*time.Hour-5*time.Minute, grantRefresh),
		{
			name: "v2 service account: client_credentials", creds: credsV2, slots: 2,
			event: `{}`, wantOutcome: OutcomeRefreshed, wantCalls: []string{grantClient}, wantSlot: 0, wantGen: 1,
			check: func(t *testing.T, e *env, res Result) {
				if e.slot(0).RefreshToken != "" {
					t.Error("v2 token has a refresh token")
				}
			},
		},
		{
			name: "pre-issued refresh token: first from the credentials", creds: credsPreIssued, slots: 3,
			event: `{}`, wantOutcome: OutcomeRefreshed, wantCalls: []string{grantRefresh}, wantSlot: 0, wantGen: 1,
			check: func(t *testing.T, e *env, res Result) {
				if e.rdp.lastRT != "RT-portal-secret" {
					t.Errorf("used %q", e.rdp.lastRT)
				}
			},
		},
		{
			name: "pre-issued refresh token: then from the ring", creds: credsPreIssued, slots: 3,
			setup: func(e *env) { e.seed(0, 1, 9*time.Minute, time.Minute) },
			event: `{}`, wantOutcome: OutcomeRefreshed, wantCalls: []string{grantRefresh}, wantSlot: 1, wantGen: 2,
			check: func(t *testing.T, e *env, res Result) {
				if e.rdp.lastRT != "RT-seed-1" {
					t.Errorf("used %q", e.rdp.lastRT)
				}
			},
		},
		{
			name: "pre-issued: ring token refused, credentials token tried", creds: credsPreIssued, slots: 3,
			setup: func(e *env) {
				e.seed(0, 1, 9*time.Minute, time.Minute)
				e.rdp.Refresh = func(_, rt string) (*rdp.Token, error) {
					if rt == "RT-seed-1" {
						return nil, &rdp.AuthError{Endpoint: "refresh grant", StatusCode: 400, Code: "invalid_grant"}
					}
					return e.rdp.issue(true), nil
				}
			},
			event: `{}`, wantOutcome: OutcomeRefreshed, wantCalls: []string{grantRefresh, grantRefresh}, wantSlot: 1, wantGen: 2,
		},
		{
			name: "revoked: scheduled runs hold sign-ons", creds: credsV1, slots: 3,
			setup: func(e *env) {
				e.seed(0, 1, 9*time.Minute, time.Minute)
				e.setAuth(func(st *state.AuthState) { st.Revoked, st.RevokedAt = true, t0.Add(-time.Minute) })
			},
			event: `{}`, wantOutcome: OutcomeHeld, wantReason: dueExpiring, wantSlot: -1, wantGen: 1,
		},
		{
			name: "revoked: forced refresh signs on with the password and clears the hold", creds: credsV1, slots: 3,
			setup: func(e *env) {
				e.seed(0, 1, 5*time.Minute, 5*time.Minute)
				e.setAuth(func(st *state.AuthState) { st.Revoked, st.RevokedAt = true, t0.Add(-time.Minute) })
			},
			event: `{"action":"refresh","force":true}`, wantOutcome: OutcomeRefreshed, wantCalls: []string{grantPassword}, wantSlot: 1, wantGen: 2,
			check: func(t *testing.T, e *env, res Result) {
				if e.authState().Revoked {
					t.Error("hold not cleared")
				}
			},
		},
		{
			name: "backoff holds scheduled runs", creds: credsV1, slots: 3,
			setup: func(e *env) {
				e.setAuth(func(st *state.AuthState) {
					st.Failures, st.LastFailure, st.NotBefore = 2, "invalid_grant", t0.Add(time.Minute)
				})
			},
			event: `{}`, wantOutcome: OutcomeBackoff, wantReason: dueEmpty, wantSlot: -1,
			check: func(t *testing.T, e *env, res Result) {
				if res.RetryAt == nil || !res.RetryAt.Equal(t0.Add(time.Minute)) {
					t.Errorf("retryAt = %v", res.RetryAt)
				}
			},
		},
		{
			name: "force overrides the failure backoff", creds: credsV1, slots: 3,
			setup: func(e *env) {
				e.setAuth(func(st *state.AuthState) {
					st.Failures, st.LastFailure, st.NotBefore = 2, "invalid_grant", t0.Add(time.Minute)
				})
			},
			event: `{"force":true}`, wantOutcome: OutcomeRefreshed, wantCalls: []string{grantPassword}, wantSlot: 0, wantGen: 1,
		},
		{
			name: "force does not override a 429's Retry-After", creds: credsV1, slots: 3,
			setup: func(e *env) {
				e.setAuth(func(st *state.AuthState) {
					st.Failures, st.LastFailure, st.NotBefore = 1, reasonRateLimited, t0.Add(3*time.Minute)
				})
			},
			event: `{"force":true}`, wantOutcome: OutcomeBackoff, wantSlot: -1,
		},
		{
			name: "no slot may be written yet: deferred, with the ring size needed", creds: credsV1, slots: 2,
			setup: func(e *env) {
				e.seed(0, 1, 9*time.Minute, time.Minute)
				e.seed(1, 2, 1*time.Minute, 9*time.Minute)
				_ = e.table.ReportInvalidToken(context.Background(), 2, "401")
			},
			event: `{}`, wantOutcome: OutcomeDeferred, wantReason: dueReported, wantSlot: -1, wantGen: 2,
			check: func(t *testing.T, e *env, res Result) {
				if res.SlotsNeeded != 3 || res.RetryAt == nil || !res.RetryAt.Equal(t0.Add(time.Minute)) {
					t.Errorf("result = %+v", res)
				}
				if v := e.metric("RingSlotsNeeded"); len(v) != 1 || v[0] != 3 {
					t.Errorf("RingSlotsNeeded = %v", v)
				}
				if !e.logHas(`"level":"ERROR"`) || !e.logHas("list at least 3 secrets in TOKEN_SECRET_IDS") {
					t.Errorf("no clear error log: %s", e.logs)
				}
			},
		},
		{
			name: "a template placeholder is not a token write", creds: credsV1, slots: 1,
			setup: func(e *env) {
				placeholder := "{}" // as the template creates it
				e.sm.Create(e.ids[0], &placeholder)
				e.clk.Advance(time.Minute)
			},
			event: `{}`, wantOutcome: OutcomeRefreshed, wantReason: dueEmpty, wantCalls: []string{grantPassword}, wantSlot: 0, wantGen: 1,
		},
		{
			name: "a token's version date counts as a write even if the state table forgot it", creds: credsV1, slots: 2,
			setup: func(e *env) {
				e.clk.Advance(-9 * time.Minute)
				s := tokenring.Slot{AccessToken: "AT-old", RefreshToken: "RT-old", ExpiresAt: t0.Add(time.Minute), IssuedAt: t0.Add(-9 * time.Minute), Generation: 4}
				if err := tokenring.Write(context.Background(), e.sm, e.ids[0], s); err != nil {
					t.Fatal(err)
				}
				e.clk.Advance(8 * time.Minute)
				s = tokenring.Slot{AccessToken: "AT-new", RefreshToken: "RT-new", ExpiresAt: t0.Add(9 * time.Minute), IssuedAt: t0.Add(-time.Minute), Generation: 5}
				if err := tokenring.Write(context.Background(), e.sm, e.ids[1], s); err != nil {
					t.Fatal(err)
				}
				e.clk.Advance(time.Minute)
			},
			event: `{"force":true}`, wantOutcome: OutcomeDeferred, wantReason: dueForced, wantSlot: -1, wantGen: 5,
			check: func(t *testing.T, e *env, res Result) {
				if res.RetryAt == nil || !res.RetryAt.Equal(t0.Add(time.Minute)) {
					t.Errorf("retryAt = %v, want 10 minutes after the oldest token write", res.RetryAt)
				}
			},
		},
		{
			name: "ring too small for 5-minute tokens is reported after the write", creds: credsV1, slots: 3,
			setup: func(e *env) { e.rdp.ttl = 5 * time.Minute },
			event: `{}`, wantOutcome: OutcomeRefreshed, wantCalls: []string{grantPassword}, wantSlot: 0, wantGen: 1,
			check: func(t *testing.T, e *env, res Result) {
				if res.SlotsNeeded != 5 {
					t.Errorf("slotsNeeded = %d, want 5", res.SlotsNeeded)
				}
				if v := e.metric("RingSlotsNeeded"); len(v) != 1 || v[0] != 5 {
					t.Errorf("RingSlotsNeeded = %v", v)
				}
			},
		},
		{
			name: "another run holds the auth lease", creds: credsV1, slots: 3,
			setup: func(e *env) {
				e.setAuth(func(st *state.AuthState) { st.LeaseOwner, st.LeaseUntil = "other", t0.Add(time.Minute) })
			},
			event: `{}`, wantOutcome: OutcomeBusy, wantSlot: -1,
		},
		{
			name: "an expired lease is taken over", creds: credsV1, slots: 3,
			setup: func(e *env) {
				e.setAuth(func(st *state.AuthState) { st.LeaseOwner, st.LeaseUntil = "other", t0.Add(-time.Second) })
			},
			event: `{}`, wantOutcome: OutcomeRefreshed, wantCalls: []string{grantPassword}, wantSlot: 0, wantGen: 1,
		},
		{
			name: "another run wrote a newer generation meanwhile: a v2 token is discarded", creds: credsV2, slots: 3,
			setup: func(e *env) {
				e.seed(0, 1, 9*time.Minute, time.Minute)
				e.rdp.Client = func(string, string, string) (*rdp.Token, error) {
					st, _ := e.table.GetRingState(context.Background())
					if _, err := e.table.ClaimGeneration(context.Background(), st, 2, e.ids[2], t0); err != nil {
						t.Fatal(err)
					}
					return e.rdp.issue(false), nil
				}
			},
			event: `{}`, wantOutcome: OutcomeLostRace, wantCalls: []string{grantClient}, wantSlot: -1, wantGen: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.creds, tc.slots)
			if tc.setup != nil {
				tc.setup(e)
			}
			writesBefore := len(e.sm.Writes())
			res, err := e.handle(tc.event)
			if err != nil && !errors.Is(err, ErrNoUsableToken) { // TestNoUsableTokenFailsTheRun covers that error
				t.Fatalf("Handle: %v", err)
			}
			if res.Outcome != tc.wantOutcome {
				t.Fatalf("outcome = %q, want %q (result %+v)\nlogs: %s", res.Outcome, tc.wantOutcome, res, e.logs)
			}
			if tc.wantReason != "" && res.Reason != tc.wantReason {
				t.Errorf("reason = %q, want %q", res.Reason, tc.wantReason)
			}
			if got := e.rdp.Calls(); !slices.Equal(got, tc.wantCalls) {
				t.Errorf("auth calls = %v, want %v", got, tc.wantCalls)
			}
			if res.AuthCalls != len(tc.wantCalls) {
				t.Errorf("result authCalls = %d", res.AuthCalls)
			}
			if tc.wantGen != 0 && res.Generation != tc.wantGen {
				t.Errorf("generation = %d, want %d", res.Generation, tc.wantGen)
			}
			writes := e.sm.Writes()[writesBefore:]
			if tc.wantSlot < 0 {
				if len(writes) != 0 {
					t.Fatalf("slots written: %v", writes)
				}
			} else {
				if len(writes) != 1 || writes[0].ID != e.ids[tc.wantSlot] {
					t.Fatalf("writes = %v, want one to slot %d", writes, tc.wantSlot)
				}
				s := e.slot(tc.wantSlot)
				if s.Generation != tc.wantGen || s.Empty() || writes[0].VersionID != tokenring.ClientRequestToken(tc.wantGen) {
					t.Errorf("slot = %v version %s", s, writes[0].VersionID)
				}
				if res.Slot != e.ids[tc.wantSlot] {
					t.Errorf("result slot = %q", res.Slot)
				}
			}
			if st := e.authState(); st.LeaseOwner != "" && st.LeaseOwner != "other" {
				t.Errorf("lease not released: %+v", st)
			}
			if tc.check != nil {
				tc.check(t, e, res)
			}
		})
	}
}

// TestFailures: errors name the field or RDP's error, nothing is written,
// and consecutive failures back off exponentially across invocations.
func TestFailures(t *testing.T) {
	invalidPassword := &rdp.AuthError{Endpoint: "password grant", StatusCode: 400, Code: "invalid_grant", Description: "Invalid username or password."}
	tests := []struct {
		name       string
		creds      string // "" : no credentials secret
		setup      func(e *env)
		wantErr    []string
		wantReason string
		wantCalls  []string
		wantWait   time.Duration // NotBefore - now after the first failure
	}{
		{name: "credentials secret missing", wantErr: []string{"read credentials secret rdp-credentials", "ResourceNotFound"}, wantReason: reasonCredentials, wantWait: time.Minute},
		{name: "credentials not JSON", creds: `user:pw-secret`, wantErr: []string{"credentials secret rdp-credentials: invalid RDP credentials: invalid JSON"}, wantReason: reasonCredentials, wantWait: time.Minute},
		{name: "credentials missing a field", creds: `{"username":"u","client_id":"appkey-secret"}`, wantErr: []string{`field "password" is missing`}, wantReason: reasonCredentials, wantWait: time.Minute},
		{name: "wrong password", creds: credsV1, setup: func(e *env) {
			e.rdp.Password = func(rdp.PasswordGrant) (*rdp.Token, error) { return nil, invalidPassword }
		}, wantErr: []string{"v1 password grant", "invalid_grant: Invalid username or password."}, wantReason: reasonInvalidGrant, wantCalls: []string{grantPassword}, wantWait: time.Minute},
		{name: "v2 secret wrong", creds: credsV2, setup: func(e *env) {
			e.rdp.Client = func(string, string, string) (*rdp.Token, error) {
				return nil, &rdp.AuthError{Endpoint: "client credentials grant", StatusCode: 401, Code: "invalid_client", Description: "Invalid client credentials."}
			}
		}, wantErr: []string{"client_secret", "invalid_client: Invalid client credentials."}, wantReason: reasonClient, wantCalls: []string{grantClient}, wantWait: time.Minute},
		{name: "session quota without exclusive sign-on", creds: credsV1NoExcl, setup: func(e *env) {
			e.rdp.Password = func(rdp.PasswordGrant) (*rdp.Token, error) {
				return nil, &rdp.AuthError{Endpoint: "password grant", StatusCode: 400, Code: "access_denied", Description: "Session quota is reached."}
			}
		}, wantErr: []string{"Session quota is reached."}, wantReason: reasonSessionQuota, wantCalls: []string{grantPassword}, wantWait: time.Minute},
		{name: "429 honours Retry-After", creds: credsV1, setup: func(e *env) {
			e.rdp.Password = func(rdp.PasswordGrant) (*rdp.Token, error) {
				return nil, &rdp.RateLimitError{Endpoint: "password grant", RetryAfter: 4 * time.Minute}
			}
		}, wantErr: []string{"429"}, wantReason: reasonRateLimited, wantCalls: []string{grantPassword}, wantWait: 4 * time.Minute},
		{name: "gateway 5xx", creds: credsV1, setup: func(e *env) {
			e.rdp.Password = func(rdp.PasswordGrant) (*rdp.Token, error) {
				return nil, &rdp.APIError{Endpoint: "password grant", StatusCode: 503, Message: "Service Unavailable"}
			}
		}, wantErr: []string{"503"}, wantReason: reasonServer, wantCalls: []string{grantPassword}, wantWait: time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.creds, 3)
			if tc.setup != nil {
				tc.setup(e)
			}
			res, err := e.handle(`{}`)
			if err == nil {
				t.Fatalf("no error (result %+v)", res)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, s := range []string{"pw-secret", "appkey-secret", "cs-secret", "user-secret"} {
				if strings.Contains(err.Error(), s) || e.logHas(s) {
					t.Errorf("error or logs reveal %s", s)
				}
			}
			if res.Outcome != OutcomeFailed {
				t.Errorf("outcome = %q", res.Outcome)
			}
			if got := e.rdp.Calls(); !slices.Equal(got, tc.wantCalls) {
				t.Errorf("calls = %v, want %v", got, tc.wantCalls)
			}
			if n := len(e.sm.Writes()); n != 0 {
				t.Fatalf("%d slot writes after a failure", n)
			}
			st := e.authState()
			if st.Failures != 1 || st.LastFailure != tc.wantReason || st.NotBefore.Sub(t0) != tc.wantWait || st.LeaseOwner != "" {
				t.Fatalf("auth state = %+v", st)
			}
			if sum(e.metric("AuthFailures", "reason", tc.wantReason)) != 1 {
				t.Errorf("AuthFailures{reason=%s} missing: %s", tc.wantReason, e.emf)
			}
			if !e.logHas(`"level":"ERROR"`) {
				t.Errorf("no error log")
			}
			// Runs during the backoff send nothing; then the backoff doubles.
			e.clk.Advance(tc.wantWait - time.Second)
			res, err = e.handle(`{}`)
			if !errors.Is(err, ErrNoUsableToken) || res.Outcome != OutcomeBackoff { // the ring is empty: a failed run
				t.Fatalf("during backoff: %+v, %v", res, err)
			}
			e.clk.Advance(time.Second)
			if _, err := e.handle(`{}`); err == nil {
				t.Fatal("second attempt succeeded")
			}
			st = e.authState()
			want := max(2*time.Minute, tc.wantWait)
			if st.Failures != 2 || st.NotBefore.Sub(e.clk.Now()) != want {
				t.Errorf("after 2 failures: failures=%d wait=%s, want %s", st.Failures, st.NotBefore.Sub(e.clk.Now()), want)
			}
			if n := len(e.rdp.Calls()); n != 2*len(tc.wantCalls) {
				t.Errorf("%d auth calls after two attempts", n)
			}
		})
	}
}

func TestAuthBudget(t *testing.T) {
	e := newEnv(t, credsV1, 3)
	e.h.Opts.AuthBudget = 3
	now := e.clk.Now()
	e.setAuth(func(st *state.AuthState) {
		st.Requests = []int64{now.Add(-4 * time.Minute).UnixMilli(), now.Add(-2 * time.Minute).UnixMilli(), now.Add(-time.Minute).UnixMilli()}
	})
	res, err := e.handle(`{}`)
	if !errors.Is(err, ErrBudget) || !strings.Contains(err.Error(), "AUTH_BUDGET=3") {
		t.Fatalf("err = %v", err)
	}
	if len(e.rdp.Calls()) != 0 || len(e.sm.Writes()) != 0 || res.Outcome != OutcomeFailed {
		t.Fatalf("calls %v, result %+v", e.rdp.Calls(), res)
	}
	if sum(e.metric("AuthFailures", "reason", reasonBudget)) != 1 {
		t.Errorf("budget metric missing")
	}
	e.clk.Advance(time.Minute + time.Second) // the oldest request leaves the window
	if res := e.mustHandle(`{}`); res.Outcome != OutcomeRefreshed {
		t.Fatalf("after the window moved: %+v", res)
	}
}

func TestMalformedEventIsRejected(t *testing.T) {
	e := newEnv(t, credsV1, 3)
	for _, ev := range []string{`nope`, `{"action":"rotate"}`, `{"force":"true"}`} {
		if _, err := e.handle(ev); !errors.Is(err, ErrMalformedEvent) {
			t.Errorf("%s: err = %v", ev, err)
		}
	}
	if len(e.rdp.Calls()) != 0 || len(e.sm.Writes()) != 0 {
		t.Fatal("a malformed event did something")
	}
}

func TestSlotsNeeded(t *testing.T) {
	tests := []struct {
		interval, cadence time.Duration
		want              int
	}{
		{10 * time.Minute, 8 * time.Minute, 3},
		{10 * time.Minute, 3 * time.Minute, 5},
		{10 * time.Minute, 5 * time.Minute, 3},
		{10 * time.Minute, 118 * time.Minute, 2},
		{10 * time.Minute, 0, 11},
		{0, 8 * time.Minute, 1},
	}
	for _, tc := range tests {
		if got := SlotsNeeded(tc.interval, tc.cadence); got != tc.want {
			t.Errorf("SlotsNeeded(%s, %s) = %d, want %d", tc.interval, tc.cadence, got, tc.want)
		}
	}
}

// TestOverlappingRuns: two invocations at once (reserved concurrency
// notwithstanding). The second finds the /auth lease and stays away; if the
// first outlives its lease, the conditional claim of the generation lets
// only one token into the ring.
func TestOverlappingRuns(t *testing.T) {
	for _, tc := range []struct {
		name        string
		creds       string
		advance     time.Duration // clock moved while the first run is inside RDP
		wantSecond  string
		wantFirst   string
		wantWriters int
		wantGen     int64
	}{
		{name: "second run sees the lease", creds: credsV1, advance: 30 * time.Second, wantSecond: OutcomeBusy, wantFirst: OutcomeRefreshed,
			wantWriters: 1, wantGen: 2},
		{name: "first run outlives its lease: its rotated refresh token is stored one generation higher", creds: credsV1,
			advance: 3 * time.Minute, wantSecond: OutcomeRefreshed, wantFirst: OutcomeRefreshed, wantWriters: 2, wantGen: 3},
		{name: "first run outlives its lease: a v2 token (no refresh token) is discarded", creds: credsV2,
			advance: 3 * time.Minute, wantSecond: OutcomeRefreshed, wantFirst: OutcomeLostRace, wantWriters: 1, wantGen: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.creds, 3)
			e.seed(0, 1, 9*time.Minute, time.Minute)
			inside, release := make(chan struct{}), make(chan struct{})
			first := true
			grant := func() (*rdp.Token, error) {
				if first {
					first = false
					close(inside)
					e.rdp.mu.Unlock() // let the second run use the fake meanwhile
					<-release
					e.rdp.mu.Lock()
				}
				return e.rdp.issue(tc.creds != credsV2), nil
			}
			e.rdp.Refresh = func(string, string) (*rdp.Token, error) { return grant() }
			e.rdp.Client = func(string, string, string) (*rdp.Token, error) { return grant() }
			hA, hB := *e.h, *e.h
			type out struct {
				res Result
				err error
			}
			done := make(chan out)
			go func() {
				res, err := hA.Handle(context.Background(), []byte(`{}`))
				done <- out{res, err}
			}()
			<-inside
			e.clk.Advance(tc.advance)
			resB, err := hB.Handle(context.Background(), []byte(`{}`))
			if err != nil || resB.Outcome != tc.wantSecond {
				t.Fatalf("second run: %+v, %v", resB, err)
			}
			close(release)
			a := <-done
			if a.err != nil || a.res.Outcome != tc.wantFirst {
				t.Fatalf("first run: %+v, %v", a.res, a.err)
			}
			if n := len(e.sm.Writes()) - 1; n != tc.wantWriters {
				t.Fatalf("%d tokens written, want %d", n, tc.wantWriters)
			}
			rs, _ := e.table.GetRingState(context.Background())
			if rs.Generation != tc.wantGen {
				t.Fatalf("generation = %d, want %d", rs.Generation, tc.wantGen)
			}
		})
	}
}
