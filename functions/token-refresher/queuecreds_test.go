package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/notify"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

const (
	subSecretID   = "cfsync/notify-subscription"
	qcSecretID    = "cfsync/notify-queue-credentials"
	queueEndpoint = "https://sqs.us-east-1.amazonaws.com/111122223333/lseg-sub-1"
)

// withQueue turns notifications on in e, with stored credentials cur
// (nil: the template's placeholder "{}") written at st.WrittenAt; e.rdp
// answers the cloud-credentials requests and e.table keeps st.
func withQueue(e *env, cur *notify.QueueCredentials, st state.QueueCredsState) {
	sub, _ := json.Marshal(notify.Subscription{SubscriptionID: "sub-1", Endpoint: queueEndpoint,
		CryptographyKey: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="})
	s := string(sub)
	e.sm.Create(subSecretID, &s)
	v := "{}"
	if cur != nil {
		b, _ := cur.MarshalSecret()
		v = string(b)
	}
	e.sm.Create(qcSecretID, &v)
	e.table.queue = st
	e.h.Cloud, e.h.QueueState = e.rdp, e.table
	e.h.Queue.SubscriptionSecretID, e.h.Queue.CredentialsSecretID = subSecretID, qcSecretID
}

func storedQC(t *testing.T, e *env) notify.QueueCredentials {
	t.Helper()
	v, _ := e.sm.Value(qcSecretID)
	c, err := notify.ParseQueueCredentials(v)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestQueueCredentialsUpkeep(t *testing.T) {
	creds := func(gen int64, ago time.Duration) *notify.QueueCredentials {
		return &notify.QueueCredentials{Endpoint: queueEndpoint, AccessKeyID: "ASIA-OLD", SecretKey: "old", SessionToken: "old",
			FetchedAt: t0.Add(-ago), Generation: gen}
	}
	written := func(gen int64, ago time.Duration) state.QueueCredsState {
		return state.QueueCredsState{Generation: gen, WrittenAt: t0.Add(-ago)}
	}
	tests := []struct {
		name      string
		cur       *notify.QueueCredentials
		st        state.QueueCredsState
		cloudErr  error
		event     string
		setup     func(e *env)
		want      string
		wantCalls int
		wantGen   int64 // generation in the secret afterwards
	}{
		{name: "none stored: fetched and written", st: state.QueueCredsState{}, want: "refreshed", wantCalls: 1, wantGen: 1},
		{name: "fresh: nothing", cur: creds(4, 5*time.Minute), st: written(4, 5*time.Minute), want: "fresh", wantGen: 4},
		{name: "aging: replaced", cur: creds(4, 31*time.Minute), st: written(4, 31*time.Minute), want: "refreshed", wantCalls: 1, wantGen: 5},
		{name: "reported rejected: replaced before aging", cur: creds(4, 12*time.Minute),
			st:   state.QueueCredsState{Generation: 4, WrittenAt: t0.Add(-12 * time.Minute), ReportedGeneration: 4, ReportedAt: t0.Add(-time.Minute)},
			want: "refreshed", wantCalls: 1, wantGen: 5},
		{name: "report about older credentials: ignored", cur: creds(4, 12*time.Minute),
			st:   state.QueueCredsState{Generation: 4, WrittenAt: t0.Add(-12 * time.Minute), ReportedGeneration: 3, ReportedAt: t0.Add(-time.Minute)},
			want: "fresh", wantGen: 4},
		{name: "reported but written 3 min ago: deferred (secret write quota)", cur: creds(4, 3*time.Minute),
			st:   state.QueueCredsState{Generation: 4, WrittenAt: t0.Add(-3 * time.Minute), ReportedGeneration: 4, ReportedAt: t0},
			want: "deferred", wantGen: 4},
		{name: "stated expiration near: replaced", cur: func() *notify.QueueCredentials {
			c := creds(4, 15*time.Minute)
			c.Expiration = t0.Add(2 * time.Minute)
			return c
		}(), st: written(4, 15*time.Minute), want: "refreshed", wantCalls: 1, wantGen: 5},
		{name: "subscription moved to another queue: replaced", cur: func() *notify.QueueCredentials {
			c := creds(4, 15*time.Minute)
			c.Endpoint = "https://sqs.us-east-1.amazonaws.com/1/old"
			return c
		}(), st: written(4, 15*time.Minute), want: "refreshed", wantCalls: 1, wantGen: 5},
		{name: "RDP refuses: failed, old credentials kept", cur: creds(4, 31*time.Minute), st: written(4, 31*time.Minute),
			cloudErr: &rdp.APIError{Endpoint: "get cloud credentials", StatusCode: 403}, want: "failed", wantCalls: 1, wantGen: 4},
		{name: "another invocation holds the auth lease: left to it", cur: creds(4, 31*time.Minute), st: written(4, 31*time.Minute),
			setup: func(e *env) {
				e.setAuth(func(st *state.AuthState) { st.LeaseOwner, st.LeaseUntil = "other", t0.Add(time.Minute) })
			}, want: "busy", wantGen: 4},
		{name: "revoke: no upkeep", cur: creds(4, 31*time.Minute), st: written(4, 31*time.Minute), event: `{"action":"revoke"}`, want: "", wantGen: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, credsV1, 3)
			e.seed(0, 1, 4*time.Minute, 6*time.Minute)
			withQueue(e, tt.cur, tt.st)
			e.rdp.CloudErr = tt.cloudErr
			if tt.setup != nil {
				tt.setup(e)
			}
			ev := tt.event
			if ev == "" {
				ev = `{}`
			}
			res, err := e.handle(ev)
			if err != nil {
				t.Fatal(err)
			}
			if res.QueueCredentials != tt.want {
				t.Fatalf("QueueCredentials = %q, want %q", res.QueueCredentials, tt.want)
			}
			if len(e.rdp.cloudCalls) != tt.wantCalls {
				t.Fatalf("cloud credential calls = %d, want %d", len(e.rdp.cloudCalls), tt.wantCalls)
			}
			if tt.wantCalls > 0 && e.rdp.cloudCalls[0] != "AT-seed-1" {
				t.Errorf("asked with token %q, want the ring's", e.rdp.cloudCalls[0])
			}
			if got := storedQC(t, e); got.Generation != tt.wantGen {
				t.Errorf("stored generation %d, want %d", got.Generation, tt.wantGen)
			}
			if tt.want == "refreshed" {
				got := storedQC(t, e)
				if got.AccessKeyID != "ASIA-QC" || got.SessionToken != "QC-SESSION-TOKEN" || !got.FetchedAt.Equal(t0) || got.Endpoint != queueEndpoint {
					t.Errorf("stored %+v", got)
				}
				if sum(e.metric("AuthRequests", "grant", grantCloud)) != 1 || len(e.authState().Requests) != 1 {
					t.Errorf("cloud credential request not counted in the auth budget: %s", e.emf)
				}
			}
			if tt.want == "failed" && sum(e.metric("QueueCredentialsFailures")) != 1 {
				t.Errorf("failure not counted: %s", e.emf)
			}
			for _, s := range []string{"QC-SECRET-KEY", "QC-SESSION-TOKEN", "ASIA-QC", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="} {
				if strings.Contains(e.logs.String(), s) || strings.Contains(e.emf.String(), s) {
					t.Errorf("%q logged", s)
				}
			}
		})
	}
}

// A token refreshed in the same run is the one used for the cloud
// credentials, and both requests count against the budget.
func TestQueueCredentialsUseTheNewToken(t *testing.T) {
	e := newEnv(t, credsV1, 3)
	withQueue(e, nil, state.QueueCredsState{})
	res := e.mustHandle(`{}`)
	if res.Outcome != OutcomeRefreshed || res.QueueCredentials != "refreshed" || res.AuthCalls != 2 {
		t.Fatalf("result %+v", res)
	}
	if len(e.rdp.cloudCalls) != 1 || e.rdp.cloudCalls[0] != e.slot(0).AccessToken {
		t.Fatalf("cloud credentials asked with %v, want the new token", e.rdp.cloudCalls)
	}
}

func TestQueueCredentialsDue(t *testing.T) {
	o := testSettings(nil, nil).Queue // QUEUE_CREDENTIALS_REFRESH's default: 30m
	cur := notify.QueueCredentials{Endpoint: queueEndpoint, AccessKeyID: "a", FetchedAt: t0, Generation: 2}
	for _, tt := range []struct {
		name string
		now  time.Time
		st   state.QueueCredsState
		want string
	}{
		{"just fetched", t0.Add(time.Minute), state.QueueCredsState{}, ""},
		{"29 min", t0.Add(29 * time.Minute), state.QueueCredsState{}, ""},
		{"30 min", t0.Add(30 * time.Minute), state.QueueCredsState{}, qcAging},
		{"report before the fetch is stale", t0.Add(time.Minute), state.QueueCredsState{ReportedGeneration: 2, ReportedAt: t0.Add(-time.Second)}, ""},
	} {
		if got := queueCredsDue(cur, &tt.st, queueEndpoint, tt.now, o); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// A 429 from /auth/cloud-credentials/v1/ feeds the auth backoff the token
// grants use (the state table's NotBefore): its Retry-After is honoured, by
// the next cloud-credential request and by the token refresh alike; other
// failures of the cloud-credential request leave the backoff alone.
func TestQueueCredentialsRateLimited(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		wantOutcome string
		wantWait    time.Duration // NotBefore - t0; 0: no backoff recorded
		later       time.Duration // when the second run comes
		wantCalls   int           // cloud-credential requests after both runs
		wantSecond  string
	}{
		{name: "429 with Retry-After 10m: the next run waits it out",
			err: &rdp.RateLimitError{Endpoint: "get cloud credentials", RetryAfter: 10 * time.Minute}, wantOutcome: "failed",
			wantWait: 10 * time.Minute, later: 5 * time.Minute, wantCalls: 1, wantSecond: "backoff"},
		{name: "429 with Retry-After 10m: asked again once it has passed",
			err: &rdp.RateLimitError{Endpoint: "get cloud credentials", RetryAfter: 10 * time.Minute}, wantOutcome: "failed",
			wantWait: 10 * time.Minute, later: 11 * time.Minute, wantCalls: 2, wantSecond: "refreshed"},
		{name: "429 without Retry-After: the exponential backoff's first step (1m)",
			err: &rdp.RateLimitError{Endpoint: "get cloud credentials"}, wantOutcome: "failed",
			wantWait: time.Minute, later: 30 * time.Second, wantCalls: 1, wantSecond: "backoff"},
		{name: "403: no backoff, asked again at the next run",
			err: &rdp.APIError{Endpoint: "get cloud credentials", StatusCode: 403}, wantOutcome: "failed",
			later: 5 * time.Second, wantCalls: 2, wantSecond: "refreshed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, credsV1, 3)
			e.seed(0, 1, 4*time.Minute, 6*time.Minute)
			withQueue(e, nil, state.QueueCredsState{})
			e.rdp.CloudErr = tt.err
			if res := e.mustHandle(`{}`); res.QueueCredentials != tt.wantOutcome {
				t.Fatalf("first run: QueueCredentials = %q, want %q", res.QueueCredentials, tt.wantOutcome)
			}
			st := e.authState()
			if got := st.NotBefore.Sub(t0); (tt.wantWait == 0 && !st.NotBefore.IsZero()) || (tt.wantWait > 0 && got != tt.wantWait) {
				t.Fatalf("auth backoff until t0+%s (last failure %q), want t0+%s", got, st.LastFailure, tt.wantWait)
			}
			if tt.wantWait > 0 && st.LastFailure != reasonRateLimited {
				t.Errorf("last failure %q, want %q", st.LastFailure, reasonRateLimited)
			}
			if st.LeaseOwner != "" && st.LeaseUntil.After(t0) {
				t.Errorf("auth lease still held by %s after the run", st.LeaseOwner)
			}
			e.rdp.CloudErr = nil
			e.clk.Advance(tt.later)
			res := e.mustHandle(`{}`)
			if res.QueueCredentials != tt.wantSecond || len(e.rdp.cloudCalls) != tt.wantCalls {
				t.Fatalf("second run after %s: QueueCredentials = %q with %d requests, want %q with %d",
					tt.later, res.QueueCredentials, len(e.rdp.cloudCalls), tt.wantSecond, tt.wantCalls)
			}
			if tt.wantSecond == "backoff" && sum(e.metric("QueueCredentialsFailures")) != 1 {
				t.Errorf("a wait counted as a failure: %s", e.emf)
			}
			if got := storedQC(t, e); (tt.wantSecond == "refreshed") != !got.Empty() {
				t.Errorf("stored credentials %+v after %q", notify.QueueCredentials{Generation: got.Generation}, tt.wantSecond)
			}
		})
	}
}
