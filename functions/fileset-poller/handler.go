package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"time"

	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/lambdaerr"
	"github.com/cfsync/cfsync/internal/lambdamain"
	"github.com/cfsync/cfsync/internal/metrics"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// FileStore is the part of the RDP client the poller uses.
type FileStore interface {
	FileSetPages(ctx context.Context, q rdp.FileSetQuery, from string) iter.Seq2[rdp.Page[rdp.FileSet], error]
	Packages(ctx context.Context, bucket string) iter.Seq2[rdp.Package, error]
	Files(ctx context.Context, fileSetID string) iter.Seq2[rdp.File, error]
}

var _ FileStore = (*rdp.Client)(nil)

// StateStore is the part of the state table the poller uses.
type StateStore interface {
	BatchGetFiles(ctx context.Context, ids []string) (map[string]*state.FileItem, int, error)
	ClaimFile(ctx context.Context, it state.FileItem) error
	GetFile(ctx context.Context, fileID string) (*state.FileItem, error)
	MarkQueued(ctx context.Context, fileID string) error
	MarkFailed(ctx context.Context, fileID, reason string) error
	GetWatermark(ctx context.Context, bucket, packageID string) (*state.Watermark, error)
	PutWatermark(ctx context.Context, w state.Watermark) error
	SavePass(ctx context.Context, bucket, packageID string, p state.Pass) error
	// The sweep of non-final files.
	QueryNonFinal(ctx context.Context, before time.Time, limit int, fn func(*state.FileItem) error) error
	RequeueFile(ctx context.Context, fileID string, seen time.Time) error
	GetUpload(ctx context.Context, fileID string) (*state.Upload, error)
	MarkNonFinal(ctx context.Context, fileID string) error
}

var _ StateStore = (*state.Table)(nil)

// Sender sends download-queue messages (10 per SendMessageBatch).
type Sender interface {
	SendBatch(ctx context.Context, msgs []queue.Message) (queue.SendResult, error)
}

var _ Sender = (*queue.Sender)(nil)

// Fixed limits (the tuning knobs' defaults are config.Poller's tags).
const (
	// flushFiles: file ids looked up per BatchGetItem (DynamoDB's limit).
	flushFiles = 100
	// deadlineReserve is kept free before the Lambda deadline to report.
	deadlineReserve = 5 * time.Second
	// listingReserve: no new page is fetched when less than this (or a
	// quarter of the invocation's time, if smaller) is left before the
	// deadline; the pass is saved and the next run resumes it.
	listingReserve = 30 * time.Second
)

// Handler is the fileset-poller. Build it with New.
type Handler struct {
	Deps
	Settings
}

// Deps are the poller's collaborators.
type Deps struct {
	Files FileStore
	State StateStore
	Queue Sender
	// FileSets records file-sets for the landing step; nil: not recorded.
	FileSets FileSetRecorder

	Logger  *slog.Logger      // nil: discard
	Metrics *metrics.Recorder // nil: none
	// Now is the clock (default time.Now).
	Now func() time.Time

	// AfterClaim is a test hook: it runs after a batch of files was claimed
	// (status CLAIMED) and before their messages are sent. An error aborts
	// the invocation on the spot, as a crash between claim and send would.
	AfterClaim func(ctx context.Context, target Target, msgs []queue.Message) error
}

// Settings are the poller's knobs, config.PollerKnobs: a loaded config's
// (tests: config.Defaults[config.Poller]()'s). New rejects a zero knob.
type Settings struct {
	config.PollerKnobs
}

// New returns a poller. Files, State and Queue are required, and the knobs
// must pass config.PollerKnobs' checks (no zero knob: the defaults are the
// tags').
func New(d Deps, s Settings) (*Handler, error) {
	if d.Files == nil || d.State == nil || d.Queue == nil {
		return nil, errors.New("fileset-poller: Files, State and Queue are required")
	}
	if err := config.Check(s.PollerKnobs); err != nil {
		return nil, fmt.Errorf("fileset-poller: %w", err)
	}
	return &Handler{Deps: d, Settings: s}, nil
}

// Result summarises an invocation (the Lambda response).
type Result struct {
	Full               bool            `json:"full"`
	Packages           []PackageResult `json:"packages"`
	Errors             []string        `json:"errors,omitempty"`
	PagesFetched       int             `json:"pagesFetched"`
	FileSetsSeen       int             `json:"fileSetsSeen"`
	FilesQueued        int             `json:"filesQueued"`
	FilesNearingExpiry int             `json:"filesNearingExpiry"`
	FilesFailed        int             `json:"filesFailed"`     // names SQS refuses + expired stale files
	Sweep              *SweepResult    `json:"sweep,omitempty"` // nil when the run had no time left to sweep
	DurationSeconds    float64         `json:"durationSeconds"`
}

// PackageResult is what one package's poll did.
type PackageResult struct {
	Subscription  string    `json:"subscription"` // bucket/packageId
	Full          bool      `json:"full"`
	Resumed       bool      `json:"resumed,omitempty"` // a pass paused by an earlier run
	Paused        bool      `json:"paused,omitempty"`  // stopped by the time budget; the next run resumes
	ModifiedSince time.Time `json:"modifiedSince,omitzero"`
	Pages         int       `json:"pages"`
	FileSets      int       `json:"fileSets"`      // distinct READY file-sets listed
	Files         int       `json:"files"`         // distinct files of those
	New           int       `json:"new"`           // files claimed by this poll
	Resent        int       `json:"resent"`        // files found CLAIMED (unsent) and sent again
	Queued        int       `json:"queued"`        // messages sent (new + resent)
	SendFailed    int       `json:"sendFailed"`    // messages not sent: left CLAIMED for the next poll
	NearingExpiry int       `json:"nearingExpiry"` // files not DONE whose file-set expires soon
	Failed        int       `json:"failed"`        // files FAILED because SQS refuses their name
	Watermark     time.Time `json:"watermark,omitzero"`
	Error         string    `json:"error,omitempty"`
}

// errAbort marks an error that ends the whole invocation (bad token, crash hook).
type errAbort struct{ err error }

func (e *errAbort) Error() string { return e.err.Error() }
func (e *errAbort) Unwrap() error { return e.err }

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now().UTC()
	}
	return time.Now().UTC()
}

// stopAt is when listings stop fetching pages: the deadline less
// listingReserve or a quarter of the time left, whichever is smaller.
// Zero (no budget) without a deadline.
func stopAt(ctx context.Context) time.Time {
	dl, ok := ctx.Deadline()
	if !ok {
		return time.Time{}
	}
	return dl.Add(-min(listingReserve, time.Until(dl)/4))
}

// Invoke implements lambda.Handler: the raw payload goes through Handle
// (see lambdaerr.Invoke).
func (h *Handler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	return lambdaerr.Invoke(ctx, payload, h.Handle)
}

// Handle runs one invocation. It polls every subscription the event selects,
// even when some fail, and returns an error naming each one that failed (the
// invocation then fails). A refused token (401 after the ring re-read) or
// an empty ring ends the invocation at once.
func (h *Handler) Handle(ctx context.Context, payload json.RawMessage) (*Result, error) {
	start := time.Now()
	log, end := lambdamain.StartInvocation(ctx, h.Logger, h.Metrics)
	defer end()
	ev, err := ParseEvent(payload)
	if err != nil {
		log.Error("bad event", "error", err.Error())
		return nil, lambdaerr.Malformed(err)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) > 2*deadlineReserve {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-deadlineReserve))
		defer cancel()
	}
	res := &Result{Full: ev.Full, Packages: []PackageResult{}}
	var errs []error
	fail := func(e error) {
		errs = append(errs, e)
		res.Errors = append(res.Errors, e.Error())
	}

	subs := ev.Subscriptions
	source := "event"
	if subs == nil {
		subs, source = h.Subscriptions, "SUBSCRIPTIONS"
	}
	if len(subs) == 0 {
		err := lambdaerr.Config(errors.New("no subscriptions: SUBSCRIPTIONS is empty and the event names none"))
		log.Error("nothing to poll", "error", err.Error())
		return nil, err
	}
	log.Info("poll started", "subscriptions", len(subs), "source", source, "full", ev.Full)

	h.pollSubscriptions(ctx, log, subs, ev.Full, fail, res)
	if err := h.sweepInto(ctx, log, res); err != nil {
		fail(err)
	}
	res.DurationSeconds = time.Since(start).Seconds()
	h.putMetrics(res, len(errs))
	attrs := []any{
		"packages", len(res.Packages), "pages", res.PagesFetched, "file_sets", res.FileSetsSeen,
		"files_queued", res.FilesQueued, "files_nearing_expiry", res.FilesNearingExpiry,
		"errors", len(errs), "seconds", res.DurationSeconds,
	}
	if len(errs) > 0 {
		err := fmt.Errorf("poll: %d error(s): %w", len(errs), errors.Join(errs...))
		log.Error("poll failed", append(attrs, "error", err.Error())...)
		return res, pollError(err, res, source == "event")
	}
	log.Info("poll done", attrs...)
	return res, nil
}

// badSubscription is a subscription that does not parse.
type badSubscription struct{ error }

func (b badSubscription) Unwrap() error { return b.error }

// pollError gives a failed poll its errorType: an Outage when an outage
// aborted it; for a subscription that does not parse, a MalformedEvent when
// the event named it, else (SUBSCRIPTIONS) a Configuration error; a
// PartialFailure when some package was polled all the same.
func pollError(err error, res *Result, fromEvent bool) error {
	var bad badSubscription
	switch {
	case isAbort(err):
		return lambdaerr.Unavailable(err)
	case errors.As(err, &bad) && fromEvent:
		return lambdaerr.Malformed(err)
	case errors.As(err, &bad):
		return lambdaerr.Config(err)
	}
	for _, p := range res.Packages {
		if p.Error == "" {
			return lambdaerr.Partial(err)
		}
	}
	return err
}

// pollSubscriptions polls every package the subscriptions name, each once,
// until an error aborts the invocation (an outage: see guardErr).
func (h *Handler) pollSubscriptions(ctx context.Context, log *slog.Logger, subs []string, full bool, fail func(error), res *Result) {
	seen := map[string]bool{}
	aborted := false
	stop := stopAt(ctx)
	for _, raw := range subs {
		if aborted {
			break
		}
		sub, err := ParseSubscription(raw)
		if err != nil {
			log.Error("bad subscription", "subscription", raw, "error", err.Error())
			fail(badSubscription{err})
			continue
		}
		targets := []Target{{Bucket: sub.Bucket, PackageID: sub.PackageID}}
		if sub.All {
			targets, err = h.resolvePackages(ctx, sub)
			if err != nil {
				log.Error("resolve packages failed", "subscription", sub.Raw, "error", err.Error())
				fail(err)
				if isAbort(err) {
					aborted = true
				}
				continue
			}
			log.Info("packages resolved", "subscription", sub.Raw, "packages", len(targets))
		}
		for _, t := range targets {
			if seen[t.key()] {
				continue
			}
			seen[t.key()] = true
			pr, err := h.pollPackage(ctx, log, t, full, stop)
			res.add(pr)
			if err != nil {
				fail(err)
				if isAbort(err) {
					aborted = true
					break
				}
			}
		}
	}
}

// add counts one package's poll in the invocation's result.
func (res *Result) add(pr PackageResult) {
	res.Packages = append(res.Packages, pr)
	res.PagesFetched += pr.Pages
	res.FileSetsSeen += pr.FileSets
	res.FilesQueued += pr.Queued
	res.FilesNearingExpiry += pr.NearingExpiry
	res.FilesFailed += pr.Failed
}

// sweepInto sweeps the non-final files (see sweep) unless the invocation
// has no time left, and records the outcome in res.
func (h *Handler) sweepInto(ctx context.Context, log *slog.Logger, res *Result) error {
	if ctx.Err() != nil {
		return nil
	}
	sr, err := h.sweep(ctx, log)
	res.Sweep = &sr
	res.FilesFailed += sr.Expired
	if err != nil {
		log.Error("sweep failed", "error", err.Error())
	}
	return err
}

func isAbort(err error) bool {
	var a *errAbort
	return errors.As(err, &a)
}

// guardErr turns outages into aborts: no usable token (every further RDP
// call would fail the same way, and report the same token again), and RDP
// rate limiting that outlasted the client's retries (more requests only
// prolong it, and the limit is the account's). A server error fails only
// its package. Either way the run fails; what was listed stays claimed and
// sent, the pass keeps its cursor, and the next run catches up.
func guardErr(err error) error {
	if err == nil || isAbort(err) {
		return err
	}
	if errors.Is(err, rdp.ErrUnauthorized) || errors.Is(err, tokenring.ErrNoValidToken) || errors.Is(err, rdp.ErrRateLimited) {
		return &errAbort{err}
	}
	return err
}

func (h *Handler) putMetrics(res *Result, errs int) {
	m := h.Metrics
	if m == nil {
		return
	}
	m.Add("FileSetsSeen", float64(res.FileSetsSeen))
	m.Add("FilesQueued", float64(res.FilesQueued))
	m.Add("PagesFetched", float64(res.PagesFetched))
	m.Add("FilesNearingExpiry", float64(res.FilesNearingExpiry))
	m.Add("PollErrors", float64(errs))
	// FilesFailed (dimension StateTable) is the name the downloader uses
	// too: one metric and one alarm metric for both functions' FAILED files.
	m.Add("FilesFailed", float64(res.FilesFailed))
	if res.Sweep != nil {
		m.Add("FilesResent", float64(res.Sweep.Resent))
		m.Put("OldestNonFinalAgeSeconds", metrics.Seconds, res.Sweep.OldestAgeSeconds)
		m.Add("FilesStuck", float64(res.Sweep.Stuck))
	}
	m.Put("PollSeconds", metrics.Seconds, res.DurationSeconds)
}

// resolvePackages lists the packages of a bucket/* subscription.
func (h *Handler) resolvePackages(ctx context.Context, sub Subscription) ([]Target, error) {
	var targets []Target
	seen := map[string]bool{}
	for p, err := range h.Files.Packages(ctx, sub.Bucket) {
		if err != nil {
			return nil, fmt.Errorf("subscription %q: %w", sub.Raw, guardErr(err))
		}
		if p.PackageID == "" || strings.ContainsAny(p.PackageID, "/?#") {
			return nil, fmt.Errorf(`subscription %q: list packages: malformed package: field "packageId" is %q`, sub.Raw, p.PackageID)
		}
		if !seen[p.PackageID] {
			seen[p.PackageID] = true
			targets = append(targets, Target{Bucket: sub.Bucket, PackageID: p.PackageID})
		}
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("subscription %q: bucket %q: no package visible to this account (unknown bucket?)", sub.Raw, sub.Bucket)
	}
	return targets, nil
}
