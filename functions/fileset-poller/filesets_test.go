package main

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// fakeRecorder records file-sets and what the state held at that moment.
type fakeRecorder struct {
	mu          sync.Mutex
	st          *fakeState
	sets        []state.FileSetItem
	claimedThen []string // files of a file-set already claimed when it was recorded
	err         error
}

func (r *fakeRecorder) RecordFileSet(ctx context.Context, it state.FileSetItem) error {
	if r.err != nil {
		return r.err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range it.FileIDs {
		if _, err := r.st.GetFile(ctx, id); err == nil {
			r.claimedThen = append(r.claimedThen, id)
		}
	}
	r.sets = append(r.sets, it)
	return nil
}

func TestFileSetsRecordedBeforeTheirFilesAreClaimed(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	rec := &fakeRecorder{st: f.st}
	f.h.FileSets = rec
	sets := mkSets("bulk-ESG", "p1", 0, 2, 3, t0.Add(-time.Hour))
	sets[0].Attributes = []rdp.Attribute{{Name: "ContentKey", Value: "Scores"}}
	f.files.add(sets...)
	f.mustHandle(t, `{}`)

	if len(rec.sets) != 2 {
		t.Fatalf("recorded %d file-sets, want 2", len(rec.sets))
	}
	if len(rec.claimedThen) != 0 {
		t.Errorf("files claimed before their file-set was recorded: %v", rec.claimedThen)
	}
	for i, it := range rec.sets {
		fs := sets[i]
		if it.FileSetID != fs.ID || it.Name != fs.Name || it.Bucket != "bulk-ESG" || it.PackageID != "p1" ||
			!slices.Equal(it.FileIDs, fs.Files) || !it.Created.Equal(fs.Created) || !it.AvailableTo.Equal(fs.AvailableTo) || it.TTL == 0 {
			t.Errorf("file-set %d recorded as %+v", i, it)
		}
	}
	if a := rec.sets[0].Attributes; len(a) != 1 || a[0] != (state.Attribute{Name: "ContentKey", Value: "Scores"}) {
		t.Errorf("attributes %v", a)
	}
	// The next poll finds every file known: nothing to record again.
	f.now = f.now.Add(15 * time.Minute)
	f.mustHandle(t, `{}`)
	if len(rec.sets) != 2 {
		t.Errorf("a poll with no new files recorded %d more file-sets", len(rec.sets)-2)
	}
}

func TestFileSetRecordFailureClaimsNothing(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.h.FileSets = &fakeRecorder{st: f.st, err: errors.New("throttled")}
	f.files.add(mkSets("bulk-ESG", "p1", 0, 1, 2, t0.Add(-time.Hour))...)
	_, _ = f.handle(t, `{}`)
	if n := len(f.q.Counts()); n != 0 {
		t.Errorf("%d files sent although their file-set was not recorded", n)
	}
	for _, id := range []string{"f-p1-0-0", "f-p1-0-1"} {
		if _, err := f.st.GetFile(context.Background(), id); err == nil {
			t.Errorf("file %s claimed although its file-set was not recorded", id)
		}
	}
}

// A file-set too large for a state item is not recorded, and its files are
// claimed and sent all the same.
func TestHugeFileSetIsNotRecordedButLands(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	rec := &fakeRecorder{st: f.st}
	f.h.FileSets = rec
	sets := mkSets("bulk-ESG", "p1", 0, 1, 6000, t0.Add(-time.Hour))
	for i := range sets[0].Files {
		sets[0].Files[i] += "-4e94-6d63-fea034dc-90e2-de33895bd4e9" // ids as long as RDP's
	}
	f.files.add(sets...)
	f.mustHandle(t, `{}`)
	if len(rec.sets) != 0 {
		t.Errorf("a file-set of %d files was recorded", len(sets[0].Files))
	}
	assertSentOnce(t, f.q, sets[0].Files)
}
