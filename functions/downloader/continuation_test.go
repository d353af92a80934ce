package main

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// TestContinuation: a deadline in the middle of a file checkpoints the
// upload and enqueues a continuation; the next invocation resumes from the
// first missing part and completes the file, md5 included.
func TestContinuation(t *testing.T) {
	const size, nparts = 50 * MiB, 10 // ten 5 MiB parts: never all within one short invocation
	tests := []struct {
		name string
		md5  bool
		p    int
	}{
		{"md5, one range at a time", true, 1},
		{"md5, parallel ranges", true, 2},
		{"no md5, parallel ranges", false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, func(s *Settings) { s.ParallelRanges = tt.p; s.RangeReadTimeout = 5 * time.Second })
			r.rdp.add("f1", "big.bin", size, tt.md5)
			// Ranges take 150 ms; no range starts after ~410 ms (550 ms minus a
			// margin of a quarter of the time left).
			r.rdp.Delay = func(int64) time.Duration { return ms(150) }
			ctx, cancel := context.WithTimeout(context.Background(), ms(550))
			defer cancel()
			resp, _ := r.h.Handle(ctx, event(msgFor("f1").Encode()))
			if len(resp.BatchItemFailures) != 0 {
				t.Fatalf("first invocation failed:\n%s", r.logs.String())
			}
			sent := r.snd.messages()
			want := msgFor("f1")
			want.Seq = 1
			if len(sent) != 1 || sent[0].Encode() != want.Encode() || sent[0].Delay != 0 {
				t.Fatalf("continuation messages %v, want the same message once, as the chain's link 1", sent)
			}
			up := r.st.upload("f1")
			if up == nil || up.UploadID == "" || up.Owner != "" || up.PartsDone < 1 || up.PartsDone >= nparts {
				t.Fatalf("checkpoint %+v: want an upload id, a released lease and some parts", up)
			}
			if tt.md5 && (up.MD5Through != int32(up.PartsDone) || len(up.MD5State) == 0) {
				t.Errorf("checkpoint md5 through %d with %d parts done, state %d bytes", up.MD5Through, up.PartsDone, len(up.MD5State))
			}
			if r.s3.object(keyOf("big.bin")) != nil {
				t.Fatal("object visible before completion")
			}
			if f := r.st.file("f1"); f.Status != state.StatusDownloading {
				t.Errorf("state %s after a continuation, want DOWNLOADING", f.Status)
			}
			first := r.rdp.Ranges()
			r.rdp.Delay = nil
			resp, _ = r.h.Handle(context.Background(), event(sent[0].Encode()))
			if len(resp.BatchItemFailures) != 0 {
				t.Fatalf("continuation failed:\n%s", r.logs.String())
			}
			r.checkLanded(t, "f1", "big.bin", size)
			if got := r.rdp.Ranges(); got > nparts+tt.p || got-first != nparts-up.PartsDone { // a range cut off at the drain deadline is fetched again
				t.Errorf("%d ranges in all (%d in the first invocation, %d parts saved): saved parts were downloaded again", got, first, up.PartsDone)
			}
			if r.s3.Calls("ListParts") != 1 || r.s3.Calls("CreateMultipartUpload") != 1 {
				t.Errorf("ListParts %d, CreateMultipartUpload %d: want the upload resumed", r.s3.Calls("ListParts"), r.s3.Calls("CreateMultipartUpload"))
			}
			if verified := strings.Contains(r.logs.String(), `"md5_verified":true`); verified != tt.md5 {
				t.Errorf("md5 verified %v, want %v", verified, tt.md5)
			}
		})
	}
}

// TestNoProgressFails: invocations too short for one part continue
// MaxNoProgress times, then the file fails, naming the cause (the part size
// and the time an invocation has for ranges) instead of looping forever.
func TestNoProgressFails(t *testing.T) {
	r := newRig(t, func(s *Settings) { s.MaxNoProgress = 2; s.RangeReadTimeout = 5 * time.Second })
	r.rdp.add("f1", "a.bin", 12*MiB, false)
	r.rdp.Delay = func(int64) time.Duration { return time.Second } // a part takes longer than an invocation
	m := msgFor("f1")
	for i := 1; i <= 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		resp, _ := r.h.Handle(ctx, event(m.Encode()))
		cancel()
		if sent := r.snd.messages(); len(sent) > 0 {
			m = sent[len(sent)-1] // the continuation: the chain's newest link
		}
		wantFail := i == 3
		if (len(resp.BatchItemFailures) == 1) != wantFail {
			t.Fatalf("invocation %d: failures %v, want failed=%v\n%s", i, failedIDs(resp), wantFail, r.logs.String())
		}
	}
	if n := len(r.snd.messages()); n != 2 {
		t.Errorf("%d continuations, want 2", n)
	}
	f := r.st.file("f1")
	if f.Status != state.StatusFailed || !strings.HasPrefix(f.Reason, "no-progress") {
		t.Errorf("state %+v, want FAILED no-progress", f)
	}
	for _, want := range []string{"a part of 5242880 bytes", "an invocation had for ranges", "raise the function timeout or lower PART_SIZE"} {
		if !strings.Contains(f.Reason, want) {
			t.Errorf("reason %q does not say %q", f.Reason, want)
		}
	}
}

// TestContinuationSendFails: without the continuation message the current
// message fails; its redelivery resumes from the saved checkpoint.
func TestContinuationSendFails(t *testing.T) {
	r := bigFileRig(t, nil)
	r.rdp.Delay = func(int64) time.Duration { return ms(100) }
	r.snd.Err = context.Canceled
	ctx, cancel := context.WithTimeout(context.Background(), ms(550))
	defer cancel()
	// The first of several receives: a redelivery follows (on the last
	// receive the failure is final: TestEveryReceiveFails).
	resp, _ := r.h.Handle(ctx, eventAt(1, "f1"))
	if len(resp.BatchItemFailures) != 1 {
		t.Fatalf("want the message to fail when the continuation cannot be sent, got %v", failedIDs(resp))
	}
	up := r.st.upload("f1")
	if up == nil || up.PartsDone == 0 || up.UploadID == "" {
		t.Fatalf("checkpoint %+v: progress must be kept", up)
	}
	r.snd.Err, r.rdp.Delay = nil, nil
	resp, _ = r.h.Handle(context.Background(), eventAt(2, "f1"))
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("redelivery failed:\n%s", r.logs.String())
	}
	r.checkLanded(t, "f1", "big.bin", 25*MiB)
	if r.s3.Calls("CreateMultipartUpload") != 1 {
		t.Errorf("%d uploads created: the redelivery did not resume", r.s3.Calls("CreateMultipartUpload"))
	}
}

// TestResumeStartsOverWhenUploadGone: a checkpoint whose upload S3 no longer
// has (aborted by a lifecycle rule) is dropped and the file starts over.
func TestResumeStartsOverWhenUploadGone(t *testing.T) {
	r := newRig(t, nil)
	r.rdp.add("f1", "big.bin", 12*MiB, true)
	r.st.uploads["f1"] = &state.Upload{FileID: "f1", UploadID: "vanished", Bucket: "dest", Key: keyOf("big.bin"), Size: 12 * MiB, PartSize: 5 * MiB, PartsDone: 1}
	r.st.chunks["f1"] = map[int][]state.Part{0: {{Number: 1, ETag: `"x"`, Size: 5 * MiB}}}
	resp, _ := r.h.Handle(context.Background(), event(msgFor("f1").Encode()))
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("failed:\n%s", r.logs.String())
	}
	r.checkLanded(t, "f1", "big.bin", 12*MiB)
	if r.rdp.Ranges() != 3 {
		t.Errorf("%d ranges, want all 3 parts downloaded again", r.rdp.Ranges())
	}
	if !strings.Contains(r.logs.String(), "checkpoint unusable") {
		t.Error("restart not logged")
	}
}

// TestNoTimeKeepsCheckpoint: an invocation with no time left for a resumed
// file continues it without touching the saved parts.
func TestNoTimeKeepsCheckpoint(t *testing.T) {
	r := bigFileRig(t, nil)
	r.rdp.Delay = func(int64) time.Duration { return ms(150) }
	ctx, cancel := context.WithTimeout(context.Background(), ms(550))
	resp, _ := r.h.Handle(ctx, event(msgFor("f1").Encode()))
	cancel()
	saved := r.st.upload("f1")
	if len(resp.BatchItemFailures) != 0 || saved == nil || saved.PartsDone == 0 {
		t.Fatalf("first invocation: failures %v, checkpoint %+v", failedIDs(resp), saved)
	}
	ctx, cancel = context.WithTimeout(context.Background(), ms(100)) // too short for a part
	resp, _ = r.h.Handle(ctx, event(r.snd.messages()[0].Encode()))
	cancel()
	if len(resp.BatchItemFailures) != 0 || len(r.snd.messages()) != 2 {
		t.Fatalf("no-time invocation: failures %v, %d continuations", failedIDs(resp), len(r.snd.messages()))
	}
	if up := r.st.upload("f1"); up.PartsDone != saved.PartsDone || up.NoProgress != 1 || up.UploadID != saved.UploadID {
		t.Fatalf("checkpoint after the no-time invocation %+v, was %+v", up, saved)
	}
	r.rdp.Delay = nil
	before := r.rdp.Ranges()
	resp, _ = r.h.Handle(context.Background(), event(r.snd.messages()[1].Encode()))
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("resume failed:\n%s", r.logs.String())
	}
	r.checkLanded(t, "f1", "big.bin", 25*MiB)
	if got := r.rdp.Ranges() - before; got != 5-saved.PartsDone {
		t.Errorf("resume made %d range requests for %d missing parts", got, 5-saved.PartsDone)
	}
}

// TestStaleCheckpointPartSize: a checkpoint whose upload no longer fits the
// file (its size changed) is aborted and the new upload gets a part size
// chosen for the new size — not the stale one, which would need more than
// 10,000 parts for a file that grew, or a zero-length range for a file that
// is now empty.
func TestStaleCheckpointPartSize(t *testing.T) {
	stale := func(r *rig) string {
		out, err := r.s3.CreateMultipartUpload(context.Background(), &s3.CreateMultipartUploadInput{Bucket: aws.String("dest"), Key: aws.String(keyOf("big.bin"))})
		if err != nil {
			t.Fatal(err)
		}
		id := aws.ToString(out.UploadId)
		r.st.uploads["f1"] = &state.Upload{FileID: "f1", UploadID: id, Bucket: "dest", Key: keyOf("big.bin"), Size: 12 * MiB, PartSize: 5 * MiB}
		return id
	}
	t.Run("grew to 10,001 parts of the old part size", func(t *testing.T) {
		r := newRig(t, func(s *Settings) { s.RangeReadTimeout = 5 * time.Second })
		size := maxParts*5*MiB + 1
		r.rdp.add("f1", "big.bin", size, false)
		r.rdp.Fault = func(ctx context.Context, o, n int64, attempt int) (*rdp.RangeResponse, error) {
			return &rdp.RangeResponse{Body: stallBody{ctx}, Offset: o, Length: n, TotalSize: size}, nil
		}
		old := stale(r)
		ctx, cancel := context.WithTimeout(context.Background(), ms(500))
		defer cancel()
		resp, _ := r.h.Handle(ctx, event(msgFor("f1").Encode()))
		if len(resp.BatchItemFailures) != 0 || len(r.snd.messages()) != 1 {
			t.Fatalf("failures %v, continuations %d: want a continuation\n%s", failedIDs(resp), len(r.snd.messages()), r.logs.String())
		}
		up := r.st.upload("f1")
		want, _ := choosePartSize(size, r.cfg.PartSize)
		if up == nil || up.UploadID == "" || up.UploadID == old || up.PartSize != want || partCount(size, up.PartSize) > maxParts {
			t.Fatalf("checkpoint %+v: want a new upload with part size %d (≤ 10,000 parts)", up, want)
		}
		if r.s3.Calls("AbortMultipartUpload") != 1 || r.s3.openUploads() != 1 {
			t.Errorf("aborts %d, open uploads %d: want the stale upload aborted", r.s3.Calls("AbortMultipartUpload"), r.s3.openUploads())
		}
	})
	t.Run("shrank to zero bytes", func(t *testing.T) {
		r := newRig(t, nil)
		r.rdp.add("f1", "big.bin", 0, true)
		r.rdp.Fault = func(ctx context.Context, o, n int64, attempt int) (*rdp.RangeResponse, error) {
			if n == 0 { // as rdp.Client.GetRange
				return nil, errors.New("get range: zero length")
			}
			return nil, nil
		}
		stale(r)
		resp, _ := r.h.Handle(context.Background(), event(msgFor("f1").Encode()))
		if len(resp.BatchItemFailures) != 0 {
			t.Fatalf("failed:\n%s", r.logs.String())
		}
		r.checkLanded(t, "f1", "big.bin", 0)
		if r.rdp.Ranges() != 0 {
			t.Errorf("%d range requests for an empty file", r.rdp.Ranges())
		}
	})
}

// TestAbortFailsKeepsCheckpoint: when a failed file's multipart upload
// cannot be aborted, the checkpoint keeps its upload id (lease released) so
// that the next attempt finds the upload — it is never orphaned.
func TestAbortFailsKeepsCheckpoint(t *testing.T) {
	r := newRig(t, nil)
	r.rdp.add("f1", "big.bin", 12*MiB, false)
	f := r.rdp.files["f1"]
	f.md5 = "0123456789abcdef0123456789abcdef" // a permanent failure: md5 mismatch
	r.rdp.files["f1"] = f
	r.s3.AbortErr = func() error { return &apiErr{"InternalError"} }
	resp, _ := r.h.Handle(context.Background(), event(msgFor("f1").Encode()))
	if len(resp.BatchItemFailures) != 1 {
		t.Fatalf("failures %v, want the message to fail", failedIDs(resp))
	}
	up := r.st.upload("f1")
	if r.s3.openUploads() != 1 || up == nil || up.UploadID == "" || up.Owner != "" {
		t.Fatalf("open uploads %d, checkpoint %+v: the unaborted upload must stay in a released checkpoint", r.s3.openUploads(), up)
	}
	if st := r.st.file("f1"); st.Status != state.StatusFailed || !strings.HasPrefix(st.Reason, "md5-mismatch") {
		t.Errorf("state %+v, want FAILED md5-mismatch", st)
	}
	r.s3.AbortErr = nil
	resp, _ = r.h.Handle(context.Background(), event(msgFor("f1").Encode()))
	if len(resp.BatchItemFailures) != 1 {
		t.Fatalf("failures %v, want the redelivery to fail too", failedIDs(resp))
	}
	if r.s3.openUploads() != 0 || r.st.upload("f1") != nil {
		t.Errorf("open uploads %d, checkpoint %+v after the redelivery", r.s3.openUploads(), r.st.upload("f1"))
	}
}

// TestLandedThenGone: a crash after CompleteMultipartUpload and before
// MarkDone, and the file is gone from the file store by the redelivery: the
// object that landed (checkpoint key, file id and size) is recorded DONE,
// not FAILED.
func TestLandedThenGone(t *testing.T) {
	r := newRig(t, nil)
	const size = 12 * MiB
	r.st.files["f1"] = &state.FileItem{FileID: "f1", Status: state.StatusDownloading}
	r.st.uploads["f1"] = &state.Upload{FileID: "f1", UploadID: "completed", Bucket: "dest", Key: keyOf("big.bin"), Size: size, PartSize: 5 * MiB}
	r.s3.objects[keyOf("big.bin")] = &fakeObject{data: make([]byte, size), etag: `"landed-3"`,
		meta: map[string]string{"cfs-file-id": "f1", "cfs-size": strconv.FormatInt(size, 10)}}
	resp, _ := r.h.Handle(context.Background(), event(msgFor("f1").Encode())) // f1 is unknown to RDP: 404
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("failures %v:\n%s", failedIDs(resp), r.logs.String())
	}
	if f := r.st.file("f1"); f.Status != state.StatusDone || f.ETag != `"landed-3"` || f.Key != keyOf("big.bin") {
		t.Errorf("state %+v, want DONE with the landed object", f)
	}
	if r.st.upload("f1") != nil {
		t.Error("checkpoint left behind")
	}
}
