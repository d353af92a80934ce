package state_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

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

// nonFinal lists the file ids the sparse index returns, oldest update first.
func nonFinal(t *testing.T, tbl *state.Table, before time.Time, limit int) []string {
	t.Helper()
	var ids []string
	err := tbl.QueryNonFinal(context.Background(), before, limit, func(it *state.FileItem) error {
		ids = append(ids, it.FileID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestNonFinalIndexHoldsOnlyNonFinalFiles(t *testing.T) {
	tbl := newTestTable(t)
	ctx := context.Background()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tbl.Now = func() time.Time { return clock }
	for _, id := range []string{"a", "b", "c", "d"} {
		clock = clock.Add(time.Minute)
		if err := tbl.ClaimFile(ctx, state.FileItem{FileID: id, FileSetID: "s", Bucket: "b", PackageID: "p"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := nonFinal(t, tbl, time.Time{}, 0); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("after claims: %v, want a b c d", got)
	}
	clock = clock.Add(time.Minute)
	if err := tbl.MarkDone(ctx, "a", 1, "k", "e"); err != nil {
		t.Fatal(err)
	}
	if err := tbl.MarkFailed(ctx, "b", "gone"); err != nil {
		t.Fatal(err)
	}
	if err := tbl.MarkQueued(ctx, "c"); err != nil { // c moves: now the newest
		t.Fatal(err)
	}
	if got := nonFinal(t, tbl, time.Time{}, 0); !slices.Equal(got, []string{"d", "c"}) {
		t.Fatalf("after DONE a, FAILED b, QUEUED c: %v, want d c", got)
	}
	if got := nonFinal(t, tbl, clock, 0); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("updated before %v: %v, want d", clock, got)
	}
	if got := nonFinal(t, tbl, time.Time{}, 1); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("limit 1: %v, want d", got)
	}
	// BeginDownload of a file the poller never saw (message from elsewhere) makes it non-final too.
	if _, err := tbl.BeginDownload(ctx, state.FileItem{FileID: "e", FileSetID: "s", Bucket: "b", PackageID: "p"}); err != nil {
		t.Fatal(err)
	}
	if got := nonFinal(t, tbl, time.Time{}, 0); !slices.Contains(got, "e") {
		t.Fatalf("after BeginDownload of e: %v, want e listed", got)
	}
}

func TestRequeueFileOnlyIfUnchanged(t *testing.T) {
	tbl := newTestTable(t)
	ctx := context.Background()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tbl.Now = func() time.Time { return clock }
	if err := tbl.ClaimFile(ctx, state.FileItem{FileID: "f", FileSetID: "s", Bucket: "b", PackageID: "p"}); err != nil {
		t.Fatal(err)
	}
	if err := tbl.MarkQueued(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	seen, err := tbl.GetFile(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(time.Hour)
	if err := tbl.RequeueFile(ctx, "f", seen.UpdatedAt); err != nil {
		t.Fatalf("first requeue: %v", err)
	}
	if err := tbl.RequeueFile(ctx, "f", seen.UpdatedAt); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("second requeue with the same view: %v, want ErrConflict", err)
	}
	got, _ := tbl.GetFile(ctx, "f")
	if got.Status != state.StatusClaimed || got.Resends != 1 || !got.UpdatedAt.Equal(clock) {
		t.Fatalf("after requeue: status %s resends %d updated %v", got.Status, got.Resends, got.UpdatedAt)
	}
	if err := tbl.MarkDone(ctx, "f", 1, "k", "e"); err != nil {
		t.Fatal(err)
	}
	done, _ := tbl.GetFile(ctx, "f")
	if err := tbl.RequeueFile(ctx, "f", done.UpdatedAt); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("requeue of a DONE file: %v, want ErrConflict", err)
	}
}

// TestMarkNonFinalIndexesLegacyItems: an item written before the index
// existed (no nonFinal) joins it, unless it is DONE or FAILED.
func TestMarkNonFinalIndexesLegacyItems(t *testing.T) {
	tbl := newTestTable(t)
	ctx := context.Background()
	for _, id := range []string{"legacy-queued", "legacy-done"} {
		if err := tbl.ClaimFile(ctx, state.FileItem{FileID: id, FileSetID: "s", Bucket: "b", PackageID: "p"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tbl.MarkDone(ctx, "legacy-done", 1, "k", "e"); err != nil {
		t.Fatal(err)
	}
	// Strip nonFinal as an older version would have written the item.
	if _, err := tbl.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: &tbl.Name,
		Key:              map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: state.FilePK("legacy-queued")}, "sk": &types.AttributeValueMemberS{Value: state.SKFile}},
		UpdateExpression: aws.String("REMOVE nonFinal")}); err != nil {
		t.Fatal(err)
	}
	if got := nonFinal(t, tbl, time.Time{}, 0); len(got) != 0 {
		t.Fatalf("before: %v, want none indexed", got)
	}
	for _, id := range []string{"legacy-queued", "legacy-done", "unknown"} {
		if err := tbl.MarkNonFinal(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if got := nonFinal(t, tbl, time.Time{}, 0); !slices.Equal(got, []string{"legacy-queued"}) {
		t.Fatalf("after MarkNonFinal: %v, want legacy-queued only", got)
	}
	if _, err := tbl.GetFile(ctx, "unknown"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("MarkNonFinal created an item: %v", err)
	}
}
