package state_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"

	"github.com/cfsync/cfsync/internal/state"
)

// opCounter counts the DynamoDB operations a client sends (an SDK
// middleware).
type opCounter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *opCounter) client(db *dynamodb.Client) *dynamodb.Client {
	return dynamodb.New(db.Options(), func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
			return s.Initialize.Add(middleware.InitializeMiddlewareFunc("countOps", c.handle), middleware.After)
		})
	})
}

func (c *opCounter) handle(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	c.mu.Lock()
	c.calls[awsmiddleware.GetOperationName(ctx)]++
	c.mu.Unlock()
	return next.HandleInitialize(ctx, in)
}

func (c *opCounter) reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.calls
	c.calls = map[string]int{}
	return got
}

// TestEndUploadAgainstMoto: the checkpoint of a DONE file is deleted
// without reading it first — one DeleteItem for a file stored with one
// PutObject; with its part items, the header first and then the items —
// and only while the caller holds the lease: another holder's checkpoint
// is left whole.
func TestEndUploadAgainstMoto(t *testing.T) {
	tbl, db := uploadTable(t)
	cnt := &opCounter{calls: map[string]int{}}
	ctbl := state.New(cnt.client(db), "state")
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
	cnt.reset()
	if err := ctbl.EndUpload(ctx, "f1", "owner-a", true); err != nil {
		t.Fatal(err)
	}
	if n := itemCount(t, db, "f1"); n != 0 {
		t.Errorf("%d items left, want none", n)
	}
	if got, want := cnt.reset(), map[string]int{"DeleteItem": 3, "Query": 1}; !sameCounts(got, want) {
		t.Errorf("requests %v, want %v (no read first)", got, want)
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
	cnt.reset()
	if err := ctbl.EndUpload(ctx, "f2", "owner-a", false); err != nil {
		t.Fatal(err)
	}
	if got, want := cnt.reset(), map[string]int{"DeleteItem": 1}; !sameCounts(got, want) {
		t.Errorf("requests %v, want %v", got, want)
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
