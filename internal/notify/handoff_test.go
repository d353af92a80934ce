package notify

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/claim/claimtest"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
)

var _ StateStore = (*claimtest.Store)(nil)
var _ Sender = (*claimtest.Sender)(nil)

func TestHandoff(t *testing.T) {
	fs := FileSet{ID: "fs1", BucketName: "b", PackageID: "p", Name: "n", Status: "READY", AvailableTo: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}
	files := []File{{ID: "f1", Size: 10}, {ID: "f2"}, {ID: "f3"}}
	tests := []struct {
		name     string
		pre      map[string]string // file → status before
		failSend bool
		want     HandoffResult
		wantErr  bool
		after    map[string]string
	}{
		{name: "new files are claimed, sent, queued", want: HandoffResult{Claimed: 3, Queued: 3},
			after: map[string]string{"f1": state.StatusQueued, "f3": state.StatusQueued}},
		{name: "poller got there first", pre: map[string]string{"f1": state.StatusQueued, "f2": state.StatusDone, "f3": state.StatusDownloading},
			want: HandoffResult{Known: 3}, after: map[string]string{"f2": state.StatusDone}},
		{name: "claimed but unsent is sent again", pre: map[string]string{"f1": state.StatusClaimed},
			want: HandoffResult{Claimed: 2, Resent: 1, Queued: 3}, after: map[string]string{"f1": state.StatusQueued}},
		{name: "send fails: error, files stay CLAIMED", failSend: true, want: HandoffResult{Claimed: 3}, wantErr: true,
			after: map[string]string{"f1": state.StatusClaimed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, q := claimtest.NewStore(tt.pre), &claimtest.Sender{}
			if tt.failSend {
				q.Fail = claimtest.FailAll
			}
			h := &Handoff{State: st, Queue: q, TTLMargin: time.Hour}
			got, err := h.Enqueue(context.Background(), fs, files)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("result = %+v, want %+v", got, tt.want)
			}
			for id, s := range tt.after {
				if st.Status(id) != s {
					t.Errorf("%s: status %s, want %s", id, st.Status(id), s)
				}
			}
			if it, _ := st.GetFile(context.Background(), "f1"); it != nil && tt.pre == nil && (it.TTL != fs.AvailableTo.Add(time.Hour).Unix() || it.Size != 10) {
				t.Errorf("claimed item %+v: TTL/size not set", it)
			}
		})
	}
}

// Duplicate deliveries of one notification, handled at the same time, queue
// each file once.
func TestHandoffConcurrentDuplicates(t *testing.T) {
	st, q := claimtest.NewStore(nil), &claimtest.Sender{}
	h := &Handoff{State: st, Queue: q}
	fs := FileSet{ID: "fs1", BucketName: "b", PackageID: "p", Status: "READY"}
	files := []File{{ID: "f1"}, {ID: "f2"}}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.Enqueue(context.Background(), fs, files); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// A file can be sent twice only if a second delivery saw it still
	// CLAIMED (between the send and MarkQueued): allowed (the downloader is
	// idempotent) but each file must be sent at least once.
	seen := map[string]int{}
	for _, m := range q.Sent() {
		seen[m.FileID]++
	}
	if seen["f1"] == 0 || seen["f2"] == 0 {
		t.Fatalf("sent %v", seen)
	}
}

func TestHandoffClaimErrorIsReturned(t *testing.T) {
	st := claimtest.NewStore(nil)
	st.ClaimErr = errors.New("dynamodb down")
	h := &Handoff{State: st, Queue: &claimtest.Sender{}}
	_, err := h.Enqueue(context.Background(), FileSet{ID: "fs", BucketName: "b", PackageID: "p"}, []File{{ID: "f"}})
	if err == nil {
		t.Fatal("claim error swallowed")
	}
}

// A notification that arrives after its file-set's availableTo claims items
// whose TTL starts from now, as the poller's do: an expiry in the past would
// let DynamoDB delete them at once and a full reconciliation claim them again.
func TestHandoffLateNotificationTTL(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	st, q := claimtest.NewStore(nil), &claimtest.Sender{}
	h := &Handoff{State: st, Queue: q, TTLMargin: time.Hour, Now: func() time.Time { return now }}
	fs := FileSet{ID: "fs1", BucketName: "b", PackageID: "p", Status: "READY", AvailableTo: now.Add(-24 * time.Hour)}
	if _, err := h.Enqueue(context.Background(), fs, []File{{ID: "f1"}}); err != nil {
		t.Fatal(err)
	}
	it, _ := st.GetFile(context.Background(), "f1")
	if it == nil || it.TTL != now.Add(time.Hour).Unix() {
		t.Fatalf("item %+v: TTL want %d (now + margin)", it, now.Add(time.Hour).Unix())
	}
}

// The notification's file name and size travel in the message, as the
// poller's listing does, so the downloader needs no request to learn them; a
// name SQS would refuse is left out (the downloader names the file from its
// presigned URL), and a size of 0 may be a missing field, so it is left out.
func TestHandoffCarriesNameAndSize(t *testing.T) {
	fs := FileSet{ID: "fs1", BucketName: "b", PackageID: "p", Name: "n", Status: "READY"}
	files := []File{{ID: "f1", FileName: "a.csv.gz", Size: 10}, {ID: "f2", FileName: "bad\uFFFEname.gz", Size: 7}, {ID: "f3", FileName: "c.gz"}}
	st, q := claimtest.NewStore(nil), &claimtest.Sender{}
	h := &Handoff{State: st, Queue: q, TTLMargin: time.Hour}
	if _, err := h.Enqueue(context.Background(), fs, files); err != nil {
		t.Fatal(err)
	}
	got := map[string]queue.Message{}
	for _, m := range q.Sent() {
		got[m.FileID] = m
	}
	size := func(m queue.Message) int64 {
		if m.Size == nil {
			return -1
		}
		return *m.Size
	}
	for _, w := range []struct {
		id, name string
		size     int64
	}{{"f1", "a.csv.gz", 10}, {"f2", "", 7}, {"f3", "c.gz", -1}} {
		if m := got[w.id]; m.FileName != w.name || size(m) != w.size {
			t.Errorf("%s: message name %q size %d, want %q %d", w.id, m.FileName, size(m), w.name, w.size)
		}
	}
}
