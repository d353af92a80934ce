// Package credentials parses RDP sign-on credentials: the credentials
// secret's JSON (docs/configuration.md#the-credentials-secret-rdp_credentials_secret_id) and, for the
// command-line tools, the RDP_* environment variables. It is the one copy
// of these rules; errors name the field and never quote a value.
package credentials

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Kind is the kind of credentials.
type Kind string

// Kinds of RDP credentials.
const (
	// Password: v1 {"username","password","client_id"} (optional "scope",
	// "take_exclusive_sign_on_control", default true); password grant.
	Password Kind = "v1 password"
	// ServiceAccount: v2 {"client_id","client_secret"}; client credentials grant.
	ServiceAccount Kind = "v2 service account"
	// RefreshToken: a pre-issued {"client_id","refresh_token"}; refresh grant,
	// and RDP rotates the refresh token on every refresh.
	RefreshToken Kind = "pre-issued refresh token"
)

// Credentials are parsed RDP credentials. Never log them: String and
// GoString print the kind only.
type Credentials struct {
	Kind          Kind
	Username      string
	Password      string
	ClientID      string // the app key
	ClientSecret  string
	RefreshToken  string
	Scope         string
	TakeExclusive bool // v1 takeExclusiveSignOnControl (default true)
}

// String never reveals a credential.
func (c Credentials) String() string { return "Credentials{" + string(c.Kind) + "}" }

// GoString never reveals a credential.
func (c Credentials) GoString() string { return c.String() }

// ErrInvalid wraps every error about the content of credentials.
var ErrInvalid = errors.New("invalid RDP credentials")

// fields are the credentials secret's fields.
var fields = []string{"username", "password", "client_id", "client_secret", "refresh_token", "scope", "take_exclusive_sign_on_control"}

const want = `want {"username","password","client_id"} (v1), {"client_id","client_secret"} (v2) or {"client_id","refresh_token"} (pre-issued)`

// Parse parses the credentials secret's JSON.
func Parse(data []byte) (Credentials, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil || raw == nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return Credentials{}, fmt.Errorf("%w: invalid JSON at byte %d (%s)", ErrInvalid, se.Offset, want)
		}
		return Credentials{}, fmt.Errorf("%w: not a JSON object (%s)", ErrInvalid, want)
	}
	c, err := decode(raw)
	if err != nil {
		return Credentials{}, err
	}
	c.Kind, err = kindOf(raw)
	if err != nil {
		return Credentials{}, err
	}
	return c, c.complete()
}

// decode reads every known field, checking its type.
func decode(raw map[string]json.RawMessage) (Credentials, error) {
	c := Credentials{TakeExclusive: true}
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"username", &c.Username}, {"password", &c.Password}, {"client_id", &c.ClientID},
		{"client_secret", &c.ClientSecret}, {"refresh_token", &c.RefreshToken}, {"scope", &c.Scope},
	} {
		v, ok := raw[f.name]
		if !ok || string(v) == "null" {
			continue
		}
		if err := json.Unmarshal(v, f.dst); err != nil {
			return Credentials{}, fmt.Errorf("%w: field %q must be a string", ErrInvalid, f.name)
		}
		*f.dst = strings.TrimSpace(*f.dst)
	}
	if v, ok := raw["take_exclusive_sign_on_control"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &c.TakeExclusive); err != nil {
			return Credentials{}, fmt.Errorf("%w: field \"take_exclusive_sign_on_control\" must be true or false", ErrInvalid)
		}
	}
	return c, nil
}

// kindOf tells the kind from the fields present; ambiguous mixtures are errors.
func kindOf(raw map[string]json.RawMessage) (Kind, error) {
	has := func(f string) bool { _, ok := raw[f]; return ok }
	switch {
	case has("client_secret"):
		if has("username") || has("password") || has("refresh_token") {
			return "", fmt.Errorf(`%w: field "client_secret" (v2) cannot be combined with "username", "password" or "refresh_token"`, ErrInvalid)
		}
		return ServiceAccount, nil
	case has("username") || has("password"):
		if has("refresh_token") {
			return "", fmt.Errorf(`%w: field "refresh_token" cannot be combined with "username"/"password"`, ErrInvalid)
		}
		return Password, nil
	case has("refresh_token"):
		return RefreshToken, nil
	}
	var unknown []string
	for k := range raw {
		if !slices.Contains(fields, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	msg := `needs "username"+"password" (v1), "client_secret" (v2) or "refresh_token" (pre-issued) besides "client_id"`
	if len(unknown) > 0 {
		msg += fmt.Sprintf("; unknown fields %q", unknown)
	}
	return "", fmt.Errorf("%w: %s", ErrInvalid, msg)
}

// complete checks that the fields the kind needs are set.
func (c Credentials) complete() error {
	need := map[Kind][]struct{ name, val string }{
		Password:       {{"username", c.Username}, {"password", c.Password}},
		ServiceAccount: {{"client_secret", c.ClientSecret}},
		RefreshToken:   {{"refresh_token", c.RefreshToken}},
	}[c.Kind]
	need = append(need, struct{ name, val string }{"client_id", c.ClientID})
	for _, f := range need {
		if f.val == "" {
			return fmt.Errorf("%w: field %q is missing or empty", ErrInvalid, f.name)
		}
	}
	return nil
}

// FromEnv reads RDP_USERNAME, RDP_PASSWORD and RDP_CLIENT_ID (v1) or
// RDP_CLIENT_ID and RDP_CLIENT_SECRET (v2), the command-line tools' way to
// pass credentials. ok is false when none of them is set. v1 credentials
// from the environment do not take exclusive sign-on control.
func FromEnv(getenv func(string) string) (c Credentials, ok bool, err error) {
	c = Credentials{
		Username:     strings.TrimSpace(getenv("RDP_USERNAME")),
		Password:     getenv("RDP_PASSWORD"),
		ClientID:     strings.TrimSpace(getenv("RDP_CLIENT_ID")),
		ClientSecret: getenv("RDP_CLIENT_SECRET"),
	}
	if c.Username == "" && c.Password == "" && c.ClientID == "" && c.ClientSecret == "" {
		return Credentials{}, false, nil
	}
	vars := []struct{ name, val string }{{"RDP_USERNAME", c.Username}, {"RDP_PASSWORD", c.Password}, {"RDP_CLIENT_ID", c.ClientID}}
	switch {
	case c.ClientSecret != "" && (c.Username != "" || c.Password != ""):
		return Credentials{}, true, fmt.Errorf("%w: set RDP_USERNAME/RDP_PASSWORD (v1) or RDP_CLIENT_SECRET (v2), not both", ErrInvalid)
	case c.ClientSecret != "":
		c.Kind = ServiceAccount
		vars = vars[2:]
	default:
		c.Kind = Password
	}
	for _, v := range vars {
		if v.val == "" {
			return Credentials{}, true, fmt.Errorf("%w: %s is not set (v1 needs RDP_USERNAME, RDP_PASSWORD and RDP_CLIENT_ID; v2 needs RDP_CLIENT_ID and RDP_CLIENT_SECRET)", ErrInvalid, v.name)
		}
	}
	return c, true, nil
}

// SecretJSON is c as the credentials secret's JSON (what Parse reads), for
// tools that store credentials they were given another way.
func (c Credentials) SecretJSON() ([]byte, error) {
	doc := map[string]any{"client_id": c.ClientID}
	switch c.Kind {
	case Password:
		doc["username"], doc["password"] = c.Username, c.Password
		doc["take_exclusive_sign_on_control"] = c.TakeExclusive
	case ServiceAccount:
		doc["client_secret"] = c.ClientSecret
	case RefreshToken:
		doc["refresh_token"] = c.RefreshToken
	default:
		return nil, fmt.Errorf("%w: unknown kind %q", ErrInvalid, c.Kind)
	}
	if c.Scope != "" {
		doc["scope"] = c.Scope
	}
	return json.Marshal(doc)
}
