package claim_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/claim"
	"github.com/cfsync/cfsync/internal/claim/claimtest"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
)

func TestOne(t *testing.T) {
	tests := []struct {
		name     string
		pre      string // the file's status before the claim ("": unknown)
		want     claim.Result
		wantSend bool
	}{
		{name: "new file is claimed", want: claim.Result{Mine: true, Status: state.StatusClaimed}, wantSend: true},
		{name: "lost race to a queued file: nothing to send", pre: state.StatusQueued, want: claim.Result{Status: state.StatusQueued}},
		{name: "lost race to a done file", pre: state.StatusDone, want: claim.Result{Status: state.StatusDone}},
		{name: "still CLAIMED (message maybe lost) is sent again", pre: state.StatusClaimed,
			want: claim.Result{Status: state.StatusClaimed}, wantSend: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := claimtest.NewStore(nil)
			if tt.pre != "" {
				st = claimtest.NewStore(map[string]string{"f": tt.pre})
			}
			got := claim.One(context.Background(), st, state.FileItem{FileID: "f"})
			if got != tt.want || got.Send() != tt.wantSend {
				t.Fatalf("result %+v (send %v), want %+v (send %v)", got, got.Send(), tt.want, tt.wantSend)
			}
		})
	}
}

// TestOneReportsStoreErrors: a claim that fails, or the read after a lost
// race that fails, is reported with the store's error and nothing to send.
func TestOneReportsStoreErrors(t *testing.T) {
	boom := errors.New("dynamodb down")
	claimFails := claimtest.NewStore(nil)
	claimFails.ClaimErr = boom
	readFails := claimtest.NewStore(map[string]string{"f": state.StatusClaimed})
	readFails.GetErr = boom
	for name, st := range map[string]*claimtest.Store{"claim error": claimFails, "read after a lost race fails": readFails} {
		got := claim.One(context.Background(), st, state.FileItem{FileID: "f"})
		if !errors.Is(got.Err, boom) || got.Send() {
			t.Errorf("%s: result %+v: want the store's error and nothing to send", name, got)
		}
	}
}

// Many paths claiming the same files at once: each file is claimed by
// exactly one of them, and every other sees it CLAIMED or further.
func TestAllConcurrentPathsClaimEachFileOnce(t *testing.T) {
	st := claimtest.NewStore(nil)
	st.ClaimDelay = time.Millisecond // let concurrent claims overlap
	items := []state.FileItem{{FileID: "a"}, {FileID: "b"}, {FileID: "c"}}
	const paths = 8
	results := make([][]claim.Result, paths)
	var wg sync.WaitGroup
	for p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[p] = claim.All(context.Background(), st, items, 4)
		}()
	}
	wg.Wait()
	for i, it := range items {
		mine := 0
		for p := range paths {
			r := results[p][i]
			if r.Err != nil || r.Status != state.StatusClaimed {
				t.Fatalf("path %d file %s: %+v", p, it.FileID, r)
			}
			if r.Mine {
				mine++
			}
		}
		if mine != 1 {
			t.Errorf("file %s claimed by %d paths, want 1", it.FileID, mine)
		}
	}
}

func TestAllBoundsConcurrentWrites(t *testing.T) {
	st := claimtest.NewStore(nil)
	st.ClaimDelay = time.Millisecond
	var items []state.FileItem
	for i := range 40 {
		items = append(items, state.FileItem{FileID: fmt.Sprint(i)})
	}
	res := claim.All(context.Background(), st, items, 3)
	for i, r := range res {
		if !r.Mine {
			t.Fatalf("item %d: %+v", i, r)
		}
	}
	if m := st.MaxConcurrentClaims(); m > 3 || m < 2 {
		t.Fatalf("%d claims at once, want 2..3 (limit 3)", m)
	}
}

func msgs(ids ...string) []queue.Message {
	var out []queue.Message
	for _, id := range ids {
		out = append(out, queue.Message{FileID: id, FileSetID: "fs", Bucket: "b", PackageID: "p"})
	}
	return out
}

func TestSend(t *testing.T) {
	boom := errors.New("sqs down")
	tests := []struct {
		name       string
		refuse     []string
		sendErr    error
		markErr    map[string]error
		wantSent   int
		wantFailed int
		wantMarkF  int
		wantErr    bool
		after      map[string]string
	}{
		{name: "all sent and marked QUEUED", wantSent: 3,
			after: map[string]string{"a": state.StatusQueued, "b": state.StatusQueued, "c": state.StatusQueued}},
		{name: "SQS partial failure: the refused stay CLAIMED", refuse: []string{"b"}, wantSent: 2, wantFailed: 1,
			after: map[string]string{"a": state.StatusQueued, "b": state.StatusClaimed, "c": state.StatusQueued}},
		{name: "send error after some were sent: those are marked", refuse: []string{"c"}, sendErr: boom,
			wantSent: 2, wantFailed: 1, wantErr: true,
			after: map[string]string{"a": state.StatusQueued, "b": state.StatusQueued, "c": state.StatusClaimed}},
		{name: "mark failure is counted, file stays CLAIMED", markErr: map[string]error{"a": boom}, wantSent: 3, wantMarkF: 1,
			after: map[string]string{"a": state.StatusClaimed, "b": state.StatusQueued}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := claimtest.NewStore(map[string]string{"a": state.StatusClaimed, "b": state.StatusClaimed, "c": state.StatusClaimed})
			st.MarkErr = tt.markErr
			q := &claimtest.Sender{Err: tt.sendErr}
			if tt.refuse != nil {
				q.Fail = claimtest.FailFiles(tt.refuse...)
			}
			got, err := claim.Send(context.Background(), st, q, msgs("a", "b", "c"), 2)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if len(got.Sent) != tt.wantSent || len(got.Failed) != tt.wantFailed || got.MarkFailed != tt.wantMarkF {
				t.Fatalf("sent %d failed %d markFailed %d, want %d %d %d",
					len(got.Sent), len(got.Failed), got.MarkFailed, tt.wantSent, tt.wantFailed, tt.wantMarkF)
			}
			if (got.MarkErr != nil) != (tt.wantMarkF > 0) {
				t.Fatalf("MarkErr = %v with %d mark failures", got.MarkErr, got.MarkFailed)
			}
			for id, s := range tt.after {
				if st.Status(id) != s {
					t.Errorf("%s: %s, want %s", id, st.Status(id), s)
				}
			}
		})
	}
}

func TestSendNothingCallsNoOne(t *testing.T) {
	q := &claimtest.Sender{Err: errors.New("must not be called")}
	if _, err := claim.Send(context.Background(), claimtest.NewStore(nil), q, nil, 1); err != nil {
		t.Fatal(err)
	}
}

func TestItem(t *testing.T) {
	to := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	m := queue.Message{FileID: "f", FileSetID: "fs", FileSetName: "n", FileName: "x.csv", Bucket: "b", PackageID: "p"}
	got := claim.Item(m, 10, to, 99)
	want := state.FileItem{FileID: "f", FileSetID: "fs", FileSetName: "n", FileName: "x.csv", Bucket: "b",
		PackageID: "p", Size: 10, AvailableTo: to, TTL: 99}
	if got != want {
		t.Fatalf("item %+v, want %+v", got, want)
	}
}

// TestTTL: the expiry never lies in the past, whoever claims (poller or
// notification reader), and no availableTo means no TTL.
func TestTTL(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name        string
		availableTo time.Time
		want        int64
	}{
		{"future availableTo", now.Add(48 * time.Hour), now.Add(48*time.Hour + time.Hour).Unix()},
		{"past availableTo: from now", now.Add(-72 * time.Hour), now.Add(time.Hour).Unix()},
		{"no availableTo", time.Time{}, 0},
	} {
		if got := claim.TTL(tc.availableTo, now, time.Hour); got != tc.want {
			t.Errorf("%s: TTL = %d, want %d", tc.name, got, tc.want)
		}
	}
}
