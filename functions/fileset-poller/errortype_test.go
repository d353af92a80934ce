package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/lambdaerr"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// TestInvokeErrorType: what Lambda reports as errorType for each way an
// invocation fails (docs/incoming/transport.md has the table).
func TestInvokeErrorType(t *testing.T) {
	tests := []struct {
		name  string
		subs  []string
		event string
		setup func(f *fixture)
		want  string
	}{
		{name: "not JSON", subs: []string{"b/p1"}, event: `not json`, want: "MalformedEvent"},
		{name: "bad subscription in the event", subs: []string{"b/p1"}, event: `{"subscriptions":["a/b/c/d"]}`, want: "MalformedEvent"},
		{name: "no subscriptions anywhere", event: `{}`, want: "Configuration"},
		{name: "empty ring aborts", subs: []string{"b/p1", "b/p2"}, event: `{}`, want: "Outage",
			setup: func(f *fixture) {
				f.files.PageErr = func(rdp.FileSetQuery, int) error { return tokenring.ErrNoValidToken }
			}},
		{name: "one package of two fails", subs: []string{"b/p1", "b/p2"}, event: `{}`, want: "PartialFailure",
			setup: func(f *fixture) {
				f.files.add(mkSets("b", "p2", 0, 1, 1, t0)...)
				f.files.PageErr = func(q rdp.FileSetQuery, _ int) error {
					if q.PackageID == "p1" {
						return &rdp.APIError{Endpoint: "list file-sets", StatusCode: 400, Message: "bad request"}
					}
					return nil
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(tt.subs...)
			if tt.setup != nil {
				tt.setup(f)
			}
			out, err := f.h.Invoke(context.Background(), []byte(tt.event))
			if err == nil {
				t.Fatalf("Invoke(%s) = %s, want an error", tt.event, out)
			}
			if got := lambdaerr.TypeName(err); got != tt.want {
				t.Errorf("errorType = %s, want %s (error: %v)", got, tt.want, err)
			}
		})
	}
}

func TestInvokeBadConfiguredSubscription(t *testing.T) {
	f := newFixture("b/p1/x")
	_, err := f.h.Invoke(context.Background(), []byte(`{}`))
	if got := lambdaerr.TypeName(err); got != "Configuration" {
		t.Errorf("errorType = %s, want Configuration (error: %v)", got, err)
	}
}

// TestNewRejects: New refuses missing collaborators and a zero (or out of
// range) knob, with an error naming what is wrong; the defaults pass.
func TestNewRejects(t *testing.T) {
	deps := Deps{Files: newFakeFiles(), State: newFakeState(time.Now), Queue: &fakeSender{}}
	for _, tc := range []struct {
		name string
		deps Deps
		edit func(*Settings)
		want string // "" accepted, else what the error names
	}{
		{"defaults", deps, func(*Settings) {}, ""},
		{"no State", Deps{Files: newFakeFiles(), Queue: &fakeSender{}}, func(*Settings) {}, "State"},
		{"zero overlap", deps, func(s *Settings) { s.PollOverlap = 0 }, "POLL_OVERLAP"},
		{"zero full every", deps, func(s *Settings) { s.FullReconcileEvery = 0 }, "FULL_RECONCILE_EVERY"},
		{"zero expiry warning", deps, func(s *Settings) { s.ExpiryWarning = 0 }, "EXPIRY_WARNING"},
		{"zero TTL margin", deps, func(s *Settings) { s.FileTTLMargin = 0 }, "FILE_TTL_MARGIN"},
		{"zero page size", deps, func(s *Settings) { s.PollPageSize = 0 }, "POLL_PAGE_SIZE"},
		{"page size over 100", deps, func(s *Settings) { s.PollPageSize = 101 }, "POLL_PAGE_SIZE"},
		{"zero stuck after", deps, func(s *Settings) { s.StuckAfter = 0 }, "STUCK_AFTER"},
		{"zero sweep limit", deps, func(s *Settings) { s.SweepLimit = 0 }, "SWEEP_LIMIT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSettings("b/p1")
			tc.edit(&s)
			_, err := New(tc.deps, s)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("New: %v, want no error", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("New: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
