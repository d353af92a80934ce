package state

import (
	"context"
	"fmt"
	"time"
)

// File-set items (pk FILESET#<fileSetId>, sk FILESET): the file-set's
// metadata and the ids of its files, recorded by the poller before it claims
// the files; the ids of the files that have landed (a string set the
// downloader ADDs to); and the landing step (manifest, package index,
// EventBridge event): a lease while one invocation publishes, then
// publishedAt. See internal/landing and docs/design.md#downstream.

// SKFileSet is the sort key of a file-set item.
const SKFileSet = "FILESET"

// FileSetPK is the partition key of a file-set.
func FileSetPK(fileSetID string) string { return "FILESET#" + fileSetID }

func fileSetKey(fileSetID string) primaryKey {
	return itemKey(FileSetPK(fileSetID), SKFileSet)
}

// Attribute is one of a file-set's name/value attributes, as the API lists it.
type Attribute struct {
	Name  string `dynamodbav:"name" json:"name"`
	Value string `dynamodbav:"value" json:"value"`
}

// FileSetItem is the state of one file-set.
type FileSetItem struct {
	PK            string      `dynamodbav:"pk"`
	SK            string      `dynamodbav:"sk"`
	FileSetID     string      `dynamodbav:"fileSetId"`
	Name          string      `dynamodbav:"name"`
	Bucket        string      `dynamodbav:"bucket"`
	PackageID     string      `dynamodbav:"packageId"`
	Attributes    []Attribute `dynamodbav:"attributes,omitempty"`
	AvailableFrom time.Time   `dynamodbav:"availableFrom,omitempty"`
	AvailableTo   time.Time   `dynamodbav:"availableTo,omitempty"`
	Created       time.Time   `dynamodbav:"created,omitempty"`
	Modified      time.Time   `dynamodbav:"modified,omitempty"`
	// FileIDs are the file-set's files (never empty: an empty file-set is
	// not recorded).
	FileIDs []string `dynamodbav:"fileIds,stringset"`
	// Landed are the files known to be DONE.
	Landed []string `dynamodbav:"landed,stringset,omitempty"`
	// LandingOwner holds the landing step until LandingLeaseUntil (Unix ms).
	LandingOwner      string     `dynamodbav:"landingOwner,omitempty"`
	LandingLeaseUntil int64      `dynamodbav:"landingLeaseUntil,omitempty"`
	PublishedAt       *time.Time `dynamodbav:"publishedAt,omitempty"`
	RecordedAt        time.Time  `dynamodbav:"recordedAt"`
	TTL               int64      `dynamodbav:"ttl,omitempty"`
}

// Complete reports whether every file of the file-set has landed.
func (f *FileSetItem) Complete() bool {
	landed := make(map[string]bool, len(f.Landed))
	for _, id := range f.Landed {
		landed[id] = true
	}
	for _, id := range f.FileIDs {
		if !landed[id] {
			return false
		}
	}
	return len(f.FileIDs) > 0
}

// RecordFileSet creates a file-set's item unless it exists (a file-set that
// was already recorded keeps its item: its landed files and landing step).
func (t *Table) RecordFileSet(ctx context.Context, it FileSetItem) error {
	if it.FileSetID == "" || len(it.FileIDs) == 0 {
		return fmt.Errorf("record file-set %q: fileSetId and fileIds are required", it.FileSetID)
	}
	it.PK, it.SK = FileSetPK(it.FileSetID), SKFileSet
	it.Landed, it.LandingOwner, it.LandingLeaseUntil, it.PublishedAt = nil, "", 0, nil
	it.RecordedAt = t.now()
	err := t.put(ctx, it, write{Cond: "attribute_not_exists(pk)"})
	if err != nil && !isConditionFailed(err) {
		return fmt.Errorf("record file-set %s: %w", it.FileSetID, err)
	}
	return nil
}

// GetFileSet returns a file-set's item, or ErrNotFound.
func (t *Table) GetFileSet(ctx context.Context, fileSetID string) (*FileSetItem, error) {
	return mustGet[FileSetItem](ctx, t, fileSetKey(fileSetID), "file-set "+fileSetID)
}

// AddLanded adds a landed file to its file-set (idempotent: a string set)
// and returns the item as it is after the update, or ErrNotFound for a
// file-set that was never recorded.
func (t *Table) AddLanded(ctx context.Context, fileSetID, fileID string) (*FileSetItem, error) {
	var it FileSetItem
	_, err := t.update(ctx, fileSetKey(fileSetID), write{
		Update: "ADD landed :id", Cond: "attribute_exists(pk)", Values: values{":id": strSetAV(fileID)}, Into: &it,
	})
	if isConditionFailed(err) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("add landed file %s to file-set %s: %w", fileID, fileSetID, err)
	}
	return &it, nil
}

// ClaimLanding takes the file-set's landing step for owner until the given
// time. It returns ErrConflict when the step is published or another
// owner's lease has not expired.
func (t *Table) ClaimLanding(ctx context.Context, fileSetID, owner string, until time.Time) error {
	_, err := t.update(ctx, fileSetKey(fileSetID), write{
		Update: "SET landingOwner = :o, landingLeaseUntil = :until",
		Cond:   "attribute_exists(pk) AND attribute_not_exists(publishedAt) AND (attribute_not_exists(landingLeaseUntil) OR landingLeaseUntil < :now)",
		Values: values{":o": strAV(owner), ":until": numAV(until.UnixMilli()), ":now": numAV(t.now().UnixMilli())},
	})
	if err != nil {
		return conflictOr("claim landing of file-set "+fileSetID, err)
	}
	return nil
}

// MarkPublished records that owner published the file-set's landing and
// drops the lease. ErrConflict: owner no longer held the lease.
func (t *Table) MarkPublished(ctx context.Context, fileSetID, owner string) error {
	return t.endLanding(ctx, fileSetID, owner, true)
}

// ReleaseLanding drops owner's lease without publishing (its step failed),
// so that the next attempt need not wait for the lease to expire.
func (t *Table) ReleaseLanding(ctx context.Context, fileSetID, owner string) error {
	return t.endLanding(ctx, fileSetID, owner, false)
}

func (t *Table) endLanding(ctx context.Context, fileSetID, owner string, published bool) error {
	op := "release landing"
	expr := "REMOVE landingOwner, landingLeaseUntil"
	vals := values{":o": strAV(owner)}
	if published {
		op = "mark landing published"
		expr = "SET publishedAt = :now " + expr
		vals[":now"] = timeAV(t.now())
	}
	_, err := t.update(ctx, fileSetKey(fileSetID), write{Update: expr, Cond: "landingOwner = :o", Values: vals})
	if err != nil {
		return conflictOr(fmt.Sprintf("%s of file-set %s", op, fileSetID), err)
	}
	return nil
}
