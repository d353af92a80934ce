package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/cfsync/cfsync/internal/metrics"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// Object metadata (DESIGN §6), as S3 user metadata (x-amz-meta-…).
const (
	metaFileID    = "cfs-file-id"
	metaFileSetID = "cfs-fileset-id"
	metaPackageID = "cfs-package-id"
	metaBucket    = "cfs-bucket"
	metaSize      = "cfs-size"
)

// leaseSlack is added to the invocation's deadline for the lease expiry.
const leaseSlack = 30 * time.Second

// leaseWithoutDeadline is the lease of a context without a deadline (tests).
const leaseWithoutDeadline = 15 * time.Minute

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// checksumCRC32C is the base64 big-endian CRC32C S3 expects in x-amz-checksum-crc32c.
func checksumCRC32C(b []byte) string {
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc32.Checksum(b, crc32c))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// unsignedPayload signs S3 uploads without hashing the body with SHA-256: the
// body's integrity is carried by the x-amz-checksum-crc32c header, which is
// signed and which S3 verifies.
var unsignedPayload = s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)

// Outcome kinds of one message.
const (
	outDone     = "done"     // the file landed in this invocation
	outSkipped  = "skipped"  // nothing to do (already DONE, in S3, or a duplicate)
	outContinue = "continue" // checkpointed before the deadline; a continuation message follows
	outFailed   = "failed"   // the message fails
)

type outcome struct {
	kind   string
	reason string // short, metric-friendly
	err    error
}

func failed(reason string, err error) outcome {
	return outcome{kind: outFailed, reason: reason, err: err}
}

// permanentReasons are the failures a redelivery cannot cure: the file is
// gone or not what the file store says, its metadata is unusable, or the
// upload is unknown to S3. They abort the upload and mark the file FAILED at
// once; every other failure is transient (see job.retryLater).
var permanentReasons = map[string]bool{
	"gone":          true,
	"md5-mismatch":  true,
	"size-mismatch": true,
	"bad-metadata":  true,
	"bad-url":       true,
	"too-large":     true,
	"upload-gone":   true,
	"no-progress":   true,
	"internal":      true,
}

// stateError marks a state-table failure inside a download error (its
// reason is "state", not that of the AWS error it wraps).
type stateError struct{ err error }

func (e stateError) Error() string { return e.err.Error() }
func (e stateError) Unwrap() error { return e.err }

// job is one message's file.
type job struct {
	h     *Handler
	log   *slog.Logger
	msg   queue.Message
	owner string
	up    *state.Upload
	start time.Time
	// final: this is the message's last receive (see Handler.lastReceive):
	// any failure is final.
	final bool

	hasDeadline       bool
	hard, soft, drain time.Time

	size         int64
	wantMD5      []byte // nil: the API gives no (usable) md5
	key          string
	host         string
	urls         *urlSource
	fetcher      *fetcher
	mp           *multipart // nil until a multipart upload is in use
	bytes        int64      // downloaded (and uploaded) in this invocation
	bytesCounted bool       // BytesDownloaded was recorded
	parts        int        // parts uploaded in this invocation
	md5OK        bool       // the md5 was verified
	etag         string
}

// processFile downloads one file; a non-nil error fails the message. final:
// this is the message's last receive.
func (h *Handler) processFile(ctx context.Context, log *slog.Logger, m queue.Message, final bool) error {
	fi, err := h.state.GetFile(ctx, m.FileID)
	switch {
	case err == nil && fi.Status == state.StatusDone:
		log.Info("already downloaded: nothing to do", "key", fi.Key)
		h.metrics.Add("FilesSkipped", 1, "reason", "done")
		return nil
	case err != nil && !errors.Is(err, state.ErrNotFound):
		log.Error("read file state", "error", err.Error(), "final", final)
		if final {
			h.markFailed(ctx, log, m.FileID, "state: "+err.Error())
		}
		return err
	}
	j := &job{h: h, log: log, msg: m, owner: newOwner(), start: h.now(), final: final}
	j.deadlines(ctx)
	up, err := h.state.AcquireUpload(ctx, m.FileID, j.owner, j.leaseUntil())
	if errors.Is(err, state.ErrLeaseHeld) {
		// The holder's own message is still in flight (not yet deleted), so
		// the file does not depend on this duplicate delivery.
		log.Info("duplicate delivery: another invocation is downloading this file")
		h.metrics.Add("FilesSkipped", 1, "reason", "duplicate")
		return nil
	}
	if err != nil {
		log.Error("acquire download lease", "error", err.Error(), "final", final)
		if final {
			h.markFailed(ctx, log, m.FileID, "state: "+err.Error())
		}
		return err
	}
	j.up = up
	return j.finish(ctx, j.run(ctx))
}

func newOwner() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// deadlines derives the soft deadline (no new range after it) and the drain
// deadline (ranges in flight are abandoned) from the invocation's deadline.
func (j *job) deadlines(ctx context.Context) {
	j.hard, j.hasDeadline = ctx.Deadline()
	if !j.hasDeadline {
		return
	}
	margin := j.h.cfg.DeadlineMargin
	j.soft = j.hard.Add(-margin)
	j.drain = j.hard.Add(-margin / 3)
}

func (j *job) leaseUntil() time.Time {
	if j.hasDeadline {
		return j.hard.Add(leaseSlack)
	}
	return j.h.now().Add(leaseWithoutDeadline)
}

func (j *job) pastSoft() bool { return j.hasDeadline && !j.h.now().Before(j.soft) }

// run does the work; finish does the bookkeeping of its outcome.
func (j *job) run(ctx context.Context) outcome {
	h, m := j.h, j.msg
	if j.pastSoft() {
		return outcome{kind: outContinue, reason: "no time left"}
	}
	_, err := h.state.BeginDownload(ctx, state.FileItem{FileID: m.FileID, FileSetID: m.FileSetID, FileSetName: m.FileSetName, Bucket: m.Bucket, PackageID: m.PackageID})
	if errors.Is(err, state.ErrConflict) {
		return outcome{kind: outSkipped, reason: "done"}
	}
	if err != nil {
		return failed("state", err)
	}
	var f *rdp.File
	err = h.tokens.Do(ctx, func(ctx context.Context) error {
		var err error
		f, err = h.rdp.File(ctx, m.FileID)
		return err
	})
	if err != nil {
		if o, ok := j.landedBeforeGone(ctx, err); ok {
			return o
		}
		return failed(apiReason(err), fmt.Errorf("get file metadata: %w", err))
	}
	if f.Size < 0 {
		return failed("bad-metadata", fmt.Errorf("get file metadata: field \"fileSizeInBytes\" is negative (%d)", f.Size))
	}
	j.size = f.Size
	if f.MD5 != "" {
		if j.wantMD5 = parseMD5(f.MD5); j.wantMD5 == nil {
			j.log.Warn("file metadata: field \"md5\" is not an MD5 digest; verifying the size only")
		}
	}
	fetchURL := func(ctx context.Context) (string, error) {
		var u string
		err := h.tokens.Do(ctx, func(ctx context.Context) error {
			var err error
			u, err = h.rdp.StreamURL(ctx, m.FileID)
			return err
		})
		return u, err
	}
	u, err := fetchURL(ctx)
	if err != nil {
		if o, ok := j.landedBeforeGone(ctx, err); ok {
			return o
		}
		return failed(apiReason(err), fmt.Errorf("get stream url: %w", err))
	}
	name, err := rdp.FileNameFromURL(u)
	if err != nil {
		return failed("bad-url", err)
	}
	j.host = hostOf(u)
	j.key = h.cfg.DestPrefix + m.Bucket + "/" + m.PackageID + "/" + m.FileSetID + "/" + name
	j.log = j.log.With("key", j.key, "size", j.size, "host", j.host)
	j.urls = &urlSource{url: u, max: h.cfg.MaxURLRefreshes, fetch: fetchURL}
	j.fetcher = &fetcher{
		rdp: h.rdp, urls: j.urls, size: j.size, readTimeout: h.cfg.RangeReadTimeout,
		attempts: h.cfg.RangeAttempts, base: h.cfg.RetryBaseDelay, max: h.cfg.RetryMaxDelay, sleep: h.sleep,
		onRetry: func(kind string, err error, attempt int) {
			h.metrics.Add("Retries", 1, "kind", kind)
			j.log.Warn("range failed; retrying", "kind", kind, "attempt", attempt, "error", err.Error())
		},
	}
	if etag, ok := j.inS3(ctx, j.key, j.size); ok {
		j.etag = etag
		if err := h.state.MarkDone(ctx, m.FileID, j.size, j.key, etag); err != nil {
			return failed("state", err)
		}
		return outcome{kind: outSkipped, reason: "in-s3"}
	}
	// A checkpoint that no longer fits the file is dropped before the part
	// size is chosen: its part size was chosen for another size (more than
	// 10,000 parts for a file that grew; a zero-length part for an empty one).
	if j.up.UploadID != "" {
		if why := j.notResumable(); why != "" {
			j.log.Warn("checkpoint does not match the file: starting the upload over", "why", why)
			if err := j.abort(ctx); err != nil {
				return j.stopOr(ctx, fmt.Errorf("abort the checkpoint's multipart upload: %w", err))
			}
		}
	}
	ps := j.up.PartSize
	if j.up.UploadID == "" || ps < minPartSize || ps > maxPartSize {
		if ps, err = choosePartSize(j.size, h.cfg.PartSize); err != nil {
			return failed("too-large", err)
		}
	}
	if j.up.UploadID == "" && j.size <= ps {
		return j.single(ctx)
	}
	return j.multipart(ctx, ps)
}

// landedBeforeGone handles a file the file store no longer has (404/410)
// while a checkpoint names its target: after a crash between
// CompleteMultipartUpload and MarkDone the object has landed (verified) and
// the file is DONE, not FAILED.
func (j *job) landedBeforeGone(ctx context.Context, err error) (outcome, bool) {
	up := j.up
	if !errors.Is(err, rdp.ErrNotFound) || up.Key == "" || up.Bucket != j.h.cfg.DestBucket {
		return outcome{}, false
	}
	etag, ok := j.inS3(ctx, up.Key, up.Size)
	if !ok {
		return outcome{}, false
	}
	j.key, j.size, j.etag = up.Key, up.Size, etag
	if err := j.h.state.MarkDone(ctx, j.msg.FileID, up.Size, up.Key, etag); err != nil {
		return failed("state", err), true
	}
	return outcome{kind: outSkipped, reason: "in-s3"}, true
}

// inS3 reports whether key already holds this file (same file id and
// cfs-size): a redelivery after a crash between landing and MarkDone.
func (j *job) inS3(ctx context.Context, key string, size int64) (string, bool) {
	out, err := j.h.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &j.h.cfg.DestBucket, Key: &key})
	if err != nil {
		if !isS3NotFound(err) {
			j.log.Warn("head object failed; downloading anyway", "error", err.Error())
		}
		return "", false
	}
	meta := func(k string) string {
		for mk, v := range out.Metadata {
			if strings.EqualFold(mk, k) {
				return v
			}
		}
		return ""
	}
	if meta(metaFileID) != j.msg.FileID || meta(metaSize) != strconv.FormatInt(size, 10) || aws.ToInt64(out.ContentLength) != size {
		return "", false
	}
	j.log.Info("object already in S3 with matching cfs-size: not downloading again")
	return aws.ToString(out.ETag), true
}

func (j *job) metadata() map[string]string {
	return map[string]string{
		metaFileID:    j.msg.FileID,
		metaFileSetID: j.msg.FileSetID,
		metaPackageID: j.msg.PackageID,
		metaBucket:    j.msg.Bucket,
		metaSize:      strconv.FormatInt(j.size, 10),
	}
}

// workContext is ctx bounded by the drain deadline.
func (j *job) workContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if j.hasDeadline {
		return context.WithDeadline(ctx, j.drain)
	}
	return context.WithCancel(ctx)
}

// single downloads a file that fits in one part and stores it with PutObject.
func (j *job) single(ctx context.Context) outcome {
	h := j.h
	wctx, cancel := j.workContext(ctx)
	defer cancel()
	actx := wctx
	if j.hasDeadline {
		var c context.CancelFunc
		actx, c = context.WithDeadline(wctx, j.soft) // the range must start before the soft deadline
		defer c()
	}
	buf, err := h.slots.acquire(actx, j.size)
	if err != nil {
		return j.stopOr(ctx, err)
	}
	defer h.slots.release(buf)
	body := *buf
	if j.size > 0 {
		if err := j.fetcher.fetch(wctx, 0, body); err != nil {
			return j.stopOr(ctx, err)
		}
	}
	if j.wantMD5 != nil {
		sum := md5.Sum(body)
		if !bytes.Equal(sum[:], j.wantMD5) {
			return failed("md5-mismatch", fmt.Errorf("md5 mismatch: the file store says %x, downloaded %x", j.wantMD5, sum))
		}
		j.md5OK = true
	}
	// Record the target in the checkpoint first: after a crash between the
	// PutObject and MarkDone, a redelivery that finds the file gone (404)
	// still finds the object that landed (landedBeforeGone).
	if j.up.Key != j.key || j.up.Bucket != h.cfg.DestBucket || j.up.Size != j.size {
		j.up.Bucket, j.up.Key, j.up.Size = h.cfg.DestBucket, j.key, j.size
		if err := h.state.SaveUpload(ctx, j.up, nil, nil, j.owner); err != nil {
			return j.stopOr(ctx, fmt.Errorf("record the target key: %w", stateError{err}))
		}
	}
	out, err := h.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:            &h.cfg.DestBucket,
		Key:               &j.key,
		Body:              bytes.NewReader(body),
		ContentLength:     aws.Int64(j.size),
		ContentType:       aws.String("application/octet-stream"),
		Metadata:          j.metadata(),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		ChecksumCRC32C:    aws.String(checksumCRC32C(body)),
	}, unsignedPayload)
	if err != nil {
		return j.stopOr(ctx, fmt.Errorf("put object: %w", err))
	}
	j.bytes, j.parts, j.etag = j.size, 1, aws.ToString(out.ETag)
	if err := h.state.MarkDone(ctx, j.msg.FileID, j.size, j.key, j.etag); err != nil {
		return failed("state", err)
	}
	return outcome{kind: outDone}
}

// stopOr turns an error into a continuation when it only reflects the
// deadline (or the end of the invocation), and into a failure otherwise.
func (j *job) stopOr(ctx context.Context, err error) outcome {
	if ctx.Err() != nil {
		return outcome{kind: outContinue, reason: "invocation ended"}
	}
	if j.hasDeadline && errors.Is(err, context.DeadlineExceeded) {
		return outcome{kind: outContinue, reason: "deadline"}
	}
	return failed(errReason(err), err)
}

// finish records an outcome: state, checkpoint, continuation, metrics, log.
// It returns the message's error (nil: the message succeeded).
func (j *job) finish(ctx context.Context, o outcome) error {
	h, m := j.h, j.msg
	// Bookkeeping must happen even when ctx ended (deadline, cancellation).
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.CleanupTimeout)
	defer cancel()
	elapsed := h.now().Sub(j.start)
	if j.bytes > 0 && !j.bytesCounted { // finish may run twice (a failed continuation)
		h.metrics.Put("BytesDownloaded", metrics.Bytes, float64(j.bytes))
		j.bytesCounted = true
	}
	switch o.kind {
	case outDone:
		if err := h.state.DeleteUpload(cctx, m.FileID, j.owner); err != nil {
			j.log.Warn("delete upload checkpoint", "error", err.Error())
		}
		h.metrics.Add("FilesDownloaded", 1)
		h.metrics.Put("DownloadSeconds", metrics.Seconds, elapsed.Seconds())
		j.log.Info("file downloaded", "etag", j.etag, "parts", j.parts, "bytes", j.bytes,
			"seconds", elapsed.Seconds(), "md5_verified", j.md5OK, "invocations", j.up.Invocations)
		return nil
	case outSkipped:
		if j.up.UploadID != "" {
			_ = j.abort(cctx)
		}
		if err := h.state.DeleteUpload(cctx, m.FileID, j.owner); err != nil {
			j.log.Warn("delete upload checkpoint", "error", err.Error())
		}
		if o.reason == "done" {
			j.log.Info("already downloaded: nothing to do")
		}
		h.metrics.Add("FilesSkipped", 1, "reason", o.reason)
		return nil
	case outContinue:
		return j.continueLater(cctx, o, elapsed)
	}
	// failed
	if errors.Is(o.err, state.ErrLeaseHeld) {
		// Another invocation took the file over (our lease had expired): its
		// upload and checkpoint are not ours to abort or delete.
		h.metrics.Add("FilesFailed", 1, "reason", "lease-lost")
		j.log.Error("download lease lost to another invocation: this message fails", "error", o.err.Error())
		return fmt.Errorf("lease lost: %w", o.err)
	}
	if !j.final && !permanentReasons[o.reason] {
		return j.retryLater(cctx, o, elapsed)
	}
	if j.up != nil && j.up.UploadID != "" && j.abort(cctx) != nil {
		// Keep the checkpoint (it is the only record of the upload) and
		// release the lease: the next attempt resumes or aborts the upload.
		if err := h.state.ReleaseUpload(cctx, m.FileID, j.owner); err != nil {
			j.log.Warn("release download lease", "error", err.Error())
		}
	} else if err := h.state.DeleteUpload(cctx, m.FileID, j.owner); err != nil {
		j.log.Warn("delete upload checkpoint", "error", err.Error())
	}
	reason := fmt.Sprintf("%s: %v", o.reason, o.err)
	if err := h.state.MarkFailed(cctx, m.FileID, reason); err != nil {
		j.log.Error("mark file failed", "error", err.Error())
	}
	h.metrics.Add("FilesFailed", 1, "reason", o.reason)
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
	var parts []state.Part
	var dirty []int
	if j.mp != nil && j.up.UploadID != "" {
		parts, dirty = j.mp.snapshot(j.up)
	}
	owner := j.owner
	j.up.Owner, j.up.LeaseUntilMs = "", 0 // released by this write
	if err := h.state.SaveUpload(ctx, j.up, parts, dirty, owner); err != nil {
		// The last saved checkpoint stays; parts since then are fetched again.
		j.log.Warn("save checkpoint after a transient failure", "error", err.Error())
		if err := h.state.ReleaseUpload(ctx, m.FileID, owner); err != nil {
			j.log.Warn("release download lease", "error", err.Error())
		}
	}
	reason := fmt.Sprintf("%s: %v", o.reason, o.err)
	if err := h.state.MarkRetrying(ctx, m.FileID, reason); err != nil {
		j.log.Warn("record the retry reason", "error", err.Error())
	}
	h.metrics.Add("TransientFailures", 1, "reason", o.reason)
	j.log.Warn("download failed transiently: upload and checkpoint kept, the message fails and is retried", "reason", o.reason,
		"error", o.err.Error(), "seconds", elapsed.Seconds(), "parts_saved", len(parts), "upload_id_set", j.up.UploadID != "")
	return fmt.Errorf("%s: %w", o.reason, o.err)
}

// continueLater checkpoints the upload, releases the lease and enqueues a
// continuation message with the same body; the current message succeeds.
func (j *job) continueLater(ctx context.Context, o outcome, elapsed time.Duration) error {
	h, m := j.h, j.msg
	progressed := j.parts > 0
	if progressed {
		j.up.NoProgress = 0
	} else {
		j.up.NoProgress++
	}
	if j.up.NoProgress > h.cfg.MaxNoProgress {
		err := fmt.Errorf("no part completed in %d consecutive invocations (part size %d; raise the function timeout or lower PART_SIZE)", j.up.NoProgress, j.up.PartSize)
		return j.finish(ctx, failed("no-progress", err))
	}
	var parts []state.Part
	var dirty []int
	if j.mp != nil {
		parts, dirty = j.mp.snapshot(j.up)
	}
	owner := j.owner
	j.up.Owner, j.up.LeaseUntilMs = "", 0 // released by this write
	if err := h.state.SaveUpload(ctx, j.up, parts, dirty, owner); err != nil {
		if j.mp != nil {
			j.mp.redirty(dirty)
		}
		j.up.Owner = owner // not released
		j.log.Error("checkpoint failed: the message fails", "error", err.Error())
		return j.finish(ctx, failed("checkpoint", fmt.Errorf("save checkpoint: %w", stateError{err})))
	}
	res, err := h.sender.SendBatch(ctx, []queue.Message{m})
	if err == nil && len(res.Failed) > 0 {
		err = errors.New("SQS refused the continuation message")
	}
	if err != nil {
		return j.continuationFailed(ctx, err)
	}
	h.metrics.Add("Continuations", 1)
	j.log.Info("deadline near: checkpointed, continuation enqueued", "reason", o.reason,
		"parts_done", len(parts), "parts_now", j.parts, "bytes", j.bytes, "seconds", elapsed.Seconds(), "upload_id_set", j.up.UploadID != "")
	return nil
}

// continuationFailed: the checkpoint is saved and the lease released, but the
// continuation message could not be sent, so the current message fails.
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
		h.metrics.Add("TransientFailures", 1, "reason", "continuation")
		return err
	}
	up, aerr := h.state.AcquireUpload(ctx, m.FileID, j.owner, j.leaseUntil())
	if aerr != nil {
		// Another invocation has the file (its upload is not ours to abort),
		// or the table is unreachable.
		j.log.Error("enqueue continuation failed on the last receive; lease not taken back", "error", err.Error(), "lease_error", aerr.Error())
		if !errors.Is(aerr, state.ErrLeaseHeld) {
			h.markFailed(ctx, j.log, m.FileID, "continuation: "+err.Error())
		}
		return err
	}
	j.up = up
	return j.finish(ctx, failed("continuation", err))
}

// abort aborts the multipart upload of the checkpoint (no orphaned parts).
// On an error the checkpoint keeps the upload id.
func (j *job) abort(ctx context.Context) error {
	_, err := j.h.s3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(j.up.Bucket), Key: aws.String(j.up.Key), UploadId: aws.String(j.up.UploadID)})
	if err != nil && !isNoSuchUpload(err) {
		j.log.Error("abort multipart upload", "upload_key", j.up.Key, "error", err.Error())
		return err
	}
	j.log.Info("multipart upload aborted", "upload_key", j.up.Key)
	j.up.UploadID, j.up.PartsDone, j.up.MD5State, j.up.MD5Through = "", 0, nil, 0
	return nil
}

// parseMD5 accepts a hex (32 digits) or base64 MD5 digest.
func parseMD5(s string) []byte {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == md5.Size {
		return b
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == md5.Size {
		return b
	}
	return nil
}

// apiReason names a file-store failure for state and metrics.
func apiReason(err error) string {
	switch {
	case errors.Is(err, rdp.ErrNotFound):
		return "gone"
	case errors.Is(err, rdp.ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, rdp.ErrRateLimited):
		return "rate-limited"
	}
	var de *rdp.DecodeError
	if errors.As(err, &de) {
		return "bad-metadata"
	}
	return "file-store"
}

// errReason names a download/upload failure.
func errReason(err error) string {
	if errors.Is(err, rdp.ErrNotFound) {
		return "gone"
	}
	var sm *sizeMismatchError
	if errors.As(err, &sm) {
		return "size-mismatch"
	}
	var se stateError
	if errors.As(err, &se) {
		return "state"
	}
	if isNoSuchUpload(err) {
		return "upload-gone"
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return "s3"
	}
	return "download"
}

func isS3NotFound(err error) bool {
	var nf *types.NotFound
	var nk *types.NoSuchKey
	if errors.As(err, &nf) || errors.As(err, &nk) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "NotFound" || ae.ErrorCode() == "NoSuchKey" || ae.ErrorCode() == "404")
}

func isNoSuchUpload(err error) bool {
	var nu *types.NoSuchUpload
	if errors.As(err, &nu) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload"
}
