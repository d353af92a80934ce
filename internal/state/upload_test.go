package state_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
)

// uploadTable creates a state table in a fresh moto for the checkpoint tests.
func uploadTable(t *testing.T) (*state.Table, *dynamodb.Client) {
	t.Helper()
	_, cfg := testenv.MotoConfig(t)
	db := dynamodb.NewFromConfig(cfg)
	testenv.StateTable(t, db, "state")
	return state.New(db, "state"), db
}

func parts(from, to int32) []state.Part {
	var ps []state.Part
	for n := from; n <= to; n++ {
		ps = append(ps, state.Part{Number: n, ETag: fmt.Sprintf(`"%032x"`, n), Checksum: "AAAAAA==", Size: 8 << 20})
	}
	return ps
}

func itemCount(t *testing.T, db *dynamodb.Client, fileID string) int {
	t.Helper()
	out, err := db.Query(context.Background(), &dynamodb.QueryInput{
		TableName:                 aws.String("state"),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: state.FilePK(fileID)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Items)
}

func TestUploadCheckpointAgainstMoto(t *testing.T) {
	tbl, db := uploadTable(t)
	ctx := context.Background()
	now := time.Now()
	until := now.Add(10 * time.Minute)

	// Lease: first come, others refused, the holder may re-acquire.
	u, err := tbl.AcquireUpload(ctx, "f1", "owner-a", until)
	if err != nil {
		t.Fatal(err)
	}
	if u.Owner != "owner-a" || u.UploadID != "" || u.Invocations != 1 || u.LeaseUntil().UnixMilli() != until.UnixMilli() {
		t.Fatalf("new lease %+v", u)
	}
	if _, err := tbl.AcquireUpload(ctx, "f1", "owner-b", until); !errors.Is(err, state.ErrLeaseHeld) || !errors.Is(err, state.ErrConflict) {
		t.Fatalf("second owner: %v, want ErrLeaseHeld", err)
	}
	if u, err = tbl.AcquireUpload(ctx, "f1", "owner-a", until); err != nil || u.Invocations != 2 {
		t.Fatalf("re-acquire by the holder: %+v, %v", u, err)
	}

	// 1,500 parts cross a chunk boundary; the header keeps the md5 state.
	u.UploadID, u.Bucket, u.Key, u.Size, u.PartSize = "up-1", "dest", "a/b/c.bin", 1500*(8<<20), 8<<20
	u.MD5State, u.MD5Through = []byte{1, 2, 3, 0, 255}, 1500
	all := parts(1, 1500)
	if err := tbl.SaveUpload(ctx, u, all, []int{0, 1}, "owner-a"); err != nil {
		t.Fatal(err)
	}
	got, err := tbl.GetUpload(ctx, "f1")
	if err != nil {
		t.Fatal(err)
	}
	if got.PartsDone != 1500 || got.UploadID != "up-1" || string(got.MD5State) != string([]byte{1, 2, 3, 0, 255}) || got.MD5Through != 1500 || got.Owner != "owner-a" || got.TTL == 0 {
		t.Fatalf("saved header %+v", got)
	}
	loaded, err := tbl.LoadParts(ctx, got)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1500 || loaded[0] != all[0] || loaded[1499] != all[1499] || loaded[999].Number != 1000 || loaded[1000].Number != 1001 {
		t.Fatalf("loaded %d parts, first %+v last %+v", len(loaded), loaded[0], loaded[len(loaded)-1])
	}

	// Only dirty chunks are written: a later save of chunk 1 keeps chunk 0.
	more := append(all, parts(1501, 1600)...)
	if err := tbl.SaveUpload(ctx, u, more, []int{1}, "owner-a"); err != nil {
		t.Fatal(err)
	}
	if loaded, err = tbl.LoadParts(ctx, u); err != nil || len(loaded) != 1600 {
		t.Fatalf("after the second save: %d parts, %v", len(loaded), err)
	}

	// A header-only save (parts == nil) keeps the saved part count.
	u.NoProgress = 1
	if err := tbl.SaveUpload(ctx, u, nil, nil, "owner-a"); err != nil {
		t.Fatal(err)
	}
	if got, err := tbl.GetUpload(ctx, "f1"); err != nil || got.PartsDone != 1600 || got.NoProgress != 1 {
		t.Fatalf("after a header-only save: %+v, %v", got, err)
	}

	// Another owner cannot save or delete; the holder releases, then B takes over.
	if err := tbl.SaveUpload(ctx, u, more, []int{1}, "owner-b"); !errors.Is(err, state.ErrLeaseHeld) {
		t.Fatalf("save by a non-holder: %v", err)
	}
	if err := tbl.DeleteUpload(ctx, "f1", "owner-b"); !errors.Is(err, state.ErrLeaseHeld) {
		t.Fatalf("delete by a non-holder: %v", err)
	}
	if err := tbl.ReleaseUpload(ctx, "f1", "owner-a"); err != nil {
		t.Fatal(err)
	}
	b, err := tbl.AcquireUpload(ctx, "f1", "owner-b", until)
	if err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
	if b.UploadID != "up-1" || b.PartsDone != 1600 {
		t.Fatalf("the checkpoint must survive a release: %+v", b)
	}

	// A new upload of the same file ignores the old upload's chunks.
	b.UploadID, b.PartsDone = "up-2", 0
	if err := tbl.SaveUpload(ctx, b, parts(1, 3), []int{0}, "owner-b"); err != nil {
		t.Fatal(err)
	}
	if loaded, err = tbl.LoadParts(ctx, b); err != nil || len(loaded) != 3 {
		t.Fatalf("new upload: %d parts, %v (stale chunk 1 of up-1 must be ignored)", len(loaded), err)
	}
	// A checkpoint claiming more parts than stored is an error, not a silent resume.
	b.PartsDone = 4
	if _, err := tbl.LoadParts(ctx, b); err == nil {
		t.Fatal("LoadParts accepted a checkpoint with a missing part")
	} else if !errors.Is(err, state.ErrPartsMissing) {
		t.Fatalf("LoadParts with a missing part: %v, want ErrPartsMissing (the checkpoint is unusable, not the table unreachable)", err)
	}

	// Delete removes the header and every chunk.
	if err := tbl.DeleteUpload(ctx, "f1", "owner-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.GetUpload(ctx, "f1"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if n := itemCount(t, db, "f1"); n != 0 {
		t.Fatalf("%d items left under FILE#f1", n)
	}
	if err := tbl.DeleteUpload(ctx, "f1", "owner-b"); err != nil {
		t.Fatalf("deleting nothing: %v", err)
	}

	// A header without an upload yet: the lease and counters only.
	l, err := tbl.AcquireUpload(ctx, "f3", "owner-c", until)
	if err != nil {
		t.Fatal(err)
	}
	l.Owner, l.NoProgress = "", 2
	if err := tbl.SaveUpload(ctx, l, nil, nil, "owner-c"); err != nil {
		t.Fatalf("save a lease-only header: %v", err)
	}
	if got, err := tbl.GetUpload(ctx, "f3"); err != nil || got.NoProgress != 2 || got.Owner != "" || got.UploadID != "" {
		t.Fatalf("lease-only header %+v, %v", got, err)
	}
	if err := tbl.SaveUpload(ctx, l, parts(1, 1), []int{0}, ""); err == nil {
		t.Fatal("parts without an upload id were accepted")
	}

	// An expired lease is taken over.
	if _, err := tbl.AcquireUpload(ctx, "f2", "crashed", now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.AcquireUpload(ctx, "f2", "next", until); err != nil {
		t.Fatalf("take over an expired lease: %v", err)
	}
}

// TestMarkRetrying: a transient failure records its reason on a DOWNLOADING
// file without marking it FAILED; other statuses are left alone, and the
// next BeginDownload clears the reason.
func TestMarkRetrying(t *testing.T) {
	tbl, _ := uploadTable(t)
	ctx := context.Background()
	if _, err := tbl.BeginDownload(ctx, state.FileItem{FileID: "r1", FileSetID: "fs", Bucket: "b", PackageID: "p"}); err != nil {
		t.Fatal(err)
	}
	if err := tbl.MarkRetrying(ctx, "r1", "download: range 0+5: giving up after 6 attempts"); err != nil {
		t.Fatal(err)
	}
	it, err := tbl.GetFile(ctx, "r1")
	if err != nil || it.Status != state.StatusDownloading || it.Reason != "download: range 0+5: giving up after 6 attempts" {
		t.Fatalf("after MarkRetrying: %+v, %v; want DOWNLOADING with the reason", it, err)
	}
	if _, err := tbl.BeginDownload(ctx, state.FileItem{FileID: "r1", FileSetID: "fs", Bucket: "b", PackageID: "p"}); err != nil {
		t.Fatal(err)
	}
	if it, _ := tbl.GetFile(ctx, "r1"); it.Reason != "" {
		t.Errorf("reason %q kept by the next attempt", it.Reason)
	}
	// DONE and FAILED files, and unknown ones, are not touched.
	if err := tbl.MarkDone(ctx, "r1", 5, "k", `"e"`); err != nil {
		t.Fatal(err)
	}
	if err := tbl.MarkRetrying(ctx, "r1", "late"); err != nil {
		t.Fatal(err)
	}
	if it, _ := tbl.GetFile(ctx, "r1"); it.Status != state.StatusDone || it.Reason != "" {
		t.Errorf("DONE file changed by MarkRetrying: %+v", it)
	}
	if err := tbl.MarkRetrying(ctx, "nobody", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.GetFile(ctx, "nobody"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("MarkRetrying created an item for an unknown file: %v", err)
	}
}

func TestChunkOf(t *testing.T) {
	tests := []struct {
		n    int32
		want int
	}{{1, 0}, {1000, 0}, {1001, 1}, {10000, 9}}
	for _, tt := range tests {
		if got := state.ChunkOf(tt.n); got != tt.want {
			t.Errorf("ChunkOf(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
	if state.UploadPartsSK(3) != "UPLOAD#PARTS#00003" {
		t.Errorf("UploadPartsSK(3) = %s", state.UploadPartsSK(3))
	}
}

// TestBumpSeq: the chain number only rises, keeps the lease and the
// checkpoint, and a SaveUpload of the header afterwards keeps the new number
// and the pinned source ETag.
func TestBumpSeq(t *testing.T) {
	tbl, _ := uploadTable(t)
	ctx := context.Background()
	up, err := tbl.AcquireUpload(ctx, "s1", "me", time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	up.UploadID, up.Bucket, up.Key, up.SourceETag = "u1", "b", "k", `"abc"`
	if err := tbl.SaveUpload(ctx, up, nil, nil, "me"); err != nil {
		t.Fatal(err)
	}
	if err := tbl.BumpSeq(ctx, "s1", 2); err != nil {
		t.Fatal(err)
	}
	if err := tbl.BumpSeq(ctx, "s1", 1); err != nil { // lower: ignored
		t.Fatal(err)
	}
	got, err := tbl.GetUpload(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 2 || got.SeqAtMs == 0 || got.Owner != "me" || got.UploadID != "u1" || got.SourceETag != `"abc"` {
		t.Fatalf("after BumpSeq: %+v", got)
	}
	if err := tbl.BumpSeq(ctx, "fresh", 1); err != nil {
		t.Fatal(err)
	}
	if got, err := tbl.GetUpload(ctx, "fresh"); err != nil || got.Seq != 1 || got.Owner != "" {
		t.Fatalf("BumpSeq of a file without a checkpoint: %+v, %v", got, err)
	}
	if _, err := tbl.AcquireUpload(ctx, "fresh", "other", time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("lease of a file with only a chain number: %v", err)
	}
}
