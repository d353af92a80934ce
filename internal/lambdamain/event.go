package lambdamain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// EventFields decodes an invocation payload that must be a JSON object (a
// scheduled event, an operator's event) into its fields. Anything else is an
// error that says what it got without quoting the payload; the caller names
// the event and gives it its errorType (lambdaerr.Malformed).
func EventFields(payload []byte) (map[string]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) == 0 {
		return nil, errors.New("empty payload, want a JSON object")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("not JSON: invalid JSON at byte %d, want a JSON object", se.Offset)
		case errors.As(err, &te):
			return nil, fmt.Errorf("want a JSON object, got JSON %s", te.Value)
		}
		return nil, errors.New("not JSON: invalid JSON, want a JSON object")
	}
	if fields == nil { // the JSON literal null
		return nil, errors.New("want a JSON object, got null")
	}
	return fields, nil
}
