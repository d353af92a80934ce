package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfsync/cfsync/pkg/rdp"
)

// maxKeyBytes is S3's longest object key (UTF-8 bytes).
const maxKeyBytes = 1024

// target derives the file's name and key from the presigned URL (the last
// path segment, percent-decoded, ':' → '_', docs/design.md#output-layout),
// checks that S3 can store the key, and sets up the range fetcher.
func (j *job) target(u string) (outcome, bool) {
	h, m := j.h, j.msg
	name, err := rdp.FileNameFromURL(u)
	if err != nil {
		return failed("bad-url", err), false
	}
	j.host = hostOf(u)
	j.key = j.keyFor(name)
	if err := checkKey(j.key); err != nil {
		return failed("bad-name", err), false
	}
	if m.FileName != "" && strings.ReplaceAll(m.FileName, ":", "_") != name {
		j.log.Warn("the listing's file name differs from the presigned URL's: the URL's is used", "listing_name", m.FileName, "url_name", name)
	}
	if m.MD5 != "" {
		if j.wantMD5 = rdp.ParseMD5(m.MD5); j.wantMD5 == nil {
			j.log.Warn("message: field \"md5\" is not an MD5 digest; not verified")
		}
	}
	j.log = j.log.With("key", j.key, "host", j.host)
	j.pin = &etagPin{}
	if j.up.UploadID != "" {
		j.pin.etag = j.up.SourceETag // pinned by the upload's first range
	}
	j.urls = &urlSource{url: u, max: h.cfg.MaxURLRefreshes, fetch: j.streamURL}
	j.fetcher = &fetcher{
		rdp: h.rdp, urls: j.urls, size: -1, pin: j.pin, readTimeout: h.cfg.RangeReadTimeout,
		attempts: h.cfg.RangeAttempts, base: h.cfg.RetryBaseDelay, max: h.cfg.RetryMaxDelay, sleep: h.sleep,
		onRetry: func(kind string, err error, attempt int) {
			h.metrics.Add("Retries", 1, "kind", kind)
			j.log.Warn("range failed; retrying", "kind", kind, "attempt", attempt, "error", err.Error())
		},
	}
	return outcome{}, true
}

// checkKey reports why S3 cannot store key (nil if it can): a permanent
// failure of this file only.
func checkKey(key string) error {
	if !utf8.ValidString(key) {
		return fmt.Errorf("object key is not valid UTF-8 (%q)", key)
	}
	if len(key) > maxKeyBytes {
		return fmt.Errorf("object key is %d bytes, S3 allows at most %d: %.80q…", len(key), maxKeyBytes, key)
	}
	return nil
}

// learnSize takes the file's size from the message (the poller's listing)
// or, for a message without one, from the Content-Range total of a one-byte
// range, which also pins the source's ETag. An empty object answers 416.
func (j *job) learnSize(ctx context.Context) (outcome, bool) {
	if j.msg.Size != nil {
		j.size = *j.msg.Size
		j.fetcher.size = j.size
		j.log = j.log.With("size", j.size)
		return outcome{}, true
	}
	var one [1]byte
	err := j.fetcher.fetch(ctx, 0, one[:])
	var pe *rdp.PresignedError
	switch {
	case err == nil && j.fetcher.size >= 0:
		j.size = j.fetcher.size
	case errors.As(err, &pe) && pe.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		j.size, j.fetcher.size = 0, 0 // no byte 0: the object is empty
	case err == nil:
		return failed("bad-url", errors.New("learn the file's size: the download host gave no Content-Range total")), false
	default:
		return j.stopOr(ctx, fmt.Errorf("learn the file's size: %w", err)), false
	}
	j.log = j.log.With("size", j.size)
	return outcome{}, true
}

// targetObject is what HEAD says of the target key.
type targetObject struct {
	fileID, size string
	length       int64
	etag         string
}

// headTarget returns the object at key, nil when there is none.
func (j *job) headTarget(ctx context.Context, key string) (*targetObject, error) {
	out, err := j.h.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &j.h.cfg.DestBucket, Key: &key})
	if isS3NotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("head object: %w", err)
	}
	meta := func(k string) string {
		for mk, v := range out.Metadata {
			if strings.EqualFold(mk, k) {
				return v
			}
		}
		return ""
	}
	return &targetObject{fileID: meta(metaFileID), size: meta(metaSize), length: aws.ToInt64(out.ContentLength), etag: aws.ToString(out.ETag)}, nil
}

// is reports whether the object is this file with the given size.
func (o *targetObject) is(fileID string, size int64) bool {
	return o != nil && o.fileID == fileID && o.size == strconv.FormatInt(size, 10) && o.length == size
}

// checkTarget looks at the target key before downloading: this file already
// there (a redelivery after a crash between landing and MarkDone) is DONE
// at once; another file there (two names that map to one key) is a key
// collision — FAILED, naming the other file, never overwritten.
func (j *job) checkTarget(ctx context.Context) (outcome, bool) {
	obj, err := j.headTarget(ctx, j.key)
	switch {
	case err != nil:
		j.log.Warn("head object failed; downloading anyway", "error", err.Error())
		return outcome{}, true
	case obj == nil:
		j.keyFree = true
		return outcome{}, true
	}
	return j.judgeTarget(ctx, obj)
}

// judgeTarget says what an object at the target key means: this file
// (landed) → DONE; another file → key collision; ok: an older version of
// this file, which is replaced.
func (j *job) judgeTarget(ctx context.Context, obj *targetObject) (outcome, bool) {
	switch {
	case obj.fileID != j.msg.FileID:
		return failed("key-collision", collision(j.h.cfg.DestBucket, j.key, obj)), false
	case obj.is(j.msg.FileID, j.size):
		return j.landed(ctx, j.key, j.size, obj.etag), false
	}
	return outcome{}, true
}

func collision(bucket, key string, obj *targetObject) error {
	other := "an object cfsync did not write (no cfs-file-id)"
	if obj.fileID != "" {
		other = "file " + obj.fileID
	}
	return fmt.Errorf("s3://%s/%s already holds %s, whose name maps to the same key: not overwritten", bucket, key, other)
}

// landed marks the file DONE for an object found in S3.
func (j *job) landed(ctx context.Context, key string, size int64, etag string) outcome {
	j.key, j.size, j.etag = key, size, etag
	j.log.Info("object already in S3 with matching cfs-file-id and cfs-size: not downloading again")
	if err := j.h.state.MarkDone(ctx, j.msg.FileID, size, key, etag); err != nil {
		return failed("state", err)
	}
	return outcome{kind: outSkipped, reason: "in-s3"}
}

// landedBeforeGone handles a file the file store no longer has (404/410)
// while a checkpoint names its target: after a crash between
// CompleteMultipartUpload and MarkDone the object has landed (verified) and
// the file is DONE, not FAILED.
func (j *job) landedBeforeGone(ctx context.Context, err error) (outcome, bool) {
	key, size, ok := j.listedTarget() // not recorded before a single PUT (recordTarget)
	if up := j.up; up.Key != "" && up.Bucket == j.h.cfg.DestBucket {
		key, size, ok = up.Key, up.Size, true
	}
	if !errors.Is(err, rdp.ErrNotFound) || !ok {
		return outcome{}, false
	}
	obj, herr := j.headTarget(ctx, key)
	if herr != nil || !obj.is(j.msg.FileID, size) {
		return outcome{}, false
	}
	return j.landed(ctx, key, size, obj.etag), true
}

// afterWriteError decides what a failed PutObject / CompleteMultipartUpload
// means once S3 is asked what the key holds: this file landed (a retried
// request whose first response was lost; NoSuchUpload after a completed
// upload) → DONE; another file won a race for the key → key collision.
// ok false: nothing is known; the caller classifies err.
func (j *job) afterWriteError(ctx context.Context, err error) (outcome, bool) {
	obj, herr := j.headTarget(ctx, j.key)
	switch {
	case herr != nil || obj == nil:
		return outcome{}, false
	case obj.is(j.msg.FileID, j.size):
		j.up.UploadID = "" // completed: nothing to abort any more
		j.log.Info("write failed but the object landed", "error", err.Error())
		return j.landed(ctx, j.key, j.size, obj.etag), true
	case obj.fileID != j.msg.FileID:
		return failed("key-collision", collision(j.h.cfg.DestBucket, j.key, obj)), true
	}
	return outcome{}, false
}

// keyFor is the object key of the file named name:
// DEST_PREFIX<bucket>/<packageId>/<fileSetId>/<name>.
func (j *job) keyFor(name string) string {
	m := j.msg
	return j.h.cfg.DestPrefix + m.Bucket + "/" + m.PackageID + "/" + m.FileSetID + "/" + name
}
