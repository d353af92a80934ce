package main

import (
	"context"

	"github.com/cfsync/cfsync/internal/landing"
	"github.com/cfsync/cfsync/internal/state"
)

// FileSetRecorder records file-sets for the landing step (internal/landing:
// manifest, package index and "FileSet Landed" event once all files land).
type FileSetRecorder interface {
	RecordFileSet(ctx context.Context, it state.FileSetItem) error
}

var _ FileSetRecorder = (*state.Table)(nil)

// recordFileSets records the file-sets of the files about to be claimed,
// before they are claimed, so that every claimed file's file-set is known
// when the file lands. Recording is idempotent.
func (p *poll) recordFileSets(ctx context.Context, batch []fileSetFiles, fresh []entry) error {
	if p.h.FileSets == nil || len(fresh) == 0 {
		return nil
	}
	want := map[string]bool{}
	for _, e := range fresh {
		want[e.fs.ID] = true
	}
	for i := range batch {
		ff := &batch[i]
		if !want[ff.fs.ID] {
			continue
		}
		delete(want, ff.fs.ID)
		ids := make([]string, len(ff.files))
		for j, f := range ff.files {
			ids[j] = f.id
		}
		it := landing.FileSetItem(ff.fs, p.target.Bucket, p.target.PackageID, ids, p.fileTTL(&ff.fs))
		if !landing.Recordable(it) {
			p.log.Warn("file-set too large to track for the landing step: its files land without a manifest or event",
				"file_set_id", it.FileSetID, "files", len(it.FileIDs))
			continue
		}
		if err := p.h.FileSets.RecordFileSet(ctx, it); err != nil {
			return err
		}
	}
	return nil
}
