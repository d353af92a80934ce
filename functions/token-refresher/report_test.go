package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cfsync/cfsync/pkg/rdp"
)

var errRDPDown = &rdp.APIError{Endpoint: "list packages", StatusCode: 503, Message: "Service Unavailable"}

// TestReportVerification: a reader's report costs a ring write only when
// RDP really refuses the token; an inconclusive check only uses a slot the
// scheduled refresh can spare; an accepted token's report is dismissed
// until a newer report arrives.
func TestReportVerification(t *testing.T) {
	// roomy: slot 2 was never written and slot 0 is writable again before
	// the new token's scheduled refresh. tight: two slots, the other one
	// rests until after the new token's scheduled refresh is due.
	roomy := func(e *env) {
		e.seed(0, 1, 12*time.Minute, -2*time.Minute)
		e.seed(1, 2, 2*time.Minute, 8*time.Minute)
	}
	tight := func(e *env) {
		e.seed(0, 1, 11*time.Minute, -time.Minute)
		e.seed(1, 2, time.Minute, 9*time.Minute)
	}
	tests := []struct {
		name        string
		slots       int
		setup       func(e *env)
		probe       error
		wantOutcome string
		wantReason  string
		wantSlot    int // -1: none
	}{
		{"token still accepted: no write", 3, roomy, nil, OutcomeFresh, "", -1},
		{"token refused: replaced", 3, roomy, errRefused, OutcomeRefreshed, dueReported, 2},
		{"check inconclusive, slot to spare: replaced", 3, roomy, errRDPDown, OutcomeRefreshed, dueUnverified, 2},
		{"check inconclusive, no slot to spare: kept", 2, tight, errRDPDown, OutcomeKept, dueUnverified, -1},
		{"token refused, no slot to spare: replaced all the same", 2, tight, errRefused, OutcomeRefreshed, dueReported, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, credsV1, tc.slots)
			tc.setup(e)
			_ = e.table.ReportInvalidToken(context.Background(), 2, "401 token expired")
			e.probe.set(tc.probe)
			before := len(e.sm.Writes())
			res := e.mustHandle(`{}`)
			if res.Outcome != tc.wantOutcome || res.Reason != tc.wantReason {
				t.Fatalf("outcome %q reason %q, want %q %q\nlogs: %s", res.Outcome, res.Reason, tc.wantOutcome, tc.wantReason, e.logs)
			}
			if !slices.Equal(e.probe.probed, []string{"AT-seed-2"}) {
				t.Errorf("probed %v, want the reported token once", e.probe.probed)
			}
			writes := e.sm.Writes()[before:]
			switch {
			case tc.wantSlot < 0 && len(writes) != 0:
				t.Errorf("writes = %v, want none", writes)
			case tc.wantSlot >= 0 && (len(writes) != 1 || writes[0].ID != e.ids[tc.wantSlot]):
				t.Errorf("writes = %v, want one to slot %d", writes, tc.wantSlot)
			}
			if tc.wantSlot < 0 && len(e.rdp.Calls()) != 0 {
				t.Errorf("auth calls %v, want none", e.rdp.Calls())
			}
			if strings.Contains(e.logs.String(), "AT-seed-2") {
				t.Errorf("the probed token was logged: %s", e.logs)
			}
		})
	}
}

// TestAcceptedReportIsNotCheckedAgain: once RDP accepted the reported token,
// later runs neither probe nor write for the same reports; a newer report
// is checked again, and a refusal then replaces the token.
func TestAcceptedReportIsNotCheckedAgain(t *testing.T) {
	e := newEnv(t, credsV1, 3)
	e.seed(0, 1, 2*time.Minute, 8*time.Minute)
	_ = e.table.ReportInvalidToken(context.Background(), 1, "401 token expired")
	e.probe.set(nil)
	for i := range 3 {
		if res := e.mustHandle(`{}`); res.Outcome != OutcomeFresh {
			t.Fatalf("run %d: outcome %q", i, res.Outcome)
		}
		e.clk.Advance(time.Minute)
	}
	if e.probe.count() != 1 {
		t.Fatalf("probed %d times for one report, want 1", e.probe.count())
	}
	if got := sum(e.metric("TokenReportChecks", "verdict", verdictAccepted)); got != 1 {
		t.Errorf("TokenReportChecks{accepted} = %v", got)
	}
	_ = e.table.ReportInvalidToken(context.Background(), 1, "401 token expired")
	e.probe.set(errRefused)
	if res := e.mustHandle(`{}`); res.Outcome != OutcomeRefreshed || res.Reason != dueReported {
		t.Fatalf("after a newer report: %+v", res)
	}
	if e.probe.count() != 2 {
		t.Errorf("probed %d times, want 2", e.probe.count())
	}
}

// TestFileStoreProber: one GET of the package listing with the token as
// bearer, no retry; 401 is a refusal, any other answer below 500 an
// acceptance, 429/5xx/network errors inconclusive.
func TestFileStoreProber(t *testing.T) {
	tests := []struct {
		status int
		body   string
		want   string // the verdict
	}{
		{200, `{"value":[{"packageId":"p1"}]}`, verdictAccepted},
		{200, `{"value":[]}`, verdictAccepted},
		{401, `{"error":{"id":"x","code":"401","message":"token expired","status":"Unauthorized"}}`, verdictRefused},
		{403, `{"status":403,"message":"Access denied: Insufficient claims to access this resource"}`, verdictAccepted},
		{404, `{"error":{"id":"x","code":"EDS.CFS.NoBucketFound","status":404,"message":"No resource found"}}`, verdictAccepted},
		{429, `{}`, verdictInconclusive},
		{503, `{}`, verdictInconclusive},
	}
	for _, tc := range tests {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			var requests atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				if r.URL.Path != "/file-store/v1/packages" || r.Header.Get("Authorization") != "Bearer tok-secret" {
					t.Errorf("request %s %s auth %q", r.Method, r.URL, r.Header.Get("Authorization"))
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			err := (&FileStoreProber{BaseURL: srv.URL}).ProbeToken(context.Background(), "tok-secret")
			if got := verdict(err); got != tc.want {
				t.Fatalf("ProbeToken = %v: %s, want %s", err, got, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "tok-secret") {
				t.Errorf("error reveals the token: %v", err)
			}
			if n := requests.Load(); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		err := (&FileStoreProber{BaseURL: srv.URL, Timeout: time.Second}).ProbeToken(context.Background(), "tok-secret")
		if got := verdict(err); got != verdictInconclusive {
			t.Fatalf("ProbeToken = %v: %s, want %s", err, got, verdictInconclusive)
		}
	})
}
