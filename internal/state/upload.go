package state

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Downloader checkpoint items (see the layout in state.go):
//
//	FILE#<fileId> / UPLOAD                the download lease and the multipart upload's header
//	FILE#<fileId> / UPLOAD#PARTS#<nnnnn>  completed parts, PartsPerChunk per item: chunk c holds
//	                                      part numbers c*PartsPerChunk+1 … (c+1)*PartsPerChunk
//
// A part entry takes ~70 bytes, so a chunk stays far below DynamoDB's 400 KB
// item limit and a 10,000-part upload needs 10 chunk items. Chunks carry the
// upload id they belong to: stale chunks of an earlier upload are ignored.
// Nothing secret is stored (no URL, no token).
const (
	SKUpload            = "UPLOAD"
	SKUploadPartsPrefix = "UPLOAD#PARTS#"
	// PartsPerChunk is the number of parts one chunk item holds.
	PartsPerChunk = 1000
	// UploadTTL: checkpoint items expire this long after their last write
	// (an abandoned checkpoint; S3's lifecycle rule aborts the upload itself).
	UploadTTL = 14 * 24 * time.Hour
)

// ErrLeaseHeld: another invocation holds the file's download lease.
var ErrLeaseHeld = fmt.Errorf("download lease held by another invocation: %w", ErrConflict)

// ErrPartsMissing: the checkpoint's part items do not hold the parts its
// header counts (a lost or stale chunk). The checkpoint is unusable — unlike
// an error reaching the table, after which it may be retried.
var ErrPartsMissing = errors.New("checkpoint parts missing")

// Upload is the FILE#<id> / UPLOAD item: who is downloading the file (the
// lease) and, once a multipart upload exists, where it stands.
type Upload struct {
	PK     string `dynamodbav:"pk"`
	SK     string `dynamodbav:"sk"`
	FileID string `dynamodbav:"fileId"`
	// Owner is the lease holder's random token; LeaseUntilMs its expiry
	// (epoch milliseconds). An empty Owner is a released lease.
	Owner        string `dynamodbav:"owner,omitempty"`
	LeaseUntilMs int64  `dynamodbav:"leaseUntilMs,omitempty"`
	// The multipart upload (empty UploadID: none yet).
	UploadID string `dynamodbav:"uploadId,omitempty"`
	Bucket   string `dynamodbav:"s3Bucket,omitempty"`
	Key      string `dynamodbav:"s3Key,omitempty"`
	Size     int64  `dynamodbav:"size,omitempty"`
	PartSize int64  `dynamodbav:"partSize,omitempty"`
	// PartsDone is the number of parts saved in the chunk items.
	PartsDone int `dynamodbav:"partsDone,omitempty"`
	// MD5State is the binary state of the MD5 of parts 1..MD5Through
	// (crypto/md5's MarshalBinary), so a resumed download still verifies the
	// whole file's md5.
	MD5State   []byte `dynamodbav:"md5State,omitempty"`
	MD5Through int32  `dynamodbav:"md5Through,omitempty"`
	// NoProgress counts consecutive invocations that ended without
	// completing a part; Invocations counts lease acquisitions.
	NoProgress  int `dynamodbav:"noProgress,omitempty"`
	Invocations int `dynamodbav:"invocations,omitempty"`
	// LandingChecks counts the re-checks of an upload whose parts were all
	// uploaded, which S3 no longer knows, while nothing has landed at the
	// key yet (a Complete may still be finishing).
	LandingChecks int `dynamodbav:"landingChecks,omitempty"`
	// SourceETag is the source object's ETag seen at the upload's first
	// range: every later range (in any invocation) is sent with If-Match,
	// so the source cannot change under a download.
	SourceETag string `dynamodbav:"sourceETag,omitempty"`
	// ETagMismatch is the hex MD5 of an earlier complete download whose MD5
	// differed from the source's plain ETag: when a fresh download gives the
	// same MD5 again, the ETag is not the object's MD5 (e.g. SSE-KMS).
	ETagMismatch string `dynamodbav:"etagMismatch,omitempty"`
	// Seq is the number of the file's newest message chain link (see
	// queue.Message.Seq), SeqAtMs when it was sent (epoch ms).
	Seq       int       `dynamodbav:"seq,omitempty"`
	SeqAtMs   int64     `dynamodbav:"seqAtMs,omitempty"`
	CreatedAt time.Time `dynamodbav:"createdAt"`
	UpdatedAt time.Time `dynamodbav:"updatedAt"`
	TTL       int64     `dynamodbav:"ttl,omitempty"`
}

// LeaseUntil is the lease's expiry.
func (u *Upload) LeaseUntil() time.Time { return time.UnixMilli(u.LeaseUntilMs).UTC() }

// Part is one completed part of a multipart upload.
type Part struct {
	Number   int32  `dynamodbav:"n"`
	ETag     string `dynamodbav:"e"`
	Checksum string `dynamodbav:"c,omitempty"` // base64 CRC32C as S3 reported/verified it
	Size     int64  `dynamodbav:"s"`
}

type partsChunk struct {
	PK       string `dynamodbav:"pk"`
	SK       string `dynamodbav:"sk"`
	FileID   string `dynamodbav:"fileId"`
	UploadID string `dynamodbav:"uploadId"`
	Chunk    int    `dynamodbav:"chunk"`
	Parts    []Part `dynamodbav:"parts"`
	TTL      int64  `dynamodbav:"ttl"`
}

// ChunkOf returns the chunk index holding part number n (1-based).
func ChunkOf(n int32) int { return int(n-1) / PartsPerChunk }

// UploadPartsSK is the sort key of chunk c.
func UploadPartsSK(c int) string { return fmt.Sprintf("%s%05d", SKUploadPartsPrefix, c) }

func uploadKey(fileID string) primaryKey {
	return itemKey(FilePK(fileID), SKUpload)
}

func (t *Table) uploadTTL() int64 { return t.now().Add(UploadTTL).Unix() }

// AcquireUpload takes the download lease of a file for owner until `until`,
// creating the UPLOAD item if needed, and returns the item as it now is. It
// succeeds when nobody holds the lease, the lease expired, or owner already
// holds it; otherwise it returns an error wrapping ErrLeaseHeld.
func (t *Table) AcquireUpload(ctx context.Context, fileID, owner string, until time.Time) (*Upload, error) {
	if owner == "" {
		return nil, errors.New("acquire download lease: empty owner")
	}
	now := t.now()
	var u Upload
	_, err := t.update(ctx, uploadKey(fileID), write{
		Update: "SET fileId = :id, #o = :o, leaseUntilMs = :until, updatedAt = :now, " +
			"createdAt = if_not_exists(createdAt, :now), invocations = if_not_exists(invocations, :zero) + :one, #ttl = :ttl",
		Cond:  "attribute_not_exists(pk) OR attribute_not_exists(#o) OR #o = :o OR leaseUntilMs < :nowms",
		Names: map[string]string{"#o": "owner", "#ttl": AttrTTL},
		Values: values{
			":id": strAV(fileID), ":o": strAV(owner), ":until": numAV(until.UnixMilli()), ":nowms": numAV(now.UnixMilli()),
			":now": timeAV(now), ":zero": numAV(0), ":one": numAV(1), ":ttl": numAV(t.uploadTTL()),
		},
		Into: &u,
	})
	if err != nil {
		return nil, leaseErr("acquire download lease "+fileID, err)
	}
	return &u, nil
}

// leaseErr wraps the error of a write conditional on the lease with op: a
// failed condition becomes ErrLeaseHeld.
func leaseErr(op string, err error) error {
	if isConditionFailed(err) {
		err = ErrLeaseHeld
	}
	return fmt.Errorf("%s: %w", op, err)
}

// heldBy is the condition that owner holds the lease ("#o = :o"), with its
// names and values.
func heldBy(owner string) write {
	return write{Cond: "#o = :o", Names: map[string]string{"#o": "owner"}, Values: values{":o": strAV(owner)}}
}

// GetUpload returns a file's UPLOAD item, or ErrNotFound.
func (t *Table) GetUpload(ctx context.Context, fileID string) (*Upload, error) {
	return mustGet[Upload](ctx, t, uploadKey(fileID), "upload checkpoint "+fileID)
}

// queryChunks returns the chunk items of a file (any upload id).
func (t *Table) queryChunks(ctx context.Context, fileID string) ([]partsChunk, error) {
	var chunks []partsChunk
	err := queryEach(ctx, t, query{
		KeyCond:    "pk = :pk AND begins_with(sk, :prefix)",
		Values:     values{":pk": strAV(FilePK(fileID)), ":prefix": strAV(SKUploadPartsPrefix)},
		Consistent: true,
	}, func(c *partsChunk) error {
		chunks = append(chunks, *c)
		return nil
	})
	return chunks, err
}

// LoadParts returns the saved parts of u's multipart upload, sorted by part
// number. It fails with an error wrapping ErrPartsMissing when fewer parts
// are found than u.PartsDone says (a lost chunk): the caller then starts the
// upload over. Any other error (the table unreachable, throttling) leaves the
// checkpoint as good as it was.
func (t *Table) LoadParts(ctx context.Context, u *Upload) ([]Part, error) {
	if u.UploadID == "" {
		return nil, nil
	}
	chunks, err := t.queryChunks(ctx, u.FileID)
	if err != nil {
		return nil, fmt.Errorf("load parts of %s: %w", u.FileID, err)
	}
	var parts []Part
	for _, c := range chunks {
		if c.UploadID != u.UploadID {
			continue // left over from an earlier upload of the file
		}
		parts = append(parts, c.Parts...)
	}
	slices.SortFunc(parts, func(a, b Part) int { return int(a.Number) - int(b.Number) })
	parts = slices.CompactFunc(parts, func(a, b Part) bool { return a.Number == b.Number })
	if len(parts) != u.PartsDone {
		return nil, fmt.Errorf("load parts of %s: found %d parts, checkpoint says %d: %w", u.FileID, len(parts), u.PartsDone, ErrPartsMissing)
	}
	return parts, nil
}

// SaveUpload checkpoints a multipart upload: it writes the chunk items listed
// in dirty (each with its parts taken from parts, which must hold every saved
// part) and then the header u — only while owner still holds the lease
// (u.Owner may be empty to release it). With parts == nil only the header is
// written and u.PartsDone is kept as it is. A header without an upload id (no
// multipart upload yet) just records the lease and counters. It returns an
// error wrapping ErrLeaseHeld when the lease was lost.
func (t *Table) SaveUpload(ctx context.Context, u *Upload, parts []Part, dirty []int, owner string) error {
	if len(parts) > 0 && u.UploadID == "" {
		return fmt.Errorf("save upload checkpoint %s: parts without an upload id", u.FileID)
	}
	now := t.now()
	ttl := t.uploadTTL()
	byChunk := map[int][]Part{}
	for _, p := range parts {
		byChunk[ChunkOf(p.Number)] = append(byChunk[ChunkOf(p.Number)], p)
	}
	for _, c := range slices.Compact(slices.Sorted(slices.Values(dirty))) {
		item := partsChunk{PK: FilePK(u.FileID), SK: UploadPartsSK(c), FileID: u.FileID, UploadID: u.UploadID, Chunk: c, Parts: byChunk[c], TTL: ttl}
		if item.Parts == nil {
			item.Parts = []Part{}
		}
		if err := t.put(ctx, item, write{}); err != nil {
			return fmt.Errorf("save upload checkpoint %s: chunk %d: %w", u.FileID, c, err)
		}
	}
	h := *u
	h.PK, h.SK = FilePK(u.FileID), SKUpload
	if parts != nil {
		h.PartsDone = len(parts)
	}
	h.UpdatedAt = now
	if h.CreatedAt.IsZero() {
		h.CreatedAt = now
	}
	h.TTL = ttl
	if err := t.put(ctx, h, heldBy(owner)); err != nil {
		return leaseErr("save upload checkpoint "+u.FileID, err)
	}
	u.PartsDone, u.UpdatedAt, u.CreatedAt, u.TTL = h.PartsDone, h.UpdatedAt, h.CreatedAt, h.TTL
	return nil
}

// ReleaseUpload gives the lease up (when owner still holds it) and keeps the
// checkpoint. Releasing a lease that is not owner's is a no-op.
func (t *Table) ReleaseUpload(ctx context.Context, fileID, owner string) error {
	w := heldBy(owner)
	w.Update = "REMOVE #o, leaseUntilMs SET updatedAt = :now"
	w.Values[":now"] = timeAV(t.now())
	return t.updateIf(ctx, fmt.Sprintf("release download lease %s", fileID), uploadKey(fileID), w)
}

// DeleteUpload removes a file's checkpoint (its chunk items, then the header)
// when the upload completed or was aborted. The header is deleted only while
// owner holds the lease (or when it no longer exists); otherwise the error
// wraps ErrLeaseHeld and nothing of the new holder's is touched: the lease is
// read first, because the file may still be downloaded by another
// invocation after a failure (see EndUpload for a DONE file).
func (t *Table) DeleteUpload(ctx context.Context, fileID, owner string) error {
	cur, err := t.GetUpload(ctx, fileID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete upload checkpoint %s: %w", fileID, err)
	}
	if cur.Owner != owner {
		return fmt.Errorf("delete upload checkpoint %s: %w", fileID, ErrLeaseHeld)
	}
	if err := t.deleteChunks(ctx, fileID); err != nil {
		return err
	}
	return t.deleteHeader(ctx, fileID, owner)
}

// EndUpload deletes the checkpoint of a file that is DONE in as few requests
// as it can: the header first, only while owner holds the lease (one
// conditional DeleteItem, no read), then — with chunks — the part items.
// Deleting the part items second is safe only because the file is DONE:
// BeginDownload refuses a DONE file, so no invocation writes part items for
// it any more (docs/design.md#state-table). Without chunks (the file was
// stored with one PutObject, so this attempt wrote no part items) part
// items of an earlier, aborted upload of the file are left to their TTL:
// they carry another upload id and are never read as this file's parts.
func (t *Table) EndUpload(ctx context.Context, fileID, owner string, chunks bool) error {
	if err := t.deleteHeader(ctx, fileID, owner); err != nil || !chunks {
		return err
	}
	return t.deleteChunks(ctx, fileID)
}

// deleteChunks deletes every part item of a file.
func (t *Table) deleteChunks(ctx context.Context, fileID string) error {
	chunks, err := t.queryChunks(ctx, fileID)
	if err != nil {
		return fmt.Errorf("delete upload checkpoint %s: %w", fileID, err)
	}
	for _, c := range chunks {
		if err := t.deleteItem(ctx, itemKey(c.PK, c.SK), write{}); err != nil {
			return fmt.Errorf("delete upload checkpoint %s: chunk %d: %w", fileID, c.Chunk, err)
		}
	}
	return nil
}

// deleteHeader deletes the UPLOAD item while owner holds the lease (or when
// it no longer exists); otherwise the error wraps ErrLeaseHeld.
func (t *Table) deleteHeader(ctx context.Context, fileID, owner string) error {
	w := heldBy(owner)
	w.Cond = "attribute_not_exists(pk) OR " + w.Cond
	if err := t.deleteItem(ctx, uploadKey(fileID), w); err != nil {
		return leaseErr("delete upload checkpoint "+fileID, err)
	}
	return nil
}

// BumpSeq records that message seq of the file's chain was sent (it only
// ever raises the number), whoever holds the lease. A missing UPLOAD item is
// created (with no lease).
func (t *Table) BumpSeq(ctx context.Context, fileID string, seq int) error {
	now := t.now()
	return t.updateIf(ctx, fmt.Sprintf("record message chain %s seq %d", fileID, seq), uploadKey(fileID), write{
		Update: "SET fileId = :id, seq = :n, seqAtMs = :nowms, updatedAt = :now, createdAt = if_not_exists(createdAt, :now), #ttl = :ttl",
		Cond:   "attribute_not_exists(seq) OR seq < :n",
		Names:  map[string]string{"#ttl": AttrTTL},
		Values: values{":id": strAV(fileID), ":n": numAV(int64(seq)), ":nowms": numAV(now.UnixMilli()), ":now": timeAV(now), ":ttl": numAV(t.uploadTTL())},
	})
}

// MarkRetrying records the reason of a transient download failure on a
// DOWNLOADING file without marking it FAILED: the message is retried and the
// checkpoint kept. The next BeginDownload clears the reason. A file in any
// other status (DONE, FAILED, unknown) is left alone.
func (t *Table) MarkRetrying(ctx context.Context, fileID, reason string) error {
	reason = clipReason(reason, maxFailureReason)
	return t.updateIf(ctx, fmt.Sprintf("record retry reason of file %s", fileID), fileKey(fileID), fileWrite(write{
		Update: "SET reason = :r, updatedAt = :now", Cond: "#s = :d",
		Values: values{":r": strAV(reason), ":d": strAV(StatusDownloading), ":now": timeAV(t.now())},
	}))
}
