package notify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cfsync/cfsync/internal/claim"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
)

// StateStore is the part of the state table the hand-off uses: the same
// conditional claim the poller makes (internal/claim), so a file is claimed
// once whichever path sees it first.
type StateStore = claim.Store

// Sender sends download-queue messages.
type Sender = claim.Sender

// Handoff queues a notified file-set's files for download through the
// claim-then-queue step the poller uses (internal/claim).
type Handoff struct {
	State     StateStore
	Queue     Sender
	TTLMargin time.Duration    // a file item's TTL: claim.TTL(availableTo, now, TTLMargin)
	Now       func() time.Time // the clock (nil: time.Now)
}

// HandoffResult counts what one file-set's hand-off did.
type HandoffResult struct {
	Claimed int // new files claimed by this call
	Resent  int // files already CLAIMED (by the poller or an earlier delivery) sent again
	Known   int // files already QUEUED or further: nothing to do
	Queued  int // messages sent
}

// Enqueue claims each file not yet known and sends the ones it claimed or
// found still CLAIMED, then marks the sent QUEUED. It returns an error if any
// file could not be claimed or sent: the caller must then keep the
// notification (not delete it) so it is handled again; files stay CLAIMED
// and the next poll sends them regardless.
func (h *Handoff) Enqueue(ctx context.Context, fs FileSet, files []File) (HandoffResult, error) {
	var res HandoffResult
	msgs := make([]queue.Message, 0, len(files))
	items := make([]state.FileItem, 0, len(files))
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	ttl := claim.TTL(fs.AvailableTo, now(), h.TTLMargin)
	for _, f := range files {
		m := message(fs, f)
		if err := m.Validate(); err != nil {
			return res, fmt.Errorf("%w: file-set %s: %w", ErrMalformed, fs.ID, err)
		}
		msgs = append(msgs, m)
		items = append(items, claim.Item(m, f.Size, fs.AvailableTo, ttl))
	}
	var send []queue.Message
	var errs []error
	for i, r := range claim.All(ctx, h.State, items, claim.Concurrency) {
		switch {
		case r.Err != nil:
			errs = append(errs, r.Err)
		case r.Mine:
			res.Claimed++
		case r.Send():
			res.Resent++
		default:
			res.Known++
		}
		if r.Send() {
			send = append(send, msgs[i])
		}
	}
	sent, err := claim.Send(ctx, h.State, h.Queue, send, claim.Concurrency)
	res.Queued = len(sent.Sent)
	if sent.MarkErr != nil {
		// Only costs a duplicate message later (the downloader is idempotent).
		errs = append(errs, sent.MarkErr)
	}
	if len(sent.Failed) > 0 {
		errs = append(errs, fmt.Errorf("send messages: %d of %d not sent (files stay CLAIMED)", len(sent.Failed), len(send)))
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("send messages: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("hand off file-set %s: %w", fs.ID, err)
	}
	return res, nil
}

// message is the download-queue message of one notified file. The file's
// name and size travel in it, as they do from the poller's listing, so the
// downloader needs no request to learn them. A name SQS would refuse in a
// message is left out (the downloader then names the file from its presigned
// URL), and so is a size of 0, which may be a missing fileSizeInBytes.
func message(fs FileSet, f File) queue.Message {
	m := queue.Message{FileID: f.ID, FileSetID: fs.ID, FileSetName: fs.Name, Bucket: fs.BucketName, PackageID: fs.PackageID,
		FileName: f.FileName}
	if queue.Refuses(m.Encode()) != "" {
		m.FileName = ""
	}
	if f.Size > 0 {
		m.Size = &f.Size
	}
	return m
}
