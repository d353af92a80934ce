package rdptest

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// FaultKind is the kind of an injected fault.
type FaultKind string

// Fault kinds.
const (
	// FaultUnauthorized: API host answers 401 {"error":{…,"message":"token expired",…}} (on the
	// S3 host: 403 AccessDenied).
	FaultUnauthorized FaultKind = "401"
	// FaultTooManyRequests: 429 with Retry-After (Fault.RetryAfter, default 1s). On /auth/* it is
	// an OAuth error body and counts in Auth429s. On the presigned host it is S3's throttling:
	// 503 SlowDown (429 SlowDown with Options.S3Throttle429).
	FaultTooManyRequests FaultKind = "429"
	// FaultServerError: 500 (gateway JSON on the API host, S3 XML InternalError on S3).
	FaultServerError FaultKind = "500"
	// FaultUnavailable: 503 (gateway JSON, or S3 XML SlowDown).
	FaultUnavailable FaultKind = "503"
	// FaultReset: the connection is closed with a TCP reset before any response (the request is
	// not processed). Note: Go's http.Transport silently retries an idempotent request (GET,
	// HEAD) once when a reused keep-alive connection fails before any response byte, so a client
	// sees a single reset only on a fresh connection; use Times: 2 to make it visible regardless.
	FaultReset FaultKind = "reset"
	// FaultTruncate: the request IS processed (an /auth token grant takes effect, rotating the
	// refresh token), the full Content-Length is advertised, Fault.After bytes of the body are
	// sent, then the connection is closed.
	FaultTruncate FaultKind = "truncate"
	// FaultStall: like FaultTruncate, but after Fault.After bytes the response blocks until the
	// client gives up, Fault.StallFor elapses (real time; 0 = no limit) or the server closes;
	// then the connection is closed.
	FaultStall FaultKind = "stall"
	// FaultExpiredURL: on the S3 host (the default for this kind), 403 AccessDenied "Request has
	// expired" for a URL that is in fact valid; with Host: HostAPI, /stream hands out a URL that
	// has already expired.
	FaultExpiredURL FaultKind = "expired-url"
	// FaultExpiredToken: the presigned host answers 400 ExpiredToken ("The provided token has
	// expired.") for a URL whose session token is in fact still valid; with Host: HostAPI,
	// /stream hands out a URL whose session token has already ended.
	FaultExpiredToken FaultKind = "expired-token"
	// FaultRepeatItem: the next /file-sets page that follows a @nextLink starts with the
	// previous page's last file-set again (a duplicate across pages).
	FaultRepeatItem FaultKind = "repeat-item"
)

// FaultKinds lists every kind.
var FaultKinds = []FaultKind{FaultUnauthorized, FaultTooManyRequests, FaultServerError, FaultUnavailable,
	FaultReset, FaultTruncate, FaultStall, FaultExpiredURL, FaultExpiredToken, FaultRepeatItem}

// FaultHost selects the host a fault applies to.
type FaultHost string

// Fault hosts.
const (
	// HostAuto: the S3 host when Fault.FileID is set or the kind is FaultExpiredURL or
	// FaultExpiredToken, else the API host.
	HostAuto FaultHost = ""
	HostAPI  FaultHost = "api"
	HostS3   FaultHost = "s3"
)

// Fault is an injected failure. Faults are queued by Inject and checked in order; the first one
// that matches a request fires, and a fault fires Times times, then is dropped.
type Fault struct {
	Kind FaultKind
	Host FaultHost
	// PathPrefix restricts the fault to request paths with this prefix (API host: e.g.
	// "/auth/oauth2/v1/token", "/file-store/v1/file-sets"; S3 host: the presigned path). Empty: any.
	PathPrefix string
	// FileID restricts the fault to one file: on the S3 host its downloads, on the API host
	// /file-store/v1/files/{FileID} and its /stream. Empty: any.
	FileID string
	// Times is how many requests the fault hits (default 1; negative: every matching request
	// until ClearFaults).
	Times int
	// Every, when above 1, makes the fault fire on every Every-th matching request only (the
	// others pass through to later faults and the normal handler), e.g. Every: 7 with Times: -1
	// is "a 401 to every 7th file-store request although the token is valid".
	Every int
	// RetryAfter is the Retry-After of a 429 (default 1s, sent in whole seconds rounded up).
	RetryAfter time.Duration
	// StallFor bounds a stall (real time); 0 blocks until the client gives up or Close.
	StallFor time.Duration
	// After is how many body bytes a truncated or stalled response sends first: 0 means half the
	// body, at most 1 MiB; a negative value means none. It is capped at the body length minus one.
	After int64
}

type faultState struct {
	Fault
	host      FaultHost
	remaining int
	seen      int // matching requests so far (for Every)
}

func (f Fault) resolvedHost() FaultHost {
	if f.Host != HostAuto {
		return f.Host
	}
	if f.FileID != "" || f.Kind == FaultExpiredURL || f.Kind == FaultExpiredToken {
		return HostS3
	}
	return HostAPI
}

// Inject queues faults.
func (s *Server) Inject(faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range faults {
		n := f.Times
		if n == 0 {
			n = 1
		}
		s.faults = append(s.faults, &faultState{Fault: f, host: f.resolvedHost(), remaining: n})
	}
}

// ClearFaults drops every pending fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// PendingFaults returns the faults that have not fired their Times yet (Times = what is left).
func (s *Server) PendingFaults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fault, 0, len(s.faults))
	for _, f := range s.faults {
		g := f.Fault
		g.Times = f.remaining
		out = append(out, g)
	}
	return out
}

// takeFaultLocked returns and consumes the first pending fault matching the request. kind ""
// matches any kind except those a handler takes itself: FaultRepeatItem (file-sets) and, on the
// API host, FaultExpiredURL (/stream hands out an already expired URL).
func (s *Server) takeFaultLocked(host FaultHost, kind FaultKind, path, fileID string) *Fault {
	for i, f := range s.faults {
		special := f.Kind == FaultRepeatItem || (host == HostAPI && (f.Kind == FaultExpiredURL || f.Kind == FaultExpiredToken))
		if f.host != host || (kind == "" && special) || (kind != "" && f.Kind != kind) {
			continue
		}
		if f.PathPrefix != "" && !strings.HasPrefix(path, f.PathPrefix) {
			continue
		}
		if f.FileID != "" {
			if host == HostS3 && fileID != f.FileID {
				continue
			}
			if host == HostAPI && !strings.HasPrefix(path, "/file-store/v1/files/"+f.FileID) {
				continue
			}
		}
		if f.Every > 1 {
			f.seen++
			if f.seen%f.Every != 0 {
				continue
			}
		}
		if f.remaining > 0 {
			f.remaining--
			if f.remaining == 0 {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			}
		}
		s.counters.FaultsFired++
		out := f.Fault
		return &out
	}
	return nil
}

func (s *Server) takeFault(host FaultHost, path, fileID string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.takeFaultLocked(host, "", path, fileID)
}

func (f *Fault) retryAfter() time.Duration {
	if f.RetryAfter > 0 {
		return f.RetryAfter
	}
	return time.Second
}

// sendFirst is how many of n body bytes a truncated/stalled response sends: always fewer than n
// (unless n is 0), so the client can tell.
func (f *Fault) sendFirst(n int64) int64 {
	switch {
	case f.After < 0 || n == 0:
		return 0
	case f.After > 0:
		return min(f.After, n-1)
	}
	return min(n/2, 1<<20)
}

// resetConn closes the request's connection with a TCP RST, without a response.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// stallThenAbort blocks until the client leaves, the server closes or d elapses (d > 0), then
// aborts the connection.
func (s *Server) stallThenAbort(r *http.Request, d time.Duration) {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-r.Context().Done():
	case <-s.closing:
	case <-timeout:
	}
	panic(http.ErrAbortHandler)
}

// recorder buffers a handler's response (for API-host truncation and stalls).
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (rec *recorder) Header() http.Header { return rec.header }
func (rec *recorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.body.Write(p)
}
func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 {
		rec.status = code
	}
}

// applyAPIFault answers r according to f.
func (s *Server) applyAPIFault(w http.ResponseWriter, r *http.Request, f *Fault) {
	isAuth := strings.HasPrefix(r.URL.Path, "/auth/")
	status := 0
	switch f.Kind {
	case FaultUnauthorized:
		status = http.StatusUnauthorized
	case FaultTooManyRequests:
		status = http.StatusTooManyRequests
	case FaultServerError:
		status = http.StatusInternalServerError
	case FaultUnavailable:
		status = http.StatusServiceUnavailable
	}
	if status != 0 {
		if isAuth {
			code := map[int]string{401: "invalid_client", 429: "too_many_requests", 500: "server_error", 503: "temporarily_unavailable"}[status]
			s.mu.Lock()
			s.recordAuthLocked(r, authGrant(r), "", status, code)
			s.mu.Unlock()
			e := &oauthError{status: status, code: code, desc: "Injected fault."}
			if status == http.StatusTooManyRequests {
				e.retryAfter = f.retryAfter()
			}
			writeOAuthError(w, e)
			return
		}
		if status == http.StatusUnauthorized {
			s.mu.Lock()
			s.counters.FileStore401s++
			s.mu.Unlock()
			gatewayError(w, status, "token expired")
			return
		}
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", retryAfterSeconds(f.retryAfter()))
		}
		gatewayError(w, status, http.StatusText(status))
		return
	}
	switch f.Kind {
	case FaultReset:
		if isAuth {
			s.mu.Lock()
			s.recordAuthLocked(r, authGrant(r), "", 0, "connection reset")
			s.mu.Unlock()
		}
		resetConn(w)
	case FaultTruncate, FaultStall:
		rec := &recorder{header: http.Header{}}
		s.apiMux.ServeHTTP(rec, r)
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		body := rec.body.Bytes()
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(body[:f.sendFirst(int64(len(body)))])
		_ = http.NewResponseController(w).Flush()
		if f.Kind == FaultStall {
			s.stallThenAbort(r, f.StallFor)
		}
		panic(http.ErrAbortHandler)
	}
}
