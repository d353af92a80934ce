package rdptest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// env is a server on a fake clock plus a plain net/http client.
type env struct {
	t     *testing.T
	s     *Server
	clock *Clock
	c     *http.Client
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	clock := NewClock(time.Time{})
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	s := New(t, opts)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &env{t: t, s: s, clock: clock, c: &http.Client{
		Transport:     tr,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// newTokenEnv is newEnv plus an access token of the default user.
func newTokenEnv(t *testing.T, opts Options) (*env, string) {
	t.Helper()
	e := newEnv(t, opts)
	at, _ := e.s.IssueTokens(DefaultUser, DefaultAppKey)
	return e, at
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
	return m
}

// items returns the "value" list of a listing page.
func (r resp) items(t *testing.T) []map[string]any {
	t.Helper()
	var p struct {
		Value []map[string]any `json:"value"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil || p.Value == nil {
		t.Fatalf("not a listing page (%v): %s", err, r.body)
	}
	return p.Value
}

// gatewayMessage returns error.message of a gateway error body.
func (r resp) gatewayMessage(t *testing.T) string {
	t.Helper()
	e, ok := r.json(t)["error"].(map[string]any)
	if !ok {
		t.Fatalf("not a gateway error: %s", r.body)
	}
	if e["id"] == "" || e["code"] == "" || e["status"] == "" {
		t.Fatalf("incomplete gateway error: %s", r.body)
	}
	return e["message"].(string)
}

// send does req and reads the whole body; the error is the transport's or the body read's.
func (e *env) send(req *http.Request) (resp, error) {
	res, err := e.c.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: b}, err
}

func (e *env) do(req *http.Request) resp {
	e.t.Helper()
	r, err := e.send(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	return r
}

// formRequest is a POST of form to an API path.
func (e *env) formRequest(path string, form url.Values) *http.Request {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.s.URL()+path, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

// post sends a form to an API path; basicUser/basicPass set HTTP Basic when basicUser != "".
func (e *env) post(path string, form url.Values, basicUser, basicPass string) resp {
	e.t.Helper()
	req := e.formRequest(path, form)
	if basicUser != "" {
		req.SetBasicAuth(basicUser, basicPass)
	}
	return e.do(req)
}

// get fetches an API path (or absolute URL) with a bearer token ("" for none).
func (e *env) get(pathOrURL, token string) resp {
	e.t.Helper()
	u := pathOrURL
	if strings.HasPrefix(u, "/") {
		u = e.s.URL() + u
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return e.do(req)
}

func passwordForm(exclusive bool) url.Values {
	f := url.Values{
		"grant_type": {"password"}, "username": {DefaultUser}, "password": {DefaultPassword},
		"client_id": {DefaultAppKey}, "scope": {"trapi"},
	}
	if exclusive {
		f.Set("takeExclusiveSignOnControl", "true")
	}
	return f
}

// passwordFormWith is passwordForm(false) with key set to value, or without key when value is "".
func passwordFormWith(key, value string) url.Values {
	f := passwordForm(false)
	if value == "" {
		f.Del(key)
	} else {
		f.Set(key, value)
	}
	return f
}

func refreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {DefaultAppKey}}
}

// login does a password grant and returns the access and refresh tokens.
func (e *env) login() (string, string) {
	e.t.Helper()
	r := e.post("/auth/oauth2/v1/token", passwordForm(true), "", "")
	if r.status != 200 {
		e.t.Fatalf("password grant: %d %s", r.status, r.body)
	}
	m := r.json(e.t)
	return m["access_token"].(string), m["refresh_token"].(string)
}

func (e *env) refresh(rt string) resp {
	e.t.Helper()
	return e.post("/auth/oauth2/v1/token", refreshForm(rt), "", "")
}

// fileStoreOK reports whether the access token is accepted by the file store.
func (e *env) fileStoreOK(at string) bool {
	e.t.Helper()
	r := e.get("/file-store/v1/packages", at)
	return r.status == 200
}

func oauthErr(t *testing.T, r resp) (string, string) {
	t.Helper()
	m := r.json(t)
	code, _ := m["error"].(string)
	desc, _ := m["error_description"].(string)
	return code, desc
}

// with returns the env reporting to t (for subtests).
func (e *env) with(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}
