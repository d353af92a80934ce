package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// poll is one package's poll. Listing state is reset on each attempt (the
// token guard may run the listing twice); what was claimed and sent stays
// counted.
type poll struct {
	h      *Handler
	log    *slog.Logger
	target Target
	full   bool
	since  time.Time
	now    time.Time

	// per attempt
	seenSets    map[string]bool
	seenFiles   map[string]bool
	maxModified time.Time
	fileSets    int
	files       int
	sendFailed  int
	nearing     int
	malformed   []error

	// cumulative
	pages  int
	claimd int
	resent int
	queued int
}

func (p *poll) reset() {
	p.seenSets, p.seenFiles = map[string]bool{}, map[string]bool{}
	p.maxModified = time.Time{}
	p.fileSets, p.files, p.sendFailed, p.nearing = 0, 0, 0, 0
	p.malformed = nil
}

// pollPackage polls one package: list its READY file-sets (all of them, or
// those modified since the watermark minus the overlap), claim and send the
// files not yet known, re-send the ones left CLAIMED, and advance the
// watermark only if every message of the package was sent.
func (h *Handler) pollPackage(ctx context.Context, log *slog.Logger, t Target, forceFull bool) (PackageResult, error) {
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
	full := forceFull || wm.Modified.IsZero() || wm.PollsSinceFull >= h.fullEvery()-1
	p := &poll{h: h, log: log, target: t, full: full, now: h.now()}
	if !full {
		p.since = wm.Modified.Add(-h.overlap())
	}
	pr.Full, pr.ModifiedSince, pr.Watermark = full, p.since, wm.Modified

	err = h.Tokens.Do(ctx, func(ctx context.Context) error {
		p.reset()
		return p.run(ctx)
	})
	pr.Pages, pr.FileSets, pr.Files = p.pages, p.fileSets, p.files
	pr.New, pr.Resent, pr.Queued, pr.SendFailed, pr.NearingExpiry = p.claimd, p.resent, p.queued, p.sendFailed, p.nearing
	if err != nil {
		return failed(guardErr(err))
	}
	var problems []error
	if p.sendFailed > 0 {
		problems = append(problems, fmt.Errorf("%d message(s) not sent: the files stay CLAIMED and the next poll sends them", p.sendFailed))
	}
	problems = append(problems, p.malformed...)
	if len(problems) > 0 {
		return failed(errors.Join(problems...))
	}

	// Every file listed is claimed and sent: the watermark may advance. It
	// never passes this poll's start (a file-set stamped in the future by a
	// skewed clock must not hide the ones that follow).
	next := wm.Modified
	if cand := p.maxModified; !cand.IsZero() {
		if cand.After(p.now) {
			cand = p.now
		}
		if cand.After(next) {
			next = cand
		}
	}
	w := state.Watermark{Bucket: t.Bucket, PackageID: t.PackageID, Modified: next, LastPollAt: p.now, PollsSinceFull: wm.PollsSinceFull + 1}
	if full {
		w.PollsSinceFull, w.LastFullAt = 0, p.now
	}
	if err := h.State.PutWatermark(ctx, w); err != nil {
		return failed(err)
	}
	pr.Watermark = next
	log.Info("package polled", "full", full, "modified_since", p.since, "pages", pr.Pages, "file_sets", pr.FileSets,
		"files", pr.Files, "new", pr.New, "resent", pr.Resent, "queued", pr.Queued,
		"nearing_expiry", pr.NearingExpiry, "watermark", next, "seconds", time.Since(started).Seconds())
	return pr, nil
}

// run lists the file-sets and processes them in batches of about 100 files.
func (p *poll) run(ctx context.Context) error {
	t := p.target
	q := rdp.FileSetQuery{Bucket: t.Bucket, PackageID: t.PackageID, PageSize: p.h.pageSize(), ModifiedSince: p.since, Status: rdp.StatusReady}
	var batch []fileSetFiles
	n := 0
	for fs, err := range p.h.Files.FileSetsWithPages(ctx, q, func() { p.pages++ }) {
		if err != nil {
			return err
		}
		// The query asks for READY only; a file-set in another state (the
		// API ignoring the filter) is not downloadable yet.
		if !strings.EqualFold(fs.Status, rdp.StatusReady) {
			continue
		}
		if fs.ID == "" {
			p.malformed = append(p.malformed, fmt.Errorf(`list file-sets: malformed file-set %q: field "id" is empty`, fs.Name))
			continue
		}
		if p.seenSets[fs.ID] { // repeated across pages
			continue
		}
		p.seenSets[fs.ID] = true
		p.fileSets++
		if fs.Modified.After(p.maxModified) {
			p.maxModified = fs.Modified
		}
		ff := fileSetFiles{fs: fs, ids: fs.Files}
		if len(fs.Files) == 0 && fs.NumFiles > 0 {
			// The listing left the ids out: ask /files (which also gives sizes).
			if err := p.listFiles(ctx, &ff); err != nil {
				return err
			}
		}
		batch = append(batch, ff)
		n += len(ff.ids)
		if n >= flushFiles {
			if err := p.flush(ctx, batch); err != nil {
				return err
			}
			batch, n = nil, 0
		}
	}
	if len(batch) > 0 {
		if err := p.flush(ctx, batch); err != nil {
			return err
		}
	}
	if p.full && p.fileSets == 0 {
		return p.checkPackage(ctx)
	}
	return nil
}

type fileSetFiles struct {
	fs    rdp.FileSet
	ids   []string
	sizes map[string]int64
}

func (p *poll) listFiles(ctx context.Context, ff *fileSetFiles) error {
	ff.sizes = map[string]int64{}
	for f, err := range p.h.Files.Files(ctx, ff.fs.ID) {
		if err != nil {
			return fmt.Errorf("file-set %s: %w", ff.fs.ID, err)
		}
		ff.ids = append(ff.ids, f.ID)
		ff.sizes[f.ID] = f.Size
	}
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

type entry struct {
	msg  queue.Message
	fs   *rdp.FileSet
	size int64
}

func (p *poll) nearExpiry(fs *rdp.FileSet) bool {
	return !fs.AvailableTo.IsZero() && fs.AvailableTo.Sub(p.now) < p.h.expiryWarning()
}

// flush looks the batch's files up (one BatchGetItem per 100), claims the
// unknown ones, sends new and still-CLAIMED ones, and marks the sent QUEUED.
func (p *poll) flush(ctx context.Context, batch []fileSetFiles) error {
	h := p.h
	var entries []entry
	var ids []string
	for i := range batch {
		fs := &batch[i].fs
		for _, id := range batch[i].ids {
			if p.seenFiles[id] {
				continue
			}
			p.seenFiles[id] = true
			m := queue.Message{FileID: id, FileSetID: fs.ID, FileSetName: fs.Name, Bucket: fs.BucketName, PackageID: fs.PackageID}
			if m.Bucket == "" {
				m.Bucket = p.target.Bucket
			}
			if m.PackageID == "" {
				m.PackageID = p.target.PackageID
			}
			if err := m.Validate(); err != nil {
				p.malformed = append(p.malformed, fmt.Errorf("list file-sets: malformed file-set %s: %w", fs.ID, err))
				continue
			}
			entries = append(entries, entry{msg: m, fs: fs, size: batch[i].sizes[id]})
			ids = append(ids, id)
		}
	}
	p.files += len(entries)
	if len(entries) == 0 {
		return nil
	}
	known, _, err := h.State.BatchGetFiles(ctx, ids)
	if err != nil {
		return err
	}
	notDone := map[*rdp.FileSet]int{}
	var send []queue.Message
	var fresh []entry
	for _, e := range entries {
		it := known[e.msg.FileID]
		if it == nil {
			fresh = append(fresh, e)
			continue
		}
		if it.Status == state.StatusClaimed {
			send = append(send, e.msg)
			p.resent++
		}
		if it.Status != state.StatusDone && p.nearExpiry(e.fs) {
			notDone[e.fs]++
		}
	}

	if err := p.recordFileSets(ctx, batch, fresh); err != nil {
		return err
	}
	// Claim the new files (conditional puts, in parallel). A lost race means
	// another poll claimed it: send it too if it is still CLAIMED.
	type outcome struct {
		send, near bool
		resent     bool
		err        error
	}
	out := make([]outcome, len(fresh))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(writeConcurrency)
	for i, e := range fresh {
		g.Go(func() error {
			it := state.FileItem{
				FileID: e.msg.FileID, FileSetID: e.msg.FileSetID, FileSetName: e.msg.FileSetName,
				Bucket: e.msg.Bucket, PackageID: e.msg.PackageID, Size: e.size, AvailableTo: e.fs.AvailableTo,
			}
			if !e.fs.AvailableTo.IsZero() {
				it.TTL = e.fs.AvailableTo.Add(h.ttlMargin()).Unix()
			}
			err := h.State.ClaimFile(gctx, it)
			switch {
			case err == nil:
				out[i] = outcome{send: true, near: p.nearExpiry(e.fs)}
			case errors.Is(err, state.ErrConflict):
				cur, gerr := h.State.GetFile(gctx, e.msg.FileID)
				if gerr != nil {
					out[i].err = gerr
					return nil
				}
				out[i] = outcome{send: cur.Status == state.StatusClaimed, resent: true,
					near: cur.Status != state.StatusDone && p.nearExpiry(e.fs)}
			default:
				out[i].err = err
			}
			return nil
		})
	}
	_ = g.Wait()
	var claimErr error
	for i, o := range out {
		if o.err != nil {
			if claimErr == nil {
				claimErr = o.err
			}
			continue
		}
		if o.send {
			send = append(send, fresh[i].msg)
			if o.resent {
				p.resent++
			} else {
				p.claimd++
			}
		}
		if o.near {
			notDone[fresh[i].fs]++
		}
	}
	for fs, n := range notDone {
		p.nearing += n
		p.log.Error("files nearing expiry: not yet downloaded and the file-set leaves RDP soon",
			"file_set_id", fs.ID, "file_set_name", fs.Name, "available_to", fs.AvailableTo, "files_not_done", n)
	}

	if len(send) > 0 && h.AfterClaim != nil {
		if err := h.AfterClaim(ctx, p.target, send); err != nil {
			return &errAbort{fmt.Errorf("after claim (before send): %w", err)}
		}
	}
	if len(send) > 0 {
		sr, err := h.Queue.SendBatch(ctx, send)
		p.queued += len(sr.Sent)
		p.sendFailed += len(sr.Failed)
		if len(sr.Failed) > 0 {
			p.log.Error("messages not sent; the files stay CLAIMED for the next poll", "failed", len(sr.Failed), "sent", len(sr.Sent))
		}
		p.markQueued(ctx, sr.Sent)
		if err != nil {
			return fmt.Errorf("send messages: %w", err)
		}
	}
	if claimErr != nil {
		return claimErr
	}
	return nil
}

// markQueued moves sent files from CLAIMED to QUEUED. A failure only costs a
// duplicate message later (the file stays CLAIMED and is sent again).
func (p *poll) markQueued(ctx context.Context, sent []queue.Message) {
	if len(sent) == 0 {
		return
	}
	errs := make([]error, len(sent))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(writeConcurrency)
	for i, m := range sent {
		g.Go(func() error {
			errs[i] = p.h.State.MarkQueued(gctx, m.FileID)
			return nil
		})
	}
	_ = g.Wait()
	failed := 0
	var first error
	for _, err := range errs {
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	if failed > 0 {
		p.log.Warn("sent files not marked QUEUED; the next poll may send them again", "files", failed, "error", first.Error())
	}
}
