package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cfsync/cfsync/internal/lambdaerr"
)

// TestInvokeErrorType: what Lambda reports as errorType when an invocation
// fails (docs/incoming/transport.md has the table).
func TestInvokeErrorType(t *testing.T) {
	tests := []struct {
		name   string
		creds  string
		event  string
		bodies []string         // notifications in the queue (file-set ids fs1, fs2, …)
		fail   map[string]error // hand-offs that fail, by file-set id
		want   string
	}{
		{name: "not JSON", creds: goodCreds, event: `not json`, want: "MalformedEvent"},
		{name: "not an object", creds: goodCreds, event: `[1]`, want: "MalformedEvent"},
		{name: "queue credentials secret unparsable", creds: `{"endpoint":`, event: `{}`, want: "Configuration"},
		{name: "one hand-off of two fails", creds: goodCreds, event: `{}`, bodies: []string{"fs1", "fs2"},
			fail: map[string]error{"fs2": errors.New("dynamodb down")}, want: "PartialFailure"},
		{name: "the only hand-off fails", creds: goodCreds, event: `{}`, bodies: []string{"fs1"},
			fail: map[string]error{"fs1": errors.New("dynamodb down")}, want: "Failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &fakeQueue{}
			for _, id := range tt.bodies {
				q.add(seal(t, testKey, notification(id, "READY", "f-"+id)))
			}
			h := newTestHandler(t, secrets(t, tt.creds), q, &fakeEnqueuer{fail: tt.fail}, &fakeReporter{}, &bytes.Buffer{})
			out, err := h.Invoke(context.Background(), []byte(tt.event))
			if err == nil {
				t.Fatalf("Invoke(%s) = %s, want an error", tt.event, out)
			}
			if got := lambdaerr.TypeName(err); got != tt.want {
				t.Errorf("errorType = %s, want %s (error: %v)", got, tt.want, err)
			}
		})
	}
}

// TestNewNamesWhatIsMissing: New refuses missing collaborators, a missing
// secret id and a zero duration (it has no defaults of its own), with an
// error naming it.
func TestNewNamesWhatIsMissing(t *testing.T) {
	if _, err := New(Deps{}, testSettings()); err == nil || !strings.Contains(err.Error(), "Secrets, NewQueue, Handoff and Reports") {
		t.Errorf("New without clients = %v", err)
	}
	d := newTestHandler(t, secrets(t, goodCreds), &fakeQueue{}, &fakeEnqueuer{}, &fakeReporter{}, &bytes.Buffer{}).Deps
	for name, edit := range map[string]func(*Settings){
		"NOTIFY_CREDENTIALS_SECRET_ID": func(s *Settings) { s.CredentialsSecretID = "" },
		"NOTIFY_WAIT":                  func(s *Settings) { s.Wait = 0 },
		"NOTIFY_DEADLINE_MARGIN":       func(s *Settings) { s.DeadlineMargin = 0 },
		"NOTIFY_VISIBILITY_TIMEOUT":    func(s *Settings) { s.Visibility = 0 },
	} {
		s := testSettings()
		edit(&s)
		if _, err := New(d, s); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("New without %s = %v, want an error naming it", name, err)
		}
	}
}
