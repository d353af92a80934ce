package notify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
)

// StateStore is the part of the state table the hand-off uses: the same
// conditional claim the poller makes, so a file is claimed once whichever
// path sees it first.
type StateStore interface {
	ClaimFile(ctx context.Context, it state.FileItem) error
	GetFile(ctx context.Context, fileID string) (*state.FileItem, error)
	MarkQueued(ctx context.Context, fileID string) error
}

var _ StateStore = (*state.Table)(nil)

// Sender sends download-queue messages.
type Sender interface {
	SendBatch(ctx context.Context, msgs []queue.Message) (queue.SendResult, error)
}

var _ Sender = (*queue.Sender)(nil)

// Handoff queues a notified file-set's files for download.
//
// TODO(poller): this repeats the poller's claim-then-queue step
// (functions/fileset-poller/poll.go flush) for one file-set; the two should
// share one function once the poller's rewrite lands.
type Handoff struct {
	State     StateStore
	Queue     Sender
	TTLMargin time.Duration // a file item's TTL is availableTo plus this
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
	var send []queue.Message
	var errs []error
	for _, f := range files {
		m := queue.Message{FileID: f.ID, FileSetID: fs.ID, FileSetName: fs.Name, Bucket: fs.BucketName, PackageID: fs.PackageID}
		if err := m.Validate(); err != nil {
			return res, fmt.Errorf("%w: file-set %s: %w", ErrMalformed, fs.ID, err)
		}
		mine, status, err := h.claim(ctx, fs, f)
		switch {
		case err != nil:
			errs = append(errs, err)
			continue
		case mine:
			res.Claimed++
		case status == state.StatusClaimed:
			res.Resent++
		default:
			res.Known++
			continue
		}
		send = append(send, m)
	}
	if len(send) > 0 {
		sr, err := h.Queue.SendBatch(ctx, send)
		res.Queued = len(sr.Sent)
		for _, m := range sr.Sent {
			if merr := h.State.MarkQueued(ctx, m.FileID); merr != nil {
				// Only costs a duplicate message later (the downloader is idempotent).
				errs = append(errs, merr)
			}
		}
		if len(sr.Failed) > 0 {
			errs = append(errs, fmt.Errorf("send messages: %d of %d not sent (files stay CLAIMED)", len(sr.Failed), len(send)))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("send messages: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("hand off file-set %s: %w", fs.ID, err)
	}
	return res, nil
}

// claim claims the file; when another path was first, it returns the
// status the file already has.
func (h *Handoff) claim(ctx context.Context, fs FileSet, f File) (mine bool, status string, err error) {
	it := state.FileItem{FileID: f.ID, FileSetID: fs.ID, FileSetName: fs.Name, Bucket: fs.BucketName,
		PackageID: fs.PackageID, Size: f.Size, AvailableTo: fs.AvailableTo}
	if !fs.AvailableTo.IsZero() {
		it.TTL = fs.AvailableTo.Add(h.TTLMargin).Unix()
	}
	err = h.State.ClaimFile(ctx, it)
	if err == nil {
		return true, state.StatusClaimed, nil
	}
	if !errors.Is(err, state.ErrConflict) {
		return false, "", err
	}
	cur, err := h.State.GetFile(ctx, f.ID)
	if err != nil {
		return false, "", err
	}
	return false, cur.Status, nil
}
