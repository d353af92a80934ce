package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cfsync/cfsync/internal/lambdaerr"
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
