package state_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cfsync/cfsync/internal/state"
)

// newTestTable starts moto and creates a state table shaped like template.yaml's.
func newTestTable(t *testing.T) *state.Table {
	t.Helper()
	tb, _ := uploadTable(t)
	return tb
}

func TestFileLifecycle(t *testing.T) {
	tbl := newTestTable(t)
	ctx := context.Background()
	item := state.FileItem{FileID: "f1", FileSetID: "s1", Bucket: "bulk-ESG", PackageID: "p1", AvailableTo: time.Now().Add(48 * time.Hour)}

	if err := tbl.ClaimFile(ctx, item); err != nil {
		t.Fatal(err)
	}
	if err := tbl.ClaimFile(ctx, item); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("second claim: %v, want ErrConflict", err)
	}
	got, err := tbl.GetFile(ctx, "f1")
	if err != nil || got.Status != state.StatusClaimed || got.Bucket != "bulk-ESG" {
		t.Fatalf("after claim: %+v, %v", got, err)
	}
	if err := tbl.MarkQueued(ctx, "f1"); err != nil {
		t.Fatal(err)
	}
	old, err := tbl.BeginDownload(ctx, item)
	if err != nil || old == nil || old.Status != state.StatusQueued {
		t.Fatalf("begin download: old=%+v err=%v", old, err)
	}
	if err := tbl.MarkFailed(ctx, "f1", "boom"); err != nil {
		t.Fatal(err)
	}
	if got, _ := tbl.GetFile(ctx, "f1"); got.Status != state.StatusFailed || got.Reason != "boom" || got.Attempts != 1 {
		t.Fatalf("after failure: %+v", got)
	}
	if _, err := tbl.BeginDownload(ctx, item); err != nil {
		t.Fatal(err)
	}
	if err := tbl.MarkDone(ctx, "f1", 42, "k", "etag"); err != nil {
		t.Fatal(err)
	}
	got, _ = tbl.GetFile(ctx, "f1")
	if got.Status != state.StatusDone || got.Size != 42 || got.Key != "k" || got.Reason != "" || got.Attempts != 2 {
		t.Fatalf("after done: %+v", got)
	}
	// DONE is final: no new attempt, no downgrade, no re-queue.
	if _, err := tbl.BeginDownload(ctx, item); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("begin on DONE: %v, want ErrConflict", err)
	}
	_ = tbl.MarkFailed(ctx, "f1", "late failure")
	_ = tbl.MarkQueued(ctx, "f1")
	if got, _ := tbl.GetFile(ctx, "f1"); got.Status != state.StatusDone {
		t.Fatalf("DONE was overwritten: %+v", got)
	}
	// A message for a file the poller never saw creates the item.
	if old, err := tbl.BeginDownload(ctx, state.FileItem{FileID: "new", FileSetID: "s", Bucket: "b", PackageID: "p"}); err != nil || old != nil {
		t.Fatalf("begin unknown: %+v, %v", old, err)
	}
	if _, err := tbl.GetFile(ctx, "missing"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
}

func TestBatchGetFiles(t *testing.T) {
	tbl := newTestTable(t)
	ctx := context.Background()
	var ids []string
	for i := range 210 {
		id := fmt.Sprintf("f%03d", i)
		ids = append(ids, id)
		if i%2 == 0 {
			if err := tbl.ClaimFile(ctx, state.FileItem{FileID: id, FileSetID: "s", Bucket: "b", PackageID: "p"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ids = append(ids, "f000", "f002") // duplicates are tolerated
	found, calls, err := tbl.BatchGetFiles(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 105 || calls != 3 {
		t.Fatalf("found %d in %d calls, want 105 in 3", len(found), calls)
	}
	n := 0
	if err := tbl.ScanFiles(ctx, func(*state.FileItem) error { n++; return nil }); err != nil || n != 105 {
		t.Fatalf("scan saw %d, %v", n, err)
	}
}

func TestFailureReasonIsClipped(t *testing.T) {
	tbl := newTestTable(t)
	ctx := context.Background()
	if err := tbl.ClaimFile(ctx, state.FileItem{FileID: "f", FileSetID: "s", Bucket: "b", PackageID: "p"}); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("é", 700) // 1,400 bytes of 2-byte characters
	if err := tbl.MarkFailed(ctx, "f", long); err != nil {
		t.Fatal(err)
	}
	got, err := tbl.GetFile(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Reason) != 1000 || !utf8.ValidString(got.Reason) {
		t.Fatalf("reason of %d bytes, valid UTF-8 %v", len(got.Reason), utf8.ValidString(got.Reason))
	}
}
