package main

import (
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/notify"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

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
			cloud, _ := withQueue(e, nil, state.QueueCredsState{})
			cloud.err = tt.err
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
			cloud.err = nil
			e.clk.Advance(tt.later)
			res := e.mustHandle(`{}`)
			if res.QueueCredentials != tt.wantSecond || len(cloud.calls) != tt.wantCalls {
				t.Fatalf("second run after %s: QueueCredentials = %q with %d requests, want %q with %d",
					tt.later, res.QueueCredentials, len(cloud.calls), tt.wantSecond, tt.wantCalls)
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
