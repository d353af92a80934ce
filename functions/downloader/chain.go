package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cfsync/cfsync/internal/metrics"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
)

// reasonNoTime: the message started with no time left for a range; such a
// continuation does not count as an invocation without progress.
const reasonNoTime = "no time left"

// reasonCompleteNext: every part is uploaded but the Complete is left to the
// next invocation (too little time to start it, or cut by the deadline). It
// does not count as an invocation without progress: S3 may still be
// completing it, and awaitLanding bounds the wait.
const reasonCompleteNext = "complete in the next invocation"

// reasonAwaitLanding: the upload is gone with nothing landed yet (awaitLanding).
const reasonAwaitLanding = "awaiting-landing"

// reasonS3Unavailable: S3 failed transiently around a finished upload
// (Complete, ListParts): the upload is kept and the file deferred.
const reasonS3Unavailable = "s3-unavailable"

// stopOr turns an error into a continuation when it only reflects the
// deadline (or the end of the invocation), into a deferral when RDP is
// unavailable (no usable token, 429/5xx after the range retries), into a
// clean restart when the source changed, and into a failure otherwise.
func (j *job) stopOr(ctx context.Context, err error) outcome {
	if ctx.Err() != nil {
		return outcome{kind: outContinue, reason: "invocation ended"}
	}
	if j.hasDeadline && errors.Is(err, context.DeadlineExceeded) {
		return outcome{kind: outContinue, reason: "deadline"}
	}
	reason := errReason(err)
	switch {
	case reason == "source-changed":
		return outcome{kind: outRestart, reason: reason, err: err}
	case rdpOutage(err):
		return outcome{kind: outDefer, reason: "rdp-unavailable", err: err}
	}
	return failed(reason, err)
}

// finish records an outcome: state, checkpoint, continuation, metrics, log.
// It returns the message's error (nil: the message succeeded).
func (j *job) finish(ctx context.Context, o outcome) error {
	h := j.h
	// Bookkeeping must happen even when ctx ended (deadline, cancellation).
	cctx, cancel := j.cleanupContext(ctx)
	defer cancel()
	elapsed := h.now().Sub(j.start)
	if j.bytes > 0 && !j.bytesCounted { // finish may run twice (a failed continuation)
		h.metrics.Put("BytesDownloaded", metrics.Bytes, float64(j.bytes))
		j.bytesCounted = true
	}
	switch o.kind {
	case outDone:
		j.result = fileDone{done: true, fileSetID: j.fileSetID}
		j.endUpload(cctx)
		h.metrics.Add("FilesDownloaded", 1)
		h.metrics.Put("DownloadSeconds", metrics.Seconds, elapsed.Seconds())
		j.log.Info("file downloaded", "etag", j.etag, "parts", j.parts, "bytes", j.bytes,
			"seconds", elapsed.Seconds(), "md5_verified", j.md5OK, "invocations", j.up.Invocations)
		return nil
	case outSkipped:
		if j.up.UploadID != "" {
			_ = j.abort(cctx)
		}
		j.result = fileDone{done: true, fileSetID: j.fileSetID}
		j.endUpload(cctx)
		if o.reason == "done" {
			j.log.Info("already downloaded: nothing to do")
		}
		h.metrics.Add("FilesSkipped", 1)
		return nil
	case outContinue:
		return j.continueLater(cctx, o, elapsed)
	case outDefer:
		return j.deferLater(cctx, o, elapsed)
	case outRestart:
		return j.restart(cctx, o, elapsed)
	}
	return j.fail(cctx, o, elapsed)
}

// endUpload deletes the checkpoint of a file that is DONE (landed now, or
// found landed): its part items only if this invocation had a multipart
// upload or the checkpoint counted parts (state.Table.EndUpload).
func (j *job) endUpload(ctx context.Context) {
	chunks := j.mp != nil || j.up.PartsDone > 0
	if err := j.h.state.EndUpload(ctx, j.msg.FileID, j.owner, chunks); err != nil {
		j.log.Warn("delete upload checkpoint", "error", err.Error())
	}
}

// fail handles a failed outcome: transient ones before the last receive
// keep the upload (retryLater); others abort it and mark the file FAILED.
func (j *job) fail(ctx context.Context, o outcome, elapsed time.Duration) error {
	h, m := j.h, j.msg
	if errors.Is(o.err, state.ErrLeaseHeld) {
		// Another invocation took the file over (our lease had expired): its
		// upload and checkpoint are not ours to abort or delete.
		j.log.Error("download lease lost to another invocation: this message fails", "error", o.err.Error())
		return fmt.Errorf("lease lost: %w", o.err)
	}
	if !j.final && !permanentReasons[o.reason] {
		return j.retryLater(ctx, o, elapsed)
	}
	if j.up != nil && j.up.UploadID != "" && (o.keepUpload || j.abort(ctx) != nil) {
		// Keep the checkpoint (it is the only record of the upload) and
		// release the lease: the next attempt resumes or aborts the upload.
		j.log.Warn("multipart upload and checkpoint kept: a redrive resumes it", "upload_key", j.up.Key)
		j.keepCheckpoint(ctx)
	} else if err := h.state.DeleteUpload(ctx, m.FileID, j.owner); err != nil {
		j.log.Warn("delete upload checkpoint", "error", err.Error())
	}
	reason := fmt.Sprintf("%s: %v", o.reason, o.err)
	if err := h.state.MarkFailed(ctx, m.FileID, reason); err != nil {
		j.log.Error("mark file failed", "error", err.Error())
	}
	h.metrics.Add("FilesFailed", 1) // one metric, no reason dimension: the alarm's (cost: issue 15)
	j.log.Error("download failed: the message fails (DLQ after maxReceiveCount)", "reason", o.reason, "error", o.err.Error(),
		"seconds", elapsed.Seconds(), "permanent", permanentReasons[o.reason], "last_receive", j.final)
	return fmt.Errorf("%s: %w", o.reason, o.err)
}

// retryLater handles a transient failure before the message's last receive:
// the multipart upload and its checkpoint are kept (with the parts done so
// far) and the lease released, the reason is recorded on the DOWNLOADING
// file, and the message fails so that SQS redelivers it and the next attempt
// resumes.
func (j *job) retryLater(ctx context.Context, o outcome, elapsed time.Duration) error {
	h, m := j.h, j.msg
	saved := j.keepCheckpoint(ctx)
	reason := fmt.Sprintf("%s: %v", o.reason, o.err)
	if err := h.state.MarkRetrying(ctx, m.FileID, reason); err != nil {
		j.log.Warn("record the retry reason", "error", err.Error())
	}
	h.metrics.Add("TransientFailures", 1)
	j.log.Warn("download failed transiently: upload and checkpoint kept, the message fails and is retried", "reason", o.reason,
		"error", o.err.Error(), "seconds", elapsed.Seconds(), "parts_saved", saved, "upload_id_set", j.up.UploadID != "")
	return fmt.Errorf("%s: %w", o.reason, o.err)
}

// keepCheckpoint saves the upload's checkpoint with every part done so far
// and releases the lease by the same write; it returns the parts saved.
func (j *job) keepCheckpoint(ctx context.Context) int {
	parts, dirty := j.snapshot()
	owner := j.owner
	j.up.Owner, j.up.LeaseUntilMs = "", 0 // released by this write
	if err := j.h.state.SaveUpload(ctx, j.up, parts, dirty, owner); err != nil {
		// The last saved checkpoint stays; parts since then are fetched again.
		j.log.Warn("save checkpoint", "error", err.Error())
		if err := j.h.state.ReleaseUpload(ctx, j.msg.FileID, owner); err != nil {
			j.log.Warn("release download lease", "error", err.Error())
		}
	}
	return len(parts)
}

// snapshot returns the parts to checkpoint (none before a multipart upload).
func (j *job) snapshot() ([]state.Part, []int) {
	if j.mp == nil || j.up.UploadID == "" {
		return nil, nil
	}
	return j.mp.snapshot(j.up)
}

// continueLater hands the file over to a continuation message (same body,
// the chain's next Seq); the current message succeeds. An invocation that
// had time for ranges but completed no part counts towards MAX_NO_PROGRESS.
func (j *job) continueLater(ctx context.Context, o outcome, elapsed time.Duration) error {
	switch {
	case j.parts > 0:
		j.up.NoProgress = 0
	case o.reason != reasonNoTime && o.reason != reasonCompleteNext:
		j.up.NoProgress++
	}
	if j.up.NoProgress > j.h.cfg.MaxNoProgress {
		return j.fail(ctx, failed("no-progress", j.noProgressError()), elapsed)
	}
	next := j.msg
	next.Deferrals, next.Delay = 0, 0
	return j.handOver(ctx, o, next, elapsed, "deadline near: checkpointed, continuation enqueued")
}

// noProgressError names why no part completes: the part does not fit the
// time an invocation has for ranges.
func (j *job) noProgressError() error {
	window := "unknown"
	if j.hasDeadline {
		window = j.soft.Sub(j.start).Round(time.Millisecond).String()
	}
	return fmt.Errorf("no part completed in %d consecutive invocations: a part of %d bytes (%d-byte file) did not download within the %s an invocation had for ranges (function timeout minus a deadline margin of %s): raise the function timeout or lower PART_SIZE",
		j.up.NoProgress, j.partSize, j.size, window, j.margin)
}

// deferLater handles an RDP outage (no usable token, 429/5xx storms): the
// work is re-enqueued with a growing delay and the current message succeeds,
// so an outage of any length uses up no receive count and never reaches the
// DLQ (docs/design.md#outages).
func (j *job) deferLater(ctx context.Context, o outcome, elapsed time.Duration) error {
	h := j.h
	next := j.msg
	next.Deferrals++
	next.Delay = equalJitter(h.cfg.DeferBaseDelay, h.cfg.DeferMaxDelay, next.Deferrals)
	if err := h.state.MarkRetrying(ctx, j.msg.FileID, fmt.Sprintf("deferred (%s): %v", o.reason, o.err)); err != nil {
		j.log.Warn("record the retry reason", "error", err.Error())
	}
	h.metrics.Add("FilesDeferred", 1)
	what := "RDP unavailable: work re-enqueued with a delay, the message succeeds"
	switch o.reason {
	case reasonAwaitLanding:
		what = "upload gone with nothing landed yet: the key is looked at again after a delay"
	case reasonS3Unavailable:
		what = "S3 unavailable: upload and checkpoint kept, re-enqueued with a delay"
	}
	j.log.Warn(what, "reason", o.reason, "error", o.err.Error(),
		"deferrals", next.Deferrals, "delay_seconds", next.Delay.Seconds())
	return j.handOver(ctx, o, next, elapsed, "deferred")
}

// restart starts the file over in a continuation: its multipart upload is
// aborted and the source's ETag forgotten (the source changed, S3 lost the
// upload, or the download's MD5 must be confirmed by a second download).
func (j *job) restart(ctx context.Context, o outcome, elapsed time.Duration) error {
	if j.up.UploadID != "" {
		if err := j.abort(ctx); err != nil {
			return j.fail(ctx, failed("s3", fmt.Errorf("abort before a restart: %w", err)), elapsed)
		}
	}
	j.mp = nil
	j.up.SourceETag = ""
	next := j.msg
	next.Delay = 0
	if o.reason == "source-changed" {
		j.up.ETagMismatch = ""
		next.Size = nil // the listing's size may be the old version's
	}
	j.up.NoProgress++
	if j.up.NoProgress > j.h.cfg.MaxNoProgress {
		return j.fail(ctx, failed(o.reason, o.err), elapsed)
	}
	j.log.Warn("starting the file over", "reason", o.reason, "error", o.err.Error())
	return j.handOver(ctx, o, next, elapsed, "restart enqueued")
}

// handOver checkpoints the upload, releases the lease, sends next as the
// chain's next link and records its number (older copies are dropped as
// superseded); the current message succeeds.
func (j *job) handOver(ctx context.Context, o outcome, next queue.Message, elapsed time.Duration, what string) error {
	h, m := j.h, j.msg
	parts, dirty := j.snapshot()
	if j.pin != nil {
		j.up.SourceETag = j.pin.get()
	}
	owner := j.owner
	j.up.Owner, j.up.LeaseUntilMs = "", 0 // released by this write
	if err := h.state.SaveUpload(ctx, j.up, parts, dirty, owner); err != nil {
		if j.mp != nil {
			j.mp.redirty(dirty)
		}
		j.up.Owner = owner // not released
		j.log.Error("checkpoint failed: the message fails", "error", err.Error())
		return j.fail(ctx, failed("checkpoint", fmt.Errorf("save checkpoint: %w", stateError{err})), elapsed)
	}
	next.Seq = max(m.Seq, j.up.Seq) + 1
	if next.Size == nil && o.reason != "source-changed" && j.size > 0 {
		size := j.size
		next.Size = &size // learned from the first range: no probe next time
	}
	res, err := h.sender.SendBatch(ctx, []queue.Message{next})
	if err == nil && len(res.Failed) > 0 {
		err = errors.New("SQS refused the message")
	}
	if err != nil {
		return j.continuationFailed(ctx, err)
	}
	if err := h.state.BumpSeq(ctx, m.FileID, next.Seq); err != nil {
		j.log.Warn("record the message chain's number", "error", err.Error())
	}
	j.up.Seq = next.Seq
	if o.kind == outContinue {
		h.metrics.Add("Continuations", 1)
	}
	j.log.Info(what, "reason", o.reason, "seq", next.Seq, "delay_seconds", next.Delay.Seconds(), "parts_done", len(parts),
		"parts_now", j.parts, "bytes", j.bytes, "seconds", elapsed.Seconds(), "upload_id_set", j.up.UploadID != "")
	return nil
}

// continuationFailed: the checkpoint is saved and the lease released, but the
// next message could not be sent, so the current message fails.
// Before the last receive its redelivery resumes from the checkpoint. On the
// last receive nothing will resume it: the lease is taken back and the
// failure is final (upload aborted, FAILED).
func (j *job) continuationFailed(ctx context.Context, err error) error {
	h, m := j.h, j.msg
	err = fmt.Errorf("enqueue continuation: %w", err)
	if !j.final {
		j.log.Error("enqueue continuation failed: the message fails and is retried from the checkpoint", "error", err.Error())
		if merr := h.state.MarkRetrying(ctx, m.FileID, "continuation: "+err.Error()); merr != nil {
			j.log.Warn("record the retry reason", "error", merr.Error())
		}
		h.metrics.Add("TransientFailures", 1)
		return err
	}
	up, aerr := h.state.AcquireUpload(ctx, m.FileID, j.owner, j.leaseUntil())
	if aerr != nil {
		// Another invocation has the file (its upload is not ours to abort),
		// or the table is unreachable.
		j.log.Error("enqueue continuation failed on the last receive; lease not taken back", "error", err.Error(), "lease_error", aerr.Error())
		if !errors.Is(aerr, state.ErrLeaseHeld) {
			h.markFailed(ctx, j.log, m.FileID, "continuation: "+err.Error())
			h.metrics.Add("FilesFailed", 1)
		}
		return err
	}
	j.up = up
	return j.fail(ctx, failed("continuation", err), 0)
}

// requeueDuplicate handles a delivery of a file whose lease another
// invocation holds (SQS delivers a message twice; the poller re-sends). It
// is not acknowledged as done — the holder may still fail, and its own
// message may be gone — but re-sent with a delay as a copy of the same chain
// link (same Seq) and then acknowledged: the holder's next link supersedes
// the copy, a DONE file skips it, and a holder that died leaves the lease
// to it. Each copy makes at most one copy: a chain, never a tree.
func (h *Handler) requeueDuplicate(ctx context.Context, log *slog.Logger, m queue.Message) error {
	c := m
	c.Deferrals++
	c.Delay = equalJitter(h.cfg.DeferBaseDelay, h.cfg.DeferMaxDelay, c.Deferrals)
	res, err := h.sender.SendBatch(ctx, []queue.Message{c})
	if err == nil && len(res.Failed) > 0 {
		err = errors.New("SQS refused the message")
	}
	if err != nil {
		log.Warn("another invocation holds the lease and the re-enqueue failed: the message fails and comes back", "error", err.Error())
		return fmt.Errorf("re-enqueue a duplicate delivery: %w", err)
	}
	h.metrics.Add("FilesSkipped", 1)
	log.Info("duplicate delivery: another invocation holds the lease; a delayed copy is enqueued", "delay_seconds", c.Delay.Seconds(), "seq", c.Seq)
	return nil
}
