package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cfsync/cfsync/internal/claim"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
)

// SweepResult is what a sweep of the non-final files did.
type SweepResult struct {
	Stale     int `json:"stale"`     // non-final files not updated for StuckAfter (at most SweepLimit)
	Resent    int `json:"resent"`    // messages sent again
	Expired   int `json:"expired"`   // FAILED: the file-set is past availableTo
	LeaseHeld int `json:"leaseHeld"` // skipped: a downloader holds the lease
	Lost      int `json:"lost"`      // skipped: the item changed since it was read
	// OldestAgeSeconds is how long ago the least recently updated non-final
	// file last moved (0 when there is none).
	OldestAgeSeconds float64 `json:"oldestNonFinalAgeSeconds"`
	// Stuck counts the swept files not updated for twice StuckAfter although
	// every sweep re-sends them: FilesStuckAlarm's metric, at least 1 when the
	// oldest non-final file is that old.
	Stuck int `json:"stuck"`
}

// sweep finds files that stopped moving — not DONE or FAILED, lease free,
// not updated for StuckAfter (their message was lost, expired or dead-
// lettered) — and sends their message again through the claim-then-queue
// path (RequeueFile is conditional on the item being unchanged, so two
// sweeps never re-send one file at once). A file whose file-set is past
// availableTo can no longer be downloaded: it is FAILED with the reason.
// At most SweepLimit files per run.
func (h *Handler) sweep(ctx context.Context, log *slog.Logger) (SweepResult, error) {
	var res SweepResult
	now := h.now()
	var stale []state.FileItem
	err := h.State.QueryNonFinal(ctx, now.Add(-h.StuckAfter), h.SweepLimit, func(it *state.FileItem) error {
		stale = append(stale, *it)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("sweep: %w", err)
	}
	res.Stale = len(stale)
	for _, it := range stale {
		if now.Sub(it.UpdatedAt) > 2*h.StuckAfter {
			res.Stuck++
		}
	}
	var send []queue.Message
	for i := range stale {
		m, err := h.sweepOne(ctx, log, &stale[i], now, &res)
		if err != nil {
			return res, fmt.Errorf("sweep: %w", err)
		}
		if m != nil {
			send = append(send, *m)
		}
	}
	if len(send) > 0 {
		sent, err := claim.Send(ctx, h.State, h.Queue, send, claim.Concurrency)
		res.Resent = len(sent.Sent)
		logMarkFailed(log, sent)
		if err == nil && len(sent.Failed) > 0 {
			err = fmt.Errorf("%d message(s) not sent: the files stay CLAIMED for a later sweep", len(sent.Failed))
		}
		if err != nil {
			return res, fmt.Errorf("sweep: send messages: %w", err)
		}
	}
	err = h.State.QueryNonFinal(ctx, time.Time{}, 1, func(it *state.FileItem) error {
		res.OldestAgeSeconds = max(0, now.Sub(it.UpdatedAt).Seconds())
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("sweep: %w", err)
	}
	// The second query can see an older file than the first did (the index
	// is eventually consistent; MarkNonFinal may index an old file between
	// the two): the alarm must still fire.
	if res.Stuck == 0 && res.OldestAgeSeconds > (2*h.StuckAfter).Seconds() {
		res.Stuck = 1
	}
	if res.Stale > 0 {
		log.Warn("stale files swept", "stale", res.Stale, "resent", res.Resent, "expired", res.Expired,
			"lease_held", res.LeaseHeld, "lost", res.Lost, "oldest_non_final_age_seconds", res.OldestAgeSeconds)
	}
	return res, nil
}

// sweepOne handles one stale file: the message to send again, or nil.
func (h *Handler) sweepOne(ctx context.Context, log *slog.Logger, it *state.FileItem, now time.Time, res *SweepResult) (*queue.Message, error) {
	u, err := h.State.GetUpload(ctx, it.FileID)
	switch {
	case errors.Is(err, state.ErrNotFound):
	case err != nil:
		return nil, err
	case u.Owner != "" && u.LeaseUntil().After(now):
		res.LeaseHeld++
		return nil, nil
	}
	if !it.AvailableTo.IsZero() && it.AvailableTo.Before(now) {
		reason := fmt.Sprintf("file-set %s left RDP (availableTo %s) before the file was downloaded; it was last in status %s",
			it.FileSetID, it.AvailableTo.Format(time.RFC3339), it.Status)
		if err := h.State.MarkFailed(ctx, it.FileID, reason); err != nil {
			return nil, err
		}
		res.Expired++
		log.Error("file FAILED: its file-set expired before it was downloaded", "file_id", it.FileID,
			"file_set_id", it.FileSetID, "available_to", it.AvailableTo, "last_status", it.Status)
		return nil, nil
	}
	if err := h.State.RequeueFile(ctx, it.FileID, it.UpdatedAt); err != nil {
		if errors.Is(err, state.ErrConflict) {
			res.Lost++
			return nil, nil
		}
		return nil, err
	}
	m := queue.Message{FileID: it.FileID, FileSetID: it.FileSetID, FileSetName: it.FileSetName,
		Bucket: it.Bucket, PackageID: it.PackageID, FileName: it.FileName}
	if it.Size > 0 {
		m.Size = &it.Size
	}
	log.Info("stale file sent again", "file_id", it.FileID, "last_status", it.Status, "last_update", it.UpdatedAt, "resends", it.Resends+1)
	return &m, nil
}
