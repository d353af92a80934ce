package main

import (
	"context"
	"log/slog"

	"github.com/cfsync/cfsync/internal/landing"
	"github.com/cfsync/cfsync/internal/queue"
)

// Landing publishes a file-set (manifest, package index, "FileSet Landed"
// event) once its last file has landed; see internal/landing.
type Landing interface {
	FileLanded(ctx context.Context, fileID string) (landing.Outcome, error)
	FileDone(ctx context.Context, fileID, fileSetID string) (landing.Outcome, error)
}

var _ Landing = (*landing.Lander)(nil)

// fileDone is what an invocation knows of its file's state after the
// message succeeded: DONE (landed now or found DONE) and, when it read the
// item, the file-set the item names.
type fileDone struct {
	done      bool
	fileSetID string // "": not read (the landing step reads the file's state)
}

// afterFile runs the landing step after a message succeeded with its file
// DONE (landed now, or DONE already: a redelivery retries the step). A
// message whose file is not DONE (a continuation, deferral or duplicate
// handed on) has no step to run: the invocation that makes the file DONE
// runs it. An error fails the message, so that its redelivery comes back
// here; on the last receive a fresh copy of the message is enqueued instead
// (as for a continuation), so that an outage longer than the queue's
// redrive does not leave a landed file-set without its manifest and event.
func (h *Handler) afterFile(ctx context.Context, log *slog.Logger, m queue.Message, final bool, fd fileDone) error {
	if h.landing == nil || !fd.done {
		return nil
	}
	var o landing.Outcome
	var err error
	if fd.fileSetID != "" {
		o, err = h.landing.FileDone(ctx, m.FileID, fd.fileSetID) // no second read of the file's item
	} else {
		o, err = h.landing.FileLanded(ctx, m.FileID)
	}
	if err == nil {
		if o == landing.Published {
			log.Info("file-set landed: manifest, package index and event published")
			h.metrics.Add("FileSetsLanded", 1)
		}
		return nil
	}
	h.metrics.Add("LandingFailures", 1)
	if final {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.CleanupTimeout)
		defer cancel()
		if res, serr := h.sender.SendBatch(sctx, []queue.Message{m}); serr == nil && len(res.Sent) == 1 {
			log.Error("file-set landing step failed on the last receive; a new message will retry it", "error", err.Error())
			return nil
		}
	}
	log.Error("file-set landing step failed; the message will be retried", "error", err.Error())
	return err
}
