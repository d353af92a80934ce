package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/credentials"
	"github.com/cfsync/cfsync/internal/lambdaerr"
	"github.com/cfsync/cfsync/internal/lambdamain"
	"github.com/cfsync/cfsync/internal/metrics"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// SecretsAPI is the part of Secrets Manager the refresher uses: the
// credentials secret (GetSecretValue) and the ring (read and write).
type SecretsAPI interface {
	tokenring.SecretsAPI
	tokenring.PutAPI
}

var _ SecretsAPI = (*secretsmanager.Client)(nil)

// AuthAPI is the part of the RDP client the refresher uses (/auth only).
type AuthAPI interface {
	PasswordGrant(ctx context.Context, g rdp.PasswordGrant) (*rdp.Token, error)
	RefreshGrant(ctx context.Context, clientID, refreshToken string) (*rdp.Token, error)
	ClientCredentialsGrant(ctx context.Context, clientID, clientSecret, scope string) (*rdp.Token, error)
	Revoke(ctx context.Context, clientID, token string) error
}

var _ AuthAPI = (*rdp.Client)(nil)

// StateStore is the part of the state table the refresher uses: the ring's
// generation counter and slot writes, readers' token-invalid reports, and
// the /auth bookkeeping (budget, backoff, lease).
type StateStore interface {
	GetRingState(ctx context.Context) (*state.RingState, error)
	ClaimGeneration(ctx context.Context, prev *state.RingState, next int64, slotID string, at time.Time) (*state.RingState, error)
	GetTokenReport(ctx context.Context, gen int64) (*state.TokenReport, error)
	MarkReportChecked(ctx context.Context, gen int64, at time.Time) error
	GetAuthState(ctx context.Context) (*state.AuthState, error)
	PutAuthState(ctx context.Context, st *state.AuthState) error
}

var _ StateStore = (*state.Table)(nil)

// Options are the refresher's knobs.
type Options struct {
	CredentialsSecretID string
	SlotIDs             []string      // TOKEN_SECRET_IDS
	RefreshMargin       time.Duration // TOKEN_REFRESH_MARGIN
	MinWriteInterval    time.Duration // SECRET_MIN_WRITE_INTERVAL
	AuthBudget          int           // AUTH_BUDGET, per authWindow
	SessionMaxLifetime  time.Duration // RDP_SESSION_MAX_LIFETIME
	BackoffBase         time.Duration // AUTH_BACKOFF_BASE: first backoff after a failure
	BackoffMax          time.Duration // AUTH_BACKOFF_MAX: cap of the exponential backoff
	ReaderSkew          time.Duration // TOKEN_SKEW: readers treat a token as expired this early
}

// authWindow is the window AuthBudget counts /auth requests in; authLease
// is how long a run may hold /auth to itself.
const (
	authWindow = 5 * time.Minute
	authLease  = 2 * time.Minute
)

// OptionsFromConfig maps the environment configuration to Options; tests
// start from config.Defaults[config.Refresher](), so every default is the
// config tag's.
func OptionsFromConfig(c config.Refresher) Options {
	return Options{
		CredentialsSecretID: c.CredentialsSecretID,
		SlotIDs:             c.TokenSecretIDs,
		RefreshMargin:       c.RefreshMargin,
		MinWriteInterval:    c.SecretMinWriteInterval,
		AuthBudget:          c.AuthBudget,
		SessionMaxLifetime:  c.SessionMaxLifetime,
		BackoffBase:         c.AuthBackoffBase,
		BackoffMax:          c.AuthBackoffMax,
		ReaderSkew:          c.TokenSkew,
	}
}

// Handler is the token-refresher. Build it with New; one Handle call is one
// invocation.
type Handler struct {
	Deps
	Settings

	ring  *tokenring.Ring
	cache *ringCache // the ring's values across warm runs (ringcache.go)
}

// Deps are the refresher's collaborators.
type Deps struct {
	SM      SecretsAPI
	Table   StateStore
	RDP     AuthAPI
	Probe   TokenProber       // checks reported tokens; nil: every check is inconclusive
	Log     *slog.Logger      // nil: discard
	Metrics *metrics.Recorder // nil: none
	Now     func() time.Time  // nil: time.Now

	// Notification queue credentials (nil Cloud or empty
	// Queue.SubscriptionSecretID: notifications off, no upkeep).
	Cloud      QueueCredsAPI
	QueueState QueueCredsStore
}

// Settings are the refresher's knobs.
type Settings struct {
	Opts  Options
	Queue QueueCredsOptions // notification queue credentials (empty SubscriptionSecretID: off)
}

// New returns a refresher. SM, Table and RDP are required, and so are the
// credentials secret, at least one ring slot and the knobs config.Refresher
// gives defaults to (New applies none: OptionsFromConfig of a loaded config).
func New(d Deps, s Settings) (*Handler, error) {
	switch {
	case d.SM == nil || d.Table == nil || d.RDP == nil:
		return nil, errors.New("token-refresher: SM, Table and RDP are required")
	case s.Opts.CredentialsSecretID == "":
		return nil, errors.New("token-refresher: Opts.CredentialsSecretID (RDP_CREDENTIALS_SECRET_ID) is empty")
	case len(s.Opts.SlotIDs) == 0:
		return nil, errors.New("token-refresher: Opts.SlotIDs (TOKEN_SECRET_IDS) is empty")
	case s.Opts.AuthBudget < 1:
		return nil, fmt.Errorf("token-refresher: Opts.AuthBudget (AUTH_BUDGET) is %d, want at least 1", s.Opts.AuthBudget)
	case s.Opts.SessionMaxLifetime <= 0 || s.Opts.BackoffBase <= 0 || s.Opts.BackoffMax <= 0:
		return nil, errors.New("token-refresher: Opts.SessionMaxLifetime, BackoffBase and BackoffMax (RDP_SESSION_MAX_LIFETIME, AUTH_BACKOFF_BASE, AUTH_BACKOFF_MAX) must be positive")
	case s.Opts.RefreshMargin <= s.Opts.ReaderSkew:
		return nil, fmt.Errorf("token-refresher: Opts.RefreshMargin (TOKEN_REFRESH_MARGIN, %s) must exceed ReaderSkew (TOKEN_SKEW, %s): readers would stop using a token before it is refreshed", s.Opts.RefreshMargin, s.Opts.ReaderSkew)
	case s.Queue.SubscriptionSecretID != "" && s.Queue.RefreshAfter <= 0:
		return nil, errors.New("token-refresher: Queue.RefreshAfter (QUEUE_CREDENTIALS_REFRESH) must be positive")
	case (s.Queue.SubscriptionSecretID == "") != (s.Queue.CredentialsSecretID == ""):
		return nil, errors.New("token-refresher: Queue.SubscriptionSecretID and CredentialsSecretID (NOTIFY_SUBSCRIPTION_SECRET_ID, NOTIFY_CREDENTIALS_SECRET_ID) are set together (notifications on) or not at all")
	}
	return &Handler{Deps: d, Settings: s}, nil
}

// Outcomes of a run (Result.Outcome).
const (
	OutcomeFresh     = "fresh"     // the newest token has time left: nothing to do
	OutcomeRefreshed = "refreshed" // a new token was written to the ring
	OutcomeHeld      = "held"      // a refresh was due but sign-ons are held after a revoke
	OutcomeBackoff   = "backoff"   // a refresh was due but the backoff / Retry-After has not passed
	OutcomeDeferred  = "deferred"  // a refresh was due but no ring slot may be written yet
	OutcomeBusy      = "busy"      // another invocation is talking to /auth
	OutcomeLostRace  = "lost_race" // another invocation wrote a newer generation meanwhile
	OutcomeRevoked   = "revoked"   // the session was revoked; sign-ons are held
	OutcomeKept      = "kept"      // a report could not be verified and no slot can be spared: the token is kept
	OutcomeFailed    = "failed"
)

// Result is what an invocation returns (no secrets).
type Result struct {
	Action      string     `json:"action"`
	Outcome     string     `json:"outcome"`
	Reason      string     `json:"reason,omitempty"` // why a refresh was due
	Grant       string     `json:"grant,omitempty"`
	Generation  int64      `json:"generation,omitempty"`
	Slot        string     `json:"slot,omitempty"`
	ExpiresAt   *time.Time `json:"expiresAt,omitempty"`
	RetryAt     *time.Time `json:"retryAt,omitempty"`
	SlotsNeeded int        `json:"slotsNeeded,omitempty"`
	AuthCalls   int        `json:"authCalls"`
	// QueueCredentials: what the queue-credentials upkeep did (fresh,
	// refreshed, deferred, backoff, busy, lost_race, failed), empty when
	// notifications are off.
	QueueCredentials string `json:"queueCredentials,omitempty"`
}

// Grant names (metric dimension "grant").
const (
	grantPassword = "password"
	grantRefresh  = "refresh_token"
	grantClient   = "client_credentials"
	grantRevoke   = "revoke"
)

// Reasons a refresh is due (Result.Reason).
const (
	dueForced     = "forced"
	dueEmpty      = "ring has no token"
	dueExpiring   = "expiring"
	dueReported   = "reported invalid"                     // and RDP refused it
	dueUnverified = "reported invalid, check inconclusive" // RDP's answer said neither
)

func (h *Handler) now() time.Time {
	if h.Now == nil {
		return time.Now().UTC()
	}
	return h.Now().UTC()
}

// Invoke implements lambda.Handler: the raw payload goes through Handle
// (see lambdaerr.Invoke).
func (h *Handler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	return lambdaerr.Invoke(ctx, payload, h.Handle)
}

// Handle runs one invocation: payload is the raw event (docs/design.md#events).
func (h *Handler) Handle(ctx context.Context, payload json.RawMessage) (Result, error) {
	if h.ring == nil {
		h.ring = &tokenring.Ring{SM: h.SM, IDs: h.Opts.SlotIDs}
	}
	if h.cache == nil {
		h.cache = &ringCache{}
	}
	log, end := lambdamain.StartInvocation(ctx, h.Log, h.Metrics)
	defer end()
	ev, err := ParseEvent(payload)
	if err != nil {
		log.Error("rejected event", "error", err.Error())
		return Result{Outcome: OutcomeFailed}, lambdaerr.Malformed(err)
	}
	r := &run{h: h, log: log, ev: ev, owner: newOwner()}
	res, err := r.exec(ctx)
	if err == nil {
		err = r.checkUsable(res)
	}
	if err == nil && ev.Action != ActionRevoke && h.Cloud != nil && h.QueueState != nil {
		res.QueueCredentials = r.upkeepQueueCreds(ctx)
	}
	r.release(ctx)
	res.Action = ev.Action
	res.AuthCalls = r.authCalls
	if err != nil {
		if res.Outcome == "" {
			res.Outcome = OutcomeFailed
		}
		log.Error("token refresh failed", "outcome", res.Outcome, "error", err.Error())
		return res, err
	}
	attrs := []any{"action", res.Action, "outcome", res.Outcome, "auth_requests", res.AuthCalls}
	if res.Reason != "" {
		attrs = append(attrs, "reason", res.Reason)
	}
	if res.Generation > 0 {
		attrs = append(attrs, "generation", res.Generation)
	}
	if res.ExpiresAt != nil {
		attrs = append(attrs, "expires_at", res.ExpiresAt.Format(time.RFC3339))
	}
	log.Info("token refresher run", attrs...)
	return res, nil
}

func newOwner() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// run is one invocation's working state.
type run struct {
	h     *Handler
	log   *slog.Logger
	ev    Event
	owner string

	vals   []tokenring.SlotValue
	ringSt *state.RingState
	auth   *state.AuthState
	latest tokenring.Slot // highest generation in the ring (may be expired)
	have   bool

	authCalls int
	leased    bool
	written   *tokenring.Slot
	retryAt   time.Time // set when a reservation found a backoff (errBackoff)
}

func (r *run) exec(ctx context.Context) (Result, error) {
	h := r.h
	var err error
	if r.ringSt, err = h.Table.GetRingState(ctx); err != nil {
		return Result{}, err
	}
	if r.auth, err = h.Table.GetAuthState(ctx); err != nil {
		return Result{}, err
	}
	if err := r.readRing(ctx, r.ev.Action != ActionRevoke && !r.ev.Force); err != nil {
		return Result{}, err
	}
	defer r.emitRemaining()
	if r.ev.Action == ActionRevoke {
		return r.revoke(ctx)
	}
	due := r.due(ctx)
	if due == "" {
		exp := r.latest.ExpiresAt
		return Result{Outcome: OutcomeFresh, Generation: r.latest.Generation, ExpiresAt: &exp}, nil
	}
	return r.refresh(ctx, due)
}

// refresh replaces the newest token for the reason due, unless sign-ons are
// held, backing off, or no ring slot may be written.
func (r *run) refresh(ctx context.Context, due string) (Result, error) {
	now := r.h.now()
	res := Result{Reason: due, Generation: r.latest.Generation}
	if r.auth.Revoked && !r.ev.Force {
		r.log.Warn(`sign-on held: the session was revoked; send {"action":"refresh","force":true} to sign on again`,
			"reason", due, "revoked_at", r.auth.RevokedAt.Format(time.RFC3339))
		res.Outcome = OutcomeHeld
		return res, nil
	}
	if now.Before(r.auth.NotBefore) && (!r.ev.Force || r.auth.LastFailure == reasonRateLimited) {
		at := r.auth.NotBefore
		r.log.Warn("refresh due but backing off after failures", "reason", due, "failures", r.auth.Failures,
			"last_failure", r.auth.LastFailure, "retry_at", at.Format(time.RFC3339))
		res.Outcome, res.RetryAt = OutcomeBackoff, &at
		return res, nil
	}
	creds, err := r.readCredentials(ctx)
	if err != nil {
		r.h.Metrics.Add("AuthFailures", 1, "reason", reasonCredentials)
		if ferr := r.fail(ctx, reasonCredentials, 0); ferr != nil {
			err = errors.Join(err, ferr)
		}
		res.Outcome = OutcomeFailed
		return res, err
	}
	slotID, nextAt, ok := r.pickSlot(now, nil)
	if !ok {
		needed := max(r.slotsNeeded(r.latestTTL()), len(r.h.Opts.SlotIDs)+1)
		r.ringTooSmall(needed, "no ring slot may be written yet: refresh deferred", "reason", due, "next_slot_at", nextAt.Format(time.RFC3339))
		res.Outcome, res.RetryAt, res.SlotsNeeded = OutcomeDeferred, &nextAt, needed
		return res, nil
	}
	if due == dueUnverified && !r.spareSlot(slotID, now) {
		r.log.Warn("reported token not replaced: its check was inconclusive and the scheduled refresh needs the writable slots; checked again next run",
			"generation", r.latest.Generation, "expires_at", r.latest.ExpiresAt.Format(time.RFC3339))
		res.Outcome = OutcomeKept
		return res, nil
	}
	tok, grant, err := r.obtain(ctx, creds)
	res.Grant = grant
	if err != nil {
		return r.obtainFailed(res, err)
	}
	return r.store(ctx, res, tok, grant, slotID)
}

// obtainFailed maps obtain's error to the run's outcome: waiting for
// another invocation, a backoff or a held sign-on is not a failure.
func (r *run) obtainFailed(res Result, err error) (Result, error) {
	switch {
	case errors.Is(err, errBusy):
		res.Outcome = OutcomeBusy
	case errors.Is(err, errLostRace):
		res.Outcome = OutcomeLostRace
	case errors.Is(err, errBackoff):
		res.Outcome, res.RetryAt = OutcomeBackoff, &r.retryAt
	case errors.Is(err, errHeld):
		res.Outcome = OutcomeHeld
	default:
		res.Outcome = OutcomeFailed
		return res, err
	}
	return res, nil
}

// due says why a refresh is needed now ("" when it is not).
func (r *run) due(ctx context.Context) string {
	now := r.h.now()
	switch {
	case r.ev.Force:
		return dueForced
	case !r.have:
		return dueEmpty
	case r.latest.ExpiresAt.Sub(now) <= r.h.Opts.RefreshMargin:
		return dueExpiring
	}
	return r.dueToReport(ctx)
}

// dueToReport weighs a reader's token-invalid report of the newest token
// (docs/design.md#the-token-ring): one file-store GET asks RDP whether it still
// accepts the token. Refused: replace it now. Accepted: the report costs no
// ring write and is dismissed until a newer report. Inconclusive: replace
// it only with a slot the scheduled refresh can spare.
func (r *run) dueToReport(ctx context.Context) string {
	rep, err := r.h.Table.GetTokenReport(ctx, r.latest.Generation)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return ""
	case err != nil:
		r.log.Warn("cannot read token-invalid reports", "error", err.Error())
		return ""
	case !rep.Unconfirmed():
		return ""
	}
	checkedAt := r.h.now()
	verdict, perr := r.checkReported(ctx)
	r.h.Metrics.Add("TokenReportChecks", 1, "verdict", verdict)
	attrs := []any{"generation", rep.Generation, "reports", rep.Reports, "reported_at", rep.FirstAt.Format(time.RFC3339),
		"report_reason", rep.Reason, "verdict", verdict}
	switch verdict {
	case verdictAccepted:
		r.log.Info("a reader reported the newest token invalid but RDP still accepts it: no new token", attrs...)
		if err := r.h.Table.MarkReportChecked(ctx, rep.Generation, checkedAt); err != nil {
			r.log.Warn("record the report check", "error", err.Error())
		}
		return ""
	case verdictRefused:
		r.log.Warn("a reader reported the newest token invalid and RDP refuses it: replacing it", attrs...)
		return dueReported
	}
	r.log.Warn("a reader reported the newest token invalid and RDP's answer was inconclusive", append(attrs, "error", perr.Error())...)
	return dueUnverified
}

// latestTTL is the life of the newest token as issued (10m if unknown).
func (r *run) latestTTL() time.Duration {
	if r.have && !r.latest.IssuedAt.IsZero() && r.latest.ExpiresAt.After(r.latest.IssuedAt) {
		return r.latest.ExpiresAt.Sub(r.latest.IssuedAt)
	}
	return 10 * time.Minute
}

// slotsNeeded is the ring size that lets every slot rest MinWriteInterval
// between writes with one unscheduled write to spare:
// N ≥ ⌈interval ÷ refresh cadence⌉ + 1, cadence = token life − margin (≥ 1 min).
func (r *run) slotsNeeded(ttl time.Duration) int {
	return SlotsNeeded(r.h.Opts.MinWriteInterval, ttl-r.h.Opts.RefreshMargin)
}

// SlotsNeeded returns ⌈interval ÷ cadence⌉ + 1 (cadence floored at one minute, the schedule).
func SlotsNeeded(interval, cadence time.Duration) int {
	if cadence < time.Minute {
		cadence = time.Minute
	}
	n := int(interval / cadence)
	if interval%cadence != 0 {
		n++
	}
	return n + 1
}

func (r *run) ringTooSmall(needed int, msg string, attrs ...any) {
	r.h.Metrics.Add("RingSlotsNeeded", float64(needed))
	attrs = append([]any{"slots", len(r.h.Opts.SlotIDs), "slots_needed", needed,
		"token_lifetime", r.latestTTL().String(), "refresh_margin", r.h.Opts.RefreshMargin.String(),
		"min_write_interval", r.h.Opts.MinWriteInterval.String(),
		"fix", fmt.Sprintf("list at least %d secrets in TOKEN_SECRET_IDS", needed)}, attrs...)
	r.log.Error(msg, attrs...)
}

// lastWrite is slot i's last write: the later of the refresher's record
// and, for a slot holding a token (or unreadable content), the version date
// Secrets Manager reports, so a lost state table cannot cause an early
// rewrite. An empty placeholder (`{}` from the template) is not a token
// write: a fresh deployment gets its first token at once. ok is false when
// the slot is unreadable and its last write unknown.
func (r *run) lastWrite(i int, id string) (last time.Time, ok bool) {
	if w, found := r.ringSt.Slots[id]; found {
		last = w.WrittenAt
	}
	if i < len(r.vals) {
		v := r.vals[i]
		if v.Err != nil && v.VersionCreated.IsZero() {
			return time.Time{}, false
		}
		if (!v.Slot.Empty() || v.Err != nil) && v.VersionCreated.After(last) {
			last = v.VersionCreated
		}
	}
	return last, true
}

// pickSlot returns the least recently written slot (not in skip) if it may
// be written at now; otherwise false and when the first slot becomes
// writable.
func (r *run) pickSlot(now time.Time, skip map[string]bool) (string, time.Time, bool) {
	var best string
	var bestAt time.Time
	found := false
	for i, id := range r.h.Opts.SlotIDs {
		last, ok := r.lastWrite(i, id)
		if !ok || skip[id] {
			continue
		}
		if !found || last.Before(bestAt) {
			best, bestAt, found = id, last, true
		}
	}
	if !found {
		return "", now.Add(r.h.Opts.MinWriteInterval), false
	}
	next := bestAt.Add(r.h.Opts.MinWriteInterval)
	if bestAt.IsZero() || !now.Before(next) {
		return best, now, true
	}
	return "", next, false
}

// spareSlot reports whether writing slotID at now still leaves the next
// scheduled refresh a slot it may write when it falls due (the new token's
// expiry less the refresh margin), so an out-of-schedule write never makes
// the scheduled refresh wait (docs/design.md#the-token-ring: slot priority).
func (r *run) spareSlot(slotID string, now time.Time) bool {
	due := now.Add(r.latestTTL() - r.h.Opts.RefreshMargin)
	if !now.Add(r.h.Opts.MinWriteInterval).After(due) {
		return true // slotID itself is writable again in time
	}
	for i, id := range r.h.Opts.SlotIDs {
		if id == slotID {
			continue
		}
		if last, ok := r.lastWrite(i, id); ok && !last.Add(r.h.Opts.MinWriteInterval).After(due) {
			return true
		}
	}
	return false
}

// readCredentials reads and parses the credentials secret.
func (r *run) readCredentials(ctx context.Context) (credentials.Credentials, error) {
	out, err := r.h.SM.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(r.h.Opts.CredentialsSecretID)})
	if err != nil {
		return credentials.Credentials{}, fmt.Errorf("read credentials secret %s: %w", r.h.Opts.CredentialsSecretID, err)
	}
	if out.SecretString == nil {
		return credentials.Credentials{}, lambdaerr.Config(fmt.Errorf("credentials secret %s: %w: no string value", r.h.Opts.CredentialsSecretID, credentials.ErrInvalid))
	}
	c, err := credentials.Parse([]byte(*out.SecretString))
	if err != nil {
		return credentials.Credentials{}, lambdaerr.Config(fmt.Errorf("credentials secret %s: %w", r.h.Opts.CredentialsSecretID, err))
	}
	return c, nil
}

// writeAttempts is how many times one slot is written before the token is
// tried in another eligible slot (the SDK already retries throttling).
const writeAttempts = 2

// store puts the token into the ring (docs/design.md#the-token-ring): it claims
// the next generation for slotID and writes the slot. A failed write is
// retried, then tried in every other eligible slot, because RDP has already
// replaced the refresh token that was used: losing the new one can leave
// only dead tokens. When another invocation claimed the generation first, a
// token carrying a refresh token is stored all the same, one generation
// higher; one without (v2) is discarded, the other invocation's is as good.
func (r *run) store(ctx context.Context, res Result, tok *rdp.Token, grant, slotID string) (Result, error) {
	slot := tokenring.Slot{
		AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType, Scope: tok.Scope,
		IssuedAt: tok.IssuedAt, ExpiresAt: tok.Expiry,
	}
	failed := map[string]bool{}
	var errs []error
	for range 2 * len(r.h.Opts.SlotIDs) {
		slot.Generation = max(r.ringSt.Generation, r.latest.Generation) + 1
		prev := r.ringSt
		err := r.claimAndWrite(ctx, slotID, slot)
		switch {
		case err == nil:
			r.keepWritten(prev, slotID, slot)
			return r.stored(res, tok, grant, slotID, slot), nil
		case errors.Is(err, state.ErrConflict) && tok.RefreshToken == "":
			r.log.Warn("another refresher claimed this generation first: token discarded (it carries no refresh token)", "generation", slot.Generation)
			res.Outcome = OutcomeLostRace
			return res, nil
		case errors.Is(err, state.ErrConflict):
			r.log.Warn("another refresher claimed this generation first: keeping this run's token, whose refresh token replaced the one used",
				"generation", slot.Generation)
			if r.ringSt, err = r.h.Table.GetRingState(ctx); err != nil {
				errs = append(errs, err)
				return r.lost(res, grant, errs)
			}
		case errors.Is(err, errWrite):
			errs, failed[slotID] = append(errs, err), true
		default:
			errs = append(errs, err)
			return r.lost(res, grant, errs)
		}
		next, _, ok := r.pickSlot(r.h.now(), failed)
		if !ok {
			errs = append(errs, errors.New("no other ring slot may be written now"))
			break
		}
		slotID = next
	}
	return r.lost(res, grant, errs)
}

// errWrite marks a failed PutSecretValue (the claim succeeded).
var errWrite = errors.New("ring write failed")

// claimAndWrite claims slot.Generation for slotID, then writes the slot,
// retrying the same slot (the write is idempotent per generation). A failed
// write leaves the slot counted as written: the write may have landed.
func (r *run) claimAndWrite(ctx context.Context, slotID string, slot tokenring.Slot) error {
	st, err := r.h.Table.ClaimGeneration(ctx, r.ringSt, slot.Generation, slotID, r.h.now())
	if err != nil {
		return err
	}
	r.ringSt = st
	for i := range writeAttempts {
		if err = tokenring.Write(ctx, r.h.SM, slotID, slot); err == nil {
			return nil
		}
		r.h.Metrics.Add("RingWriteFailures", 1)
		r.log.Warn("ring write failed", "slot", slotID, "generation", slot.Generation, "attempt", i+1, "error", err.Error())
	}
	return fmt.Errorf("%w: %w", errWrite, err)
}

// lost reports a token that could not be stored.
func (r *run) lost(res Result, grant string, errs []error) (Result, error) {
	r.log.Error("new token could not be stored in the ring: the next run tries again", "grant", grant)
	res.Outcome = OutcomeFailed
	return res, fmt.Errorf("store token: %w", errors.Join(errs...))
}

// stored records a successful write in the result, logs and metrics.
func (r *run) stored(res Result, tok *rdp.Token, grant, slotID string, slot tokenring.Slot) Result {
	h := r.h
	h.Metrics.Add("RingWrites", 1)
	r.written = &slot
	exp := slot.ExpiresAt
	res.Outcome, res.Generation, res.Slot, res.ExpiresAt = OutcomeRefreshed, slot.Generation, slotID, &exp
	ttl := tok.ExpiresIn()
	r.log.Info("token written to the ring", "generation", slot.Generation, "slot", slotID, "grant", grant, "reason", res.Reason,
		"expires_at", exp.Format(time.RFC3339), "token_lifetime", ttl.String())
	if needed := r.slotsNeeded(ttl); needed > len(h.Opts.SlotIDs) {
		res.SlotsNeeded = needed
		r.ringTooSmall(needed, "token ring too small for this token lifetime: refreshes will be deferred")
	}
	return res
}

// emitRemaining records TokenRemainingSeconds of the newest usable token
// (a log field: liveness is the function's Errors, see checkUsable).
func (r *run) emitRemaining() {
	r.h.Metrics.Put("TokenRemainingSeconds", metrics.Seconds, r.remaining().Seconds())
}

// remaining is how long the ring's newest token, or the one this run
// wrote, has left (0 when none).
func (r *run) remaining() time.Duration {
	now := r.h.now()
	var exp time.Time
	if r.written != nil {
		exp = r.written.ExpiresAt
	} else if v, ok := tokenring.Newest(r.vals, now, 0); ok {
		exp = v.Slot.ExpiresAt
	}
	return max(0, exp.Sub(now))
}

// ErrNoUsableToken: the run ends with no token in the ring that readers can
// use (within their default TOKEN_SKEW of expiry or none at all) and it
// wrote none: held, backing off or deferred. It fails the invocation,
// so that TokenRefresherErrorsAlarm, on the Errors Lambda publishes for
// every invocation, covers what a heartbeat metric would (docs/cost.md).
var ErrNoUsableToken = errors.New("token-refresher: the ring holds no usable token and this run wrote none")

// checkUsable returns an error wrapping ErrNoUsableToken when the ring has
// no usable token after a run that did not fail otherwise. Excepted: a
// revoke (it empties the ring on purpose), and a run that found another
// one talking to /auth or writing a newer token (busy, lost race): that
// one reports its own outcome.
func (r *run) checkUsable(res Result) error {
	switch {
	case r.ev.Action == ActionRevoke, res.Outcome == OutcomeBusy, res.Outcome == OutcomeLostRace:
		return nil
	case r.remaining() > r.h.Opts.ReaderSkew: // readers can still use it
		return nil
	}
	why := "outcome " + res.Outcome
	if res.Reason != "" {
		why += ", " + res.Reason
	}
	if res.RetryAt != nil {
		why += ", next attempt at " + res.RetryAt.Format(time.RFC3339)
	}
	if res.SlotsNeeded > 0 {
		why += fmt.Sprintf(", TokenSlots needed: %d", res.SlotsNeeded)
	}
	if r.auth != nil && r.auth.LastFailure != "" {
		why += ", last auth failure: " + r.auth.LastFailure
	}
	return fmt.Errorf("%w (%s)", ErrNoUsableToken, why)
}
