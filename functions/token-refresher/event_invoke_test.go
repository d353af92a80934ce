package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/lambdaerr"
	"github.com/cfsync/cfsync/internal/tokenring/ringtest"
)

// Invoke is what lambda.Start calls: a payload that is not JSON must get the
// refresher's own error naming the problem, not a decoder message, with
// errorType MalformedEvent.
func TestInvokeRejectsNonJSON(t *testing.T) {
	h := &Handler{}
	for _, payload := range []string{"not json", "", "[1,2]", `{"action":7}`} {
		out, err := h.Invoke(context.Background(), []byte(payload))
		if out != nil || !errors.Is(err, ErrMalformedEvent) {
			t.Errorf("Invoke(%q) = %s, %v; want ErrMalformedEvent", payload, out, err)
		}
		if got := lambdaerr.TypeName(err); got != "MalformedEvent" {
			t.Errorf("Invoke(%q): errorType %s, want MalformedEvent", payload, got)
		}
		if strings.Contains(err.Error(), "invalid character") {
			t.Errorf("Invoke(%q): bare decoder message %q", payload, err)
		}
	}
}

// New refuses what the refresher cannot run without, naming it.
func TestNewNamesWhatIsMissing(t *testing.T) {
	deps := Deps{SM: ringtest.NewSecrets(time.Now), Table: newFakeState(time.Now), RDP: &fakeRDP{}}
	tests := []struct {
		name string
		d    Deps
		s    Settings
		want string
	}{
		{"no clients", Deps{}, Settings{Opts: Options{CredentialsSecretID: "c", SlotIDs: []string{"a"}}}, "SM, Table and RDP"},
		{"no credentials secret", deps, Settings{Opts: Options{SlotIDs: []string{"a"}}}, "RDP_CREDENTIALS_SECRET_ID"},
		{"no ring", deps, Settings{Opts: Options{CredentialsSecretID: "c"}}, "TOKEN_SECRET_IDS"},
		// New applies no defaults of its own (they are config.Refresher's tags).
		{"no budget", deps, testSettings([]string{"a"}, func(o *Options) { o.AuthBudget = 0 }), "AUTH_BUDGET"},
		{"no backoff", deps, testSettings([]string{"a"}, func(o *Options) { o.BackoffBase = 0 }), "AUTH_BACKOFF_BASE"},
		{"no session lifetime", deps, testSettings([]string{"a"}, func(o *Options) { o.SessionMaxLifetime = 0 }), "RDP_SESSION_MAX_LIFETIME"},
		{"margin not above the readers' skew", deps, testSettings([]string{"a"}, func(o *Options) { o.RefreshMargin = o.ReaderSkew }), "must exceed ReaderSkew (TOKEN_SKEW"},
		{"no queue credentials refresh", deps, Settings{Opts: testSettings([]string{"a"}, nil).Opts, Queue: QueueCredsOptions{SubscriptionSecretID: "s"}}, "QUEUE_CREDENTIALS_REFRESH"},
		{"subscription without queue credentials secret", deps, Settings{Opts: testSettings([]string{"a"}, nil).Opts, Queue: QueueCredsOptions{SubscriptionSecretID: "s", RefreshAfter: time.Hour}}, "NOTIFY_SUBSCRIPTION_SECRET_ID, NOTIFY_CREDENTIALS_SECRET_ID) are set together"},
		{"queue credentials secret without subscription", deps, Settings{Opts: testSettings([]string{"a"}, nil).Opts, Queue: QueueCredsOptions{CredentialsSecretID: "q"}}, "NOTIFY_SUBSCRIPTION_SECRET_ID, NOTIFY_CREDENTIALS_SECRET_ID) are set together"},
	}
	for _, tt := range tests {
		if _, err := New(tt.d, tt.s); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want an error naming %s", tt.name, err, tt.want)
		}
	}
}
