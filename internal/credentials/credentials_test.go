package credentials_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cfsync/cfsync/internal/credentials"
)

// TestParseRejects: each malformed secret is refused with ErrInvalid and an
// error naming what is wrong, never the secret's values.
func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ in, wantErr string }{
		{`pw-secret`, "invalid JSON at byte"},
		{`["pw-secret"]`, "not a JSON object"},
		{`null`, "not a JSON object"},
		{`{}`, `needs "username"+"password"`},
		{`{"username":"u","password":"p"}`, `field "client_id" is missing`},
		{`{"username":"u","client_id":"c"}`, `field "password" is missing`},
		{`{"password":"pw-secret","client_id":"c"}`, `field "username" is missing`},
		{`{"username":"u","password":"","client_id":"c"}`, `field "password" is missing or empty`},
		{`{"username":"u","password":12345,"client_id":"c"}`, `field "password" must be a string`},
		{`{"username":"u","password":"p","client_id":"c","take_exclusive_sign_on_control":"no"}`, `field "take_exclusive_sign_on_control" must be true or false`},
		{`{"client_id":"c","client_secret":""}`, `field "client_secret" is missing`},
		{`{"client_secret":"s"}`, `field "client_id" is missing`},
		{`{"client_id":"c","refresh_token":" "}`, `field "refresh_token" is missing`},
		{`{"client_id":"c","client_secret":"s","password":"pw-secret"}`, `cannot be combined`},
		{`{"username":"u","password":"pw-secret","client_id":"c","refresh_token":"r"}`, `cannot be combined`},
		{`{"client_id":"c"}`, `needs "username"+"password"`},
		{`{"client_id":"c","user":"u","pass":"pw-secret"}`, `unknown fields ["pass" "user"]`},
	} {
		_, err := credentials.Parse([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, credentials.ErrInvalid) {
			t.Errorf("Parse(%s): err = %v, want %q wrapping ErrInvalid", tc.in, err, tc.wantErr)
		} else if strings.Contains(err.Error(), "pw-secret") || strings.Contains(err.Error(), "12345") {
			t.Errorf("Parse(%s): error reveals the secret: %v", tc.in, err)
		}
	}
}

// TestParseAccepts: each kind of secret is read, trimmed, with exclusive
// sign-on control on unless the secret turns it off.
func TestParseAccepts(t *testing.T) {
	tests := []struct {
		in   string
		kind credentials.Kind
		excl bool
	}{
		{in: `{"username":"u","password":"p","client_id":"c"}`, kind: credentials.Password, excl: true},
		{in: `{"username":"u","password":"p","client_id":"c","take_exclusive_sign_on_control":false}`, kind: credentials.Password},
		{in: ` {"username":" u ","password":"p","client_id":"c","scope":"trapi.x","take_exclusive_sign_on_control":null} `, kind: credentials.Password, excl: true},
		{in: `{"client_id":"c","client_secret":"s"}`, kind: credentials.ServiceAccount, excl: true},
		{in: `{"client_id":"c","refresh_token":"r"}`, kind: credentials.RefreshToken, excl: true},
	}
	for _, tc := range tests {
		c, err := credentials.Parse([]byte(tc.in))
		if err != nil || c.Kind != tc.kind || c.TakeExclusive != tc.excl {
			t.Errorf("Parse(%s) = %v excl=%v, %v; want %s excl=%v", tc.in, c, c.TakeExclusive, err, tc.kind, tc.excl)
			continue
		}
		if c.ClientID != "c" || (c.Kind == credentials.Password && c.Username != "u") {
			t.Errorf("Parse(%s): fields not read (or not trimmed): %q %q", tc.in, c.ClientID, c.Username)
		}
	}
}

func TestStringNeverRevealsCredentials(t *testing.T) {
	c := credentials.Credentials{Kind: credentials.Password, Username: "user-x", Password: "pw-x", ClientID: "key-x",
		ClientSecret: "cs-x", RefreshToken: "rt-x"}
	for _, s := range []string{c.String(), c.GoString()} {
		if strings.Contains(s, "-x") || !strings.Contains(s, "v1 password") {
			t.Errorf("String = %s", s)
		}
	}
}

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		ok      bool
		kind    credentials.Kind
		wantErr string
	}{
		{name: "none", env: map[string]string{}},
		{name: "v1", env: map[string]string{"RDP_USERNAME": "u", "RDP_PASSWORD": "p", "RDP_CLIENT_ID": "c"}, ok: true, kind: credentials.Password},
		{name: "v2", env: map[string]string{"RDP_CLIENT_ID": "c", "RDP_CLIENT_SECRET": "s"}, ok: true, kind: credentials.ServiceAccount},
		{name: "both", env: map[string]string{"RDP_USERNAME": "u", "RDP_CLIENT_ID": "c", "RDP_CLIENT_SECRET": "s"}, ok: true, wantErr: "not both"},
		{name: "v2 without id", env: map[string]string{"RDP_CLIENT_SECRET": "s"}, ok: true, wantErr: "RDP_CLIENT_ID is not set"},
		{name: "v1 without password", env: map[string]string{"RDP_USERNAME": "u", "RDP_CLIENT_ID": "c"}, ok: true, wantErr: "RDP_PASSWORD is not set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, ok, err := credentials.FromEnv(func(k string) string { return tc.env[k] })
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, credentials.ErrInvalid) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || c.Kind != tc.kind {
				t.Fatalf("got %v, %v; want %s", c, err, tc.kind)
			}
		})
	}
}

func TestSecretJSONRoundTrips(t *testing.T) {
	for _, c := range []credentials.Credentials{
		{Kind: credentials.Password, Username: "u", Password: "p", ClientID: "k", TakeExclusive: true},
		{Kind: credentials.Password, Username: "u", Password: "p", ClientID: "k", Scope: "trapi"},
		{Kind: credentials.ServiceAccount, ClientID: "k", ClientSecret: "s", TakeExclusive: true},
		{Kind: credentials.RefreshToken, ClientID: "k", RefreshToken: "r", TakeExclusive: true},
	} {
		b, err := c.SecretJSON()
		if err != nil {
			t.Fatalf("%v: %v", c.Kind, err)
		}
		got, err := credentials.Parse(b)
		if err != nil {
			t.Fatalf("%v: Parse(SecretJSON) = %v", c.Kind, err)
		}
		if got != c {
			t.Errorf("round trip of %v changed it", c.Kind)
		}
	}
	if _, err := (credentials.Credentials{}).SecretJSON(); err == nil {
		t.Error("SecretJSON of no kind: want an error")
	}
}
