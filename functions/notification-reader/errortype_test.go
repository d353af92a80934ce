package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/cfsync/cfsync/internal/lambdaerr"
)

// TestInvokeErrorType: what Lambda reports as errorType when an invocation
// fails (docs/incoming/transport.md has the table).
func TestInvokeErrorType(t *testing.T) {
	tests := []struct {
		name  string
		creds string
		event string
		want  string
	}{
		{name: "not JSON", creds: goodCreds, event: `not json`, want: "MalformedEvent"},
		{name: "not an object", creds: goodCreds, event: `[1]`, want: "MalformedEvent"},
		{name: "queue credentials secret unparsable", creds: `{"endpoint":`, event: `{}`, want: "Configuration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHandler(t, secrets(t, tt.creds), &fakeQueue{}, &fakeEnqueuer{}, &fakeReporter{}, &bytes.Buffer{})
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
