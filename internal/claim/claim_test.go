package claim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
)

// fakeStore is an in-memory state table whose conditional claim is atomic,
// as DynamoDB's is.
type fakeStore struct {
	mu       sync.Mutex
	items    map[string]state.FileItem
	claimErr error
	getErr   error
	markErr  map[string]error
	inFlight atomic.Int32
	maxSeen  atomic.Int32
}

var _ Store = (*fakeStore)(nil)

func newFakeStore(pre map[string]string) *fakeStore {
	f := &fakeStore{items: map[string]state.FileItem{}}
	for id, s := range pre {
		f.items[id] = state.FileItem{FileID: id, Status: s}
	}
	return f
}

func (f *fakeStore) ClaimFile(_ context.Context, it state.FileItem) error {
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for m := f.maxSeen.Load(); n > m && !f.maxSeen.CompareAndSwap(m, n); m = f.maxSeen.Load() {
	}
	time.Sleep(time.Millisecond) // let concurrent claims overlap
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.claimErr != nil {
		return f.claimErr
	}
	if _, ok := f.items[it.FileID]; ok {
		return fmt.Errorf("claim file %s: %w", it.FileID, state.ErrConflict)
	}
	it.Status = state.StatusClaimed
	f.items[it.FileID] = it
	return nil
}

func (f *fakeStore) GetFile(_ context.Context, id string) (*state.FileItem, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.getErr != nil {
		return nil, f.getErr
	}
	it, ok := f.items[id]
	if !ok {
		return nil, state.ErrNotFound
	}
	return &it, nil
}

func (f *fakeStore) MarkQueued(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.markErr[id]; err != nil {
		return err
	}
	if it, ok := f.items[id]; ok && it.Status == state.StatusClaimed {
		it.Status = state.StatusQueued
		f.items[id] = it
	}
	return nil
}

func (f *fakeStore) status(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.items[id].Status
}

// fakeSender takes every message but the ones named in refuse (SQS's
// per-entry failures) and returns err after them.
type fakeSender struct {
	mu     sync.Mutex
	sent   []queue.Message
	refuse map[string]bool
	err    error
}

var _ Sender = (*fakeSender)(nil)

func (s *fakeSender) SendBatch(_ context.Context, msgs []queue.Message) (queue.SendResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r queue.SendResult
	for _, m := range msgs {
		if s.refuse[m.FileID] {
			r.Failed = append(r.Failed, m)
			continue
		}
		r.Sent = append(r.Sent, m)
		s.sent = append(s.sent, m)
	}
	return r, s.err
}

func TestOne(t *testing.T) {
	boom := errors.New("dynamodb down")
	tests := []struct {
		name      string
		pre       string // the file's status before the claim ("": unknown)
		claimErr  error
		getErr    error
		want      Result
		wantSend  bool
		wantError bool
	}{
		{name: "new file is claimed", want: Result{Mine: true, Status: state.StatusClaimed}, wantSend: true},
		{name: "lost race to a queued file: nothing to send", pre: state.StatusQueued, want: Result{Status: state.StatusQueued}},
		{name: "lost race to a done file", pre: state.StatusDone, want: Result{Status: state.StatusDone}},
		{name: "still CLAIMED (message maybe lost) is sent again", pre: state.StatusClaimed,
			want: Result{Status: state.StatusClaimed}, wantSend: true},
		{name: "claim error", claimErr: boom, wantError: true},
		{name: "read after a lost race fails", pre: state.StatusClaimed, getErr: boom, wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newFakeStore(nil)
			if tt.pre != "" {
				st.items["f"] = state.FileItem{FileID: "f", Status: tt.pre}
			}
			st.claimErr, st.getErr = tt.claimErr, tt.getErr
			got := One(context.Background(), st, state.FileItem{FileID: "f"})
			if (got.Err != nil) != tt.wantError {
				t.Fatalf("err = %v, want error %v", got.Err, tt.wantError)
			}
			if tt.wantError {
				if !errors.Is(got.Err, boom) || got.Send() {
					t.Fatalf("result %+v: want the store's error and nothing to send", got)
				}
				return
			}
			if got != tt.want || got.Send() != tt.wantSend {
				t.Fatalf("result %+v (send %v), want %+v (send %v)", got, got.Send(), tt.want, tt.wantSend)
			}
		})
	}
}

// Many paths claiming the same files at once: each file is claimed by
// exactly one of them, and every other sees it CLAIMED or further.
func TestAllConcurrentPathsClaimEachFileOnce(t *testing.T) {
	st := newFakeStore(nil)
	items := []state.FileItem{{FileID: "a"}, {FileID: "b"}, {FileID: "c"}}
	const paths = 8
	results := make([][]Result, paths)
	var wg sync.WaitGroup
	for p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[p] = All(context.Background(), st, items, 4)
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
	st := newFakeStore(nil)
	var items []state.FileItem
	for i := range 40 {
		items = append(items, state.FileItem{FileID: fmt.Sprint(i)})
	}
	res := All(context.Background(), st, items, 3)
	for i, r := range res {
		if !r.Mine {
			t.Fatalf("item %d: %+v", i, r)
		}
	}
	if m := st.maxSeen.Load(); m > 3 || m < 2 {
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
		refuse     map[string]bool
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
		{name: "SQS partial failure: the refused stay CLAIMED", refuse: map[string]bool{"b": true}, wantSent: 2, wantFailed: 1,
			after: map[string]string{"a": state.StatusQueued, "b": state.StatusClaimed, "c": state.StatusQueued}},
		{name: "send error after some were sent: those are marked", refuse: map[string]bool{"c": true}, sendErr: boom,
			wantSent: 2, wantFailed: 1, wantErr: true,
			after: map[string]string{"a": state.StatusQueued, "b": state.StatusQueued, "c": state.StatusClaimed}},
		{name: "mark failure is counted, file stays CLAIMED", markErr: map[string]error{"a": boom}, wantSent: 3, wantMarkF: 1,
			after: map[string]string{"a": state.StatusClaimed, "b": state.StatusQueued}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newFakeStore(map[string]string{"a": state.StatusClaimed, "b": state.StatusClaimed, "c": state.StatusClaimed})
			st.markErr = tt.markErr
			q := &fakeSender{refuse: tt.refuse, err: tt.sendErr}
			got, err := Send(context.Background(), st, q, msgs("a", "b", "c"), 2)
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
				if st.status(id) != s {
					t.Errorf("%s: %s, want %s", id, st.status(id), s)
				}
			}
		})
	}
}

func TestSendNothingCallsNoOne(t *testing.T) {
	q := &fakeSender{err: errors.New("must not be called")}
	if _, err := Send(context.Background(), newFakeStore(nil), q, nil, 1); err != nil {
		t.Fatal(err)
	}
}

func TestItem(t *testing.T) {
	to := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	m := queue.Message{FileID: "f", FileSetID: "fs", FileSetName: "n", FileName: "x.csv", Bucket: "b", PackageID: "p"}
	got := Item(m, 10, to, 99)
	want := state.FileItem{FileID: "f", FileSetID: "fs", FileSetName: "n", FileName: "x.csv", Bucket: "b",
		PackageID: "p", Size: 10, AvailableTo: to, TTL: 99}
	if got != want {
		t.Fatalf("item %+v, want %+v", got, want)
	}
}
