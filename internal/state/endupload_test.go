package state_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/cfsync/cfsync/internal/state"
)

// countingDB counts the reads and deletes the table sends.
type countingDB struct {
	state.DynamoDB
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingDB) count(op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[op]++
}

func (c *countingDB) GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	c.count("GetItem")
	return c.DynamoDB.GetItem(ctx, in, opts...)
}

func (c *countingDB) Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	c.count("Query")
	return c.DynamoDB.Query(ctx, in, opts...)
}

func (c *countingDB) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	c.count("DeleteItem")
	return c.DynamoDB.DeleteItem(ctx, in, opts...)
}

// TestEndUploadAgainstMoto: the checkpoint of a DONE file is deleted
// without reading it first — one DeleteItem for a file stored with one
// PutObject; with its part items, the header first and then the items —
// and only while the caller holds the lease: another holder's checkpoint
// is left whole.
func TestEndUploadAgainstMoto(t *testing.T) {
	tbl, db := uploadTable(t)
	cdb := &countingDB{DynamoDB: db, calls: map[string]int{}}
	ctbl := state.New(cdb, "state")
	ctx := context.Background()
	until := time.Now().Add(time.Minute)

	// A multipart checkpoint with two chunk items, held by owner-a.
	u, err := tbl.AcquireUpload(ctx, "f1", "owner-a", until)
	if err != nil {
		t.Fatal(err)
	}
	u.UploadID, u.Key = "up-1", "k"
	if err := tbl.SaveUpload(ctx, u, parts(1, 1001), []int{0, 1}, "owner-a"); err != nil {
		t.Fatal(err)
	}
	if err := ctbl.EndUpload(ctx, "f1", "owner-b", true); !errors.Is(err, state.ErrLeaseHeld) {
		t.Fatalf("EndUpload by another owner: %v, want ErrLeaseHeld", err)
	}
	if n := itemCount(t, db, "f1"); n != 3 {
		t.Fatalf("%d items after a refused EndUpload, want the header and 2 chunks", n)
	}
	cdb.calls = map[string]int{}
	if err := ctbl.EndUpload(ctx, "f1", "owner-a", true); err != nil {
		t.Fatal(err)
	}
	if n := itemCount(t, db, "f1"); n != 0 {
		t.Errorf("%d items left, want none", n)
	}
	if want := map[string]int{"DeleteItem": 3, "Query": 1}; !sameCounts(cdb.calls, want) {
		t.Errorf("requests %v, want %v (no read first)", cdb.calls, want)
	}

	// A single-PutObject file's checkpoint: one DeleteItem. Part items of
	// an earlier upload of the file are left to their TTL.
	u, err = tbl.AcquireUpload(ctx, "f2", "owner-a", until)
	if err != nil {
		t.Fatal(err)
	}
	u.UploadID = "old-upload"
	if err := tbl.SaveUpload(ctx, u, parts(1, 1), []int{0}, "owner-a"); err != nil {
		t.Fatal(err)
	}
	cdb.calls = map[string]int{}
	if err := ctbl.EndUpload(ctx, "f2", "owner-a", false); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"DeleteItem": 1}; !sameCounts(cdb.calls, want) {
		t.Errorf("requests %v, want %v", cdb.calls, want)
	}
	if _, err := tbl.GetUpload(ctx, "f2"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("header after EndUpload: %v, want ErrNotFound", err)
	}
	if err := ctbl.EndUpload(ctx, "f2", "owner-a", false); err != nil {
		t.Errorf("EndUpload of a deleted checkpoint: %v, want nil", err)
	}
}

func sameCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}
