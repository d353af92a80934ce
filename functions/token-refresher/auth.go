package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cfsync/cfsync/internal/credentials"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// Failure reasons (metric dimension "reason", AuthState.LastFailure).
const (
	reasonInvalidGrant = "invalid_grant"
	// reasonInvalidCredentials: RDP rejected the username or password
	// (access_denied); retrying gets the account blocked.
	reasonInvalidCredentials = "invalid_credentials"
	reasonSessionQuota       = "session_quota"
	reasonRateLimited        = "rate_limited"
	reasonClient             = "unauthorized_client"
	reasonAuthError          = "auth_error"
	reasonServer             = "server_error"
	reasonBadResponse        = "bad_response"
	reasonNetwork            = "network"
	reasonCredentials        = "credentials_secret"
	reasonBudget             = "budget_exhausted"
)

var (
	// errBusy: another invocation holds the /auth lease.
	errBusy = errors.New("another refresher invocation is signing on")
	// errLostRace: another invocation wrote a newer generation since this one read the ring.
	errLostRace = errors.New("another refresher invocation wrote a newer token")
	// ErrBudget: the rolling auth budget is spent.
	ErrBudget = errors.New("auth budget exhausted")
	// errBackoff: the state table (re-read before a request) says to wait:
	// a failure backoff or a 429's Retry-After, possibly recorded by an
	// overlapping invocation after this one started.
	errBackoff = errors.New("backing off after failed auth requests")
	// errHeld: the session was revoked (possibly by an overlapping
	// invocation after this one started); sign-ons wait for a forced refresh.
	errHeld = errors.New("sign-on held after a revoke")
)

// authDeadlineReserve is kept free before the invocation's deadline when an
// /auth request hangs, so that its failure is still recorded.
const authDeadlineReserve = 10 * time.Second

// authContext bounds an /auth request so that, if RDP does not answer, the
// request fails while the invocation still has time to record the failure:
// an invocation killed at its deadline records nothing, and the persisted
// backoff would never grow.
func authContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	reserve := min(authDeadlineReserve, time.Until(dl)/4)
	return context.WithDeadline(ctx, dl.Add(-reserve))
}

// classify maps an /auth error to a failure reason and a Retry-After.
func classify(err error) (string, time.Duration) {
	var rl *rdp.RateLimitError
	var ae *rdp.AuthError
	var api *rdp.APIError
	var de *rdp.DecodeError
	switch {
	case errors.As(err, &rl):
		return reasonRateLimited, rl.RetryAfter
	case errors.Is(err, rdp.ErrSessionQuota):
		return reasonSessionQuota, 0
	case errors.Is(err, rdp.ErrInvalidCredentials):
		return reasonInvalidCredentials, 0
	case errors.Is(err, rdp.ErrInvalidGrant):
		return reasonInvalidGrant, 0
	case errors.Is(err, rdp.ErrUnauthorizedClient):
		return reasonClient, 0
	case errors.As(err, &ae):
		return reasonAuthError, 0
	case errors.As(err, &api):
		if api.StatusCode >= 500 {
			return reasonServer, 0
		}
		if api.StatusCode == http.StatusUnauthorized {
			return reasonClient, 0
		}
		return reasonAuthError, 0
	case errors.As(err, &de):
		return reasonBadResponse, 0
	}
	return reasonNetwork, 0
}

// updateAuth applies fn to the auth state with an optimistic write,
// re-reading and retrying when another invocation wrote in between.
func (r *run) updateAuth(ctx context.Context, fn func(st *state.AuthState) error) error {
	for range 8 {
		st, err := r.h.Table.GetAuthState(ctx)
		if err != nil {
			return err
		}
		if err := fn(st); err != nil {
			return err
		}
		err = r.h.Table.PutAuthState(ctx, st)
		if err == nil {
			r.auth = st
			return nil
		}
		if !errors.Is(err, state.ErrConflict) {
			return err
		}
	}
	return errors.New("update auth state: too many concurrent writers")
}

// reserve counts one auth request against the rolling budget and takes the
// /auth lease, before the request is sent (failed requests count too). The
// first reservation of a run also checks that no other invocation wrote a
// newer generation since this run read the ring.
func (r *run) reserve(ctx context.Context, grant string) error {
	if !r.leased {
		st, err := r.h.Table.GetRingState(ctx)
		if err != nil {
			return err
		}
		if st.Generation != r.ringSt.Generation {
			r.log.Warn("another refresher wrote a newer token meanwhile: nothing to do", "generation", st.Generation)
			return errLostRace
		}
	}
	var retryAt time.Time
	var inWindow int
	var lastFailure string
	err := r.updateAuth(ctx, func(st *state.AuthState) error {
		now := r.h.now()
		if st.LeaseOwner != "" && st.LeaseOwner != r.owner && now.Before(st.LeaseUntil) {
			return errBusy
		}
		// The run decided from its first read of the state; an overlapping
		// invocation may have recorded a revoke, a failure or a 429 since.
		// A forced refresh and a revoke skip the failure backoff, never a
		// 429's Retry-After.
		if st.Revoked && !r.ev.Force && grant != grantRevoke {
			return errHeld
		}
		if now.Before(st.NotBefore) && (st.LastFailure == reasonRateLimited || (!r.ev.Force && grant != grantRevoke)) {
			retryAt, lastFailure = st.NotBefore, st.LastFailure
			return errBackoff
		}
		st.Prune(now, authWindow)
		inWindow = st.RequestsIn(now, authWindow)
		if inWindow >= r.h.Opts.AuthBudget {
			retryAt = st.NextFree(now, authWindow, r.h.Opts.AuthBudget)
			return ErrBudget
		}
		st.Requests = append(st.Requests, now.UnixMilli())
		st.LeaseOwner, st.LeaseUntil = r.owner, now.Add(authLease)
		return nil
	})
	switch {
	case errors.Is(err, errBusy):
		r.log.Warn("another refresher invocation holds the auth lease: skipping this run")
		return err
	case errors.Is(err, errHeld):
		r.log.Warn(`sign-on held: the session was revoked; send {"action":"refresh","force":true} to sign on again`, "grant", grant)
		return err
	case errors.Is(err, errBackoff):
		r.retryAt = retryAt
		r.log.Warn("auth request not sent: backing off after failures", "grant", grant, "last_failure", lastFailure,
			"retry_at", retryAt.Format(time.RFC3339))
		if lastFailure == reasonRateLimited {
			return fmt.Errorf("%s: %w: RDP asked to wait (429 Retry-After) until %s", grant, errBackoff, retryAt.Format(time.RFC3339))
		}
		return fmt.Errorf("%s: %w (last failure %s) until %s", grant, errBackoff, lastFailure, retryAt.Format(time.RFC3339))
	case errors.Is(err, ErrBudget):
		r.h.Metrics.Add("AuthFailures", 1, "reason", reasonBudget)
		r.log.Error("auth budget exhausted: request not sent", "grant", grant, "auth_budget", r.h.Opts.AuthBudget,
			"window", authWindow.String(), "requests_in_window", inWindow, "retry_at", retryAt.Format(time.RFC3339))
		return fmt.Errorf("%s: %w (%d requests in the last %s, AUTH_BUDGET=%d; next at %s)", grant, ErrBudget,
			inWindow, authWindow, r.h.Opts.AuthBudget, retryAt.Format(time.RFC3339))
	case err != nil:
		return fmt.Errorf("reserve auth request: %w", err)
	}
	r.leased = true
	return nil
}

// call sends one /auth request (fn) within the budget and counts it; every
// /auth request goes through it (token grants and queue credentials).
func call[T any](ctx context.Context, r *run, grant string, fn func() (T, error)) (T, error) {
	var zero T
	if err := r.reserve(ctx, grant); err != nil {
		return zero, err
	}
	r.authCalls++
	r.h.Metrics.Add("AuthRequests", 1, "grant", grant)
	v, err := fn()
	if err != nil {
		reason, _ := classify(err)
		r.h.Metrics.Add("AuthFailures", 1, "reason", reason)
		return zero, err
	}
	return v, nil
}

// obtain gets a new token with as few /auth requests as possible.
func (r *run) obtain(ctx context.Context, c credentials.Credentials) (*rdp.Token, string, error) {
	rdpc := r.h.RDP
	actx, cancel := authContext(ctx) // for the /auth requests; bookkeeping keeps ctx
	defer cancel()
	revokedForce := r.ev.Force && r.auth.Revoked
	var (
		tok   *rdp.Token
		err   error
		grant string
	)
	switch c.Kind {
	case credentials.ServiceAccount:
		grant = grantClient
		tok, err = call(ctx, r, grant, func() (*rdp.Token, error) {
			return rdpc.ClientCredentialsGrant(actx, c.ClientID, c.ClientSecret, c.Scope)
		})
		if err != nil {
			err = fmt.Errorf("v2 client_credentials grant (check client_id and client_secret in the credentials secret): %w", err)
		}
	case credentials.RefreshToken:
		grant = grantRefresh
		rt := c.RefreshToken
		fromRing := r.have && r.latest.RefreshToken != "" && !revokedForce
		if fromRing {
			rt = r.latest.RefreshToken
		}
		tok, err = call(ctx, r, grant, func() (*rdp.Token, error) { return rdpc.RefreshGrant(actx, c.ClientID, rt) })
		if errors.Is(err, rdp.ErrInvalidGrant) && fromRing && rt != c.RefreshToken {
			r.log.Warn("the ring's refresh token was refused: trying the credentials secret's refresh token")
			tok, err = call(ctx, r, grant, func() (*rdp.Token, error) { return rdpc.RefreshGrant(actx, c.ClientID, c.RefreshToken) })
		}
		if err != nil {
			err = fmt.Errorf("refresh grant with the pre-issued refresh token (put a new refresh_token into the credentials secret if it expired): %w", err)
		}
	default: // credentials.Password
		password, why := r.needPassword(c, revokedForce)
		if !password {
			grant = grantRefresh
			tok, err = call(ctx, r, grant, func() (*rdp.Token, error) { return rdpc.RefreshGrant(actx, c.ClientID, r.latest.RefreshToken) })
			if errors.Is(err, rdp.ErrInvalidGrant) {
				r.log.Warn("refresh token refused (invalid_grant): signing on with the password grant", "generation", r.latest.Generation)
				password = true
			} else if err != nil {
				err = fmt.Errorf("refresh grant: %w", err)
			}
		} else {
			r.log.Info("signing on with the password grant", "why", why)
		}
		if password {
			grant = grantPassword
			tok, err = call(ctx, r, grant, func() (*rdp.Token, error) {
				return rdpc.PasswordGrant(actx, rdp.PasswordGrant{Username: c.Username, Password: c.Password, ClientID: c.ClientID,
					Scope: c.Scope, TakeExclusiveSignOnControl: c.TakeExclusive})
			})
			if err != nil {
				err = fmt.Errorf("v1 password grant (check username, password and client_id in the credentials secret): %w", err)
			}
		}
	}
	if errors.Is(err, errBusy) || errors.Is(err, errLostRace) || errors.Is(err, ErrBudget) || errors.Is(err, errBackoff) || errors.Is(err, errHeld) {
		return nil, grant, err
	}
	if err != nil {
		reason, retryAfter := classify(err)
		r.explainFailure(reason, grant, c)
		if ferr := r.fail(ctx, reason, retryAfter); ferr != nil {
			err = errors.Join(err, ferr)
		}
		return nil, grant, err
	}
	if err := r.succeed(ctx, grant, tok); err != nil {
		// The token is good; losing the bookkeeping only costs a backoff reset.
		r.log.Warn("record auth success", "error", err.Error())
	}
	return tok, grant, nil
}

// explainFailure logs what an operator must do about a failure that
// retrying cannot fix.
func (r *run) explainFailure(reason, grant string, c credentials.Credentials) {
	switch {
	case reason == reasonSessionQuota && !c.TakeExclusive:
		r.log.Error(`RDP answered "Session quota is reached.": the account has another session and take_exclusive_sign_on_control is false; `+
			`end the other session or set it to true. Retried only after the backoff.`, "grant", grant)
	case reason == reasonInvalidCredentials:
		r.h.Metrics.Add("AuthCredentialsRejected", 1)
		r.log.Error(`RDP rejected the username or password of the credentials secret: not retried in this run, and later only `+
			`after an exponential backoff (repeated failures get the account blocked); put the right ones into the secret, `+
			`then send {"action":"refresh","force":true}`, "grant", grant, "credentials_secret", r.h.Opts.CredentialsSecretID)
	}
}

// needPassword decides whether a v1 refresh must be a password grant.
func (r *run) needPassword(c credentials.Credentials, revokedForce bool) (bool, string) {
	switch {
	case revokedForce:
		return true, "the session was revoked"
	case !r.have || r.latest.RefreshToken == "":
		return true, "no refresh token in the ring"
	case r.auth.SessionStart.IsZero():
		return false, ""
	}
	end := r.auth.SessionStart.Add(r.h.Opts.SessionMaxLifetime)
	left := end.Sub(r.h.now())
	if c.TakeExclusive {
		// Sign on again before the session's last refresh token dies: the
		// next scheduled refresh (about one token life from now) would be too late.
		if left < r.latestTTL()+r.h.Opts.RefreshMargin {
			return true, fmt.Sprintf("the session reaches its maximum lifetime in %s", left.Round(time.Second))
		}
		return false, ""
	}
	// Without exclusive sign-on a second session is refused while the old
	// one lives: wait for its end.
	if left <= 0 {
		return true, "the session reached its maximum lifetime"
	}
	return false, ""
}

func (r *run) backoff(failures int) time.Duration {
	d := r.h.Opts.BackoffBase
	for i := 1; i < failures && d < r.h.Opts.BackoffMax; i++ {
		d *= 2
	}
	return min(d, r.h.Opts.BackoffMax)
}

// fail records a failed attempt: consecutive failures back off exponentially
// across invocations; a 429's Retry-After is honoured if longer.
func (r *run) fail(ctx context.Context, reason string, retryAfter time.Duration) error {
	var at time.Time
	var n int
	err := r.updateAuth(ctx, func(st *state.AuthState) error {
		now := r.h.now()
		st.Failures++
		n = st.Failures
		d := max(r.backoff(st.Failures), retryAfter)
		st.NotBefore = now.Add(d)
		at = st.NotBefore
		st.LastFailure, st.LastFailureAt = reason, now
		if r.ev.Force {
			st.Revoked = false
		}
		r.releaseIn(st)
		return nil
	})
	if err != nil {
		return fmt.Errorf("record auth failure: %w", err)
	}
	r.log.Warn("auth failure recorded: backing off", "reason", reason, "consecutive_failures", n, "retry_at", at.Format(time.RFC3339))
	return nil
}

func (r *run) succeed(ctx context.Context, grant string, tok *rdp.Token) error {
	return r.updateAuth(ctx, func(st *state.AuthState) error {
		st.Failures, st.NotBefore, st.LastFailure = 0, time.Time{}, ""
		if grant == grantPassword {
			st.SessionStart = tok.IssuedAt.UTC()
		}
		if r.ev.Force {
			st.Revoked = false
		}
		// The lease is kept until the token is in the ring (released by Handle).
		return nil
	})
}

func (r *run) releaseIn(st *state.AuthState) {
	if st.LeaseOwner == r.owner {
		st.LeaseOwner, st.LeaseUntil = "", time.Time{}
	}
}

// release gives the /auth lease back if this run still holds it.
func (r *run) release(ctx context.Context) {
	if !r.leased {
		return
	}
	r.leased = false
	if r.auth != nil && r.auth.LeaseOwner != r.owner {
		return
	}
	err := r.updateAuth(ctx, func(st *state.AuthState) error {
		if st.LeaseOwner != r.owner {
			return errNoop
		}
		r.releaseIn(st)
		return nil
	})
	if err != nil && !errors.Is(err, errNoop) {
		r.log.Warn("release auth lease", "error", err.Error())
	}
}

var errNoop = errors.New("nothing to do")

// revoke ends the session at RDP and holds sign-ons until a forced refresh.
// Slots are not rewritten: readers of the dead token get 401s and report them.
func (r *run) revoke(ctx context.Context) (Result, error) {
	res := Result{Generation: r.latest.Generation}
	c, err := r.readCredentials(ctx)
	if err != nil {
		res.Outcome = OutcomeFailed
		return res, err
	}
	tok := r.latest.RefreshToken
	if tok == "" {
		tok = r.latest.AccessToken
	}
	switch {
	case !r.have || tok == "":
		r.log.Warn("the ring holds no token: nothing to revoke at RDP; sign-ons held")
	case c.Kind == credentials.ServiceAccount:
		r.log.Warn("v2 service-account tokens have no session to revoke at RDP; sign-ons held until the tokens expire and a forced refresh",
			"expires_at", r.latest.ExpiresAt.Format(time.RFC3339))
	default:
		sent := false
		actx, cancel := authContext(ctx)
		_, err := call(ctx, r, grantRevoke, func() (struct{}, error) {
			sent = true
			return struct{}{}, r.h.RDP.Revoke(actx, c.ClientID, tok)
		})
		cancel()
		if err != nil {
			return r.revokeFailed(ctx, res, err, sent)
		}
	}
	err = r.updateAuth(ctx, func(st *state.AuthState) error {
		st.Revoked, st.RevokedAt = true, r.h.now()
		r.releaseIn(st)
		return nil
	})
	if err != nil {
		res.Outcome = OutcomeFailed
		return res, fmt.Errorf("record the revoke: %w", err)
	}
	r.log.Warn(`session revoked: sign-ons held until {"action":"refresh","force":true}`, "generation", r.latest.Generation)
	res.Outcome = OutcomeRevoked
	return res, nil
}

// revokeFailed is the result of a revoke that was not sent (another
// invocation at work, a backoff, the budget) or that RDP refused: a failed
// revoke is a failed /auth request, so it backs off, and a 429's
// Retry-After holds every later request.
func (r *run) revokeFailed(ctx context.Context, res Result, err error, sent bool) (Result, error) {
	res.Outcome = OutcomeFailed
	switch {
	case sent:
		reason, retryAfter := classify(err)
		err = fmt.Errorf("revoke the session at RDP: %w", err)
		if ferr := r.fail(ctx, reason, retryAfter); ferr != nil {
			err = errors.Join(err, ferr)
		}
	case errors.Is(err, errBusy) || errors.Is(err, errLostRace):
		res.Outcome = OutcomeBusy
		err = fmt.Errorf("revoke: %w; try again", err)
	case errors.Is(err, errBackoff):
		res.Outcome, res.RetryAt = OutcomeBackoff, &r.retryAt
		err = fmt.Errorf("revoke not sent: %w; try again then", err)
	}
	return res, err
}
