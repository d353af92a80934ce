package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/cfsync/cfsync/internal/lambdamain"
)

// Event is a parsed invocation event (docs/design.md#events).
//
//	any JSON object without "subscriptions"/"full"  → scheduled: every SUBSCRIPTIONS entry, incremental
//	{"subscriptions":["bulk-ESG/<packageId>", …]}   → those entries
//	{"full":true}                                   → ignore the watermark (full reconciliation)
type Event struct {
	// Subscriptions named by the event; nil means the configured SUBSCRIPTIONS.
	Subscriptions []string
	// Full ignores the incremental watermark.
	Full bool
}

// ParseEvent parses an invocation payload. Non-JSON input, a JSON value that
// is not an object, and a known field of the wrong type are errors naming
// the problem; unknown fields (EventBridge's own) are ignored.
func ParseEvent(payload []byte) (Event, error) {
	var ev Event
	fields, err := lambdamain.EventFields(payload)
	if err != nil {
		return ev, fmt.Errorf("event: %w", err)
	}
	if raw, ok := fields["subscriptions"]; ok {
		var subs []string
		if err := json.Unmarshal(raw, &subs); err != nil || subs == nil {
			return ev, fmt.Errorf(`event: field "subscriptions": want an array of "bucket/packageId" strings, got %s`, jsonKind(raw))
		}
		if len(subs) == 0 {
			return ev, errors.New(`event: field "subscriptions": empty array (omit the field to poll every SUBSCRIPTIONS entry)`)
		}
		ev.Subscriptions = subs
	}
	if raw, ok := fields["full"]; ok {
		if err := json.Unmarshal(raw, &ev.Full); err != nil || jsonKind(raw) != "boolean" {
			return ev, fmt.Errorf(`event: field "full": want true or false, got %s`, jsonKind(raw))
		}
	}
	return ev, nil
}

// jsonKind names the JSON type of raw (for error messages).
func jsonKind(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		var xs []json.RawMessage
		if json.Unmarshal(t, &xs) == nil {
			for _, x := range xs {
				if k := jsonKind(x); k != "a string" {
					return "an array containing " + k
				}
			}
		}
		return "an array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// Subscription is one parsed SUBSCRIPTIONS entry.
type Subscription struct {
	Raw       string // as written
	Bucket    string
	PackageID string // "" when All
	All       bool   // bucket/*: every package the account sees in the bucket
}

// Target is one package to poll.
type Target struct {
	Bucket    string
	PackageID string
}

// String is bucket/packageId.
func (t Target) String() string { return t.Bucket + "/" + t.PackageID }

func (t Target) key() string { return strings.ToLower(t.Bucket) + "/" + t.PackageID }

// ParseSubscription parses "bucket/packageId" or "bucket/*". The error names
// the entry.
func ParseSubscription(s string) (Subscription, error) {
	bad := func(why string) (Subscription, error) {
		return Subscription{}, fmt.Errorf("subscription %q: %s (want bucket/packageId or bucket/*)", s, why)
	}
	raw := strings.TrimSpace(s)
	if raw == "" {
		return bad("empty")
	}
	if strings.IndexFunc(raw, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return bad("contains white space")
	}
	bucket, pkg, ok := strings.Cut(raw, "/")
	switch {
	case !ok:
		return bad("no '/'")
	case bucket == "":
		return bad("empty bucket")
	case pkg == "":
		return bad("empty package id")
	case strings.Contains(pkg, "/"):
		return bad("more than one '/'")
	case strings.ContainsAny(raw, "?#&%"):
		return bad("contains one of ?#&%")
	case bucket == "*" || bucket == "." || bucket == "..":
		return bad("invalid bucket")
	case pkg == "." || pkg == "..":
		return bad("invalid package id")
	case pkg != "*" && strings.Contains(pkg, "*"):
		return bad("'*' must be the whole package id")
	}
	if pkg == "*" {
		return Subscription{Raw: s, Bucket: bucket, All: true}, nil
	}
	return Subscription{Raw: s, Bucket: bucket, PackageID: pkg}, nil
}
