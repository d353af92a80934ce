package tokenring

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/cfsync/cfsync/pkg/rdp"
)

// ErrNoValidToken: no slot of the ring holds an unexpired token (the
// refresher has not run yet, is failing, or the ring is unreadable).
var ErrNoValidToken = errors.New("tokenring: no valid token in the ring")

// ErrTokenInvalid: RDP refused the ring's newest token even after a re-read
// of the ring; a token-invalid report was recorded for the refresher. Errors
// wrapping it also wrap the 401's *rdp.APIError (rdp.ErrUnauthorized).
var ErrTokenInvalid = errors.New("tokenring: token refused by RDP (reported to the refresher)")

// tokenTimeout bounds a ring read started by Token (which has no context).
const tokenTimeout = 20 * time.Second

// ReaderOptions tunes a Reader.
type ReaderOptions struct {
	// Skew: treat a token as expired this early (TOKEN_SKEW, whose default
	// is config.Reader's); zero: none.
	Skew time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Reporter records a reader's token-invalid report for the refresher
// (*state.Table implements it).
type Reporter interface {
	ReportInvalidToken(ctx context.Context, gen int64, reason string) error
}

// Reader is the token source of functions that use RDP tokens but never log
// in. It implements oauth2.TokenSource and is safe for concurrent use.
type Reader struct {
	ring    *Ring
	reports Reporter
	skew    time.Duration
	now     func() time.Time

	mu     sync.Mutex
	cached *Slot
}

var _ oauth2.TokenSource = (*Reader)(nil)

// NewReader returns a reader of the ring made of slotIDs (TOKEN_SECRET_IDS).
// reports receives token-invalid reports; with nil, nothing is reported.
func NewReader(sm SecretsAPI, reports Reporter, slotIDs []string, opts ReaderOptions) *Reader {
	r := &Reader{ring: &Ring{SM: sm, IDs: append([]string(nil), slotIDs...)}, reports: reports, skew: opts.Skew, now: opts.Now}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// Token returns the newest unexpired token of the ring. The token is cached
// in memory until it is within the skew of its expiry; then the ring is read
// again. It returns an error wrapping ErrNoValidToken when no slot holds a
// usable token.
func (r *Reader) Token() (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), tokenTimeout)
	defer cancel()
	return r.TokenContext(ctx)
}

// TokenContext is Token with a context for the ring read.
func (r *Reader) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	s, err := r.slot(ctx, false)
	if err != nil {
		return nil, err
	}
	return s.OAuth2(r.skew), nil
}

// Generation returns the generation of the cached token (0 if none).
func (r *Reader) Generation() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cached == nil {
		return 0
	}
	return r.cached.Generation
}

// Invalidate drops the cached token: the next Token reads the ring.
func (r *Reader) Invalidate() {
	r.mu.Lock()
	r.cached = nil
	r.mu.Unlock()
}

// slot returns the cached token, or reads the ring when the cache is empty,
// near expiry, or reload is set.
func (r *Reader) slot(ctx context.Context, reload bool) (Slot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if !reload && r.cached != nil && r.cached.Valid(now, r.skew) {
		return *r.cached, nil
	}
	r.cached = nil
	vals, err := r.ring.Read(ctx)
	if err != nil {
		return Slot{}, fmt.Errorf("%w: %w", ErrNoValidToken, err)
	}
	best, ok := Newest(vals, now, r.skew)
	if !ok {
		return Slot{}, noValid(vals, now)
	}
	s := best.Slot
	r.cached = &s
	return s, nil
}

// noValid explains why no slot is usable, without revealing any token.
func noValid(vals []SlotValue, now time.Time) error {
	var errs []error
	var latest SlotValue
	have := false
	for _, v := range vals {
		if v.Err != nil {
			errs = append(errs, v.Err)
			continue
		}
		if !v.Slot.Empty() && (!have || v.Slot.Generation > latest.Slot.Generation) {
			latest, have = v, true
		}
	}
	msg := fmt.Sprintf("%d slots", len(vals))
	if have {
		msg += fmt.Sprintf(", newest generation %d expired at %s (now %s)", latest.Slot.Generation,
			latest.Slot.ExpiresAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	} else {
		msg += ", none holds a token"
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w (%s): %w", ErrNoValidToken, msg, errors.Join(errs...))
	}
	return fmt.Errorf("%w (%s)", ErrNoValidToken, msg)
}

// HTTPClient returns a client whose requests carry the ring's token and
// whose 401s are handled by the ring (see Transport), for
// rdp.WithHTTPClient. base may be nil; its Timeout, Jar and CheckRedirect
// are kept.
func (r *Reader) HTTPClient(base *http.Client) *http.Client {
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.Transport = &Transport{reader: r, base: rt}
	return c
}

// report records a token-invalid report and drops the cache.
func (r *Reader) report(ctx context.Context, gen int64, cause error) error {
	r.Invalidate()
	out := fmt.Errorf("token generation %d: %w: %w", gen, cause, ErrTokenInvalid)
	if r.reports == nil {
		return out
	}
	if err := r.reports.ReportInvalidToken(ctx, gen, reportReason(cause)); err != nil {
		return errors.Join(out, err)
	}
	return out
}

// reportReason is what a report says about the 401: status and gateway
// message only (never a URL or token).
func reportReason(err error) string {
	var ae *rdp.APIError
	if errors.As(err, &ae) {
		msg := ae.Message
		if msg == "" {
			msg = http.StatusText(ae.StatusCode)
		}
		return fmt.Sprintf("%d %s (%s)", ae.StatusCode, msg, ae.Endpoint)
	}
	return "401 unauthorized"
}
