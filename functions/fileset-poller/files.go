package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/cfsync/cfsync/internal/claim"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// fileRef is one file of a file-set: its id and, when it came from
// /files?filesetId=, its name and size.
type fileRef struct {
	id   string
	name string
	size *int64
	md5  string // only when the listing gives one (no public RDP sample shows it)
}

type fileSetFiles struct {
	fs    rdp.FileSet
	files []fileRef
}

// embeddedComplete: the file-set carries every file id itself. A `files`
// array shorter than `numFiles` is not trusted (the rest are listed).
func embeddedComplete(fs *rdp.FileSet) bool {
	return len(fs.Files) > 0 && len(fs.Files) >= fs.NumFiles
}

// describe finds the files of each file-set. /files?filesetId= (which gives
// names and sizes for the queue message) is asked only for a file-set with
// a file not yet in the state table, or whose embedded list is incomplete:
// a full reconciliation of known file-sets costs no /files request.
func (p *poll) describe(ctx context.Context, sets []rdp.FileSet) ([]fileSetFiles, error) {
	var embedded []string
	for i := range sets {
		if embeddedComplete(&sets[i]) {
			embedded = append(embedded, sets[i].Files...)
		}
	}
	known, err := p.lookup(ctx, embedded)
	if err != nil {
		return nil, err
	}
	out := make([]fileSetFiles, 0, len(sets))
	for _, fs := range sets {
		ff := fileSetFiles{fs: fs}
		for _, id := range fs.Files {
			ff.files = append(ff.files, fileRef{id: id})
		}
		allKnown := embeddedComplete(&fs)
		for _, id := range fs.Files {
			allKnown = allKnown && known[id] != nil
		}
		if !allKnown && (fs.NumFiles > 0 || len(fs.Files) > 0) {
			if err := p.listFiles(ctx, &ff); err != nil {
				return nil, err
			}
		}
		out = append(out, ff)
	}
	return out, nil
}

// listFiles merges /files?filesetId= into ff: names and sizes for the ids it
// has, and the ids the file-set left out. A 404 for a file-set that embeds
// every id keeps the ids (the downloader then finds name and size itself).
func (p *poll) listFiles(ctx context.Context, ff *fileSetFiles) error {
	at := map[string]int{}
	for i, f := range ff.files {
		at[f.id] = i
	}
	var listed []fileRef
	for f, err := range p.h.Files.Files(ctx, ff.fs.ID) {
		if err != nil {
			if errors.Is(err, rdp.ErrNotFound) && embeddedComplete(&ff.fs) {
				p.log.Warn("file listing not found; using the file-set's own file ids", "file_set_id", ff.fs.ID, "error", err.Error())
				return nil
			}
			return fmt.Errorf("file-set %s: %w", ff.fs.ID, err)
		}
		size := f.Size
		listed = append(listed, fileRef{id: f.ID, name: f.FileName, size: &size, md5: f.MD5})
	}
	for _, f := range listed {
		if i, ok := at[f.id]; ok {
			ff.files[i] = f
			continue
		}
		at[f.id] = len(ff.files)
		ff.files = append(ff.files, f)
	}
	return nil
}

// lookup returns the state items of ids (nil: unknown), reading only the
// ids this page has not read yet (one BatchGetItem per 100).
func (p *poll) lookup(ctx context.Context, ids []string) (map[string]*state.FileItem, error) {
	var missing []string
	for _, id := range ids {
		if _, ok := p.looked[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		found, _, err := p.h.State.BatchGetFiles(ctx, missing)
		if err != nil {
			return nil, err
		}
		for _, id := range missing {
			p.looked[id] = found[id]
		}
	}
	out := make(map[string]*state.FileItem, len(ids))
	for _, id := range ids {
		if it := p.looked[id]; it != nil {
			out[id] = it
		}
	}
	return out, nil
}

type entry struct {
	msg  queue.Message
	fs   *rdp.FileSet
	size int64
}

func (p *poll) nearExpiry(fs *rdp.FileSet) bool {
	return !fs.AvailableTo.IsZero() && fs.AvailableTo.Sub(p.now) < p.h.ExpiryWarning
}

// fileTTL is the item's expiry: claim.TTL with FILE_TTL_MARGIN.
func (p *poll) fileTTL(fs *rdp.FileSet) int64 {
	return claim.TTL(fs.AvailableTo, p.now, p.h.FileTTLMargin)
}

// entries builds the queue messages of a batch's files not seen before in
// this pass. Files whose message SQS would refuse are returned apart.
func (p *poll) entries(batch []fileSetFiles) (ok, refused []entry) {
	for i := range batch {
		fs := &batch[i].fs
		for _, f := range batch[i].files {
			if p.seenFiles[f.id] {
				continue
			}
			p.seenFiles[f.id] = true
			m := queue.Message{FileID: f.id, FileSetID: fs.ID, FileSetName: fs.Name, Bucket: fs.BucketName,
				PackageID: fs.PackageID, FileName: f.name, Size: f.size, MD5: f.md5}
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
			e := entry{msg: m, fs: fs}
			if f.size != nil {
				e.size = *f.size
			}
			if queue.Refuses(m.Encode()) != "" {
				refused = append(refused, e)
				continue
			}
			ok = append(ok, e)
		}
	}
	return ok, refused
}

// flush looks the batch's files up (one BatchGetItem per 100), claims the
// unknown ones, sends new and still-CLAIMED ones, and marks the sent QUEUED.
func (p *poll) flush(ctx context.Context, batch []fileSetFiles) error {
	h := p.h
	entries, refused := p.entries(batch)
	p.files += len(entries) + len(refused)
	if len(entries)+len(refused) == 0 {
		return nil
	}
	ids := make([]string, 0, len(entries)+len(refused))
	for _, e := range append(entries, refused...) {
		ids = append(ids, e.msg.FileID)
	}
	known, err := p.lookup(ctx, ids)
	if err != nil {
		return err
	}
	if err := p.failRefused(ctx, refused, known); err != nil {
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
		if it.NonFinal == "" && it.Status != state.StatusDone && it.Status != state.StatusFailed {
			// Written before the sparse index existed: add it, so the sweep sees it.
			if err := h.State.MarkNonFinal(ctx, it.FileID); err != nil {
				return err
			}
		}
		if it.Status != state.StatusDone && p.nearExpiry(e.fs) {
			notDone[e.fs]++
		}
	}
	if err := p.recordFileSets(ctx, batch, fresh); err != nil {
		return err
	}
	more, err := p.claim(ctx, fresh, notDone)
	send = append(send, more...)
	for fs, n := range notDone {
		p.nearing += n
		p.log.Error("files nearing expiry: not yet downloaded and the file-set leaves RDP soon",
			"file_set_id", fs.ID, "file_set_name", fs.Name, "available_to", fs.AvailableTo, "files_not_done", n)
	}
	if serr := p.send(ctx, send); serr != nil {
		return serr
	}
	return err
}

// claim claims the new files (conditional puts, in parallel) and returns the
// messages to send. A lost race means another path claimed the file: it is
// sent too if it is still CLAIMED. The first claim error is returned after
// the others were tried.
func (p *poll) claim(ctx context.Context, fresh []entry, notDone map[*rdp.FileSet]int) ([]queue.Message, error) {
	items := make([]state.FileItem, len(fresh))
	for i, e := range fresh {
		items[i] = claim.Item(e.msg, e.size, e.fs.AvailableTo, p.fileTTL(e.fs))
	}
	var send []queue.Message
	var claimErr error
	for i, r := range claim.All(ctx, p.h.State, items, claim.Concurrency) {
		if r.Err != nil {
			claimErr = cmpErr(claimErr, r.Err)
			continue
		}
		if r.Send() {
			send = append(send, fresh[i].msg)
			if r.Mine {
				p.claimd++
			} else {
				p.resent++
			}
		}
		if r.Status != state.StatusDone && p.nearExpiry(fresh[i].fs) {
			notDone[fresh[i].fs]++
		}
	}
	return send, claimErr
}

func cmpErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

// send sends msgs (after the AfterClaim test hook) and marks the sent QUEUED.
func (p *poll) send(ctx context.Context, send []queue.Message) error {
	if len(send) == 0 {
		return nil
	}
	if p.h.AfterClaim != nil {
		if err := p.h.AfterClaim(ctx, p.target, send); err != nil {
			return &errAbort{fmt.Errorf("after claim (before send): %w", err)}
		}
	}
	sent, err := claim.Send(ctx, p.h.State, p.h.Queue, send, claim.Concurrency)
	p.queued += len(sent.Sent)
	p.sendFailed += len(sent.Failed)
	if len(sent.Failed) > 0 {
		p.log.Error("messages not sent; the files stay CLAIMED for the next poll", "failed", len(sent.Failed), "sent", len(sent.Sent))
	}
	logMarkFailed(p.log, sent)
	if err != nil {
		return fmt.Errorf("send messages: %w", err)
	}
	return nil
}
