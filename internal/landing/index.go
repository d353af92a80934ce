package landing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/cfsync/cfsync/internal/backoff"
)

// Index lists a package's landed file-sets (see docs/design.md#downstream).
type Index struct {
	Version   int          `json:"version"`
	Bucket    string       `json:"bucket"`
	PackageID string       `json:"packageId"`
	UpdatedAt time.Time    `json:"updatedAt"`
	FileSets  []IndexEntry `json:"fileSets"`
}

// IndexEntry is one landed file-set. Entries are ordered by Created (the
// file-set's creation time at RDP; its landing time when the API gave
// none), then name, then id: the order in which the file-sets were
// published, whatever order they landed in.
type IndexEntry struct {
	FileSetID   string     `json:"fileSetId"`
	FileSetName string     `json:"fileSetName"`
	Kind        string     `json:"kind"`
	Created     *time.Time `json:"created,omitempty"`
	LandedAt    time.Time  `json:"landedAt"`
	ManifestKey string     `json:"manifestKey"`
	FileCount   int        `json:"fileCount"`
	TotalSize   int64      `json:"totalSize"`
}

func (e IndexEntry) order() time.Time {
	if e.Created != nil {
		return *e.Created
	}
	return e.LandedAt
}

func compareEntries(a, b IndexEntry) int {
	if c := a.order().Compare(b.order()); c != 0 {
		return c
	}
	if c := strings.Compare(a.FileSetName, b.FileSetName); c != 0 {
		return c
	}
	return strings.Compare(a.FileSetID, b.FileSetID)
}

// add inserts e in order; false if the file-set is already listed.
func (x *Index) add(e IndexEntry) bool {
	for _, f := range x.FileSets {
		if f.FileSetID == e.FileSetID {
			return false
		}
	}
	i, _ := slices.BinarySearchFunc(x.FileSets, e, compareEntries)
	x.FileSets = slices.Insert(x.FileSets, i, e)
	return true
}

func entryOf(m *Manifest) IndexEntry {
	return IndexEntry{
		FileSetID: m.FileSetID, FileSetName: m.FileSetName, Kind: m.Kind, Created: m.Created,
		LandedAt: m.LandedAt, ManifestKey: m.ManifestKey, FileCount: m.FileCount, TotalSize: m.TotalSize,
	}
}

// maxIndexAttempts bounds the read-modify-write rounds of one index update;
// indexBackoff spaces them (full jitter, so that racing writers spread out).
const maxIndexAttempts = 20

var indexBackoff = backoff.Policy{Base: 20 * time.Millisecond, Max: time.Second}

// addToIndex adds m's file-set to its package's index with a whole-object
// PUT that only succeeds if the object is still the one read (If-Match on
// its ETag; If-None-Match: * when there was none), so that two writers never
// lose an entry. A lost race (412 Precondition Failed, 409 Conflict, or 404
// for an If-Match on an object deleted meanwhile) reads again and retries.
func (l *Lander) addToIndex(ctx context.Context, m *Manifest) error {
	key := IndexKey(l.cfg.DestPrefix, m.Bucket, m.PackageID)
	for attempt := 1; ; attempt++ {
		idx, etag, err := l.readIndex(ctx, key)
		if err != nil {
			return err
		}
		if idx.Bucket == "" {
			idx = &Index{Version: ManifestVersion, Bucket: m.Bucket, PackageID: m.PackageID, FileSets: []IndexEntry{}}
		}
		if !idx.add(entryOf(m)) {
			return nil
		}
		idx.UpdatedAt = l.now().UTC()
		in, err := l.jsonObject("index", key, idx)
		if err != nil {
			return err
		}
		if etag == "" {
			in.IfNoneMatch = aws.String("*")
		} else {
			in.IfMatch = aws.String(etag)
		}
		_, err = l.s3.PutObject(ctx, in)
		if err == nil {
			return nil
		}
		if !lostRace(err) || attempt >= maxIndexAttempts {
			return fmt.Errorf("put index %s (attempt %d): %w", key, attempt, err)
		}
		if err := l.sleep(ctx, indexBackoff.Delay(attempt)); err != nil {
			return err
		}
	}
}

// readIndex reads the index and its ETag; a missing index is empty ("" ETag).
func (l *Lander) readIndex(ctx context.Context, key string) (*Index, string, error) {
	out, err := l.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &l.cfg.DestBucket, Key: &key})
	if isNotFound(err) {
		return &Index{}, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("get index %s: %w", key, err)
	}
	defer out.Body.Close()
	raw, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, "", fmt.Errorf("read index %s: %w", key, err)
	}
	var idx Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, "", fmt.Errorf("index %s is not valid JSON: %w", key, err)
	}
	if aws.ToString(out.ETag) == "" {
		return nil, "", fmt.Errorf("get index %s: the response has no ETag", key)
	}
	return &idx, aws.ToString(out.ETag), nil
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var nk *types.NoSuchKey
	return errors.As(err, &nk) || httpStatus(err) == http.StatusNotFound
}

// lostRace: the conditional PUT lost to another writer.
func lostRace(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket" {
		return false
	}
	switch httpStatus(err) {
	case http.StatusPreconditionFailed, http.StatusConflict, http.StatusNotFound:
		return true
	}
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey":
			return true
		}
	}
	return false
}
