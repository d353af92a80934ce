package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cfsync/cfsync/internal/claim"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
)

// failRefused makes each file whose message SQS would refuse a permanent,
// named FAILED of that file alone: the rest of the package (and its
// watermark) moves on. A file already FAILED or DONE is left alone.
func (p *poll) failRefused(ctx context.Context, refused []entry, known map[string]*state.FileItem) error {
	for _, e := range refused {
		if it := known[e.msg.FileID]; it != nil && (it.Status == state.StatusFailed || it.Status == state.StatusDone) {
			continue
		}
		why := queue.Refuses(e.msg.Encode())
		reason := fmt.Sprintf("file name %+q: %s is a character SQS does not accept in a message, so the file cannot be queued", e.msg.FileName, why)
		it := claim.Item(e.msg, e.size, e.fs.AvailableTo, p.fileTTL(e.fs))
		if err := p.h.State.ClaimFile(ctx, it); err != nil && !errors.Is(err, state.ErrConflict) {
			return err
		}
		if err := p.h.State.MarkFailed(ctx, e.msg.FileID, reason); err != nil {
			return err
		}
		p.rejected++
		p.log.Error("file FAILED: its name cannot travel in an SQS message", "file_id", e.msg.FileID,
			"file_set_id", e.msg.FileSetID, "reason", reason)
	}
	return nil
}

// logMarkFailed warns of sent files not marked QUEUED: a failure only costs
// a duplicate message later (the file stays CLAIMED and is sent again).
func logMarkFailed(log *slog.Logger, sent claim.Sent) {
	if sent.MarkFailed > 0 {
		log.Warn("sent files not marked QUEUED; the next poll may send them again", "files", sent.MarkFailed, "error", sent.MarkErr.Error())
	}
}
