package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// poll is one package's poll: it works on the package's listing pass (a new
// one, or the one a previous run paused) page by page. Counts are cumulative
// over the token guard's retries; a retry resumes after the last page done.
type poll struct {
	h      *Handler
	log    *slog.Logger
	target Target
	wm     *state.Watermark
	pass   state.Pass
	now    time.Time
	stopAt time.Time // stop fetching pages after this (real clock); zero: no budget

	seenSets   map[string]bool
	seenFiles  map[string]bool
	looked     map[string]*state.FileItem // the page's file items read so far (nil: unknown)
	fileSets   int
	files      int
	sendFailed int
	nearing    int
	rejected   int // files whose names SQS rejects: FAILED by this poll
	malformed  []error
	pages      int // pages fetched by this run
	claimd     int
	resent     int
	queued     int
	paused     bool // stopped by the time budget: resumes next run
}

// newPass starts the package's next listing pass: full when asked, when no
// pass ever completed, or every FullEvery-th poll; otherwise incremental,
// from the watermark less the overlap. A paused pass is resumed instead,
// unless a full pass is asked for and the paused one is incremental.
func (h *Handler) newPass(wm *state.Watermark, forceFull bool, now time.Time) (state.Pass, bool) {
	if p := wm.Pass; p != nil && (p.Full || !forceFull) {
		return *p, true
	}
	full := forceFull || wm.Modified.IsZero() || wm.PollsSinceFull >= h.FullReconcileEvery-1
	p := state.Pass{Full: full, StartedAt: now}
	if !full {
		p.Since = wm.Modified.Add(-h.PollOverlap)
	}
	return p, false
}

// pollPackage polls one package: list its READY file-sets (all of them, or
// those modified since the watermark less the overlap), claim and send the
// files not yet known, re-send the ones left CLAIMED, and, when the pass
// completes with every message sent, advance the watermark (see complete).
// A pass stopped by the time budget is saved and resumed next run.
func (h *Handler) pollPackage(ctx context.Context, log *slog.Logger, t Target, forceFull bool, stopAt time.Time) (PackageResult, error) {
	started := time.Now()
	pr := PackageResult{Subscription: t.String()}
	log = log.With("subscription", t.String())
	failed := func(err error) (PackageResult, error) {
		err = fmt.Errorf("subscription %q: %w", t.String(), err)
		pr.Error = err.Error()
		log.Error("package poll failed", "full", pr.Full, "pages", pr.Pages, "file_sets", pr.FileSets,
			"new", pr.New, "resent", pr.Resent, "queued", pr.Queued, "send_failed", pr.SendFailed,
			"seconds", time.Since(started).Seconds(), "error", err.Error())
		return pr, err
	}

	wm, err := h.State.GetWatermark(ctx, t.Bucket, t.PackageID)
	if err != nil {
		return failed(err)
	}
	p := &poll{h: h, log: log, target: t, wm: wm, now: h.now(), stopAt: stopAt,
		seenSets: map[string]bool{}, seenFiles: map[string]bool{}}
	var resumed bool
	p.pass, resumed = h.newPass(wm, forceFull, p.now)
	p.pass.Runs++
	pr.Full, pr.ModifiedSince, pr.Watermark, pr.Resumed = p.pass.Full, p.pass.Since, wm.Modified, resumed

	err = p.run(ctx)
	pr.Pages, pr.FileSets, pr.Files, pr.Failed = p.pages, p.fileSets, p.files, p.rejected
	pr.New, pr.Resent, pr.Queued, pr.SendFailed, pr.NearingExpiry = p.claimd, p.resent, p.queued, p.sendFailed, p.nearing
	if err != nil {
		return failed(guardErr(err))
	}
	if p.paused {
		pr.Paused = true
		log.Info("listing paused by its time budget; the next run resumes it", "full", p.pass.Full,
			"pages", pr.Pages, "pass_pages", p.pass.Pages, "pass_runs", p.pass.Runs, "queued", pr.Queued)
		if p.sendFailed > 0 || len(p.malformed) > 0 {
			return failed(errors.Join(append([]error{fmt.Errorf("%d message(s) not sent (the files stay CLAIMED)", p.sendFailed)}, p.malformed...)...))
		}
		return pr, nil
	}
	if err := p.problems(ctx); err != nil {
		return failed(err)
	}
	next, err := p.complete(ctx)
	if err != nil {
		return failed(err)
	}
	pr.Watermark = next
	log.Info("package polled", "full", p.pass.Full, "modified_since", p.pass.Since, "pages", pr.Pages,
		"file_sets", pr.FileSets, "files", pr.Files, "new", pr.New, "resent", pr.Resent, "queued", pr.Queued,
		"failed", pr.Failed, "nearing_expiry", pr.NearingExpiry, "watermark", next, "seconds", time.Since(started).Seconds())
	return pr, nil
}

// problems is what keeps a completed pass from advancing the watermark.
// The pass ends anyway: the next one lists the same file-sets again (the
// watermark did not move), and re-sends the files left CLAIMED.
func (p *poll) problems(ctx context.Context) error {
	var problems []error
	if p.sendFailed > 0 {
		problems = append(problems, fmt.Errorf("%d message(s) not sent: the files stay CLAIMED and the next poll sends them", p.sendFailed))
	}
	problems = append(problems, p.malformed...)
	if n := p.pass.Problems; n > 0 {
		problems = append(problems, fmt.Errorf("%d problem(s) in earlier runs of this listing pass (see their logs): the watermark stays", n))
	}
	if len(problems) == 0 {
		return nil
	}
	w := state.Watermark{Bucket: p.target.Bucket, PackageID: p.target.PackageID, LastPollAt: p.now, PollsSinceFull: p.wm.PollsSinceFull}
	if err := p.h.State.PutWatermark(ctx, w); err != nil {
		problems = append(problems, err)
	}
	return errors.Join(problems...)
}

// complete ends the pass and moves the watermark to the earlier of the
// pass's start and the largest `modified` it listed. Never later than the
// start: the listing is in id order, so a file-set published while the pass
// paged (over one run or several) can land behind the cursor, with a
// `modified` after the start. Never later than what was listed: RDP stamps
// `modified` with its own clock, which may run behind ours. A pass that
// listed nothing leaves the watermark where it was.
func (p *poll) complete(ctx context.Context) (time.Time, error) {
	next := p.wm.Modified
	cand := p.pass.StartedAt
	if m := p.pass.MaxModified; !m.IsZero() && m.Before(cand) {
		cand = m
	}
	if !p.pass.MaxModified.IsZero() && cand.After(next) {
		next = cand
	}
	w := state.Watermark{Bucket: p.target.Bucket, PackageID: p.target.PackageID, Modified: next, LastPollAt: p.now,
		PollsSinceFull: p.wm.PollsSinceFull + 1}
	if p.pass.Full {
		w.PollsSinceFull, w.LastFullAt = 0, p.now
	}
	return next, p.h.State.PutWatermark(ctx, w)
}

// run lists the pass's pages from its cursor, processing each page before
// fetching the next, until the listing ends or the time budget is spent.
// The cursor is saved when the run pauses or fails, and every
// savePassEvery pages (a crash re-lists at most that many pages).
func (p *poll) run(ctx context.Context) error {
	t := p.target
	q := rdp.FileSetQuery{Bucket: t.Bucket, PackageID: t.PackageID, PageSize: p.h.PollPageSize, ModifiedSince: p.pass.Since, Status: rdp.StatusReady}
	if p.budgetSpent() {
		return p.pause(ctx)
	}
	first, unsaved := true, 0
	for pg, err := range p.h.Files.FileSetPages(ctx, q, p.pass.Cursor) {
		if err != nil && first && p.pass.Cursor != "" && cursorRejected(err) {
			// A saved cursor the API no longer takes: list the pass again
			// from page 1 (its start time stays: still safe).
			p.log.Warn("saved listing cursor refused; the pass starts again from page 1", "error", err.Error())
			p.pass.Cursor = ""
			return p.run(ctx)
		}
		if err == nil {
			p.pages++
			p.pass.Pages++
			err = p.page(ctx, pg.Items)
		}
		if err != nil {
			return p.keepProgress(ctx, unsaved, err)
		}
		first = false
		p.pass.Cursor = pg.NextLink
		if pg.NextLink == "" {
			break
		}
		if unsaved++; unsaved >= savePassEvery {
			if err := p.savePass(ctx); err != nil {
				return err
			}
			unsaved = 0
		}
		if p.budgetSpent() {
			return p.pause(ctx)
		}
	}
	if p.pass.Full && p.fileSets == 0 && p.pass.Pages == p.pages { // the whole pass, in this run
		return p.checkPackage(ctx)
	}
	return nil
}

// keepProgress saves the cursor of the pages done before a failure (best
// effort: the failure is what the run reports), so the next run resumes
// after them.
func (p *poll) keepProgress(ctx context.Context, unsaved int, err error) error {
	if unsaved > 0 {
		if serr := p.savePass(ctx); serr != nil {
			p.log.Warn("listing cursor not saved; the next run lists those pages again", "error", serr.Error())
		}
	}
	return err
}

func (p *poll) budgetSpent() bool { return !p.stopAt.IsZero() && !time.Now().Before(p.stopAt) }

// savePassEvery: pages between two saves of a running pass's cursor.
const savePassEvery = 10

// pause records a pass that this run has no time to start or continue.
func (p *poll) pause(ctx context.Context) error {
	p.paused = true
	return p.savePass(ctx)
}

// savePass saves the pass, its problem count including this run's so far.
func (p *poll) savePass(ctx context.Context) error {
	pass := p.pass
	pass.Problems += p.sendFailed + len(p.malformed)
	return p.h.State.SavePass(ctx, p.target.Bucket, p.target.PackageID, pass)
}

// cursorRejected: the API answered a saved @nextLink with a client error
// (an expired or unknown skipToken), not an outage or a token problem.
func cursorRejected(err error) bool {
	var ae *rdp.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.StatusCode {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusGone:
		return true
	}
	return false
}

// page processes the file-sets of one page: it finds their files (with
// names and sizes where any is new), then claims and sends in batches of
// about flushFiles files.
func (p *poll) page(ctx context.Context, items []rdp.FileSet) error {
	var sets []rdp.FileSet
	var malformed []error
	onPage := map[string]bool{}
	for _, fs := range items {
		// The query asks for READY only; a file-set in another state (the
		// API ignoring the filter) is not downloadable yet.
		if !strings.EqualFold(fs.Status, rdp.StatusReady) {
			continue
		}
		if fs.ID == "" {
			malformed = append(malformed, fmt.Errorf(`list file-sets: malformed file-set %q: field "id" is empty`, fs.Name))
			continue
		}
		if p.seenSets[fs.ID] || onPage[fs.ID] { // repeated across or within pages
			continue
		}
		onPage[fs.ID] = true
		sets = append(sets, fs)
	}
	p.looked = map[string]*state.FileItem{}
	described, err := p.describe(ctx, sets)
	if err != nil {
		return err
	}
	var batch []fileSetFiles
	n := 0
	for i, ff := range described {
		batch = append(batch, ff)
		n += len(ff.files)
		if n >= flushFiles || i == len(described)-1 {
			if err := p.flush(ctx, batch); err != nil {
				return err
			}
			batch, n = nil, 0
		}
	}
	for _, fs := range sets {
		p.seenSets[fs.ID] = true
		if fs.Modified.After(p.pass.MaxModified) {
			p.pass.MaxModified = fs.Modified
		}
	}
	p.fileSets += len(sets)
	p.malformed = append(p.malformed, malformed...)
	return nil
}

// checkPackage explains an empty full listing: an unknown bucket or a
// package the account does not see is an error; an empty package is not.
func (p *poll) checkPackage(ctx context.Context) error {
	t := p.target
	found := false
	for pkg, err := range p.h.Files.Packages(ctx, t.Bucket) {
		if err != nil {
			return fmt.Errorf("no file-sets listed; checking the package: %w", err)
		}
		found = true
		if pkg.PackageID == t.PackageID {
			return nil
		}
	}
	if !found {
		return fmt.Errorf("bucket %q: no package visible to this account (unknown bucket?)", t.Bucket)
	}
	return fmt.Errorf("package %q not found in bucket %q", t.PackageID, t.Bucket)
}
