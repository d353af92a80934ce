package rdptest

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cfsync/cfsync/internal/randid"
)

// GrantedScope is the scope the simulator grants (whatever "trapi…" scope was asked for).
const GrantedScope = "trapi.auth.cloud-credentials trapi.cfs.claimcheck.read trapi.cfs.publisher.read trapi.data.esg.bulk.read"

type account struct {
	username, password, clientID string
	session                      *session // the current session, if any (may be dead or ended)
	pwTimes, rfTimes             []time.Time
}

type serviceAccount struct {
	clientID, secret string
	times            []time.Time
}

type session struct {
	id, username, clientID string
	start, maxEnd          time.Time
	dead                   bool   // revoked or displaced by an exclusive sign-on
	refreshToken           string // the only refresh token of the session that still works
	refreshExp, accessExp  time.Time
}

// live reports whether the session still counts against the account's session quota: until it
// is revoked or displaced, its max lifetime is over, or both its newest tokens have expired.
// (Access tokens are checked on their own: one issued just before the max lifetime stays valid
// for its full life, like a self-contained JWT.)
func (se *session) live(now time.Time) bool {
	if se == nil || se.dead || !now.Before(se.maxEnd) {
		return false
	}
	return now.Before(se.refreshExp) || now.Before(se.accessExp)
}

type accessToken struct {
	sess    *session // nil for v2 tokens
	service string   // v2 client id
	revoked bool     // v2 tokens only (v1 tokens die with their session)
	exp     time.Time
}

type refreshToken struct {
	sess *session
	exp  time.Time
}

// AddUser registers a v1 account (username, password) and its app key (client_id).
// Calling it again for the same username replaces the password and app key.
func (s *Server) AddUser(username, password, clientID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.users[username]; ok {
		a.password, a.clientID = password, clientID
	} else {
		s.users[username] = &account{username: username, password: password, clientID: clientID}
	}
	s.clientIDs[clientID] = true
}

// AddServiceAccount registers a v2 service account.
func (s *Server) AddServiceAccount(clientID, clientSecret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sa, ok := s.services[clientID]; ok {
		sa.secret = clientSecret
		return
	}
	s.services[clientID] = &serviceAccount{clientID: clientID, secret: clientSecret}
}

// SetPassword changes a v1 account's password (existing sessions live on). It panics for an
// unknown user.
func (s *Server) SetPassword(username, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustUser(username).password = password
}

func (s *Server) mustUser(username string) *account {
	a, ok := s.users[username]
	if !ok {
		panic("rdptest: unknown user " + strconv.Quote(username))
	}
	return a
}

// IssueRefreshToken starts a new session for the account, as the LSEG portal does when it hands
// out a refresh token, and returns that refresh token. Any live session of the account ends. It
// is not an /auth request: it is not logged, counted or rate-limited. It panics for an unknown
// user; clientID must be a known app key (it is registered if not).
func (s *Server) IssueRefreshToken(username, clientID string) string {
	_, rt := s.IssueTokens(username, clientID)
	return rt
}

// RevokeSessions ends the account's session server-side: its access tokens then get 401 and its
// refresh token invalid_grant.
func (s *Server) RevokeSessions(username string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.mustUser(username); a.session != nil {
		a.session.dead = true
	}
}

// SessionLive reports whether the account has a session that counts against its quota.
func (s *Server) SessionLive(username string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mustUser(username).session.live(s.now())
}

// ExpireAccessTokens makes every access token issued so far expire now (the next file-store
// request with one gets 401 "token expired"), without moving the clock.
func (s *Server) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, t := range s.access {
		if t.exp.After(now) {
			t.exp = now
		}
	}
}

// newSession creates a session with fresh tokens; it returns the access and refresh token.
func (s *Server) newSession(a *account, clientID string, now time.Time) (string, string) {
	se := &session{
		id: randid.Hex(8), username: a.username, clientID: clientID,
		start: now, maxEnd: now.Add(s.opts.RefreshMaxLifetime),
	}
	s.sessions[se.id] = se
	a.session = se
	return s.issueV1(se, now)
}

// issueV1 issues a new access token and a new (rotated) refresh token for the session.
func (s *Server) issueV1(se *session, now time.Time) (string, string) {
	at := newToken("at")
	se.accessExp = now.Add(s.opts.AccessTokenTTL)
	s.access[at] = &accessToken{sess: se, exp: se.accessExp}
	rt := newToken("rt")
	se.refreshToken = rt
	se.refreshExp = now.Add(s.opts.RefreshTokenTTL)
	if se.refreshExp.After(se.maxEnd) {
		se.refreshExp = se.maxEnd
	}
	s.refresh[rt] = &refreshToken{sess: se, exp: se.refreshExp}
	return at, rt
}

// newToken makes an opaque, JWT-looking token.
func newToken(kind string) string {
	return "eyJ" + kind + "." + randid.Hex(48) + "." + randid.Hex(16)
}

// allow applies a rolling-window limit: it records now and reports true, or reports the wait
// until the oldest request in the window leaves it.
func allow(times *[]time.Time, limit int, now time.Time) (time.Duration, bool) {
	cut := now.Add(-rateWindow)
	i := 0
	for i < len(*times) && !(*times)[i].After(cut) {
		i++
	}
	*times = (*times)[i:]
	if len(*times) >= limit {
		return (*times)[0].Add(rateWindow).Sub(now), false
	}
	*times = append(*times, now)
	return 0, true
}

func retryAfterSeconds(d time.Duration) string {
	sec := int(math.Ceil(d.Seconds()))
	if sec < 1 {
		sec = 1
	}
	return strconv.Itoa(sec)
}

type oauthError struct {
	status     int
	code, desc string
	retryAfter time.Duration
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(e.retryAfter))
	}
	writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": e.desc})
}

// recordAuthLocked counts and logs one /auth request r. Callers hold s.mu.
func (s *Server) recordAuthLocked(r *http.Request, grant, username string, status int, errCode string) {
	s.counters.AuthRequests++
	switch grant {
	case "password":
		s.counters.PasswordGrants++
	case "refresh_token":
		s.counters.RefreshGrants++
	case "client_credentials":
		s.counters.ClientCredentialsGrants++
	case "revoke":
		s.counters.Revokes++
	}
	if status != http.StatusOK {
		s.counters.AuthFailures++
	}
	if status == http.StatusTooManyRequests {
		s.counters.Auth429s++
	}
	s.authLog = append(s.authLog, AuthRecord{
		Time: s.now(), Path: r.URL.Path, Grant: grant, Username: username, Status: status, Error: errCode,
		UserAgent: r.UserAgent(),
	})
}

// authGrant names the grant of an /auth request for the log ("revoke" for the revoke endpoint).
func authGrant(r *http.Request) string {
	if strings.HasSuffix(r.URL.Path, "/revoke") {
		return "revoke"
	}
	return r.PostFormValue("grant_type")
}

func (s *Server) tokenBody(at, rt string, ttl time.Duration) map[string]any {
	m := map[string]any{
		"access_token": at,
		"scope":        GrantedScope,
		"token_type":   "Bearer",
	}
	secs := int64(ttl / time.Second)
	if s.opts.ExpiresInNumber {
		m["expires_in"] = secs
	} else {
		m["expires_in"] = strconv.FormatInt(secs, 10)
	}
	if rt != "" {
		m["refresh_token"] = rt
	}
	return m
}

// clientIDOf returns the client_id form field, or the HTTP Basic user when the field is absent.
func clientIDOf(r *http.Request) string {
	if id := r.PostFormValue("client_id"); id != "" {
		return id
	}
	if u, _, ok := r.BasicAuth(); ok {
		return u
	}
	return ""
}

// parseTokenForm parses a token request's form; a malformed body is recorded
// and answered 400 invalid_request, and parseTokenForm returns false.
func (s *Server) parseTokenForm(w http.ResponseWriter, r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		s.mu.Lock()
		s.recordAuthLocked(r, "", "", http.StatusBadRequest, "invalid_request")
		s.mu.Unlock()
		writeOAuthError(w, &oauthError{status: 400, code: "invalid_request", desc: "Malformed request body."})
		return false
	}
	return true
}

func (s *Server) handleTokenV1(w http.ResponseWriter, r *http.Request) {
	if !s.parseTokenForm(w, r) {
		return
	}
	grant := r.PostForm.Get("grant_type")
	clientID := clientIDOf(r)
	s.mu.Lock()
	now := s.now()
	var (
		body     map[string]any
		oerr     *oauthError
		username string
	)
	switch grant {
	case "password":
		username = r.PostForm.Get("username")
		body, oerr = s.passwordGrantLocked(now, username, r.PostForm.Get("password"), clientID,
			strings.EqualFold(r.PostForm.Get("takeExclusiveSignOnControl"), "true"))
	case "refresh_token":
		body, username, oerr = s.refreshGrantLocked(now, r.PostForm.Get("refresh_token"), clientID)
	case "":
		oerr = &oauthError{status: 400, code: "invalid_request", desc: "Missing grant_type parameter."}
	default:
		oerr = &oauthError{status: 400, code: "unsupported_grant_type", desc: "Unsupported grant type."}
	}
	if oerr != nil {
		s.recordAuthLocked(r, grant, username, oerr.status, oerr.code)
		s.mu.Unlock()
		writeOAuthError(w, oerr)
		return
	}
	s.counters.TokensIssued++
	s.recordAuthLocked(r, grant, username, http.StatusOK, "")
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) passwordGrantLocked(now time.Time, username, password, clientID string, exclusive bool) (map[string]any, *oauthError) {
	a := s.users[username]
	if a != nil {
		if wait, ok := allow(&a.pwTimes, s.opts.PasswordGrantLimit, now); !ok {
			return nil, &oauthError{status: 429, code: "too_many_requests", desc: "Rate limit exceeded for password grants.", retryAfter: wait}
		}
	}
	if clientID == "" {
		return nil, &oauthError{status: 400, code: "invalid_request", desc: "Missing client_id parameter."}
	}
	if !s.clientIDs[clientID] {
		return nil, &oauthError{status: 401, code: "invalid_client", desc: "Invalid Application ID."}
	}
	if username == "" || password == "" {
		return nil, &oauthError{status: 400, code: "invalid_request", desc: "Missing username or password parameter."}
	}
	if a == nil || a.password != password {
		code := "access_denied" // what RDP answers (docs/rdp.md#authentication)
		if s.opts.WrongPasswordInvalidGrant {
			code = "invalid_grant"
		}
		return nil, &oauthError{status: 400, code: code, desc: "Invalid username or password."}
	}
	if a.session.live(now) {
		if !exclusive {
			return nil, &oauthError{status: 400, code: "access_denied", desc: "Session quota is reached."}
		}
		a.session.dead = true
	}
	at, rt := s.newSession(a, clientID, now)
	return s.tokenBody(at, rt, s.opts.AccessTokenTTL), nil
}

func (s *Server) refreshGrantLocked(now time.Time, token, clientID string) (map[string]any, string, *oauthError) {
	rec := s.refresh[token]
	var a *account
	if rec != nil {
		a = s.users[rec.sess.username]
	} else {
		for _, u := range s.users {
			if u.clientID == clientID {
				a = u
				break
			}
		}
	}
	username := ""
	if a != nil {
		username = a.username
		if wait, ok := allow(&a.rfTimes, s.opts.RefreshGrantLimit, now); !ok {
			return nil, username, &oauthError{status: 429, code: "too_many_requests", desc: "Rate limit exceeded for refresh grants.", retryAfter: wait}
		}
	}
	if clientID == "" {
		return nil, username, &oauthError{status: 400, code: "invalid_request", desc: "Missing client_id parameter."}
	}
	if !s.clientIDs[clientID] {
		return nil, username, &oauthError{status: 401, code: "invalid_client", desc: "Invalid Application ID."}
	}
	if token == "" {
		return nil, username, &oauthError{status: 400, code: "invalid_request", desc: "Missing refresh_token parameter."}
	}
	invalid := &oauthError{status: 400, code: "invalid_grant", desc: "Invalid refresh token."}
	if rec == nil || rec.sess.dead || rec.sess.refreshToken != token || rec.sess.clientID != clientID {
		return nil, username, invalid
	}
	if !now.Before(rec.exp) {
		invalid.desc = "Refresh token expired."
		return nil, username, invalid
	}
	at, rt := s.issueV1(rec.sess, now)
	return s.tokenBody(at, rt, s.opts.AccessTokenTTL), username, nil
}

func (s *Server) handleTokenV2(w http.ResponseWriter, r *http.Request) {
	if !s.parseTokenForm(w, r) {
		return
	}
	grant := r.PostForm.Get("grant_type")
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok && id == "" {
		id, secret = u, p
	}
	s.mu.Lock()
	now := s.now()
	oerr := func() *oauthError {
		if grant != "client_credentials" {
			if grant == "" {
				return &oauthError{status: 400, code: "invalid_request", desc: "Missing grant_type parameter."}
			}
			return &oauthError{status: 400, code: "unsupported_grant_type", desc: "Unsupported grant type."}
		}
		sa := s.services[id]
		if sa != nil {
			if wait, ok := allow(&sa.times, s.opts.PasswordGrantLimit, now); !ok {
				return &oauthError{status: 429, code: "too_many_requests", desc: "Rate limit exceeded.", retryAfter: wait}
			}
		}
		if sa == nil || sa.secret != secret {
			return &oauthError{status: 401, code: "invalid_client", desc: "Invalid client credentials."}
		}
		return nil
	}()
	if oerr != nil {
		s.recordAuthLocked(r, grant, "", oerr.status, oerr.code)
		s.mu.Unlock()
		writeOAuthError(w, oerr)
		return
	}
	at := newToken("sa")
	s.access[at] = &accessToken{service: id, exp: now.Add(s.opts.ServiceTokenTTL)}
	s.counters.TokensIssued++
	s.recordAuthLocked(r, grant, "", http.StatusOK, "")
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, s.tokenBody(at, "", s.opts.ServiceTokenTTL))
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	parseErr := r.ParseForm()
	appKey := clientIDOf(r) // Basic "appkey:" or client_id in the body, as LSEG's samples do
	s.mu.Lock()
	var oerr *oauthError
	username := ""
	switch {
	case parseErr != nil:
		oerr = &oauthError{status: 400, code: "invalid_request", desc: "Malformed request body."}
	case !s.clientIDs[appKey]:
		oerr = &oauthError{status: 401, code: "invalid_client", desc: "Invalid Application ID."}
	case r.PostForm.Get("token") == "":
		oerr = &oauthError{status: 400, code: "invalid_request", desc: "Missing token parameter."}
	default:
		tok := r.PostForm.Get("token")
		var se *session
		if at := s.access[tok]; at != nil {
			if at.sess == nil {
				at.revoked = true
			}
			se = at.sess
		} else if rt := s.refresh[tok]; rt != nil {
			se = rt.sess
		}
		if se != nil {
			se.dead = true
			username = se.username
		}
		// RFC 7009: an unknown token is not an error.
	}
	if oerr != nil {
		s.recordAuthLocked(r, "revoke", username, oerr.status, oerr.code)
		s.mu.Unlock()
		writeOAuthError(w, oerr)
		return
	}
	s.recordAuthLocked(r, "revoke", username, http.StatusOK, "")
	s.mu.Unlock()
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// bearerLocked checks a file-store request's access token; it returns "" or the 401 message.
func (s *Server) bearerLocked(r *http.Request, now time.Time) string {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if h == "" {
		return "Authorization header is missing"
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "invalid authorization header"
	}
	at := s.access[tok]
	switch {
	case at == nil:
		return "invalid token"
	case at.revoked || (at.sess != nil && at.sess.dead):
		return "token revoked"
	case !now.Before(at.exp):
		return "token expired"
	}
	return ""
}
