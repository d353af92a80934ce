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
}

var _ Landing = (*landing.Lander)(nil)

// afterFile runs the landing step after a message succeeded (its file
// landed now, or was DONE already: a redelivery retries the step). An error
// fails the message, so that its redelivery comes back here.
func (h *Handler) afterFile(ctx context.Context, log *slog.Logger, m queue.Message) error {
	if h.landing == nil {
		return nil
	}
	o, err := h.landing.FileLanded(ctx, m.FileID)
	if err != nil {
		log.Error("file-set landing step failed; the message will be retried", "error", err.Error())
		h.metrics.Add("LandingFailures", 1)
		return err
	}
	if o == landing.Published {
		log.Info("file-set landed: manifest, package index and event published")
		h.metrics.Add("FileSetsLanded", 1)
	}
	return nil
}
