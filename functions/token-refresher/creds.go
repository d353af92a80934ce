package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Kinds of RDP credentials (DESIGN §4).
const (
	KindPassword       = "v1 password"              // {"username","password","client_id"}
	KindServiceAccount = "v2 service account"       // {"client_id","client_secret"}
	KindRefreshToken   = "pre-issued refresh token" // {"client_id","refresh_token"}
)

// Credentials is the parsed credentials secret. Never log it: String and
// GoString print the kind only.
type Credentials struct {
	Kind          string
	Username      string
	Password      string
	ClientID      string
	ClientSecret  string
	RefreshToken  string
	Scope         string
	TakeExclusive bool
}

// String never reveals a credential.
func (c Credentials) String() string { return "Credentials{" + c.Kind + "}" }

// GoString never reveals a credential.
func (c Credentials) GoString() string { return c.String() }

// ErrCredentials wraps every error about the credentials secret's content.
var ErrCredentials = errors.New("credentials secret")

var credFields = []string{"username", "password", "client_id", "client_secret", "refresh_token", "scope", "take_exclusive_sign_on_control"}

// ParseCredentials parses the credentials secret. Errors name the field and
// never quote the secret.
func ParseCredentials(s string) (Credentials, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(strings.TrimSpace(s)), &raw); err != nil || raw == nil {
		return Credentials{}, fmt.Errorf("%w: not a JSON object (want {\"username\",\"password\",\"client_id\"}, {\"client_id\",\"client_secret\"} or {\"client_id\",\"refresh_token\"})", ErrCredentials)
	}
	c := Credentials{TakeExclusive: true}
	str := func(name string, dst *string) error {
		v, ok := raw[name]
		if !ok || string(v) == "null" {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return fmt.Errorf("%w: field %q must be a string", ErrCredentials, name)
		}
		*dst = strings.TrimSpace(*dst)
		return nil
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"username", &c.Username}, {"password", &c.Password}, {"client_id", &c.ClientID},
		{"client_secret", &c.ClientSecret}, {"refresh_token", &c.RefreshToken}, {"scope", &c.Scope},
	} {
		if err := str(f.name, f.dst); err != nil {
			return Credentials{}, err
		}
	}
	if v, ok := raw["take_exclusive_sign_on_control"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &c.TakeExclusive); err != nil {
			return Credentials{}, fmt.Errorf("%w: field \"take_exclusive_sign_on_control\" must be true or false", ErrCredentials)
		}
	}
	missing := func(f string) error { return fmt.Errorf("%w: field %q is missing or empty", ErrCredentials, f) }
	has := func(f string) bool { _, ok := raw[f]; return ok }
	switch {
	case has("client_secret"):
		c.Kind = KindServiceAccount
		if has("username") || has("password") || has("refresh_token") {
			return Credentials{}, fmt.Errorf("%w: field \"client_secret\" (v2) cannot be combined with \"username\", \"password\" or \"refresh_token\"", ErrCredentials)
		}
		if c.ClientSecret == "" {
			return Credentials{}, missing("client_secret")
		}
	case has("username") || has("password"):
		c.Kind = KindPassword
		if has("refresh_token") {
			return Credentials{}, fmt.Errorf("%w: field \"refresh_token\" cannot be combined with \"username\"/\"password\"", ErrCredentials)
		}
		if c.Username == "" {
			return Credentials{}, missing("username")
		}
		if c.Password == "" {
			return Credentials{}, missing("password")
		}
	case has("refresh_token"):
		c.Kind = KindRefreshToken
		if c.RefreshToken == "" {
			return Credentials{}, missing("refresh_token")
		}
	default:
		var unknown []string
		for k := range raw {
			if !slices.Contains(credFields, k) {
				unknown = append(unknown, k)
			}
		}
		slices.Sort(unknown)
		msg := "needs \"username\"+\"password\" (v1), \"client_secret\" (v2) or \"refresh_token\" (pre-issued) besides \"client_id\""
		if len(unknown) > 0 {
			msg += fmt.Sprintf("; unknown fields %q", unknown)
		}
		return Credentials{}, fmt.Errorf("%w: %s", ErrCredentials, msg)
	}
	if c.ClientID == "" {
		return Credentials{}, missing("client_id")
	}
	return c, nil
}
