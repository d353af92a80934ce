package rdptest

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestPasswordGrant(t *testing.T) {
	tests := []struct {
		name         string
		field, value string // the edit to the valid form: value "" drops field
		basicUser    string
		wantStatus   int
		wantError    string
	}{
		{"client_id form field", "", "", "", 200, ""},
		{"client_id as basic user", "client_id", "", DefaultAppKey, 200, ""},
		{"wrong password", "password", "nope", "", 400, "access_denied"},
		{"unknown user", "username", "nobody", "", 400, "access_denied"},
		{"unknown client_id", "client_id", "bogus", "", 401, "invalid_client"},
		{"missing client_id", "client_id", "", "", 400, "invalid_request"},
		{"missing grant_type", "grant_type", "", "", 400, "invalid_request"},
		{"unsupported grant_type", "grant_type", "authorization_code", "", 400, "unsupported_grant_type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			r := e.post("/auth/oauth2/v1/token", passwordFormWith(tc.field, tc.value), tc.basicUser, "")
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			log := e.s.AuthLog()
			if len(log) != 1 || log[0].Status != tc.wantStatus || log[0].Error != tc.wantError || !log[0].Time.Equal(e.clock.Now()) {
				t.Fatalf("auth log %+v", log)
			}
			if tc.wantError != "" {
				if code, _ := oauthErr(t, r); code != tc.wantError {
					t.Fatalf("error %q, want %q", code, tc.wantError)
				}
				return
			}
			m := r.json(t)
			if v, ok := m["expires_in"].(string); !ok || v != "600" {
				t.Fatalf("expires_in = %#v, want the string \"600\"", m["expires_in"])
			}
			if m["token_type"] != "Bearer" || !strings.HasPrefix(m["scope"].(string), "trapi") {
				t.Fatalf("token response %v", m)
			}
			if m["access_token"] == "" || m["refresh_token"] == "" || m["access_token"] == m["refresh_token"] {
				t.Fatalf("tokens %v", m)
			}
			if !e.fileStoreOK(m["access_token"].(string)) {
				t.Fatal("fresh access token rejected")
			}
			if c := e.s.Counters(); c.PasswordGrants != 1 || c.TokensIssued != 1 {
				t.Fatalf("counters %+v", c)
			}
		})
	}
}

func TestExpiresInNumberAndTTLs(t *testing.T) {
	e := newEnv(t, Options{ExpiresInNumber: true, AccessTokenTTL: 300 * time.Second})
	r := e.post("/auth/oauth2/v1/token", passwordForm(true), "", "")
	if v, ok := r.json(t)["expires_in"].(float64); !ok || v != 300 {
		t.Fatalf("expires_in = %#v, want the number 300", r.json(t)["expires_in"])
	}
}

func TestRefreshRotation(t *testing.T) {
	e := newEnv(t, Options{})
	at1, rt1 := e.login()
	e.clock.Advance(9 * time.Minute)
	r := e.refresh(rt1)
	if r.status != 200 {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	m := r.json(t)
	at2, rt2 := m["access_token"].(string), m["refresh_token"].(string)
	if rt2 == rt1 || at2 == at1 {
		t.Fatal("refresh did not rotate the tokens")
	}
	if m["expires_in"] != "600" {
		t.Fatalf("expires_in %#v", m["expires_in"])
	}
	// The old refresh token is dead; the old access token lives until its own expiry.
	if code, _ := oauthErr(t, e.refresh(rt1)); code != "invalid_grant" {
		t.Fatalf("old refresh token: %q, want invalid_grant", code)
	}
	if !e.fileStoreOK(at1) || !e.fileStoreOK(at2) {
		t.Fatal("access tokens should both work before expiry")
	}
	e.clock.Advance(61 * time.Second) // at1 is 10m01s old
	if e.fileStoreOK(at1) {
		t.Fatal("expired access token accepted")
	}
	if msg := e.get("/file-store/v1/packages", at1).gatewayMessage(t); msg != "token expired" {
		t.Fatalf("message %q", msg)
	}
	if !e.fileStoreOK(at2) {
		t.Fatal("new access token rejected")
	}
	// The refresh token of a refresh is valid for RefreshTokenTTL from its issue.
	e.clock.Advance(15*time.Minute - 61*time.Second)
	if code, desc := oauthErr(t, e.refresh(rt2)); code != "invalid_grant" {
		t.Fatalf("expired refresh token: %q %q", code, desc)
	}
	if c := e.s.Counters(); c.RefreshGrants != 3 || c.PasswordGrants != 1 {
		t.Fatalf("counters %+v", c)
	}
}

func TestRefreshClientMismatch(t *testing.T) {
	e := newEnv(t, Options{})
	e.s.AddUser("other", "pw", "other-app")
	_, rt := e.login()
	f := refreshForm(rt)
	f.Set("client_id", "other-app")
	if code, _ := oauthErr(t, e.post("/auth/oauth2/v1/token", f, "", "")); code != "invalid_grant" {
		t.Fatalf("refresh with another app key: %q", code)
	}
	f.Set("client_id", "unknown-app")
	if r := e.post("/auth/oauth2/v1/token", f, "", ""); r.status != 401 {
		t.Fatalf("unknown app key: %d", r.status)
	}
	if e.refresh(rt).status != 200 {
		t.Fatal("the right app key should still work")
	}
}

func TestRefreshMaxLifetime(t *testing.T) {
	e := newEnv(t, Options{})
	start := e.clock.Now()
	_, rt := e.login()
	refreshes := 0
	for {
		e.clock.Advance(9 * time.Minute)
		r := e.refresh(rt)
		if r.status != 200 {
			if code, _ := oauthErr(t, r); code != "invalid_grant" {
				t.Fatalf("after %d refreshes: %d %s", refreshes, r.status, r.body)
			}
			break
		}
		rt = r.json(t)["refresh_token"].(string)
		refreshes++
		if refreshes > 200 {
			t.Fatal("session never ended")
		}
	}
	// Refreshes every 9 min: every one strictly before 18h works (119), the one at 18h fails.
	if got := e.clock.Now().Sub(start); got != 18*time.Hour {
		t.Fatalf("session ended at %v, want 18h", got)
	}
	if refreshes != 119 {
		t.Fatalf("%d refreshes, want 119", refreshes)
	}
	// After the session ended, a password grant works without exclusive sign-on.
	if r := e.post("/auth/oauth2/v1/token", passwordForm(false), "", ""); r.status != 200 {
		t.Fatalf("password grant after session end: %d %s", r.status, r.body)
	}
}

func TestRefreshTokenCappedAtMaxLifetime(t *testing.T) {
	e := newEnv(t, Options{RefreshMaxLifetime: 20 * time.Minute})
	_, rt := e.login()
	e.clock.Advance(10 * time.Minute)
	r := e.refresh(rt) // new refresh token would live to 25m, capped at 20m
	rt = r.json(t)["refresh_token"].(string)
	e.clock.Advance(10*time.Minute + time.Second)
	if code, _ := oauthErr(t, e.refresh(rt)); code != "invalid_grant" {
		t.Fatalf("refresh past max lifetime: %q", code)
	}
}

func TestSessionQuotaAndExclusiveSignOn(t *testing.T) {
	e := newEnv(t, Options{})
	at1, rt1 := e.login()
	r := e.post("/auth/oauth2/v1/token", passwordForm(false), "", "")
	if code, desc := oauthErr(t, r); r.status != 400 || code != "access_denied" || desc != "Session quota is reached." {
		t.Fatalf("second sign-on: %d %s", r.status, r.body)
	}
	if !e.fileStoreOK(at1) {
		t.Fatal("a refused sign-on must not hurt the live session")
	}
	r = e.post("/auth/oauth2/v1/token", passwordFormWith("takeExclusiveSignOnControl", "TRUE"), "", "")
	if r.status != 200 {
		t.Fatalf("exclusive sign-on: %d %s", r.status, r.body)
	}
	at2 := r.json(t)["access_token"].(string)
	if e.fileStoreOK(at1) {
		t.Fatal("displaced session's access token still works")
	}
	if msg := e.get("/file-store/v1/packages", at1).gatewayMessage(t); msg == "token expired" {
		t.Fatal("a displaced token should not claim to be expired")
	}
	if code, _ := oauthErr(t, e.refresh(rt1)); code != "invalid_grant" {
		t.Fatalf("displaced refresh token: %q", code)
	}
	if !e.fileStoreOK(at2) {
		t.Fatal("new session's token rejected")
	}
	// The session ends when both its tokens have expired: then no exclusive flag is needed.
	e.clock.Advance(15 * time.Minute)
	if e.s.SessionLive(DefaultUser) {
		t.Fatal("session should be over")
	}
	if r := e.post("/auth/oauth2/v1/token", passwordForm(false), "", ""); r.status != 200 {
		t.Fatalf("sign-on after expiry: %d %s", r.status, r.body)
	}
}

func TestAuthRateLimits(t *testing.T) {
	tests := []struct {
		name  string
		opts  Options
		limit int
		send  func(e *env, i int, rt string) resp
	}{
		{"password grants, failures count", Options{PasswordGrantLimit: 4}, 4, func(e *env, i int, _ string) resp {
			f := passwordForm(true)
			if i%2 == 1 {
				f.Set("password", "wrong")
			}
			return e.post("/auth/oauth2/v1/token", f, "", "")
		}},
		{"refresh grants, failures count", Options{RefreshGrantLimit: 3}, 3, func(e *env, i int, rt string) resp {
			if i == 1 {
				return e.refresh("not-a-token") // attributed through the app key
			}
			return e.refresh(rt)
		}},
		{"client credentials", Options{PasswordGrantLimit: 2}, 2, func(e *env, _ int, _ string) resp {
			return e.post("/auth/oauth2/v2/token", url.Values{"grant_type": {"client_credentials"},
				"client_id": {DefaultServiceID}, "client_secret": {DefaultServiceSecret}, "scope": {"trapi"}}, "", "")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts)
			_, rt := e.s.IssueTokens(DefaultUser, DefaultAppKey)
			first := e.clock.Now()
			for i := 0; i < tc.limit; i++ {
				r := tc.send(e, i, rt)
				if r.status == 429 {
					t.Fatalf("request %d throttled early", i)
				}
				if r.status == 200 {
					if v, ok := r.json(t)["refresh_token"].(string); ok {
						rt = v
					}
				}
				e.clock.Advance(10 * time.Second)
			}
			r := tc.send(e, tc.limit, rt)
			if r.status != 429 {
				t.Fatalf("request over the limit: %d %s", r.status, r.body)
			}
			wantWait := first.Add(5 * time.Minute).Sub(e.clock.Now())
			if got := r.header.Get("Retry-After"); got != retryAfterSeconds(wantWait) {
				t.Fatalf("Retry-After %q, want %q", got, retryAfterSeconds(wantWait))
			}
			if c := e.s.Counters(); c.Auth429s != 1 {
				t.Fatalf("Auth429s = %d", c.Auth429s)
			}
			e.clock.Advance(wantWait)
			if r := tc.send(e, 0, rt); r.status == 429 {
				t.Fatal("still throttled after Retry-After")
			}
		})
	}
}

func TestServiceAccount(t *testing.T) {
	e := newEnv(t, Options{})
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {DefaultServiceID}, "client_secret": {DefaultServiceSecret}, "scope": {"trapi"}}
	r := e.post("/auth/oauth2/v2/token", form, "", "")
	if r.status != 200 {
		t.Fatalf("client_credentials: %d %s", r.status, r.body)
	}
	m := r.json(t)
	if _, has := m["refresh_token"]; has {
		t.Fatal("v2 token response carries a refresh_token")
	}
	if m["expires_in"] != "7199" || m["token_type"] != "Bearer" {
		t.Fatalf("response %v", m)
	}
	at := m["access_token"].(string)
	if !e.fileStoreOK(at) {
		t.Fatal("v2 token rejected")
	}
	e.clock.Advance(7199 * time.Second)
	if e.fileStoreOK(at) {
		t.Fatal("expired v2 token accepted")
	}
	// Basic credentials work too; a wrong secret does not.
	basic := url.Values{"grant_type": {"client_credentials"}, "scope": {"trapi"}}
	if r := e.post("/auth/oauth2/v2/token", basic, DefaultServiceID, DefaultServiceSecret); r.status != 200 {
		t.Fatalf("basic: %d", r.status)
	}
	form.Set("client_secret", "wrong")
	if r := e.post("/auth/oauth2/v2/token", form, "", ""); r.status != 401 {
		t.Fatalf("wrong secret: %d", r.status)
	} else if code, _ := oauthErr(t, r); code != "invalid_client" {
		t.Fatalf("wrong secret: %q", code)
	}
	if c := e.s.Counters(); c.ClientCredentialsGrants != 3 || c.AuthFailures != 1 {
		t.Fatalf("counters %+v", c)
	}
}

func TestRevoke(t *testing.T) {
	tests := []struct {
		name       string
		which      string // "access" or "refresh"
		basicUser  string
		wantStatus int
		wantDead   bool
	}{
		{"revoke access token", "access", DefaultAppKey, 200, true},
		{"revoke refresh token", "refresh", DefaultAppKey, 200, true},
		{"unknown token is fine", "unknown", DefaultAppKey, 200, false},
		{"no basic auth", "access", "", 401, false},
		{"unknown app key", "access", "bogus", 401, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			at, rt := e.login()
			tok := map[string]string{"access": at, "refresh": rt, "unknown": "xyz"}[tc.which]
			r := e.post("/auth/oauth2/v1/revoke", url.Values{"token": {tok}}, tc.basicUser, "")
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			if dead := !e.fileStoreOK(at); dead != tc.wantDead {
				t.Fatalf("access token dead = %v, want %v", dead, tc.wantDead)
			}
			refreshDead := e.refresh(rt).status != 200
			if refreshDead != tc.wantDead {
				t.Fatalf("refresh dead = %v, want %v", refreshDead, tc.wantDead)
			}
			if tc.wantDead && e.s.SessionLive(DefaultUser) {
				t.Fatal("session still live")
			}
			c := e.s.Counters()
			if c.Revokes != 1 || e.s.AuthLog()[1].Grant != "revoke" {
				t.Fatalf("revoke not recorded: %+v %+v", c, e.s.AuthLog())
			}
		})
	}
}

func TestServerSideSessionControl(t *testing.T) {
	e := newEnv(t, Options{})
	rt := e.s.IssueRefreshToken(DefaultUser, DefaultAppKey)
	r := e.refresh(rt)
	if r.status != 200 {
		t.Fatalf("pre-issued refresh token: %d %s", r.status, r.body)
	}
	at, rt := r.json(t)["access_token"].(string), r.json(t)["refresh_token"].(string)
	e.s.RevokeSessions(DefaultUser)
	if e.fileStoreOK(at) || e.refresh(rt).status != 400 {
		t.Fatal("RevokeSessions left the session usable")
	}
	e.s.SetPassword(DefaultUser, "new-password")
	if r := e.post("/auth/oauth2/v1/token", passwordForm(false), "", ""); r.status != 400 {
		t.Fatalf("old password: %d", r.status)
	}
	if r := e.post("/auth/oauth2/v1/token", passwordFormWith("password", "new-password"), "", ""); r.status != 200 {
		t.Fatalf("new password: %d %s", r.status, r.body)
	}
	if len(e.s.AuthLog()) != 4 { // refresh, refresh, password, password
		t.Fatalf("IssueRefreshToken must not be logged: %+v", e.s.AuthLog())
	}
	at2, _ := e.s.IssueTokens(DefaultUser, DefaultAppKey)
	e.s.ExpireAccessTokens()
	if msg := e.get("/file-store/v1/packages", at2).gatewayMessage(t); msg != "token expired" {
		t.Fatalf("ExpireAccessTokens: %q", msg)
	}
}

func TestFileStoreAuth(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	tests := []struct {
		name, header string
		want         int
	}{
		{"valid", "Bearer " + at, 200},
		{"lower-case scheme", "bearer " + at, 200},
		{"missing", "", 401},
		{"unknown token", "Bearer nope", 401},
		{"basic", "Basic abc", 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, e.s.URL()+"/file-store/v1/file-sets?bucket=bulk-ESG", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			r := e.with(t).do(req)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d", r.status, tc.want)
			}
			if tc.want == 401 {
				if msg := r.gatewayMessage(t); msg == "token expired" || msg == "" {
					t.Fatalf("message %q", msg)
				}
				if code := r.json(t)["error"].(map[string]any)["code"]; code != "401" {
					t.Fatalf("code %v", code)
				}
			}
		})
	}
}
