package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cfsync/cfsync/internal/backoff"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// Retry kinds: the `kind` dimension of the Retries metric.
const (
	kindReset      = "reset"       // connection reset / closed before or during a response
	kindTruncated  = "truncated"   // body ended before the range's length
	kindStall      = "stall"       // no byte for RANGE_READ_TIMEOUT
	kindURLExpired = "url-expired" // 403, or 400 ExpiredToken & co., from the presigned host: new URL from /stream
	kindThrottle   = "throttle"    // 429 / 503 SlowDown from the presigned host
	kindServer     = "server"      // other 5xx from the presigned host
	kindNetwork    = "network"     // any other transport error
)

// action is what to do after a failed range attempt.
type action int

const (
	actRetry      action = iota // back off, then try the same range again
	actRefreshURL               // ask /stream for a new URL, then try again at once
	actFail                     // give up on the file
)

// decision is the classification of one failed range attempt.
type decision struct {
	action action
	kind   string
}

var (
	// errStalled is the cause of an attempt cancelled by the idle timer.
	errStalled = errors.New("range stalled: no data within the read timeout")
	// errTruncated is a body shorter than its range.
	errTruncated = errors.New("range body truncated")
)

// sizeMismatchError: the presigned object is not as large as expected (the
// listing's size, or the first range's Content-Range total).
type sizeMismatchError struct{ want, got int64 }

func (e *sizeMismatchError) Error() string {
	return fmt.Sprintf("size mismatch: expected %d bytes, the download host has %d", e.want, e.got)
}

// errSourceChanged: a range came from another version of the source object
// than the first one (another ETag, or 412 to If-Match).
var errSourceChanged = errors.New("the source object changed during the download")

// etagPin is the source object's ETag a file's ranges must all share.
type etagPin struct {
	mu   sync.Mutex
	etag string
}

func (p *etagPin) get() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.etag
}

// match pins etag if none is pinned yet, and reports whether etag is the
// pinned one. An empty etag (a server that sends none) matches.
func (p *etagPin) match(etag string) bool {
	if etag == "" {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.etag == "" {
		p.etag = etag
	}
	return p.etag == etag
}

// classify decides what a failed range attempt calls for. ctx errors are the
// caller's (deadline, abort) and are not classified here.
func classify(err error) decision {
	var pe *rdp.PresignedError
	var sm *sizeMismatchError
	switch {
	case errors.Is(err, errStalled):
		return decision{actRetry, kindStall}
	case errors.Is(err, errTruncated), errors.Is(err, io.ErrUnexpectedEOF):
		return decision{actRetry, kindTruncated}
	case errors.As(err, &sm):
		return decision{actFail, "size-mismatch"}
	case errors.Is(err, errSourceChanged), errors.Is(err, rdp.ErrSourceChanged):
		return decision{actFail, "source-changed"}
	case errors.Is(err, rdp.ErrURLExpired): // 403, and 400 ExpiredToken and the like (rdp.PresignedError.Is)
		return decision{actRefreshURL, kindURLExpired}
	case errors.Is(err, rdp.ErrNotFound):
		return decision{actFail, "gone"}
	case errors.As(err, &pe):
		switch {
		case pe.StatusCode == http.StatusTooManyRequests || pe.StatusCode == http.StatusServiceUnavailable || pe.Code == "SlowDown":
			return decision{actRetry, kindThrottle}
		case pe.Temporary():
			return decision{actRetry, kindServer}
		}
		return decision{actFail, fmt.Sprintf("http-%d", pe.StatusCode)}
	case isReset(err):
		return decision{actRetry, kindReset}
	}
	return decision{actRetry, kindNetwork}
}

func isReset(err error) bool {
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"connection reset", "broken pipe", "server closed", "EOF"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// equalJitter is the delay before attempt (1-based): a random duration in
// [c/2, c], c being internal/backoff's ceiling min(maxDelay, base × 2^(attempt-1)).
// Unlike backoff.Policy.Delay (full jitter, which may be 0) it always waits
// at least half the ceiling: a deferred message must not come straight back
// during an outage.
func equalJitter(base, maxDelay time.Duration, attempt int) time.Duration {
	if maxDelay <= 0 {
		maxDelay = base // no cap given: no growth
	}
	c := backoff.Policy{Base: base, Max: maxDelay}.Ceiling(attempt)
	return c/2 + rand.N(c/2+1)
}

// urlSource holds a file's current presigned URL. On a 403 every range that
// used the same URL asks for a new one; only the first asks /stream.
type urlSource struct {
	mu        sync.Mutex
	url       string
	gen       int
	refreshes int
	max       int
	fetch     func(ctx context.Context) (string, error)
}

func (s *urlSource) current() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url, s.gen
}

// refresh replaces the URL of generation seen (if nobody did yet).
func (s *urlSource) refresh(ctx context.Context, seen int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != seen {
		return nil
	}
	if s.refreshes >= s.max {
		return fmt.Errorf("presigned URL refused %d times after fresh URLs from /stream", s.refreshes)
	}
	u, err := s.fetch(ctx)
	if err != nil {
		return fmt.Errorf("renew presigned url: %w", err)
	}
	s.refreshes++
	s.url = u
	s.gen++
	return nil
}

// hostOf returns scheme://host of a URL — what may be logged of a presigned URL.
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unknown host)"
	}
	return u.Host
}

// idleReader cancels its request (via timer) when no byte arrives for d.
type idleReader struct {
	r     io.Reader
	timer *time.Timer
	d     time.Duration
}

func (ir *idleReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if n > 0 {
		ir.timer.Reset(ir.d)
	}
	return n, err
}

// fetcher downloads byte ranges of one file with retries.
type fetcher struct {
	rdp         RDP
	urls        *urlSource
	size        int64    // the file's size (listing or first range)
	pin         *etagPin // the source's ETag: sent as If-Match once known
	readTimeout time.Duration
	attempts    int
	base, max   time.Duration
	sleep       func(ctx context.Context, d time.Duration) error
	onRetry     func(kind string, err error, attempt int)
}

// fetch fills buf with bytes [off, off+len(buf)) of the file. It retries
// resets, truncations, stalls, throttling and 5xx with backoff and renews the
// URL on 403; it returns ctx's error when ctx ends.
func (f *fetcher) fetch(ctx context.Context, off int64, buf []byte) error {
	for attempt := 1; ; {
		u, gen := f.urls.current()
		err := f.once(ctx, u, off, buf)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d := classify(err)
		switch d.action {
		case actFail:
			return fmt.Errorf("range %d+%d: %w", off, len(buf), err)
		case actRefreshURL:
			f.onRetry(d.kind, err, attempt)
			if rerr := f.urls.refresh(ctx, gen); rerr != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("range %d+%d: %w (after: %w)", off, len(buf), rerr, err)
			}
			continue
		}
		if attempt >= f.attempts {
			return fmt.Errorf("range %d+%d: giving up after %d attempts: %w", off, len(buf), attempt, err)
		}
		f.onRetry(d.kind, err, attempt)
		if serr := f.sleep(ctx, equalJitter(f.base, f.max, attempt)); serr != nil {
			return serr
		}
		attempt++
	}
}

// once is one attempt at a range.
func (f *fetcher) once(ctx context.Context, u string, off int64, buf []byte) error {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(f.readTimeout, func() { cancel(errStalled) })
	defer timer.Stop()
	stalled := func(err error) error {
		if errors.Is(context.Cause(actx), errStalled) && ctx.Err() == nil {
			return errStalled
		}
		return err
	}
	n := int64(len(buf))
	rr, err := f.rdp.GetRangeIfMatch(actx, u, off, n, f.pin.get())
	if err != nil {
		return stalled(err)
	}
	defer rr.Body.Close()
	if !f.pin.match(rr.ETag) {
		return fmt.Errorf("%w: range at %d has ETag %s, the download started with %s", errSourceChanged, off, rr.ETag, f.pin.get())
	}
	switch {
	case rr.TotalSize >= 0 && f.size < 0:
		f.size = rr.TotalSize // learnSize's probe: nothing else runs yet
	case rr.TotalSize >= 0 && rr.TotalSize != f.size:
		return &sizeMismatchError{want: f.size, got: rr.TotalSize}
	}
	if rr.Length >= 0 && rr.Length != n {
		return fmt.Errorf("%w: server announced %d bytes for a %d-byte range", errTruncated, rr.Length, n)
	}
	got, err := io.ReadFull(&idleReader{r: rr.Body, timer: timer, d: f.readTimeout}, buf)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: got %d of %d bytes", errTruncated, got, n)
		}
		return stalled(err)
	}
	return nil
}
