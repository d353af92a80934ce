// Package tokenring reads and writes cfsync's token ring: N Secrets Manager
// secrets ("slots", TOKEN_SECRET_IDS) into which the token-refresher writes
// each new RDP token with a generation number one higher than any before it,
// always into the slot written least recently (docs/design.md#the-token-ring). Readers read
// every slot and use the highest-generation token that has not expired.
//
// The [Reader] is the oauth2.TokenSource of the functions that use tokens but
// never log in (the poller and the downloader): it never calls /auth. When
// RDP refuses its token it re-reads the ring, retries once, and then records
// a token-invalid report in the state table for the refresher (docs/design.md#only-the-refresher-signs-in).
//
// Nothing in this package logs, and no error it returns contains a token.
package tokenring

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Slot is the content of one ring slot (docs/design.md#slot-format):
//
//	{"access_token","refresh_token","token_type","scope","expires_at","issued_at","generation"}
//
// with RFC 3339 times. `{}` (the template's placeholder) or no value at all
// is an empty slot. Its String, GoString and LogValue never reveal a token.
type Slot struct {
	AccessToken  string
	RefreshToken string
	TokenType    string
	Scope        string
	ExpiresAt    time.Time
	IssuedAt     time.Time
	Generation   int64
}

type slotJSON struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	TokenType    string `json:"token_type,omitempty"`
	Scope        string `json:"scope,omitempty"`
	ExpiresAt    string `json:"expires_at"`
	IssuedAt     string `json:"issued_at,omitempty"`
	Generation   int64  `json:"generation"`
}

// ErrEmptySlot is returned by ParseSlot for a slot without a token
// (`{}`, `null`, or an empty string).
var ErrEmptySlot = errors.New("tokenring: empty slot")

// MarshalJSON writes the slot in the format of docs/design.md#slot-format.
func (s Slot) MarshalJSON() ([]byte, error) {
	j := slotJSON{
		AccessToken:  s.AccessToken,
		RefreshToken: s.RefreshToken,
		TokenType:    s.TokenType,
		Scope:        s.Scope,
		ExpiresAt:    s.ExpiresAt.UTC().Format(time.RFC3339Nano),
		Generation:   s.Generation,
	}
	if !s.IssuedAt.IsZero() {
		j.IssuedAt = s.IssuedAt.UTC().Format(time.RFC3339Nano)
	}
	return json.Marshal(j)
}

// ParseSlot decodes a slot's secret string. It returns ErrEmptySlot for an
// empty slot and an error naming the field for a malformed one; the error
// never quotes the secret's content.
func ParseSlot(secret string) (Slot, error) {
	trimmed := strings.TrimSpace(secret)
	if trimmed == "" || trimmed == "null" {
		return Slot{}, ErrEmptySlot
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(trimmed), &raw); err != nil {
		return Slot{}, fmt.Errorf("slot is not a JSON object: %s", jsonErrorKind(err))
	}
	if len(raw) == 0 {
		return Slot{}, ErrEmptySlot
	}
	var j slotJSON
	if err := json.Unmarshal([]byte(trimmed), &j); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return Slot{}, fmt.Errorf("slot field %q: want %s, got JSON %s", te.Field, te.Type, te.Value)
		}
		return Slot{}, fmt.Errorf("slot: %s", jsonErrorKind(err))
	}
	if j.AccessToken == "" {
		if j.ExpiresAt == "" && j.Generation == 0 && j.RefreshToken == "" {
			return Slot{}, ErrEmptySlot // e.g. {"note":"placeholder"}
		}
		return Slot{}, errors.New(`slot field "access_token" is missing or empty`)
	}
	s := Slot{AccessToken: j.AccessToken, RefreshToken: j.RefreshToken, TokenType: j.TokenType, Scope: j.Scope, Generation: j.Generation}
	if j.Generation <= 0 {
		return Slot{}, errors.New(`slot field "generation" is missing or not positive`)
	}
	if j.ExpiresAt == "" {
		return Slot{}, errors.New(`slot field "expires_at" is missing`)
	}
	var err error
	if s.ExpiresAt, err = time.Parse(time.RFC3339Nano, j.ExpiresAt); err != nil {
		return Slot{}, errors.New(`slot field "expires_at" is not an RFC 3339 time`)
	}
	if j.IssuedAt != "" {
		if s.IssuedAt, err = time.Parse(time.RFC3339Nano, j.IssuedAt); err != nil {
			return Slot{}, errors.New(`slot field "issued_at" is not an RFC 3339 time`)
		}
	}
	return s, nil
}

// jsonErrorKind describes a JSON error without quoting the input.
func jsonErrorKind(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("JSON %s where an object was expected", te.Value)
	}
	return "invalid JSON"
}

// Empty reports whether the slot holds no token.
func (s Slot) Empty() bool { return s.AccessToken == "" }

// Valid reports whether the slot's access token is usable at now, treating
// it as expired skew early.
func (s Slot) Valid(now time.Time, skew time.Duration) bool {
	return s.AccessToken != "" && now.Add(skew).Before(s.ExpiresAt)
}

// OAuth2 converts the slot to an oauth2 token. Expiry is ExpiresAt - skew so
// that oauth2's own validity checks agree with the reader's.
func (s Slot) OAuth2(skew time.Duration) *oauth2.Token {
	typ := s.TokenType
	if typ == "" {
		typ = "Bearer"
	}
	return &oauth2.Token{AccessToken: s.AccessToken, TokenType: typ, Expiry: s.ExpiresAt.Add(-skew)}
}

// String never reveals a token.
func (s Slot) String() string {
	if s.Empty() {
		return "tokenring.Slot{empty}"
	}
	return fmt.Sprintf("tokenring.Slot{generation=%d expires_at=%s refresh=%t}", s.Generation, s.ExpiresAt.UTC().Format(time.RFC3339), s.RefreshToken != "")
}

// GoString never reveals a token (fmt %#v).
func (s Slot) GoString() string { return s.String() }

// LogValue never reveals a token (log/slog).
func (s Slot) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int64("generation", s.Generation),
		slog.Time("expires_at", s.ExpiresAt),
		slog.Bool("has_refresh_token", s.RefreshToken != ""),
	)
}
