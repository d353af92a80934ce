package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// Object metadata (docs/design.md#output-layout), as S3 user metadata (x-amz-meta-…).
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
// bufs are the body's pieces in order.
func checksumCRC32C(bufs ...[]byte) string {
	var crc uint32
	for _, b := range bufs {
		crc = crc32.Update(crc, crc32c, b)
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc)
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
	outDefer    = "defer"    // RDP unavailable: re-enqueued with a delay
	outRestart  = "restart"  // the upload is dropped and the file starts over in a continuation
	outFailed   = "failed"   // the message fails
)

type outcome struct {
	kind   string
	reason string // short, metric-friendly
	err    error
	// keepUpload: a final failure keeps the multipart upload and its
	// checkpoint (a Complete S3 did not call invalid): a redrive resumes it.
	keepUpload bool
}

func failed(reason string, err error) outcome {
	return outcome{kind: outFailed, reason: reason, err: err}
}

// permanentReasons are the failures a redelivery cannot cure: the file is
// gone or not what the listing says, its name is unusable, or the
// upload is unknown to S3. They abort the upload and mark the file FAILED at
// once; every other failure is transient (see job.retryLater).
var permanentReasons = map[string]bool{
	"gone":           true,
	"forbidden":      true,
	"bad-request":    true,
	"bad-name":       true,
	"key-collision":  true,
	"source-changed": true, // only after MAX_NO_PROGRESS restarts
	"etag-mismatch":  true, // likewise
	"md5-mismatch":   true,
	"size-mismatch":  true,
	"bad-metadata":   true,
	"bad-url":        true,
	"too-large":      true,
	"upload-gone":    true,
	"no-progress":    true,
	"internal":       true,
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
	margin            time.Duration

	size         int64
	partSize     int64  // chosen for this file (0 until chosen)
	wantMD5      []byte // nil: the API gives no (usable) md5
	pin          *etagPin
	firstAttempt bool     // the file's item existed and had no download attempt before this one
	fileSetID    string   // the file-set the file's item names ("" until BeginDownload)
	result       fileDone // set by finish: the file is DONE
	keyFree      bool     // no object at key (HEAD found none, or none was looked for): writes use If-None-Match
	putOnce      bool     // lookFirst chose one PutObject (decided once: the deadline check must not flip)
	key          string
	host         string
	urls         *urlSource
	fetcher      *fetcher
	mp           *multipart // nil until a multipart upload is in use
	bytes        int64      // downloaded (and uploaded) in this invocation
	bytesCounted bool       // BytesDownloaded was recorded
	parts        int        // parts uploaded in this invocation
	md5OK        bool       // the md5 was verified
	// completeBefore: the checkpoint held every part when this invocation
	// began, so an earlier invocation may have sent a Complete.
	completeBefore bool
	etag           string
}

// chainStaleAfter: a message whose Seq is older than its file's chain (see
// queue.Message.Seq) is a superseded copy — dropped — while the chain moved
// within this long. After that the chain is presumed lost (its message gone)
// and any message for the file takes the work over, such as the poller's
// re-send of a stalled file. It covers the longest deferral (15 minutes)
// plus a full invocation.
const chainStaleAfter = 30 * time.Minute

// marginShare: the deadline margin is at most 1/marginShare of the time the
// invocation has left when the message starts, so that every invocation has
// time for ranges whatever the function's timeout (docs/design.md#deadline-checkpoint-continuation).
const marginShare = 4

// processFile downloads one file; a non-nil error fails the message. final:
// this is the message's last receive. It reports whether the file is DONE.
func (h *Handler) processFile(ctx context.Context, log *slog.Logger, m queue.Message, final bool) (fileDone, error) {
	fi, err := h.state.GetFile(ctx, m.FileID)
	switch {
	case err == nil && fi.Status == state.StatusDone:
		log.Info("already downloaded: nothing to do", "key", fi.Key)
		h.metrics.Add("FilesSkipped", 1)
		return fileDone{done: true, fileSetID: fi.FileSetID}, nil
	case err != nil && !errors.Is(err, state.ErrNotFound):
		log.Error("read file state", "error", err.Error(), "final", final)
		if final {
			h.markFailed(ctx, log, m.FileID, "state: "+err.Error())
		}
		return fileDone{}, err
	}
	j := &job{h: h, log: log, msg: m, owner: newOwner(), start: h.now(), final: final}
	j.deadlines(ctx)
	up, err := h.state.AcquireUpload(ctx, m.FileID, j.owner, j.leaseUntil())
	if errors.Is(err, state.ErrLeaseHeld) {
		return fileDone{}, h.requeueDuplicate(ctx, log, m)
	}
	if err != nil {
		log.Error("acquire download lease", "error", err.Error(), "final", final)
		if final {
			h.markFailed(ctx, log, m.FileID, "state: "+err.Error())
		}
		return fileDone{}, err
	}
	j.up = up
	if j.superseded() {
		log.Info("superseded copy of the file's message chain: dropped", "seq", m.Seq, "chain_seq", up.Seq)
		h.metrics.Add("FilesSkipped", 1)
		if err := h.state.ReleaseUpload(ctx, m.FileID, j.owner); err != nil {
			log.Warn("release download lease", "error", err.Error())
		}
		return fileDone{}, nil
	}
	err = j.finish(ctx, j.run(ctx))
	return j.result, err
}

// superseded reports whether the message is an older link of its file's
// chain than the newest one sent, which moved recently.
func (j *job) superseded() bool {
	if j.msg.Seq >= j.up.Seq {
		return false
	}
	return j.h.now().Sub(time.UnixMilli(j.up.SeqAtMs)) < chainStaleAfter
}

func newOwner() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// deadlines derives the soft deadline (no new range after it) and the drain
// deadline (ranges in flight are abandoned) from the invocation's deadline:
// the margin is min(DEADLINE_MARGIN, 1/marginShare of the time left).
func (j *job) deadlines(ctx context.Context) {
	j.hard, j.hasDeadline = ctx.Deadline()
	if !j.hasDeadline {
		return
	}
	j.margin = max(0, min(j.h.cfg.DeadlineMargin, j.hard.Sub(j.h.now())/marginShare))
	j.soft = j.hard.Add(-j.margin)
	j.drain = j.hard.Add(-j.margin / 2)
}

// cleanupContext bounds the bookkeeping after the work: CLEANUP_TIMEOUT, and
// never past the invocation's deadline (a Lambda that times out fails the
// whole batch, whose messages then come back although continuations were
// sent for them).
func (j *job) cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	end := j.h.now().Add(j.h.cfg.CleanupTimeout)
	if j.hasDeadline {
		end = minTime(end, j.hard.Add(-j.margin/8))
	}
	return context.WithDeadline(context.WithoutCancel(ctx), end)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
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
		return outcome{kind: outContinue, reason: reasonNoTime}
	}
	old, err := h.state.BeginDownload(ctx, state.FileItem{FileID: m.FileID, FileSetID: m.FileSetID, FileSetName: m.FileSetName, Bucket: m.Bucket, PackageID: m.PackageID})
	if errors.Is(err, state.ErrConflict) {
		return outcome{kind: outSkipped, reason: "done"}
	}
	if err != nil {
		return failed("state", err)
	}
	j.firstAttempt = old != nil && old.Attempts == 0
	// The file-set the item names: the message's for a new item
	// (BeginDownload sets it only if not there).
	j.fileSetID = m.FileSetID
	if old != nil && old.FileSetID != "" {
		j.fileSetID = old.FileSetID
	}
	u, err := j.streamURL(ctx)
	if err != nil {
		if o, ok := j.landedBeforeGone(ctx, err); ok {
			return o
		}
		return apiFailure(fmt.Errorf("get stream url: %w", err))
	}
	if o, ok := j.target(u); !ok {
		return o
	}
	if o, ok := j.learnSize(ctx); !ok {
		return o
	}
	if o, ok := j.lookFirst(ctx); !ok {
		return o
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
	if err := h.cfg.fitsMemory(min(ps, max(j.size, 1))); err != nil {
		return failed("too-large", err)
	}
	j.partSize = ps
	if j.putOnce || j.singlePut(ps) {
		return j.single(ctx)
	}
	return j.multipart(ctx, ps)
}

// lookFirst HEADs the target key before downloading (checkTarget) unless
// the file will be stored with one PutObject and its state says nothing of
// it can have landed: its item existed (the poller claimed it: the state
// is not lost) with no download attempt before this one (every write to S3
// follows BeginDownload, which counts attempts), and no target or multipart
// upload is recorded. Then the PutObject's If-None-Match: * tells whether
// the key holds anything, and only its 412 costs a HEAD (keyTaken).
// Multipart files keep the HEAD: a collision is found before their parts
// are downloaded (docs/design.md#single-putobject).
func (j *job) lookFirst(ctx context.Context) (outcome, bool) {
	if j.firstAttempt && j.up.Key == "" && j.up.UploadID == "" {
		if ps, err := choosePartSize(j.size, j.h.cfg.PartSize); err == nil && j.singlePut(ps) {
			j.keyFree, j.putOnce = true, true
			return outcome{}, true
		}
	}
	return j.checkTarget(ctx)
}

// streamURL asks /stream for the file's presigned URL.
func (j *job) streamURL(ctx context.Context) (string, error) {
	return j.h.rdp.StreamURL(ctx, j.msg.FileID)
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

// apiFailure classifies a failed /stream call: an outage (no usable token,
// 401 after the ring's re-read, 429, 5xx, RDP unreachable) defers the work;
// the file gone (404/410), a missing entitlement (403) or a request RDP
// rejects fail it.
func apiFailure(err error) outcome {
	switch reason := apiReason(err); reason {
	case "gone", "forbidden", "bad-request", "bad-metadata":
		return failed(reason, err)
	default:
		return outcome{kind: outDefer, reason: reason, err: err}
	}
}

// apiReason names a file-store failure for state and logs.
func apiReason(err error) string {
	var ae *rdp.APIError
	var de *rdp.DecodeError
	switch {
	case errors.Is(err, rdp.ErrNotFound):
		return "gone"
	case errors.Is(err, rdp.ErrForbidden), errors.As(err, &ae) && ae.StatusCode == http.StatusForbidden:
		return "forbidden"
	case errors.Is(err, tokenring.ErrNoValidToken):
		return "no-token"
	case errors.Is(err, rdp.ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, rdp.ErrRateLimited):
		return "rate-limited"
	case errors.As(err, &de):
		return "bad-metadata"
	case errors.As(err, &ae) && !ae.Temporary():
		return "bad-request"
	}
	return "file-store"
}

// rdpOutage reports whether a download error means RDP is unavailable
// rather than the file being bad: no usable token, a 401 after the ring's
// re-read, or 429/5xx from the file store or the download host after the
// range retries.
func rdpOutage(err error) bool {
	var pe *rdp.PresignedError
	var ae *rdp.APIError
	switch {
	case errors.Is(err, tokenring.ErrNoValidToken), errors.Is(err, rdp.ErrUnauthorized), errors.Is(err, rdp.ErrRateLimited):
		return true
	case errors.As(err, &pe):
		return pe.Temporary() || pe.Code == "SlowDown"
	case errors.As(err, &ae):
		return ae.Temporary()
	}
	return false
}

// errReason names a download/upload failure.
func errReason(err error) string {
	if errors.Is(err, errSourceChanged) || errors.Is(err, rdp.ErrSourceChanged) {
		return "source-changed"
	}
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

// isS3NotFound: nothing at the key (HeadObject: NotFound, GetObject: NoSuchKey).
func isS3NotFound(err error) bool { return isS3Error(err, "NotFound", "NoSuchKey", "404") }

func isNoSuchUpload(err error) bool { return isS3Error(err, "NoSuchUpload") }

// isS3Error: S3 answered one of codes (the SDK's typed errors, such as
// *types.NoSuchUpload, carry their code too).
func isS3Error(err error, codes ...string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && slices.Contains(codes, ae.ErrorCode())
}
