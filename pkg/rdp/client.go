package rdp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cfsync/cfsync/internal/backoff"
)

// DefaultBaseURL is the production RDP API host.
const DefaultBaseURL = "https://api.refinitiv.com"

// maxBody bounds how much of a JSON answer is read (file-set pages are ~100 KB).
const maxBody = 32 << 20

// Client talks to the RDP API. Build it with NewClient; it is safe for
// concurrent use.
type Client struct {
	base      *url.URL
	http      *http.Client // file store: its transport adds the bearer token
	authHTTP  *http.Client // /auth/*: no bearer token
	download  *http.Client // presigned URLs: never an Authorization header
	userAgent string
	now       func() time.Time
	retry     RetryPolicy
	sleep     func(ctx context.Context, d time.Duration) error
}

// RetryPolicy bounds the automatic retries of idempotent GETs (429, 5xx,
// connection errors). Auth calls are never retried automatically.
type RetryPolicy struct {
	MaxAttempts int           // total attempts including the first; 1 disables retries
	BaseDelay   time.Duration // first backoff; doubled each attempt, with full jitter
	MaxDelay    time.Duration // cap on one backoff (Retry-After may ask for more, up to MaxRetryAfter)
	// MaxRetryAfter: a Retry-After longer than this is not waited for; the
	// *RateLimitError is returned so the caller can reschedule.
	MaxRetryAfter time.Duration
}

// DefaultRetryPolicy is used unless WithRetryPolicy says otherwise.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 4, BaseDelay: 250 * time.Millisecond, MaxDelay: 8 * time.Second, MaxRetryAfter: 60 * time.Second}

// Option configures a Client. An option that cannot apply its value
// returns an error naming it, and NewClient returns that error.
type Option func(*Client) error

// WithBaseURL sets the API host (default https://api.refinitiv.com). It must
// be an absolute http(s) URL.
func WithBaseURL(u string) Option {
	return func(c *Client) error {
		p, err := url.Parse(strings.TrimRight(u, "/"))
		if err != nil {
			return fmt.Errorf("base URL: %w", scrubURLError(err))
		}
		if (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("base URL %q: must be an absolute http(s) URL", u)
		}
		c.base = p
		return nil
	}
}

// httpClientOption sets one of the client's *http.Client fields.
func httpClientOption(name string, hc *http.Client, set func(*Client)) Option {
	return func(c *Client) error {
		if hc == nil {
			return fmt.Errorf("%s: nil *http.Client", name)
		}
		set(c)
		return nil
	}
}

// WithHTTPClient sets the client used for file-store calls. Its transport
// must add the bearer token, e.g. &http.Client{Transport: &oauth2.Transport{Source: ts}}.
func WithHTTPClient(hc *http.Client) Option {
	return httpClientOption("http client", hc, func(c *Client) { c.http = hc })
}

// WithAuthHTTPClient sets the client used for /auth calls (default: a plain client).
func WithAuthHTTPClient(hc *http.Client) Option {
	return httpClientOption("auth http client", hc, func(c *Client) { c.authHTTP = hc })
}

// WithDownloadHTTPClient sets the client used for presigned URLs (default: a
// plain client). It must not add an Authorization header.
func WithDownloadHTTPClient(hc *http.Client) Option {
	return httpClientOption("download http client", hc, func(c *Client) { c.download = hc })
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		if ua == "" {
			return errors.New("user agent: empty")
		}
		c.userAgent = ua
		return nil
	}
}

// WithClock sets the clock used to turn expires_in into an absolute expiry.
func WithClock(now func() time.Time) Option {
	return func(c *Client) error {
		if now == nil {
			return errors.New("clock: nil")
		}
		c.now = now
		return nil
	}
}

// WithRetryPolicy sets the retry policy of idempotent GETs. MaxAttempts < 1
// is an error (1 disables retries).
func WithRetryPolicy(p RetryPolicy) Option {
	return func(c *Client) error {
		if p.MaxAttempts < 1 {
			return fmt.Errorf("retry policy: MaxAttempts %d < 1", p.MaxAttempts)
		}
		c.retry = p
		return nil
	}
}

// WithSleep replaces the backoff sleep (tests).
func WithSleep(sleep func(ctx context.Context, d time.Duration) error) Option {
	return func(c *Client) error {
		if sleep == nil {
			return errors.New("sleep: nil")
		}
		c.sleep = sleep
		return nil
	}
}

// NewClient returns a client. Without options it talks to production with
// plain HTTP clients (file-store calls then fail with 401).
func NewClient(opts ...Option) (*Client, error) {
	base, _ := url.Parse(DefaultBaseURL)
	plain := &http.Client{Timeout: 60 * time.Second}
	c := &Client{
		base:      base,
		http:      plain,
		authHTTP:  plain,
		download:  &http.Client{},
		userAgent: "cfsync",
		now:       time.Now,
		retry:     DefaultRetryPolicy,
		sleep:     backoff.Sleep,
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, fmt.Errorf("rdp: new client: %w", err)
		}
	}
	return c, nil
}

// BaseURL returns the API host the client talks to.
func (c *Client) BaseURL() string { return c.base.String() }

// resolve turns an API path (possibly with a query) into an absolute URL on
// the API host. Absolute URLs must be on the same host.
func (c *Client) resolve(ref string) (*url.URL, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("rdp: bad link: %w", err)
	}
	if u.IsAbs() || u.Host != "" {
		if !strings.EqualFold(u.Host, c.base.Host) {
			return nil, fmt.Errorf("%w: %s", ErrForeignLink, u.Host)
		}
	}
	return c.base.ResolveReference(u), nil
}

// getJSON GETs an API path with retries and decodes the JSON answer into v.
func (c *Client) getJSON(ctx context.Context, op, ref string, v any) error {
	u, err := c.resolve(ref)
	if err != nil {
		return err
	}
	var lastErr error
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", c.userAgent)
		resp, err := c.http.Do(req)
		var retryAfter time.Duration
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Transport errors. The oauth2 transport's token-source errors
			// are not network faults: don't retry those.
			if !isNetError(err) {
				return fmt.Errorf("%s: %w", op, err)
			}
			lastErr = fmt.Errorf("%s: %w", op, scrubURLError(err))
		} else {
			lastErr = c.readJSON(resp, op, v)
			if lastErr == nil {
				return nil
			}
			var rl *RateLimitError
			var ae *APIError
			switch {
			case errors.As(lastErr, &rl):
				retryAfter = rl.RetryAfter
				if retryAfter > c.retry.MaxRetryAfter {
					return lastErr
				}
			case errors.As(lastErr, &ae) && ae.Temporary():
			default:
				return lastErr // 4xx, malformed body: not retryable
			}
		}
		if attempt >= c.retry.MaxAttempts {
			return lastErr
		}
		d := c.retry.delay(attempt)
		if retryAfter > d {
			d = retryAfter
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
			return lastErr // no time left to wait: the caller decides
		}
		if err := c.sleep(ctx, d); err != nil {
			return err
		}
	}
}

// delay is the wait before retry n (1-based): full-jitter capped
// exponential backoff (internal/backoff).
func (p RetryPolicy) delay(n int) time.Duration {
	return backoff.Policy{Base: p.BaseDelay, Max: p.MaxDelay}.Delay(n)
}

// readJSON turns a response into v (v nil: a 2xx body is ignored) or a
// typed error, closing the body.
func (c *Client) readJSON(resp *http.Response, op string, v any) error {
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("%s: read body: %w", op, err)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		return &RateLimitError{Endpoint: op, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), c.now())}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return ParseAPIError(op, resp.StatusCode, body)
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &DecodeError{Endpoint: op, Err: err}
	}
	return nil
}

// errorBody is the part common to RDP's error shapes: the gateway's inner
// {"id","code","message","status"} and the flat {"status","message"}.
// code and status are a string in some answers and a number in others.
type errorBody struct {
	ID      string   `json:"id"`
	Code    flexText `json:"code"`
	Message string   `json:"message"`
	Status  flexText `json:"status"`
}

// flexText accepts a JSON string or number and keeps it as text.
type flexText string

func (f *flexText) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*f = flexText(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return nil // another type (object, bool, null): ignore, keep the rest
	}
	*f = flexText(n.String())
	return nil
}

// ParseAPIError decodes the body of a gateway error answer (for HTTP
// transports that must classify a response themselves); it tolerates other
// shapes and never fails: at worst the *APIError has only its HTTP status.
func ParseAPIError(op string, status int, body []byte) *APIError {
	e := &APIError{Endpoint: op, StatusCode: status}
	var gw struct {
		errorBody
		Error json.RawMessage `json:"error"`
		// some endpoints answer with OAuth-style errors
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &gw) != nil {
		return e
	}
	var inner errorBody
	var s string
	switch {
	case len(gw.Error) > 0 && json.Unmarshal(gw.Error, &s) == nil:
		e.Code, e.Message = s, gw.Description
	case len(gw.Error) > 0 && json.Unmarshal(gw.Error, &inner) == nil:
		e.ID, e.Code, e.Message, e.Status = inner.ID, string(inner.Code), inner.Message, string(inner.Status)
	default: // flat: {"status":403,"message":"Access denied: …"}
		e.ID, e.Code, e.Message, e.Status = gw.ID, string(gw.Code), gw.Message, string(gw.Status)
	}
	return e
}

// parseRetryAfter reads delta-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// isNetError reports whether err is a network-level failure worth retrying:
// timeouts, refused or reset connections, a connection closed mid-answer.
// Errors from an oauth2.Transport's TokenSource are wrapped in *url.Error too;
// they are not network errors and are not retried.
func isNetError(err error) bool {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return false
	}
	var ne net.Error
	return errors.As(ue.Err, &ne) ||
		errors.Is(ue.Err, io.EOF) || errors.Is(ue.Err, io.ErrUnexpectedEOF) ||
		errors.Is(ue.Err, syscall.ECONNRESET) || errors.Is(ue.Err, syscall.ECONNREFUSED) ||
		errors.Is(ue.Err, syscall.EPIPE)
}

// scrubURLError drops the URL from a *url.Error (it may be presigned).
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s %s: %w", ue.Op, hostOf(ue.URL), ue.Err)
	}
	return err
}

func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		return u.Scheme + "://" + u.Host
	}
	return "(url)"
}

// RedactURL returns scheme://host/path of u without its query string (which
// carries the credentials of a presigned URL). Use it for logs.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparseable url)"
	}
	return p.Scheme + "://" + p.Host + p.EscapedPath()
}

// WithNoRetrySleep makes retries back off without waiting (tests).
func WithNoRetrySleep() Option {
	return WithSleep(func(ctx context.Context, _ time.Duration) error { return ctx.Err() })
}
