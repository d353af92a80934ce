package state

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// File statuses. CLAIMED: the poller wrote the item but has not yet sent the
// message (a crash here is repaired by the next poll); QUEUED: sent to SQS;
// DOWNLOADING: a downloader works on it; DONE: the object is in S3;
// FAILED: given up, with Reason (the message goes to the DLQ).
const (
	StatusClaimed     = "CLAIMED"
	StatusQueued      = "QUEUED"
	StatusDownloading = "DOWNLOADING"
	StatusDone        = "DONE"
	StatusFailed      = "FAILED"
)

// SKFile is the sort key of a file item.
const SKFile = "FILE"

// FileItem is the state of one CFS file. Its JSON form (`cfsync status
// --json`) leaves the table's keys and bookkeeping out.
type FileItem struct {
	PK          string    `dynamodbav:"pk" json:"-"`
	SK          string    `dynamodbav:"sk" json:"-"`
	FileID      string    `dynamodbav:"fileId" json:"fileId"`
	FileSetID   string    `dynamodbav:"fileSetId" json:"fileSetId"`
	FileSetName string    `dynamodbav:"fileSetName,omitempty" json:"fileSetName,omitempty"`
	FileName    string    `dynamodbav:"fileName,omitempty" json:"fileName,omitempty"`
	Bucket      string    `dynamodbav:"bucket" json:"bucket"`
	PackageID   string    `dynamodbav:"packageId" json:"packageId"`
	Status      string    `dynamodbav:"status" json:"status"`
	Attempts    int       `dynamodbav:"attempts" json:"attempts"`
	Size        int64     `dynamodbav:"size,omitempty" json:"size,omitempty"`
	Key         string    `dynamodbav:"s3Key,omitempty" json:"s3Key,omitempty"`
	ETag        string    `dynamodbav:"etag,omitempty" json:"etag,omitempty"`
	Reason      string    `dynamodbav:"reason,omitempty" json:"reason,omitempty"`
	AvailableTo time.Time `dynamodbav:"availableTo,omitempty" json:"availableTo,omitzero"`
	CreatedAt   time.Time `dynamodbav:"createdAt" json:"createdAt,omitzero"`
	UpdatedAt   time.Time `dynamodbav:"updatedAt" json:"updatedAt,omitzero"`
	QueuedAt    time.Time `dynamodbav:"queuedAt,omitempty" json:"queuedAt,omitzero"`
	DoneAt      time.Time `dynamodbav:"doneAt,omitempty" json:"doneAt,omitzero"`
	TTL         int64     `dynamodbav:"ttl,omitempty" json:"-"`
	// NonFinal is the sparse index's partition key (NonFinalIndex): set
	// while the file is not DONE or FAILED, removed when it is.
	NonFinal string `dynamodbav:"nonFinal,omitempty" json:"-"`
	// Resends counts the times a sweep sent the file's message again.
	Resends int `dynamodbav:"resends,omitempty" json:"resends,omitempty"`
}

// FilePK is the partition key of a file.
func FilePK(fileID string) string { return "FILE#" + fileID }

func fileKey(fileID string) primaryKey {
	return itemKey(FilePK(fileID), SKFile)
}

// ErrNotFound: no such item.
var ErrNotFound = errors.New("state: not found")

// ErrConflict: a conditional write lost (another writer got there first, or
// the item is not in the expected status).
var ErrConflict = errors.New("state: conditional write failed")

// GetFile returns a file's state, or ErrNotFound.
func (t *Table) GetFile(ctx context.Context, fileID string) (*FileItem, error) {
	return mustGet[FileItem](ctx, t, fileKey(fileID), "file state "+fileID)
}

// BatchGetFiles returns the known files among ids (100 keys per request,
// unprocessed keys retried), keyed by file id. Calls counts DynamoDB requests.
func (t *Table) BatchGetFiles(ctx context.Context, ids []string) (map[string]*FileItem, int, error) {
	seen := map[string]bool{}
	var keys []primaryKey
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			keys = append(keys, fileKey(id))
		}
	}
	found := map[string]*FileItem{}
	calls, err := batchGet(ctx, t, keys, func(it *FileItem) error {
		found[it.FileID] = it
		return nil
	})
	if err != nil {
		return nil, calls, fmt.Errorf("batch get file states: %w", err)
	}
	return found, calls, nil
}

// ClaimFile creates the item of a new file in status CLAIMED. It returns
// ErrConflict if the file is already known.
func (t *Table) ClaimFile(ctx context.Context, it FileItem) error {
	now := t.now()
	it.PK, it.SK = FilePK(it.FileID), SKFile
	it.Status = StatusClaimed
	it.NonFinal = NonFinalValue
	it.CreatedAt, it.UpdatedAt = now, now
	if err := t.put(ctx, it, write{Cond: "attribute_not_exists(pk)"}); err != nil {
		return conflictOr("claim file "+it.FileID, err)
	}
	return nil
}

// MarkQueued records that the file's message was sent (CLAIMED → QUEUED).
// A file already past QUEUED is left alone.
func (t *Table) MarkQueued(ctx context.Context, fileID string) error {
	return t.updateIf(ctx, fmt.Sprintf("mark file %s queued", fileID), fileKey(fileID), fileWrite(write{
		Update: "SET #s = :q, queuedAt = :now, updatedAt = :now", Cond: "attribute_exists(pk) AND #s = :c",
		Values: values{":q": strAV(StatusQueued), ":c": strAV(StatusClaimed), ":now": timeAV(t.now())},
	}))
}

// BeginDownload moves a file to DOWNLOADING and counts the attempt. It
// returns the item as it was before, ErrNotFound for an unknown file (the
// downloader then creates it from the message), or ErrConflict if it is DONE.
func (t *Table) BeginDownload(ctx context.Context, it FileItem) (*FileItem, error) {
	var old FileItem
	found, err := t.update(ctx, fileKey(it.FileID), fileWrite(write{
		Update: "SET #s = :d, updatedAt = :now, attempts = if_not_exists(attempts, :zero) + :one, " +
			"fileId = :id, fileSetId = if_not_exists(fileSetId, :fs), #b = if_not_exists(#b, :b), " +
			"packageId = if_not_exists(packageId, :p), createdAt = if_not_exists(createdAt, :now), " + AttrNonFinal + " = :nf REMOVE reason",
		Cond:  "attribute_not_exists(pk) OR #s <> :done",
		Names: map[string]string{"#b": "bucket"},
		Values: values{
			":d": strAV(StatusDownloading), ":done": strAV(StatusDone), ":now": timeAV(t.now()),
			":zero": numAV(0), ":one": numAV(1), ":id": strAV(it.FileID), ":fs": strAV(it.FileSetID),
			":b": strAV(it.Bucket), ":p": strAV(it.PackageID), ":nf": strAV(NonFinalValue),
		},
		Into: &old, Old: true,
	}))
	if err != nil {
		return nil, conflictOr("begin download "+it.FileID, err)
	}
	if !found {
		return nil, nil // new item
	}
	return &old, nil
}

// MarkDone records a landed file.
func (t *Table) MarkDone(ctx context.Context, fileID string, size int64, key, etag string) error {
	_, err := t.update(ctx, fileKey(fileID), fileWrite(write{
		Update: "SET #s = :done, #size = :size, s3Key = :key, etag = :etag, doneAt = :now, updatedAt = :now REMOVE reason, " + AttrNonFinal,
		Names:  map[string]string{"#size": "size"},
		Values: values{":done": strAV(StatusDone), ":size": numAV(size), ":key": strAV(key), ":etag": strAV(etag), ":now": timeAV(t.now())},
	}))
	if err != nil {
		return fmt.Errorf("mark file %s done: %w", fileID, err)
	}
	return nil
}

// MarkFailed records why a file failed. A DONE file is never downgraded.
func (t *Table) MarkFailed(ctx context.Context, fileID, reason string) error {
	reason = clipReason(reason, maxFailureReason)
	return t.updateIf(ctx, fmt.Sprintf("mark file %s failed", fileID), fileKey(fileID), fileWrite(write{
		Update: "SET #s = :f, reason = :r, updatedAt = :now REMOVE " + AttrNonFinal, Cond: "attribute_not_exists(#s) OR #s <> :done",
		Values: values{":f": strAV(StatusFailed), ":r": strAV(reason), ":done": strAV(StatusDone), ":now": timeAV(t.now())},
	}))
}

// ScanFiles calls fn for every file item (operator tools; not on hot paths).
func (t *Table) ScanFiles(ctx context.Context, fn func(*FileItem) error) error {
	if err := scanEach(ctx, t, "sk = :f", values{":f": strAV(SKFile)}, fn); err != nil {
		return fmt.Errorf("scan file states: %w", err)
	}
	return nil
}

// The sparse index of non-final files (template.yaml's StateTable GSI):
//
//	index NonFinalIndex: partition key nonFinal (S), sort key updatedAt (S), keys only + the attributes below
//
// A FILE item carries nonFinal = NonFinalValue from its claim (or the
// downloader's first BeginDownload) until MarkDone or MarkFailed removes it,
// so the index holds exactly the files that are not DONE or FAILED, oldest
// update first. The poller's sweep and `cfsync status` query it instead of
// scanning the table.
const (
	NonFinalIndex = "nonFinal-updatedAt"
	AttrNonFinal  = "nonFinal"
	AttrUpdatedAt = "updatedAt"
	NonFinalValue = "FILE"
)

// QueryNonFinal calls fn with the non-final files, least recently updated
// first, whose last update is before `before` (every non-final file when
// before is zero), at most limit of them (no limit when limit ≤ 0). Index
// reads are eventually consistent: callers re-check with a conditional write.
func (t *Table) QueryNonFinal(ctx context.Context, before time.Time, limit int, fn func(*FileItem) error) error {
	q := query{Index: NonFinalIndex, KeyCond: "#nf = :nf", Limit: max(limit, 0),
		Names: map[string]string{"#nf": AttrNonFinal}, Values: values{":nf": strAV(NonFinalValue)}}
	if !before.IsZero() {
		q.KeyCond = "#nf = :nf AND #u < :before"
		q.Names["#u"] = AttrUpdatedAt
		q.Values[":before"] = timeAV(before)
	}
	if err := queryEach(ctx, t, q, fn); err != nil {
		return fmt.Errorf("query non-final files: %w", err)
	}
	return nil
}

// RequeueFile moves a non-final file back to CLAIMED so that its message is
// sent again (then MarkQueued), provided nobody touched the item since it was
// read (its updatedAt is still seen). It returns ErrConflict otherwise: the
// file moved, or another sweep took it first, so one file is never re-sent
// twice at once.
func (t *Table) RequeueFile(ctx context.Context, fileID string, seen time.Time) error {
	_, err := t.update(ctx, fileKey(fileID), fileWrite(write{
		Update: "SET #s = :c, #u = :now ADD resends :one", Cond: "attribute_exists(#nf) AND #u = :seen",
		Names:  map[string]string{"#u": AttrUpdatedAt, "#nf": AttrNonFinal},
		Values: values{":c": strAV(StatusClaimed), ":now": timeAV(t.now()), ":seen": timeAV(seen), ":one": numAV(1)},
	}))
	if err != nil {
		return conflictOr("requeue file "+fileID, err)
	}
	return nil
}

// MarkNonFinal adds a file written before the sparse index existed to it:
// it sets nonFinal on a file item that is not DONE or FAILED (anything else
// is left alone).
func (t *Table) MarkNonFinal(ctx context.Context, fileID string) error {
	return t.updateIf(ctx, fmt.Sprintf("index file %s as non-final", fileID), fileKey(fileID), fileWrite(write{
		Update: "SET #nf = :nf", Cond: "attribute_exists(pk) AND NOT #s IN (:done, :failed)",
		Names:  map[string]string{"#nf": AttrNonFinal},
		Values: values{":nf": strAV(NonFinalValue), ":done": strAV(StatusDone), ":failed": strAV(StatusFailed)},
	}))
}
