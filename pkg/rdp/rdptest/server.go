// Package rdptest is an in-process simulator of LSEG's Refinitiv Data Platform (RDP) as cfsync
// uses it: the OAuth endpoints (/auth/oauth2/v1/token, /auth/oauth2/v2/token,
// /auth/oauth2/v1/revoke), the Client File Store (/file-store/v1/...) and the presigned-URL "S3"
// host the downloads come from. By default it does what RDP is publicly shown to do (docs/rdp.md):
// expires_in as a string, rotating refresh tokens, session quota, exclusive sign-on, per-account
// 429s, 400 access_denied for a wrong password, file-sets in ascending id order with opaque
// skipToken cursors, 404/403 error bodies, no GET /files/{id} and no md5, 6-hour presigned URLs
// with a strict signature over the exact bytes, 400 ExpiredToken, 503 SlowDown, Range requests.
// Older, less faithful behaviours stay available through Options. It runs on a caller-supplied clock so
// that tests can simulate a day in milliseconds, serves file content generated on the fly (a
// 10 GiB file costs no memory), and can inject faults.
//
// The package depends only on the standard library.
package rdptest

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Server. The zero value gives production-like defaults.
type Options struct {
	// Now is the clock every expiry, rate-limit and timestamp decision uses; default time.Now.
	// Bandwidth throttling and fault stalls use real time.
	Now func() time.Time
	// AccessTokenTTL is the life of a v1 access token (default 600s).
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the life of a v1 refresh token from its issue (default 900s); each refresh
	// issues a new one.
	RefreshTokenTTL time.Duration
	// RefreshMaxLifetime caps a v1 session: no refresh token outlives the session's password grant
	// (or IssueRefreshToken) by more than this (default 18h).
	RefreshMaxLifetime time.Duration
	// ServiceTokenTTL is the life of a v2 client_credentials token (default 7199s).
	ServiceTokenTTL time.Duration
	// ExpiresInNumber sends expires_in as a JSON number instead of the real string ("600").
	ExpiresInNumber bool
	// PasswordGrantLimit is the number of password grants per account per rolling 5 minutes
	// before 429 (default 250). client_credentials grants per service account share this limit.
	PasswordGrantLimit int
	// RefreshGrantLimit is the number of refresh grants per account per rolling 5 minutes
	// before 429 (default 125).
	RefreshGrantLimit int
	// URLExpiry is the life of a presigned URL (X-Amz-Expires, default 6h: the 21600 s RDP hands out).
	URLExpiry time.Duration
	// SessionTokenTTL is the life of the temporary credentials (X-Amz-Security-Token) a presigned
	// URL is signed with: after it the presigned host answers 400 ExpiredToken even though
	// X-Amz-Expires has not passed (default 0: they outlive the URL). See also
	// Server.ExpireSessionTokens and FaultExpiredToken.
	SessionTokenTTL time.Duration
	// BandwidthPerConn caps each presigned download response, in bytes per second (0: unlimited).
	BandwidthPerConn int64
	// MD5 adds an "md5" field to file metadata for files up to MD5MaxSize. No public RDP sample
	// or library shows one, so by default there is none.
	MD5 bool
	// MD5MaxSize: with MD5, files up to this size expose "md5" (default 256 MiB); larger ones
	// have none. A negative value exposes no md5 at all.
	MD5MaxSize int64
	// ETagMaxSize is the largest object given an ETag. Objects up to 256 MiB get their plain MD5
	// (a single-part upload), larger ones S3's multipart ETag over MultipartPartSize parts, which
	// costs reading the whole content once (default 1 GiB); larger ones get no ETag.
	ETagMaxSize int64
	// NoETag: the download host sends no ETag at all. No public source shows the ETag RDP's
	// presigned objects carry, so clients must work without one.
	NoETag bool
	// FileEndpoint serves GET /file-store/v1/files/{id} (file metadata). No public RDP sample or
	// library uses it, so by default the route is absent: the gateway's generic 404
	// {"error":{…,"code":"404","message":"Resource not found",…}} like any unknown path.
	FileEndpoint bool
	// CreationOrder lists file-sets in creation order with an opaque "seq:N" cursor (the
	// simulator's old behaviour). By default they come in ascending file-set id order, as RDP
	// lists them, with skipToken = base64("filesetId=<last id>"), so a file-set published while a
	// client pages can land behind its cursor (see PublishBehindCursor).
	CreationOrder bool
	// EmptyForUnknown answers 200 with an empty "value" list for an unknown bucket or file-set
	// (the simulator's old behaviour) instead of RDP's 404 EDS.CFS.NoBucketFound /
	// EDS.CFS.NoFilesetFound.
	EmptyForUnknown bool
	// UnknownBucket404 is what RDP does and now the default, whatever its value (kept so
	// that old callers compile; see EmptyForUnknown for the opposite).
	UnknownBucket404 bool
	// WrongPasswordInvalidGrant answers a wrong password with invalid_grant (the simulator's old
	// behaviour) instead of RDP's 400 access_denied "Invalid username or password.".
	WrongPasswordInvalidGrant bool
	// S3Throttle429 makes FaultTooManyRequests on the presigned host answer 429 SlowDown (the
	// simulator's old behaviour); by default S3 throttles with 503 SlowDown.
	S3Throttle429 bool
	// ListExpired keeps listing file-sets whose availableTo has passed and keeps serving their
	// files (the simulator's old behaviour). By default they drop out of /file-sets and their
	// /files and /stream answer 404 EDS.CFS.NoFilesetFound / NoFileFound.
	ListExpired bool
	// APIAddr and S3Addr are the listen addresses (default "127.0.0.1:0", a random port).
	APIAddr, S3Addr string
	// Admin serves the /_sim/ control endpoints on the API host (see admin.go); for cmd/rdpsim.
	Admin bool
}

func (o *Options) defaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	positiveOr(&o.AccessTokenTTL, 600*time.Second)
	positiveOr(&o.RefreshTokenTTL, 900*time.Second)
	positiveOr(&o.RefreshMaxLifetime, 18*time.Hour)
	positiveOr(&o.ServiceTokenTTL, 7199*time.Second)
	positiveOr(&o.PasswordGrantLimit, 250)
	positiveOr(&o.RefreshGrantLimit, 125)
	positiveOr(&o.URLExpiry, 6*time.Hour)
	o.MD5MaxSize = cmp.Or(o.MD5MaxSize, 256<<20)
	o.ETagMaxSize = cmp.Or(o.ETagMaxSize, 1<<30)
	if !o.MD5 {
		o.MD5MaxSize = -1
	}
	o.APIAddr = cmp.Or(o.APIAddr, "127.0.0.1:0")
	o.S3Addr = cmp.Or(o.S3Addr, "127.0.0.1:0")
}

// positiveOr sets *v to def unless *v is positive.
func positiveOr[T ~int | ~int64](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Endpoint names, the keys of Counters.Requests.
const (
	EPToken      = "POST /auth/oauth2/v1/token"
	EPTokenV2    = "POST /auth/oauth2/v2/token"
	EPRevoke     = "POST /auth/oauth2/v1/revoke"
	EPPackages   = "GET /file-store/v1/packages"
	EPFileSets   = "GET /file-store/v1/file-sets"
	EPFiles      = "GET /file-store/v1/files"
	EPFile       = "GET /file-store/v1/files/{id}"
	EPStream     = "GET /file-store/v1/files/{id}/stream"
	EPS3Get      = "GET s3"
	EPS3Head     = "HEAD s3"
	EPOther      = "other" // any other path or method on either host
	rateWindow   = 5 * time.Minute
	maxPageSize  = 100
	defaultPage  = 25
	jsonTimeFmt  = "2006-01-02T15:04:05.000Z"
	amzDateFmt   = "20060102T150405Z"
	amzShortDate = "20060102"
)

// Counters is a snapshot of what the simulator has served.
type Counters struct {
	Requests                map[string]int // by endpoint (EP* constants), both hosts, faults included
	AuthRequests            int            // every request to /auth/*
	PasswordGrants          int            // password grant requests (any outcome)
	RefreshGrants           int            // refresh_token grant requests (any outcome)
	ClientCredentialsGrants int            // v2 client_credentials requests (any outcome)
	Revokes                 int            // revoke requests (any outcome)
	AuthFailures            int            // /auth/* answers other than 200 (429s included)
	Auth429s                int            // /auth/* 429s (rate limit or injected)
	TokensIssued            int            // successful token responses
	FileStore401s           int            // /file-store 401s (expired, unknown, revoked, injected)
	StreamURLs              int            // presigned URLs handed out by /stream
	S3Requests              int            // requests to the presigned host
	RangeRequests           int            // presigned requests with a Range header that was honoured (206)
	S3Expired               int            // 403 "Request has expired" (real or injected)
	S3ExpiredTokens         int            // 400 ExpiredToken (session token ended, real or injected)
	S3BadSignature          int            // 403 SignatureDoesNotMatch / missing auth params
	AuthHeaderOnS3          int            // presigned requests that carried an Authorization header (must stay 0)
	BytesServed             int64          // body bytes written by the presigned host
	ActiveDownloads         int            // presigned GETs in progress now
	MaxActiveDownloads      int            // the most presigned GETs ever in progress at once
	FaultsFired             int            // injected faults that fired
}

// AuthRecord is one request to /auth/*.
type AuthRecord struct {
	Time     time.Time // simulator clock
	Path     string    // e.g. /auth/oauth2/v1/token
	Grant    string    // grant_type ("password", "refresh_token", "client_credentials"), or "revoke"
	Username string    // v1 account the request was attributed to, if any
	Status   int       // HTTP status answered
	Error    string    // OAuth "error" code when not 200 ("invalid_grant", "access_denied", ...)
	// UserAgent is the request's User-Agent: which program asked (cfsync's
	// functions send cfsync-<function>).
	UserAgent string
}

// Server is a running simulator. All methods are safe for concurrent use.
type Server struct {
	opts    Options
	apiURL  string
	s3URL   string
	apiSrv  *http.Server
	s3Srv   *http.Server
	apiMux  *http.ServeMux
	closing chan struct{}
	closed  sync.Once
	flight  inflight       // handlers in flight
	serveWG sync.WaitGroup // Serve goroutines
	signKey []byte

	bytesServed atomic.Int64

	mu       sync.Mutex
	counters Counters
	authLog  []AuthRecord
	faults   []*faultState
	seq      int // id generator

	users     map[string]*account        // by username
	clientIDs map[string]bool            // known v1 app keys
	services  map[string]*serviceAccount // by client id
	sessions  map[string]*session        // by session id
	access    map[string]*accessToken    // by token
	refresh   map[string]*refreshToken   // by token

	buckets  map[string]string // lower-case -> canonical name
	packages []*pkgRec
	pkgByID  map[string]*pkgRec
	sets     []*fileSet // insertion order
	setsByID []*fileSet // ascending id (the listing order)
	setByID  map[string]*fileSet
	fileByID map[string]*fileRec

	objects       map[string]*fileRec  // presigned object key (decoded) -> file
	sessionTokens map[string]time.Time // X-Amz-Security-Token -> end of its life
	claimless     map[string]bool      // lower-case bucket ("" = all) -> 403 missing claim
	behind        []behindCursor       // file-sets to publish behind a listing's cursor
	pagesServed   int                  // /file-sets pages served (for PublishBehindCursor)
	notes         *notifier            // nil until EnableNotifications (notifications.go)
}

// NewServer starts a simulator on the listen addresses of opts (two random loopback ports by
// default: the API host and the presigned "S3" host). It panics if it cannot listen; use Start
// to get an error instead.
func NewServer(opts Options) *Server {
	s, err := Start(opts)
	if err != nil {
		panic(err)
	}
	return s
}

// Start is NewServer returning an error.
func Start(opts Options) (*Server, error) {
	opts.defaults()
	s := &Server{
		opts:      opts,
		closing:   make(chan struct{}),
		signKey:   randomBytes(32),
		users:     map[string]*account{},
		clientIDs: map[string]bool{},
		services:  map[string]*serviceAccount{},
		sessions:  map[string]*session{},
		access:    map[string]*accessToken{},
		refresh:   map[string]*refreshToken{},
		buckets:   map[string]string{},
		pkgByID:   map[string]*pkgRec{},
		setByID:   map[string]*fileSet{},
		fileByID:  map[string]*fileRec{},

		objects:       map[string]*fileRec{},
		sessionTokens: map[string]time.Time{},
		claimless:     map[string]bool{},
	}
	s.counters.Requests = map[string]int{}
	apiLn, err := net.Listen("tcp", opts.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("rdptest: listen api %s: %w", opts.APIAddr, err)
	}
	s3Ln, err := net.Listen("tcp", opts.S3Addr)
	if err != nil {
		_ = apiLn.Close()
		return nil, fmt.Errorf("rdptest: listen s3 %s: %w", opts.S3Addr, err)
	}
	s.apiURL = "http://" + advertised(apiLn.Addr())
	s.s3URL = "http://" + advertised(s3Ln.Addr())
	s.apiMux = s.newAPIMux()
	quiet := log.New(io.Discard, "", 0) // a library never logs
	s.apiSrv = &http.Server{Handler: s.track(http.HandlerFunc(s.serveAPI)), ReadHeaderTimeout: 30 * time.Second, ErrorLog: quiet}
	s.s3Srv = &http.Server{Handler: s.track(http.HandlerFunc(s.serveS3)), ReadHeaderTimeout: 30 * time.Second, ErrorLog: quiet}
	for _, p := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{s.apiSrv, apiLn}, {s.s3Srv, s3Ln}} {
		s.serveWG.Add(1)
		go func() {
			defer s.serveWG.Done()
			_ = p.srv.Serve(p.ln)
		}()
	}
	return s, nil
}

// inflight counts running handlers; unlike a WaitGroup it allows add after wait has started.
type inflight struct {
	mu   sync.Mutex
	n    int
	zero *sync.Cond
}

func (f *inflight) add() {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
}

func (f *inflight) done() {
	f.mu.Lock()
	f.n--
	if f.n == 0 && f.zero != nil {
		f.zero.Broadcast()
	}
	f.mu.Unlock()
}

func (f *inflight) wait() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.zero == nil {
		f.zero = sync.NewCond(&f.mu)
	}
	for f.n > 0 {
		f.zero.Wait()
	}
}

func advertised(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if tcp.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(tcp.Port))
	}
	return tcp.String()
}

func (s *Server) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.flight.add()
		defer s.flight.done()
		h.ServeHTTP(w, r)
	})
}

// URL is the API host's base URL, e.g. http://127.0.0.1:41234 (no trailing slash).
func (s *Server) URL() string { return s.apiURL }

// S3URL is the presigned host's base URL (a different host:port from URL, as in production).
func (s *Server) S3URL() string { return s.s3URL }

// Options returns the effective options (defaults filled in).
func (s *Server) Options() Options { return s.opts }

// Close stops both hosts at once: open connections are closed, stalled and throttled responses
// are released, and Close returns when every handler has returned.
func (s *Server) Close() {
	s.closed.Do(func() { close(s.closing) })
	_ = s.apiSrv.Close()
	_ = s.s3Srv.Close()
	s.flight.wait()
	s.serveWG.Wait()
}

// Shutdown stops accepting connections and waits for requests in flight to finish (or ctx to
// end, after which it closes everything like Close). Stalled and throttled responses are cut
// at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closed.Do(func() { close(s.closing) })
	var errs []error
	for _, srv := range []*http.Server{s.apiSrv, s.s3Srv} {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.Close()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("rdptest: shutdown: %w", err)
	}
	return nil
}

// Counters returns a snapshot of the counters.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counters
	c.Requests = make(map[string]int, len(s.counters.Requests))
	for k, v := range s.counters.Requests {
		c.Requests[k] = v
	}
	c.BytesServed = s.bytesServed.Load()
	return c
}

// WaitIdle waits until no presigned download is in progress, or timeout. A
// handler counts a response's last bytes and ends the download after its final
// write, which can come just after the client has read them: call WaitIdle
// before asserting BytesServed or ActiveDownloads. It reports whether the
// server went idle.
func (s *Server) WaitIdle(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		active := s.counters.ActiveDownloads
		s.mu.Unlock()
		if active == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ResetCounters zeroes the counters and the auth log (state such as sessions is kept).
func (s *Server) ResetCounters() {
	s.mu.Lock()
	defer s.mu.Unlock()
	active := s.counters.ActiveDownloads
	s.counters = Counters{Requests: map[string]int{}, ActiveDownloads: active}
	s.authLog = nil
	s.bytesServed.Store(0)
}

// AuthLog returns every request made to /auth/* so far, in arrival order.
func (s *Server) AuthLog() []AuthRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]AuthRecord(nil), s.authLog...)
}

func (s *Server) now() time.Time { return s.opts.Now().UTC() }

func (s *Server) count(ep string) {
	s.mu.Lock()
	s.counters.Requests[ep]++
	s.mu.Unlock()
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// s3Escape percent-encodes s the way AWS SigV4 does: everything but A-Z a-z 0-9 - _ . ~ is
// %XX-encoded (so ':' becomes %3A and ' ' %20).
func s3Escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
