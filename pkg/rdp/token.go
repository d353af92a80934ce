package rdp

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Token is an issued RDP token with its absolute expiry.
type Token struct {
	AccessToken  string
	RefreshToken string // empty for v2 client_credentials tokens
	TokenType    string
	Scope        string
	IssuedAt     time.Time
	Expiry       time.Time // IssuedAt + expires_in
}

// ExpiresIn is the token's lifetime as issued.
func (t *Token) ExpiresIn() time.Duration { return t.Expiry.Sub(t.IssuedAt) }

// Valid reports whether the token is usable at now, treating it as expired skew early.
func (t *Token) Valid(now time.Time, skew time.Duration) bool {
	return t != nil && t.AccessToken != "" && now.Add(skew).Before(t.Expiry)
}

// OAuth2 converts the token for use with golang.org/x/oauth2.
func (t *Token) OAuth2() *oauth2.Token {
	typ := t.TokenType
	if typ == "" {
		typ = "Bearer"
	}
	return &oauth2.Token{AccessToken: t.AccessToken, TokenType: typ, RefreshToken: t.RefreshToken, Expiry: t.Expiry}
}

// String never reveals the token.
func (t *Token) String() string {
	return fmt.Sprintf("rdp.Token{type=%s scope=%q expiry=%s refresh=%t}", t.TokenType, t.Scope, t.Expiry.Format(time.RFC3339), t.RefreshToken != "")
}

// GoString never reveals the token (fmt %#v).
func (t *Token) GoString() string { return t.String() }

// tokenResponse is the JSON of /token. expires_in is a string ("600") in
// production; numbers are accepted too.
type tokenResponse struct {
	AccessToken  string      `json:"access_token"`
	RefreshToken string      `json:"refresh_token"`
	ExpiresIn    flexSeconds `json:"expires_in"`
	Scope        string      `json:"scope"`
	TokenType    string      `json:"token_type"`
}

// flexSeconds accepts 600, 600.0 and "600".
type flexSeconds int64

func (f *flexSeconds) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" {
		return fmt.Errorf("expires_in is null")
	}
	if strings.HasPrefix(s, `"`) {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return fmt.Errorf("expires_in: %w", err)
		}
		s = strings.TrimSpace(str)
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || !(n >= 0 && n <= 1e9) { // also rejects NaN
		return fmt.Errorf("expires_in: not a number of seconds: %q", s)
	}
	*f = flexSeconds(n)
	return nil
}

// DecodeToken parses a /token answer. Exported for fuzzing and tools.
func DecodeToken(body []byte, issuedAt time.Time) (*Token, error) {
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return nil, err
	}
	if tr.AccessToken == "" {
		return nil, fmt.Errorf("access_token missing")
	}
	if tr.ExpiresIn <= 0 {
		return nil, fmt.Errorf("expires_in missing or zero")
	}
	return &Token{
		AccessToken:  tr.AccessToken,
		RefreshToken: tr.RefreshToken,
		TokenType:    tr.TokenType,
		Scope:        tr.Scope,
		IssuedAt:     issuedAt,
		Expiry:       issuedAt.Add(time.Duration(tr.ExpiresIn) * time.Second),
	}, nil
}
