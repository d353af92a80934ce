package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cfsync/cfsync/internal/lambdamain"
)

// Actions of the refresher's own events (docs/design.md#events).
const (
	ActionRefresh = "refresh"
	ActionRevoke  = "revoke"
)

// Event is a parsed invocation payload.
type Event struct {
	// Scheduled: the payload carried none of the refresher's fields (an
	// EventBridge Scheduler or rule payload, `{}`): refresh if needed.
	Scheduled bool
	Action    string // ActionRefresh or ActionRevoke
	Force     bool   // refresh even if the newest token has time left
}

// ErrMalformedEvent wraps every event error.
var ErrMalformedEvent = errors.New("malformed event")

// ParseEvent parses a payload: any JSON object without "action" or "force"
// is a scheduled event; {"action":"refresh","force":true} and
// {"action":"revoke"} are the operator's. Non-JSON input, an unknown action
// or a field of the wrong type is an error naming it.
func ParseEvent(raw []byte) (Event, error) {
	obj, err := lambdamain.EventFields(raw)
	if err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrMalformedEvent, err)
	}
	rawAction, hasAction := obj["action"]
	rawForce, hasForce := obj["force"]
	if !hasAction && !hasForce {
		return Event{Scheduled: true, Action: ActionRefresh}, nil
	}
	ev := Event{Action: ActionRefresh}
	if hasAction {
		var a string
		if err := json.Unmarshal(rawAction, &a); err != nil {
			return Event{}, fmt.Errorf(`%w: field "action" must be a string`, ErrMalformedEvent)
		}
		switch a {
		case ActionRefresh, ActionRevoke:
			ev.Action = a
		default:
			return Event{}, fmt.Errorf(`%w: field "action": unknown action %q (want "refresh" or "revoke")`, ErrMalformedEvent, truncate(a, 40))
		}
	}
	if hasForce {
		if err := json.Unmarshal(rawForce, &ev.Force); err != nil || bytes.Equal(bytes.TrimSpace(rawForce), []byte("null")) {
			return Event{}, fmt.Errorf(`%w: field "force" must be true or false`, ErrMalformedEvent)
		}
		if ev.Action == ActionRevoke && ev.Force {
			return Event{}, fmt.Errorf(`%w: field "force" applies to action "refresh" only`, ErrMalformedEvent)
		}
	}
	return ev, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
