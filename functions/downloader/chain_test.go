package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// handleOne runs one message with the given invocation timeout (0: none).
func (r *rig) handleOne(t *testing.T, m queue.Message, receive int, timeout time.Duration) []string {
	t.Helper()
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	resp, err := r.h.Handle(ctx, eventOf(receive, m))
	if err != nil {
		t.Fatal(err)
	}
	return failedIDs(resp)
}

// TestSupersededCopyDropped: the original message delivered again after its
// continuation was sent (the invocation timed out before returning, so SQS
// redelivers the batch) is dropped — continuations never multiply — and the
// chain goes on from its newest link. A chain whose newest link is long
// gone (no move for chainStaleAfter) is taken over by any message.
func TestSupersededCopyDropped(t *testing.T) {
	r := bigFileRig(t, nil)
	r.rdp.Delay = func(int64) time.Duration { return ms(150) }
	if f := r.handleOne(t, msgFor("f1"), 1, ms(550)); len(f) != 0 || len(r.snd.messages()) != 1 {
		t.Fatalf("first invocation: failures %v, %d continuations", f, len(r.snd.messages()))
	}
	ranges := r.rdp.Ranges()
	if f := r.handleOne(t, msgFor("f1"), 2, 0); len(f) != 0 {
		t.Fatalf("redelivered original: failures %v", f)
	}
	if n := len(r.snd.messages()); n != 1 || r.rdp.Ranges() != ranges {
		t.Fatalf("redelivered original: %d messages in all, %d new ranges: want it dropped", n, r.rdp.Ranges()-ranges)
	}
	if up := r.st.upload("f1"); up.Owner != "" {
		t.Errorf("lease %q kept by a dropped copy", up.Owner)
	}
	if !strings.Contains(r.logs.String(), "superseded copy") {
		t.Error("drop not logged")
	}
	r.rdp.Delay = nil
	if f := r.handleOne(t, r.snd.messages()[0], 1, 0); len(f) != 0 {
		t.Fatalf("continuation: failures %v\n%s", f, r.logs.String())
	}
	r.checkLanded(t, "f1", "big.bin", 25*MiB)

	t.Run("a chain gone quiet is taken over", func(t *testing.T) {
		r := newRig(t, nil)
		r.rdp.add("f2", "a.bin", MiB, true)
		r.st.uploads["f2"] = &state.Upload{FileID: "f2", Seq: 4, SeqAtMs: time.Now().Add(-chainStaleAfter - time.Minute).UnixMilli()}
		if f := r.handleOne(t, msgFor("f2"), 1, 0); len(f) != 0 {
			t.Fatalf("failures %v", f)
		}
		r.checkLanded(t, "f2", "a.bin", MiB)
	})
}

// TestShortTimeoutMakesProgress: with a function timeout far below
// DEADLINE_MARGIN's default (45 s) every invocation still completes parts:
// the margin is a share of the time left. The file lands through a chain of
// continuations, one message per invocation.
func TestShortTimeoutMakesProgress(t *testing.T) {
	r := bigFileRig(t, func(s *Settings) { s.DeadlineMargin = 45 * time.Second })
	r.rdp.Delay = func(int64) time.Duration { return 60 * time.Millisecond }
	m := msgFor("f1")
	invocations := 0
	for ; invocations < 10 && r.st.file("f1").Status != state.StatusDone; invocations++ {
		if f := r.handleOne(t, m, 1, 400*time.Millisecond); len(f) != 0 {
			t.Fatalf("invocation %d failed:\n%s", invocations+1, r.logs.String())
		}
		if up := r.st.upload("f1"); up != nil && up.NoProgress != 0 {
			t.Fatalf("invocation %d made no progress: %+v", invocations+1, up)
		}
		if sent := r.snd.messages(); len(sent) > 0 {
			m = sent[len(sent)-1]
		}
	}
	r.checkLanded(t, "f1", "big.bin", 25*MiB)
	if invocations < 2 {
		t.Fatalf("landed in %d invocation: the test needs continuations", invocations)
	}
	if n := len(r.snd.messages()); n != invocations-1 {
		t.Errorf("%d messages for %d invocations: want a chain (one per invocation but the last)", n, invocations)
	}
}

// TestBookkeepingWithinDeadline: the bookkeeping after the work (here a
// continuation message SQS never answers) ends before the invocation's
// deadline, so the invocation returns its batch response instead of timing
// out (a timed-out invocation has its whole batch redelivered).
func TestBookkeepingWithinDeadline(t *testing.T) {
	r := newRig(t, func(s *Settings) { s.CleanupTimeout = time.Minute; s.RangeReadTimeout = 5 * time.Second })
	r.rdp.add("f1", "big.bin", 25*MiB, true)
	r.rdp.Delay = func(int64) time.Duration { return ms(150) }
	r.snd.Hang = true
	ctx, cancel := context.WithTimeout(context.Background(), ms(500))
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = r.h.Handle(ctx, eventAt(1, "f1"))
	}()
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done:
		case <-time.After(time.Second): // slack for a loaded machine; without the bound it is CleanupTimeout (1 min)
			t.Fatal("Handle still running at the invocation's deadline")
		}
	}
}

// TestGoneWithShortTimeout: a message for a file that does not exist ends
// FAILED and fails (to the DLQ after maxReceiveCount) whatever the timeout.
func TestGoneWithShortTimeout(t *testing.T) {
	r := newRig(t, func(s *Settings) { s.DeadlineMargin = 45 * time.Second })
	for receive := 1; receive <= 5; receive++ {
		if f := r.handleOne(t, msgFor("nope"), receive, 300*time.Millisecond); len(f) != 1 {
			t.Fatalf("receive %d: failures %v, want the message to fail", receive, f)
		}
	}
	if f := r.st.file("nope"); f.Status != state.StatusFailed || !strings.HasPrefix(f.Reason, "gone:") {
		t.Errorf("state %+v, want FAILED gone", f)
	}
	if len(r.snd.messages()) != 0 {
		t.Errorf("%d messages sent for a file that does not exist", len(r.snd.messages()))
	}
}

// TestDuplicateWhileLeaseHeld: a delivery of a file another invocation is
// downloading is re-sent as one delayed copy each time (a chain, never a
// tree); once the holder is done the copy ends quietly, and when the holder
// died the copy takes the file over.
func TestDuplicateWhileLeaseHeld(t *testing.T) {
	r := newRig(t, nil)
	r.rdp.add("f1", "a.bin", MiB, true)
	r.st.uploads["f1"] = &state.Upload{FileID: "f1", Owner: "holder", LeaseUntilMs: time.Now().Add(time.Hour).UnixMilli()}
	m := msgFor("f1")
	for i := 1; i <= 3; i++ {
		if f := r.handleOne(t, m, 1, 0); len(f) != 0 {
			t.Fatalf("delivery %d: failures %v", i, f)
		}
		sent := r.snd.messages()
		if len(sent) != i {
			t.Fatalf("delivery %d: %d copies in all, want %d", i, len(sent), i)
		}
		m = sent[i-1]
		if m.Deferrals != i || m.Delay <= 0 || m.Delay > queue.MaxDelay {
			t.Fatalf("copy %d: %+v", i, m)
		}
	}
	r.st.mu.Lock()
	r.st.uploads["f1"].LeaseUntilMs = time.Now().Add(-time.Second).UnixMilli() // the holder died
	r.st.mu.Unlock()
	if f := r.handleOne(t, m, 1, 0); len(f) != 0 {
		t.Fatalf("copy after the holder died: failures %v", f)
	}
	r.checkLanded(t, "f1", "a.bin", MiB)
	if f := r.handleOne(t, m, 2, 0); len(f) != 0 || len(r.snd.messages()) != 3 {
		t.Fatalf("copy after DONE: failures %v, %d messages", f, len(r.snd.messages()))
	}
}

// TestOutageDefers: while no usable token exists or RDP answers 429/5xx,
// the work is re-enqueued with a growing delay (≤ 15 min) and the message
// succeeds — even on its last receive — so an outage of any length never
// reaches the DLQ; afterwards the file lands by itself.
func TestOutageDefers(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"no usable token in the ring", fmt.Errorf("read token ring: %w", tokenring.ErrNoValidToken)},
		{"401 after the ring's re-read", tokenRefused()},
		{"429", &rdp.RateLimitError{Endpoint: "get stream url"}},
		{"503", &rdp.APIError{Endpoint: "get stream url", StatusCode: 503}},
		{"RDP unreachable", fmt.Errorf("get stream url: %w", resetErr())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			r.rdp.add("f1", "a.bin", MiB, true)
			r.rdp.StreamErr = func(string, int) error { return tt.err }
			m := msgFor("f1")
			for i := 1; i <= 12; i++ {
				if f := r.handleOne(t, m, r.cfg.MaxReceiveCount+5, 0); len(f) != 0 { // past maxReceiveCount: still no failure
					t.Fatalf("deferral %d: failures %v", i, f)
				}
				sent := r.snd.messages()
				m = sent[len(sent)-1]
				if m.Deferrals != i || m.Delay <= 0 || m.Delay > queue.MaxDelay || m.Seq != i {
					t.Fatalf("deferral %d: %+v", i, m)
				}
			}
			if m.Delay < queue.MaxDelay/2 {
				t.Errorf("delay after 12 deferrals %s: want it grown to about 15 min", m.Delay)
			}
			if f := r.st.file("f1"); f.Status != state.StatusDownloading || !strings.HasPrefix(f.Reason, "deferred") {
				t.Errorf("state %+v during the outage", f)
			}
			r.rdp.StreamErr = nil
			if f := r.handleOne(t, m, 1, 0); len(f) != 0 {
				t.Fatalf("after the outage: failures %v", f)
			}
			r.checkLanded(t, "f1", "a.bin", MiB)
			if strings.Contains(r.metrics.String(), "FilesFailed") {
				t.Error("FilesFailed counted during an outage")
			}
		})
	}
}

// TestSourceChanged: a source object replaced during a download (ranges
// with another ETag; 412 to If-Match with the ETag kept in the checkpoint)
// is never stitched into a corrupt object: the upload is dropped and the
// file starts over, landing the new version whole.
func TestSourceChanged(t *testing.T) {
	landedAs := func(t *testing.T, r *rig, content string, size int64) {
		t.Helper()
		o := r.s3.object(keyOf("big.bin"))
		want, _ := io.ReadAll(rdptest.Content(content, size))
		if o == nil || !bytes.Equal(o.data, want) {
			t.Fatalf("object is not the whole %s version", content)
		}
	}
	t.Run("between two ranges", func(t *testing.T) {
		r := newRig(t, func(s *Settings) { s.ParallelRanges = 1 })
		r.rdp.add("f1", "big.bin", 15*MiB, true)
		r.rdp.Fault = func(_ context.Context, o, _ int64, attempt int) (*rdp.RangeResponse, error) {
			if o == 5*MiB && attempt == 1 {
				r.rdp.replace("f1", "v2") // from the next range on
			}
			return nil, nil
		}
		if f := r.handleOne(t, msgFor("f1"), 1, 0); len(f) != 0 {
			t.Fatalf("failures %v", f)
		}
		sent := r.snd.messages()
		if len(sent) != 1 || sent[0].Size != nil || r.s3.openUploads() != 0 || r.s3.object(keyOf("big.bin")) != nil {
			t.Fatalf("sent %+v, open uploads %d: want the upload aborted and a restart without the old size", sent, r.s3.openUploads())
		}
		r.rdp.Fault = nil
		if f := r.handleOne(t, sent[0], 1, 0); len(f) != 0 {
			t.Fatalf("restart: failures %v\n%s", f, r.logs.String())
		}
		landedAs(t, r, "v2", 15*MiB)
	})
	t.Run("between two invocations: If-Match from the checkpoint", func(t *testing.T) {
		r := bigFileRig(t, nil)
		old := r.rdp.files["f1"].etag
		r.rdp.Delay = func(int64) time.Duration { return ms(150) }
		if f := r.handleOne(t, msgFor("f1"), 1, ms(550)); len(f) != 0 {
			t.Fatalf("failures %v", f)
		}
		if up := r.st.upload("f1"); up.SourceETag != old || up.UploadID == "" {
			t.Fatalf("checkpoint %+v: want the source ETag pinned", up)
		}
		r.rdp.Delay = nil
		r.rdp.replace("f1", "v2")
		if f := r.handleOne(t, r.snd.messages()[0], 1, 0); len(f) != 0 {
			t.Fatalf("failures %v", f)
		}
		if !strings.Contains(strings.Join(r.rdp.ifMatch, " "), old) {
			t.Errorf("If-Match sent %v, want the pinned %s", r.rdp.ifMatch, old)
		}
		sent := r.snd.messages()
		if len(sent) != 2 || r.s3.openUploads() != 0 {
			t.Fatalf("%d messages, %d open uploads: want a restart", len(sent), r.s3.openUploads())
		}
		if f := r.handleOne(t, sent[1], 1, 0); len(f) != 0 {
			t.Fatalf("restart failures %v", f)
		}
		landedAs(t, r, "v2", 25*MiB)
	})
}

// TestETagNotMD5: a plain ETag that is not the content's MD5 (e.g. SSE-KMS)
// costs one more download, then the file lands; a real transfer fault would
// give another MD5 the second time.
func TestETagNotMD5(t *testing.T) {
	for _, size := range []int64{MiB, 12 * MiB} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			r := newRig(t, nil)
			r.rdp.add("f1", "a.bin", size, true)
			f := r.rdp.files["f1"]
			f.etag = `"0123456789abcdef0123456789abcdef"`
			r.rdp.files["f1"] = f
			if fl := r.handleOne(t, msgFor("f1"), 1, 0); len(fl) != 0 || len(r.snd.messages()) != 1 || r.s3.object(keyOf("a.bin")) != nil {
				t.Fatalf("first download: failures %v, %d messages: want a second download enqueued, nothing landed", fl, len(r.snd.messages()))
			}
			if fl := r.handleOne(t, r.snd.messages()[0], 1, 0); len(fl) != 0 {
				t.Fatalf("second download: failures %v\n%s", fl, r.logs.String())
			}
			r.checkLanded(t, "f1", "a.bin", size)
			if !strings.Contains(r.logs.String(), "the ETag is not an MD5") {
				t.Error("not logged")
			}
		})
	}
}

// TestCompleteResponseLost: CompleteMultipartUpload completed but its
// response was lost (the SDK's retry gets NoSuchUpload, or an error): S3 is
// asked what the key holds, and the landed object makes the file DONE.
func TestCompleteResponseLost(t *testing.T) {
	for _, lost := range []error{&types.NoSuchUpload{}, &apiErr{"InternalError"}} {
		t.Run(fmt.Sprintf("%T", lost), func(t *testing.T) {
			r := newRig(t, nil)
			r.rdp.add("f1", "big.bin", 12*MiB, true)
			r.s3.LoseComplete = lost
			if f := r.handleOne(t, msgFor("f1"), 1, 0); len(f) != 0 {
				t.Fatalf("failures %v\n%s", f, r.logs.String())
			}
			r.checkLanded(t, "f1", "big.bin", 12*MiB)
			if r.st.upload("f1") != nil || r.s3.Calls("AbortMultipartUpload") != 0 {
				t.Errorf("checkpoint %+v, aborts %d", r.st.upload("f1"), r.s3.Calls("AbortMultipartUpload"))
			}
		})
	}
	t.Run("NoSuchUpload and nothing landed: starts over", func(t *testing.T) {
		r := newRig(t, nil)
		r.rdp.add("f1", "big.bin", 12*MiB, true)
		r.s3.BeforeWrite = func() {
			r.s3.mu.Lock()
			clear(r.s3.uploads) // a lifecycle rule aborted it
			r.s3.mu.Unlock()
		}
		if f := r.handleOne(t, msgFor("f1"), 1, 0); len(f) != 0 || len(r.snd.messages()) != 1 {
			t.Fatalf("failures %v, %d messages: want a restart", f, len(r.snd.messages()))
		}
		r.s3.BeforeWrite = nil
		if f := r.handleOne(t, r.snd.messages()[0], 1, 0); len(f) != 0 {
			t.Fatalf("restart: failures %v", f)
		}
		r.checkLanded(t, "f1", "big.bin", 12*MiB)
	})
}

// TestKeyEdgeCases: a key S3 cannot store is a named, permanent failure of
// that file only; two files whose names map to one key never overwrite each
// other (found by HEAD, or by the conditional write when they race).
func TestKeyEdgeCases(t *testing.T) {
	t.Run("key over 1,024 bytes", func(t *testing.T) {
		r := newRig(t, nil)
		name := strings.Repeat("n", 1100) + ".csv"
		r.rdp.add("f1", name, MiB, true)
		r.rdp.add("f2", "ok.csv", MiB, true)
		resp, _ := r.h.Handle(context.Background(), eventAt(1, "f1", "f2"))
		if got := failedIDs(resp); len(got) != 1 || got[0] != "m0" {
			t.Fatalf("failures %v, want only f1's message", got)
		}
		if f := r.st.file("f1"); f.Status != state.StatusFailed || !strings.HasPrefix(f.Reason, "bad-name: object key is") || !strings.Contains(f.Reason, "1024") {
			t.Errorf("state %+v", f)
		}
		r.checkLanded(t, "f2", "ok.csv", MiB)
		if r.rdp.Ranges() != 1 {
			t.Errorf("%d ranges: f1 must not be downloaded", r.rdp.Ranges())
		}
	})
	other := func(r *rig, key string) {
		r.s3.mu.Lock()
		defer r.s3.mu.Unlock()
		r.s3.objects[key] = &fakeObject{data: []byte("other"), meta: map[string]string{"cfs-file-id": "f9", "cfs-size": "5"}, etag: `"o"`}
	}
	for _, tt := range []struct {
		name string
		size int64
		race bool
	}{{"present before", MiB, false}, {"racing single", MiB, true}, {"racing multipart", 12 * MiB, true}} {
		t.Run("collision "+tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			r.rdp.add("f1", "a:b.csv", tt.size, true) // key …/a_b.csv, as f9's "a_b.csv"
			if tt.race {
				r.s3.BeforeWrite = func() { other(r, keyOf("a_b.csv")) }
			} else {
				other(r, keyOf("a_b.csv"))
			}
			if f := r.handleOne(t, msgFor("f1"), 1, 0); len(f) != 1 {
				t.Fatalf("failures %v, want the message to fail", f)
			}
			if f := r.st.file("f1"); f.Status != state.StatusFailed || !strings.HasPrefix(f.Reason, "key-collision") || !strings.Contains(f.Reason, "file f9") {
				t.Errorf("state %+v: want FAILED key-collision naming f9", f)
			}
			if o := r.s3.object(keyOf("a_b.csv")); string(o.data) != "other" || r.s3.openUploads() != 0 {
				t.Errorf("the other file's object was overwritten, or an upload left open")
			}
		})
	}
}

func TestETagCheck(t *testing.T) {
	content := []byte("content")
	sum := md5.Sum(content)
	tests := []struct {
		etag             string
		verifiable, want bool
	}{
		{etagOf(content), true, true},
		{strings.Trim(etagOf(content), `"`), true, true},
		{multipartETag(content), true, true},
		{strings.TrimSuffix(etagOf(content), `"`) + `-1"`, true, false},
		{`"0123456789abcdef0123456789abcdef"`, true, false},
		{multipartETag(content, content, content), false, false},
		{`W/"abc"`, false, false},
		{``, false, false},
		{`"zz23456789abcdef0123456789abcdef"`, false, false},
	}
	for _, tt := range tests {
		v, m := etagCheck(tt.etag, sum[:])
		if v != tt.verifiable || m != tt.want {
			t.Errorf("etagCheck(%s) = %v, %v; want %v, %v", tt.etag, v, m, tt.verifiable, tt.want)
		}
	}
}

// TestNoHashForMultipartETag: when nothing can verify the MD5 (no md5 given,
// a multipart "…-N" source ETag), parts are not held back for in-order
// hashing: a slow first part does not stop the other ranges.
func TestNoHashForMultipartETag(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprint("plain ETag ", plain), func(t *testing.T) {
			r := newRig(t, func(s *Settings) { s.ParallelRanges = 2; s.RangeReadTimeout = 5 * time.Second })
			r.rdp.add("f1", "big.bin", 20*MiB, plain) // four parts
			started := -1
			r.rdp.Fault = func(_ context.Context, o, _ int64, attempt int) (*rdp.RangeResponse, error) {
				if o == 0 && attempt == 1 {
					time.Sleep(500 * time.Millisecond)
					started = r.rdp.Ranges()
				}
				return nil, nil
			}
			if f := r.handleOne(t, msgFor("f1"), 1, 0); len(f) != 0 {
				t.Fatalf("failures %v", f)
			}
			r.checkLanded(t, "f1", "big.bin", 20*MiB)
			// Hashed in order, part 2 waits for part 1 holding its slot: no
			// more than 2 ranges; without hashing parts 3 and 4 start too.
			if plain && started != 2 || !plain && started < 3 {
				t.Errorf("%d ranges requested while part 1 was in flight (plain ETag %v)", started, plain)
			}
			if verified := strings.Contains(r.logs.String(), `"md5_verified":true`); verified != plain {
				t.Errorf("md5 verified %v, want %v", verified, plain)
			}
		})
	}
}
