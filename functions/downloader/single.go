package main

import (
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"
)

// singlePut reports whether the file is stored with one PutObject
// (docs/design.md#single-putobject) rather than a multipart upload: always
// when it fits in one part; for a file of up to SINGLE_PUT_MAX whose ranges
// fit the PARALLEL_RANGES slots, only in the first invocation that works on
// it and only with time for every range to stall once and be retried (2 ×
// RANGE_READ_TIMEOUT before the soft deadline). A single PUT keeps no
// checkpoint, so any later invocation — after a deadline, a crash, a
// restart or a retry — uses a checkpointed multipart upload instead.
func (j *job) singlePut(ps int64) bool {
	cfg := j.h.cfg
	switch {
	case j.up.UploadID != "":
		return false // resume the checkpoint's multipart upload
	case j.size <= ps:
		return true
	case j.size > cfg.SinglePutMax || partCount(j.size, ps) > int32(cfg.ParallelRanges):
		return false
	case j.up.Invocations > 1:
		return false
	}
	return !j.hasDeadline || j.soft.Sub(j.h.now()) >= 2*cfg.RangeReadTimeout
}

// single downloads the file's ranges in parallel into slot buffers and
// stores it with one PutObject.
func (j *job) single(ctx context.Context) outcome {
	h := j.h
	bufs, err := j.fetchAll(ctx)
	if err != nil {
		return j.stopOr(ctx, err)
	}
	defer func() {
		for _, b := range bufs {
			h.slots.release(b)
		}
	}()
	body := make([][]byte, len(bufs))
	sum := md5.New()
	for i, b := range bufs {
		body[i] = *b
		sum.Write(*b)
	}
	if o, ok := j.verifyMD5(sum.Sum(nil)); !ok {
		return o
	}
	if err := j.recordTarget(ctx); err != nil {
		return j.stopOr(ctx, err)
	}
	out, err := j.putObject(ctx, body)
	if err != nil && j.keyFree && isPreconditionFailed(err) {
		o, replace := j.keyTaken(ctx, err)
		if !replace {
			return o
		}
		j.keyFree = false
		out, err = j.putObject(ctx, body)
	}
	if err != nil {
		if o, ok := j.afterWriteError(ctx, err); ok {
			return o
		}
		return j.stopOr(ctx, fmt.Errorf("put object: %w", err))
	}
	j.bytes, j.parts, j.etag = j.size, 1, aws.ToString(out.ETag)
	if err := h.state.MarkDone(ctx, j.msg.FileID, j.size, j.key, j.etag); err != nil {
		return failed("state", err)
	}
	return outcome{kind: outDone}
}

// fetchAll takes one slot per range of the file (all before the soft
// deadline) and fetches the ranges in parallel (abandoned at the drain
// deadline). The caller releases the slots.
func (j *job) fetchAll(ctx context.Context) ([]*[]byte, error) {
	h := j.h
	wctx, cancel := j.workContext(ctx)
	defer cancel()
	actx := wctx
	if j.hasDeadline {
		var c context.CancelFunc
		actx, c = context.WithDeadline(wctx, j.soft) // ranges must start before the soft deadline
		defer c()
	}
	n := partCount(j.size, j.partSize)
	sizes := make([]int64, n)
	for i := range n {
		sizes[i] = partLen(j.size, j.partSize, i+1)
	}
	bufs, err := h.slots.acquireAll(actx, sizes)
	if err != nil {
		return nil, err
	}
	g, gctx := errgroup.WithContext(wctx)
	for i, b := range bufs {
		if len(*b) > 0 {
			g.Go(func() error { return j.fetcher.fetch(gctx, int64(i)*j.partSize, *b) })
		}
	}
	if err := g.Wait(); err != nil {
		for _, b := range bufs {
			h.slots.release(b)
		}
		return nil, err
	}
	return bufs, nil
}

// recordTarget records the target in the checkpoint before the PutObject
// when a redelivery could not find it otherwise: after a crash between the
// PutObject and MarkDone, a redelivery that finds the file gone (404) looks
// for the object that landed at the key recorded here (landedBeforeGone). A
// message with the listing's size and a name that gives the same key (the
// usual case) needs no record: landedBeforeGone derives the key from it.
func (j *job) recordTarget(ctx context.Context) error {
	h, up := j.h, j.up
	if up.Key == j.key && up.Bucket == h.cfg.DestBucket && up.Size == j.size {
		return nil
	}
	if key, size, ok := j.listedTarget(); ok && key == j.key && size == j.size {
		return nil
	}
	up.Bucket, up.Key, up.Size = h.cfg.DestBucket, j.key, j.size
	if err := h.state.SaveUpload(ctx, up, nil, nil, j.owner); err != nil {
		return fmt.Errorf("record the target key: %w", stateError{err})
	}
	return nil
}

// listedTarget is the key and size the message's listing gives the file
// (ok false: the message has no name or no size).
func (j *job) listedTarget() (key string, size int64, ok bool) {
	m := j.msg
	if m.FileName == "" || m.Size == nil {
		return "", 0, false
	}
	return j.keyFor(strings.ReplaceAll(m.FileName, ":", "_")), *m.Size, true
}

// putObject stores the body (its pieces in order) at the key, with
// If-None-Match: * when the key is presumed free. The request ends a
// quarter margin before the invocation's deadline: one cut short lands
// nothing and leaves time for the bookkeeping.
func (j *job) putObject(ctx context.Context, body [][]byte) (*s3.PutObjectOutput, error) {
	h := j.h
	if j.hasDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, j.hard.Add(-j.margin/4))
		defer cancel()
	}
	in := &s3.PutObjectInput{
		Bucket:            &h.cfg.DestBucket,
		Key:               &j.key,
		Body:              io.NewSectionReader(piecesReader(body), 0, j.size),
		ContentLength:     aws.Int64(j.size),
		ContentType:       aws.String("application/octet-stream"),
		Metadata:          j.metadata(),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		ChecksumCRC32C:    aws.String(checksumCRC32C(body...)),
	}
	if j.keyFree {
		in.IfNoneMatch = aws.String("*") // never overwrite a file that raced us to the key
	}
	return h.s3.PutObject(ctx, in, unsignedPayload)
}

// keyTaken handles a 412 to a PutObject sent with If-None-Match: * without a
// HEAD first (the state said nothing of this file landed): a HEAD tells this
// file (landed: DONE) from another one (key collision). replace: the key
// holds an older version of this file, which is replaced as when HEAD comes
// first (checkTarget).
func (j *job) keyTaken(ctx context.Context, putErr error) (o outcome, replace bool) {
	obj, err := j.headTarget(ctx, j.key)
	switch {
	case err != nil:
		return j.stopOr(ctx, fmt.Errorf("put object: %w (then %w)", putErr, err)), false
	case obj == nil:
		return j.stopOr(ctx, fmt.Errorf("put object: %w, but HEAD finds no object", putErr)), false
	}
	o, ok := j.judgeTarget(ctx, obj)
	return o, ok
}

func isPreconditionFailed(err error) bool { return isS3Error(err, "PreconditionFailed") }

// piecesReader reads the pieces of a body as one: every piece but the last
// is as long as the first.
type piecesReader [][]byte

func (p piecesReader) ReadAt(b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) && len(p) > 0 {
		size := int64(len(p[0]))
		if size == 0 {
			break
		}
		i, at := off/size, off%size
		if i >= int64(len(p)) || at >= int64(len(p[i])) {
			break
		}
		c := copy(b[n:], p[i][at:])
		n += c
		off += int64(c)
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}
