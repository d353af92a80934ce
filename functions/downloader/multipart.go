package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/cfsync/cfsync/internal/state"
)

// multipart is the progress of one file's multipart upload in this invocation.
//
// Ranges run in parallel and complete out of order. The parts are hashed
// (MD5, to verify against an md5 an API gave or the source's plain ETag, see
// verifyMD5) strictly in part order: a part that finished
// early keeps its buffer (and its slot) until every part before it has been
// hashed, so memory stays at P buffers and the head-of-line part is never
// starved. Only parts that are hashed count as done, so the saved MD5 state
// always covers exactly parts 1..k and a resumed upload continues the same
// hash: the md5 of a file that took several invocations is still verified.
// A resumed upload whose checkpoint has no MD5 state is not hashed; then a
// part is done as soon as S3 has it.
type multipart struct {
	j        *job
	partSize int64
	nparts   int32

	mu         sync.Mutex
	parts      []state.Part // index n-1; Number 0: not done
	done       int
	dirty      map[int]bool // chunk items to write at the next checkpoint
	md5        hash.Hash    // nil: not verifying the md5
	md5Through int32        // parts 1..md5Through are hashed
	waiters    map[int32]chan struct{}
	fatal      error
}

func newMultipart(j *job, partSize int64) *multipart {
	n := partCount(j.size, partSize)
	return &multipart{j: j, partSize: partSize, nparts: n, parts: make([]state.Part, n), dirty: map[int]bool{}, waiters: map[int32]chan struct{}{}}
}

// multipart uploads the file in parts, resuming the checkpoint's upload.
func (j *job) multipart(ctx context.Context, partSize int64) outcome {
	if err := j.prepare(ctx, partSize); err != nil {
		var fin finishedUploadError
		switch {
		case errors.As(err, &fin) && fin.gone:
			return j.awaitLanding(fin.err)
		case errors.As(err, &fin) && ctx.Err() == nil:
			return outcome{kind: outDefer, reason: reasonS3Unavailable, err: err}
		}
		return j.stopOr(ctx, err)
	}
	stopped, err := j.mp.run(ctx)
	if err != nil {
		return j.stopOr(ctx, err)
	}
	if stopped {
		return outcome{kind: outContinue, reason: "deadline"}
	}
	return j.mp.complete(ctx)
}

// notResumable says why the checkpoint's upload cannot continue ("" if it can).
func (j *job) notResumable() string {
	up := j.up
	switch {
	case up.Key != j.key:
		return "target key changed"
	case up.Bucket != j.h.cfg.DestBucket:
		return "destination bucket changed"
	case up.Size != j.size:
		return fmt.Sprintf("file size changed from %d", up.Size)
	case up.PartSize < minPartSize || up.PartSize > maxPartSize || partCount(j.size, up.PartSize) > maxParts:
		return fmt.Sprintf("unusable part size %d", up.PartSize)
	}
	return ""
}

// prepare resumes the checkpoint's multipart upload or creates a new one.
func (j *job) prepare(ctx context.Context, partSize int64) error {
	h, up := j.h, j.up
	if up.UploadID != "" {
		if why := j.notResumable(); why != "" {
			j.log.Warn("checkpoint does not match the file: starting the upload over", "why", why)
			if err := j.abort(ctx); err != nil {
				// Never resume an upload that does not fit the file.
				return fmt.Errorf("abort the checkpoint's multipart upload: %w", err)
			}
		}
	}
	if up.UploadID != "" {
		mp := newMultipart(j, up.PartSize)
		parts, err := h.state.LoadParts(ctx, up)
		if err != nil && !errors.Is(err, state.ErrPartsMissing) {
			// The table could not be read (throttling…): the checkpoint may
			// be fine, so it is kept for the next attempt.
			return fmt.Errorf("load the checkpoint's parts: %w", stateError{err})
		}
		if err == nil {
			var lerr error
			if err, lerr = j.crossCheck(ctx, parts, len(parts) == int(mp.nparts)); lerr != nil {
				return lerr // S3 could not be asked: keep the checkpoint
			}
		}
		if err == nil {
			for _, p := range parts {
				if p.Number < 1 || p.Number > mp.nparts {
					err = fmt.Errorf("checkpoint has part %d of %d", p.Number, mp.nparts)
					break
				}
				mp.parts[p.Number-1] = p
				mp.done++
			}
		}
		if err != nil {
			j.log.Warn("checkpoint unusable: starting the upload over", "error", err.Error())
			if aerr := j.abort(ctx); aerr != nil {
				// Starting over would orphan the upload: keep it in the checkpoint.
				return fmt.Errorf("abort the checkpoint's multipart upload: %w", aerr)
			}
		} else {
			if !mp.restoreMD5(up) && !j.hashUseless() {
				j.log.Warn("md5 cannot be resumed from the checkpoint: this file's md5 is not verified (its size and every part's CRC32C are)")
			}
			j.mp = mp
			j.completeBefore = mp.done == int(mp.nparts)
			j.log.Info("resuming multipart upload", "parts_done", mp.done, "parts", mp.nparts, "part_size", mp.partSize, "invocation", up.Invocations)
			return nil
		}
	}
	mp := newMultipart(j, partSize)
	mp.md5 = md5.New()
	out, err := h.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:            &h.cfg.DestBucket,
		Key:               &j.key,
		ContentType:       aws.String("application/octet-stream"),
		Metadata:          j.metadata(),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
	})
	if err != nil {
		return fmt.Errorf("create multipart upload: %w", err)
	}
	up.UploadID, up.Bucket, up.Key, up.Size, up.PartSize = aws.ToString(out.UploadId), h.cfg.DestBucket, j.key, j.size, partSize
	up.PartsDone, up.MD5State, up.MD5Through, up.LandingChecks = 0, nil, 0, 0
	up.SourceETag = j.pin.get()
	// Persist the upload id at once: from here on a crash never orphans it.
	if err := h.state.SaveUpload(ctx, up, nil, nil, j.owner); err != nil {
		_ = j.abort(ctx)
		return fmt.Errorf("save upload checkpoint: %w", stateError{err})
	}
	j.mp = mp
	j.log.Info("multipart upload created", "parts", mp.nparts, "part_size", partSize, "md5", mp.md5 != nil)
	return nil
}

// restoreMD5 continues the checkpoint's MD5 state; false when it cannot
// (then the md5 is not verified for this file).
func (mp *multipart) restoreMD5(up *state.Upload) bool {
	k := int32(mp.done)
	for n := int32(1); n <= k; n++ {
		if mp.parts[n-1].Number != n {
			return false // not a prefix: written without md5
		}
	}
	h := md5.New()
	if k > 0 {
		u, ok := h.(encoding.BinaryUnmarshaler)
		if !ok || up.MD5Through != k || u.UnmarshalBinary(up.MD5State) != nil {
			return false
		}
	}
	mp.md5, mp.md5Through = h, k
	return true
}

// errPartNotListed: S3's ListParts lacks a part the checkpoint saved.
var errPartNotListed = errors.New("not in S3's upload")

func trimETag(s string) string { return strings.Trim(s, `"`) }

// crossCheck runs checkListedParts. For a finished upload (every part in
// the checkpoint) S3 being unavailable defers the file, and the upload being
// gone waits for its landing (docs/design.md#completing-a-multipart-upload).
func (j *job) crossCheck(ctx context.Context, parts []state.Part, finished bool) (unusable, err error) {
	unusable, err = j.checkListedParts(ctx, parts)
	switch {
	case finished && err != nil && s3Transient(err):
		return nil, finishedUploadError{err: err} // kept even on the last receive
	case finished && (isNoSuchUpload(unusable) || errors.Is(unusable, errPartNotListed)):
		return nil, finishedUploadError{gone: true, err: unusable} // a Complete may be finishing
	}
	return unusable, err
}

// checkListedParts cross-checks the saved parts against S3's ListParts: the
// upload must still exist and hold every saved part with the same ETag and
// size. (ListParts is also S3's own record if the state table lost a chunk.)
// unusable says why the checkpoint cannot be resumed; err is a failure to
// ask S3 (throttling, 5xx after the SDK's retries), which proves nothing
// about the checkpoint.
func (j *job) checkListedParts(ctx context.Context, parts []state.Part) (unusable, err error) {
	listed := map[int32]types.Part{}
	p := s3.NewListPartsPaginator(j.h.s3, &s3.ListPartsInput{Bucket: aws.String(j.up.Bucket), Key: aws.String(j.up.Key), UploadId: aws.String(j.up.UploadID)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if isNoSuchUpload(err) {
			return fmt.Errorf("list parts: %w", err), nil
		}
		if err != nil {
			return nil, fmt.Errorf("list parts: %w", err)
		}
		for _, lp := range out.Parts {
			listed[aws.ToInt32(lp.PartNumber)] = lp
		}
	}
	for _, sp := range parts {
		lp, ok := listed[sp.Number]
		switch {
		case !ok:
			return fmt.Errorf("part %d: %w", sp.Number, errPartNotListed), nil
		case trimETag(aws.ToString(lp.ETag)) != trimETag(sp.ETag):
			return fmt.Errorf("part %d: S3 has ETag %s, the checkpoint %s", sp.Number, aws.ToString(lp.ETag), sp.ETag), nil
		case aws.ToInt64(lp.Size) != sp.Size:
			return fmt.Errorf("part %d: S3 has %d bytes, the checkpoint %d", sp.Number, aws.ToInt64(lp.Size), sp.Size), nil
		}
	}
	return nil, nil
}

// run uploads every missing part, P at a time. stopped reports that it
// stopped for the deadline with parts missing; err is a failure of the file.
func (mp *multipart) run(ctx context.Context) (stopped bool, err error) {
	j := mp.j
	h := j.h
	fileCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	workCtx, cancelWork := j.workContext(fileCtx)
	defer cancelWork()
	dispatchCtx := workCtx
	if j.hasDeadline {
		var c context.CancelFunc
		dispatchCtx, c = context.WithDeadline(workCtx, j.soft)
		defer c()
	}
	stopCP := make(chan struct{})
	cpDone := make(chan struct{})
	go func() {
		defer close(cpDone)
		t := time.NewTicker(h.cfg.CheckpointInterval)
		defer t.Stop()
		for {
			select {
			case <-stopCP:
				return
			case <-t.C:
				if err := mp.checkpoint(workCtx); err != nil {
					if errors.Is(err, state.ErrLeaseHeld) {
						mp.setFatal(err)
						cancel(err)
						return
					}
					j.log.Warn("periodic checkpoint failed", "error", err.Error())
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for n := int32(1); n <= mp.nparts; n++ {
		if mp.isDone(n) {
			continue
		}
		buf, err := h.slots.acquire(dispatchCtx, partLen(j.size, mp.partSize, n))
		if err != nil {
			break // deadline, or the file failed
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer h.slots.release(buf)
			if err := mp.part(workCtx, n, *buf); err != nil && workCtx.Err() == nil {
				mp.setFatal(err)
				cancel(err)
			}
		}()
	}
	wg.Wait()
	close(stopCP)
	<-cpDone
	mp.mu.Lock()
	defer mp.mu.Unlock()
	if mp.fatal != nil {
		return false, mp.fatal
	}
	return mp.done < int(mp.nparts), nil
}

func (mp *multipart) setFatal(err error) {
	mp.mu.Lock()
	defer mp.mu.Unlock()
	if mp.fatal == nil {
		mp.fatal = err
	}
}

func (mp *multipart) isDone(n int32) bool {
	mp.mu.Lock()
	defer mp.mu.Unlock()
	return mp.parts[n-1].Number != 0
}

// part downloads part n into buf, uploads it with its CRC32C, and records it.
func (mp *multipart) part(ctx context.Context, n int32, buf []byte) error {
	j := mp.j
	off := int64(n-1) * mp.partSize
	if err := j.fetcher.fetch(ctx, off, buf); err != nil {
		return fmt.Errorf("part %d: %w", n, err)
	}
	sum := checksumCRC32C(buf)
	out, err := j.h.s3.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:            aws.String(j.up.Bucket),
		Key:               aws.String(j.up.Key),
		UploadId:          aws.String(j.up.UploadID),
		PartNumber:        aws.Int32(n),
		Body:              bytes.NewReader(buf),
		ContentLength:     aws.Int64(int64(len(buf))),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		ChecksumCRC32C:    aws.String(sum),
	}, unsignedPayload)
	if err != nil {
		return fmt.Errorf("upload part %d: %w", n, err)
	}
	if got := aws.ToString(out.ChecksumCRC32C); got != "" && got != sum {
		return fmt.Errorf("upload part %d: S3 stored CRC32C %s, sent %s", n, got, sum)
	}
	return mp.finishPart(ctx, state.Part{Number: n, ETag: aws.ToString(out.ETag), Checksum: sum, Size: int64(len(buf))}, buf)
}

// finishPart records an uploaded part — after hashing it in part order when
// the md5 is verified.
func (mp *multipart) finishPart(ctx context.Context, p state.Part, buf []byte) error {
	for {
		mp.mu.Lock()
		mp.dropUselessHash()
		if mp.md5 == nil || mp.md5Through == p.Number-1 {
			if mp.md5 != nil {
				mp.md5.Write(buf)
				mp.md5Through = p.Number
				if ch, ok := mp.waiters[p.Number+1]; ok {
					close(ch)
					delete(mp.waiters, p.Number+1)
				}
			}
			mp.parts[p.Number-1] = p
			mp.done++
			mp.dirty[state.ChunkOf(p.Number)] = true
			mp.j.parts++
			mp.j.bytes += p.Size
			mp.mu.Unlock()
			return nil
		}
		ch, ok := mp.waiters[p.Number]
		if !ok {
			ch = make(chan struct{})
			mp.waiters[p.Number] = ch
		}
		mp.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// dropUselessHash stops hashing (and its part ordering, which holds buffers
// back) once the source's ETag is known not to tell the MD5 and no md5 was
// given: a multipart "…-N" ETag. The ETag is pinned by the first range
// response, before any part finishes. Parts waiting for their turn are
// released. mp.mu is held.
func (mp *multipart) dropUselessHash() {
	if mp.md5 == nil || !mp.j.hashUseless() {
		return
	}
	mp.md5 = nil
	for n, ch := range mp.waiters {
		close(ch)
		delete(mp.waiters, n)
	}
}

// snapshot returns every done part and the chunks to write, and puts the
// MD5 state into up. The dirty set is handed over (see redirty).
func (mp *multipart) snapshot(up *state.Upload) ([]state.Part, []int) {
	mp.mu.Lock()
	defer mp.mu.Unlock()
	parts := make([]state.Part, 0, mp.done)
	for _, p := range mp.parts {
		if p.Number != 0 {
			parts = append(parts, p)
		}
	}
	dirty := slices.Sorted(maps.Keys(mp.dirty))
	mp.dirty = map[int]bool{}
	up.SourceETag = mp.j.pin.get()
	up.MD5State, up.MD5Through = nil, 0
	if mp.md5 != nil {
		if m, ok := mp.md5.(encoding.BinaryMarshaler); ok {
			if b, err := m.MarshalBinary(); err == nil {
				up.MD5State, up.MD5Through = b, mp.md5Through
			}
		}
	}
	return parts, dirty
}

// redirty marks chunks for the next checkpoint again after a failed save.
func (mp *multipart) redirty(chunks []int) {
	mp.mu.Lock()
	defer mp.mu.Unlock()
	for _, c := range chunks {
		mp.dirty[c] = true
	}
}

// checkpoint saves the progress and keeps the lease.
func (mp *multipart) checkpoint(ctx context.Context) error {
	j := mp.j
	parts, dirty := mp.snapshot(j.up)
	if len(dirty) == 0 {
		return nil
	}
	if err := j.h.state.SaveUpload(ctx, j.up, parts, dirty, j.owner); err != nil {
		mp.redirty(dirty)
		return err
	}
	return nil
}

// complete verifies size and md5 and completes the upload (atomically: the
// object appears whole or not at all). It starts only before the soft
// deadline and ends by the drain deadline, so the checkpoint and the
// continuation always have their turn (docs/design.md#completing-a-multipart-upload).
func (mp *multipart) complete(ctx context.Context) outcome {
	j := mp.j
	if j.pastSoft() {
		return outcome{kind: outContinue, reason: reasonCompleteNext}
	}
	var total int64
	cps := make([]types.CompletedPart, 0, mp.nparts)
	for i, p := range mp.parts {
		if p.Number == 0 {
			return failed("internal", fmt.Errorf("part %d missing at completion", i+1))
		}
		total += p.Size
		cps = append(cps, types.CompletedPart{PartNumber: aws.Int32(p.Number), ETag: aws.String(p.ETag), ChecksumCRC32C: nonEmpty(p.Checksum)})
	}
	if total != j.size {
		return failed("size-mismatch", fmt.Errorf("parts hold %d bytes, the file has %d", total, j.size))
	}
	if mp.md5 != nil {
		if o, ok := j.verifyMD5(mp.md5.Sum(nil)); !ok {
			return o
		}
	}
	in := &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(j.up.Bucket),
		Key:             aws.String(j.up.Key),
		UploadId:        aws.String(j.up.UploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: cps},
	}
	if j.keyFree {
		in.IfNoneMatch = aws.String("*") // never overwrite a file that raced us to the key
	}
	return j.sendComplete(ctx, in)
}

// sendComplete sends CompleteMultipartUpload, bounded by the drain deadline.
func (j *job) sendComplete(ctx context.Context, in *s3.CompleteMultipartUploadInput) outcome {
	cctx, cancel := j.workContext(ctx)
	defer cancel()
	out, err := j.h.s3.CompleteMultipartUpload(cctx, in)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return outcome{kind: outContinue, reason: "invocation ended"}
	case cctx.Err() != nil:
		// S3 goes on completing it: the next invocation looks at the key
		// first, then resumes (Complete again) or waits for the landing.
		j.log.Warn("Complete cut by the deadline: checkpointed, the next invocation completes", "error", err.Error())
		return outcome{kind: outContinue, reason: reasonCompleteNext}
	default:
		return j.completeFailed(ctx, fmt.Errorf("complete multipart upload: %w", err))
	}
	j.up.UploadID = "" // completed: nothing to abort any more
	j.etag = aws.ToString(out.ETag)
	if err := j.h.state.MarkDone(ctx, j.msg.FileID, j.size, j.key, j.etag); err != nil {
		return failed("state", err)
	}
	return outcome{kind: outDone}
}

// completeFailed classifies a failed Complete. Only an upload S3 calls
// invalid is aborted; a transient failure keeps it, deferred
// (docs/design.md#completing-a-multipart-upload).
func (j *job) completeFailed(ctx context.Context, err error) outcome {
	// A retried Complete whose first response was lost answers
	// NoSuchUpload although the object landed: ask S3 what the key holds.
	if o, ok := j.afterWriteError(ctx, err); ok {
		return o
	}
	switch {
	case isNoSuchUpload(err) && j.completeBefore:
		return j.awaitLanding(err)
	case isNoSuchUpload(err):
		j.up.UploadID = "" // S3 no longer has it: nothing to abort
		return outcome{kind: outRestart, reason: "upload-gone", err: err}
	case invalidUpload(err):
		j.log.Warn("S3 calls the upload's part list invalid: the checkpoint is wrong, the upload is aborted and the file starts over", "error", err.Error())
		return outcome{kind: outRestart, reason: "upload-invalid", err: err}
	case s3Transient(err):
		return outcome{kind: outDefer, reason: reasonS3Unavailable, err: err}
	}
	o := j.stopOr(ctx, err)
	o.keepUpload = true // every part is uploaded: only S3 calling it invalid drops it
	return o
}

// maxLandingChecks bounds awaitLanding: with the default deferral delays
// (30 s doubling, equal jitter) 4 re-checks span 7.5 to 15 minutes, more
// than the "several minutes" AWS gives a large Complete.
const maxLandingChecks = 4

// finishedUploadError is why a checkpoint whose parts were all uploaded
// cannot be cross-checked against S3's upload.
type finishedUploadError struct {
	// gone: S3 no longer knows the upload (and the HEAD before found nothing
	// at the key); otherwise S3 could not be asked (5xx, throttling, network):
	// the file is deferred, its upload kept.
	gone bool
	err  error
}

func (e finishedUploadError) Error() string { return e.err.Error() }
func (e finishedUploadError) Unwrap() error { return e.err }

// awaitLanding handles an upload that S3 no longer knows (or lists without
// some of its parts) after every part was uploaded, with nothing at the
// key: a Complete sent before (cut by the
// deadline, or its response lost) may still be finishing, so the file is
// deferred and the key looked at again (the HEAD before resuming),
// maxLandingChecks times, before the file starts over.
func (j *job) awaitLanding(err error) outcome {
	if j.up.LandingChecks >= maxLandingChecks {
		j.up.LandingChecks = 0
		if isNoSuchUpload(err) {
			j.up.UploadID = "" // S3 no longer has it: nothing to abort (else restart aborts it)
		}
		return outcome{kind: outRestart, reason: "upload-gone", err: fmt.Errorf("nothing landed after %d checks: %w", maxLandingChecks, err)}
	}
	j.up.LandingChecks++
	return outcome{kind: outDefer, reason: reasonAwaitLanding, err: err}
}

// invalidUpload: S3 rejects the part list itself — the checkpoint is wrong.
func invalidUpload(err error) bool {
	return isS3Error(err, "InvalidPart", "InvalidPartOrder", "EntityTooSmall")
}

// s3Transient: a failure that says nothing about the request (5xx,
// throttling, network, timeout), left after the SDK's own retries.
func s3Transient(err error) bool {
	if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary {
		return true
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling", "ThrottlingException":
			return true
		}
		return ae.ErrorFault() == smithy.FaultServer
	}
	return !errors.Is(err, context.Canceled) // no answer from S3: network
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
