package rdptest

import (
	"sync"
	"time"

	"github.com/cfsync/cfsync/internal/randid"
)

// Clock is a manual clock for Options.Now: it moves only when told to.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set to t (a fixed date in 2025 if t is zero).
func NewClock(t time.Time) *Clock {
	if t.IsZero() {
		t = time.Date(2025, 1, 6, 9, 0, 0, 0, time.UTC)
	}
	return &Clock{t: t}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Set sets the clock.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Default identities that New registers.
const (
	DefaultUser          = "cfsync-user@example.com"
	DefaultPassword      = "correct horse battery staple"
	DefaultAppKey        = "0123456789abcdef0123456789abcdef01234567"
	DefaultServiceID     = "GE-SVC-0001"
	DefaultServiceSecret = "svc-secret-0001"
	DefaultBucket        = "bulk-ESG"
	DefaultPackageID     = "4867-9a46-216b6ed5-8e2b-6cd4b0a4a2a0"
	DefaultPackageName   = "Bulk-ESG-Global-Scores-Full-v1"
)

// TB is the part of testing.TB that New needs.
type TB interface {
	Helper()
	Cleanup(func())
}

// New starts a server for a test, closes it when the test ends, and registers the default v1
// user (DefaultUser/DefaultPassword/DefaultAppKey), the default service account
// (DefaultServiceID/DefaultServiceSecret) and the package DefaultBucket/DefaultPackageID.
func New(t TB, opts Options) *Server {
	t.Helper()
	s := NewServer(opts)
	t.Cleanup(s.Close)
	s.AddUser(DefaultUser, DefaultPassword, DefaultAppKey)
	s.AddServiceAccount(DefaultServiceID, DefaultServiceSecret)
	s.AddPackage(DefaultBucket, DefaultPackageID, DefaultPackageName)
	return s
}

// IssueTokens starts a new session for the account (ending any live one) and returns its access
// and refresh tokens, without an /auth request (not logged, counted or rate-limited). It panics
// for an unknown user.
func (s *Server) IssueTokens(username, clientID string) (accessToken, refreshToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.mustUser(username)
	s.clientIDs[clientID] = true
	if a.session != nil {
		a.session.dead = true
	}
	return s.newSession(a, clientID, s.now())
}

// IssueServiceToken returns a v2 access token for a service account (registered if unknown),
// without an /auth request.
func (s *Server) IssueServiceToken(clientID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.services[clientID] == nil {
		s.services[clientID] = &serviceAccount{clientID: clientID, secret: randid.Hex(16)}
	}
	at := newToken("sa")
	s.access[at] = &accessToken{service: clientID, exp: s.now().Add(s.opts.ServiceTokenTTL)}
	return at
}

// PresignedURL returns a presigned URL for a file as /stream would (signed now, valid for
// URLExpiry), without an API request (not counted in StreamURLs). It panics for an unknown file.
func (s *Server) PresignedURL(fileID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fileByID[fileID]
	if f == nil {
		panic("rdptest: unknown file " + fileID)
	}
	return s.presignLocked(f, s.now(), time.Time{})
}
