package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
)

// The tests of CompleteMultipartUpload's faults
// (docs/design.md#completing-a-multipart-upload): a finished multipart upload
// is never thrown away for a deadline or a transient failure.

const completeSize = 12 * MiB // three parts of 5, 5 and 2 MiB

// hangComplete makes every Complete block until its context ends (a large
// Complete that outlasts the invocation) and keeps its request, so the test
// can let S3 finish it later (finishComplete).
func hangComplete(r *rig) *s3.CompleteMultipartUploadInput {
	var in s3.CompleteMultipartUploadInput
	r.s3.CompleteErr = func(ctx context.Context, got *s3.CompleteMultipartUploadInput) error {
		in = *got
		<-ctx.Done()
		return fmt.Errorf("operation error S3: CompleteMultipartUpload: %w", ctx.Err())
	}
	return &in
}

// cutComplete runs f1's first invocation with a Complete cut by the deadline
// and checks that the upload is checkpointed whole for the next invocation.
func cutComplete(t *testing.T, r *rig) (*s3.CompleteMultipartUploadInput, queue.Message) {
	t.Helper()
	r.rdp.add("f1", "big.bin", completeSize, true)
	in := hangComplete(r)
	if f := r.handleOne(t, msgFor("f1"), 1, 2*time.Second); len(f) != 0 {
		t.Fatalf("failures %v\n%s", f, r.logs.String())
	}
	sent := r.snd.messages()
	if len(sent) != 1 || sent[0].Delay != 0 {
		t.Fatalf("messages %+v: want one continuation", sent)
	}
	up := r.st.upload("f1")
	if up == nil || up.UploadID == "" || up.PartsDone != 3 || up.Owner != "" {
		t.Fatalf("checkpoint %+v: want the upload with its 3 parts, lease released", up)
	}
	if n := r.s3.Calls("AbortMultipartUpload"); n != 0 || r.s3.openUploads() != 1 {
		t.Fatalf("%d aborts, %d open uploads: the upload must be kept", n, r.s3.openUploads())
	}
	r.s3.CompleteErr = nil
	return in, sent[0]
}

// goneForNow takes the upload out of S3's list as a Complete in progress
// does; the returned func lets that Complete finish (the object lands).
func goneForNow(t *testing.T, r *rig, in *s3.CompleteMultipartUploadInput) func() {
	r.s3.mu.Lock()
	id := aws.ToString(in.UploadId)
	u := r.s3.uploads[id]
	delete(r.s3.uploads, id)
	r.s3.mu.Unlock()
	return func() {
		r.s3.mu.Lock()
		r.s3.uploads[id] = u
		r.s3.mu.Unlock()
		if _, err := r.s3.CompleteMultipartUpload(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
}

// landsFromCheckpoint handles m and checks that f1 lands from the kept
// upload: no range downloaded again, no new upload.
func (r *rig) landsFromCheckpoint(t *testing.T, m queue.Message) {
	t.Helper()
	ranges := r.rdp.Ranges()
	if f := r.handleOne(t, m, 1, 0); len(f) != 0 {
		t.Fatalf("failures %v\n%s", f, r.logs.String())
	}
	r.checkLanded(t, "f1", "big.bin", completeSize)
	if r.rdp.Ranges() != ranges || r.s3.Calls("CreateMultipartUpload") != 1 {
		t.Errorf("ranges %d → %d, creates %d: the file was downloaded again", ranges, r.rdp.Ranges(), r.s3.Calls("CreateMultipartUpload"))
	}
}

// TestCompleteDeadline: a Complete that runs into the deadline is cut before
// it, so the checkpoint and the continuation still happen; the next
// invocation finds the object (S3 finished it) or completes the upload
// itself, without downloading a part again.
func TestCompleteDeadline(t *testing.T) {
	t.Run("S3 finishes the cut Complete", func(t *testing.T) {
		r := newRig(t, nil)
		in, next := cutComplete(t, r)
		goneForNow(t, r, in)()
		r.landsFromCheckpoint(t, next)
	})
	t.Run("the next invocation completes", func(t *testing.T) {
		r := newRig(t, nil)
		_, next := cutComplete(t, r)
		r.landsFromCheckpoint(t, next)
		if n := r.s3.Calls("CompleteMultipartUpload"); n != 2 {
			t.Errorf("%d Completes: want the upload completed by the next invocation", n)
		}
	})
	t.Run("no Complete after the soft deadline", func(t *testing.T) {
		// The margin is 1 s of a 4 s invocation: the last part's range starts
		// at once, before the soft deadline (3 s), and ends at 3.25 s, before
		// the drain deadline (3.5 s).
		r := newRig(t, func(s *Settings) { s.DeadlineMargin, s.RangeReadTimeout = time.Second, 5*time.Second })
		r.rdp.add("f1", "big.bin", completeSize, true)
		t0 := time.Now()
		r.rdp.Delay = func(off int64) time.Duration {
			if off < 2*5*MiB {
				return 0
			}
			return time.Until(t0.Add(3250 * time.Millisecond))
		}
		if f := r.handleOne(t, msgFor("f1"), 1, 4*time.Second); len(f) != 0 {
			t.Fatalf("failures %v", f)
		}
		if n := r.s3.Calls("CompleteMultipartUpload"); n != 0 || len(r.snd.messages()) != 1 || r.st.upload("f1").PartsDone != 3 {
			t.Fatalf("%d Completes, messages %+v, checkpoint %+v: want all parts checkpointed and the Complete left to a continuation\n%s",
				n, r.snd.messages(), r.st.upload("f1"), r.logs.String())
		}
		if up := r.st.upload("f1"); up.NoProgress != 0 {
			t.Errorf("no-progress count %d: a Complete left to the next invocation is progress", up.NoProgress)
		}
		r.rdp.Delay = nil
		if f := r.handleOne(t, r.snd.messages()[0], 1, 0); len(f) != 0 {
			t.Fatalf("continuation: failures %v", f)
		}
		r.checkLanded(t, "f1", "big.bin", completeSize)
	})
}

// TestUploadGoneAfterAllParts: every part was uploaded, S3 no longer knows
// the upload and nothing is at the key yet (a Complete still finishing): the
// file is deferred and the key looked at again; a landed object makes it
// DONE, and only after maxLandingChecks re-checks does the file start over.
func TestUploadGoneAfterAllParts(t *testing.T) {
	t.Run("the object appears later", func(t *testing.T) {
		r := newRig(t, nil)
		in, next := cutComplete(t, r)
		finish := goneForNow(t, r, in)
		if f := r.handleOne(t, next, 1, 0); len(f) != 0 {
			t.Fatalf("failures %v", f)
		}
		sent := r.snd.messages()
		if len(sent) != 2 || sent[1].Delay <= 0 || sent[1].Deferrals != 1 {
			t.Fatalf("messages %+v: want a deferral", sent)
		}
		if up := r.st.upload("f1"); up == nil || up.UploadID == "" || up.LandingChecks != 1 || r.s3.Calls("CreateMultipartUpload") != 1 {
			t.Fatalf("checkpoint %+v, creates %d: want the upload kept, one landing check, no new upload", up, r.s3.Calls("CreateMultipartUpload"))
		}
		finish()
		if f := r.handleOne(t, sent[1], 1, 0); len(f) != 0 {
			t.Fatalf("failures %v", f)
		}
		r.checkLanded(t, "f1", "big.bin", completeSize)
		if r.s3.Calls("CreateMultipartUpload") != 1 || r.rdp.Ranges() != 3 {
			t.Errorf("creates %d, ranges %d: the file was downloaded again", r.s3.Calls("CreateMultipartUpload"), r.rdp.Ranges())
		}
	})
	t.Run("nothing ever appears", func(t *testing.T) {
		r := newRig(t, nil)
		in, next := cutComplete(t, r)
		goneForNow(t, r, in) // never finishes
		for i := 1; i <= maxLandingChecks; i++ {
			if f := r.handleOne(t, next, 1, 0); len(f) != 0 {
				t.Fatalf("check %d: failures %v", i, f)
			}
			sent := r.snd.messages()
			next = sent[len(sent)-1]
			if next.Delay <= 0 || next.Deferrals != i || r.s3.Calls("CreateMultipartUpload") != 1 {
				t.Fatalf("check %d: message %+v, creates %d: want a deferral, no restart yet", i, next, r.s3.Calls("CreateMultipartUpload"))
			}
		}
		if f := r.handleOne(t, next, 1, 0); len(f) != 0 {
			t.Fatalf("failures %v", f)
		}
		sent := r.snd.messages()
		next = sent[len(sent)-1]
		if next.Delay != 0 || !strings.Contains(r.logs.String(), "starting the file over") {
			t.Fatalf("message %+v: want a restart after %d checks\n%s", next, maxLandingChecks, r.logs.String())
		}
		if f := r.handleOne(t, next, 1, 0); len(f) != 0 {
			t.Fatalf("restart: failures %v", f)
		}
		r.checkLanded(t, "f1", "big.bin", completeSize)
		if r.s3.Calls("CreateMultipartUpload") != 2 {
			t.Errorf("creates %d: want a new upload", r.s3.Calls("CreateMultipartUpload"))
		}
	})
}

// TestCompleteTransientFailure: a Complete that fails transiently on every
// attempt, on the message's last receive, keeps the upload and its
// checkpoint and defers the file; the deferred message completes it without
// downloading a part again.
func TestCompleteTransientFailure(t *testing.T) {
	for _, fault := range []error{&apiErr{"InternalError"}, &apiErr{"SlowDown"}, &apiErr{"ServiceUnavailable"},
		fmt.Errorf("operation error S3: CompleteMultipartUpload: read tcp: %w", io.ErrUnexpectedEOF)} {
		t.Run(fault.Error(), func(t *testing.T) {
			r := newRig(t, nil)
			r.rdp.add("f1", "big.bin", completeSize, true)
			r.s3.CompleteErr = func(context.Context, *s3.CompleteMultipartUploadInput) error { return fault }
			if f := r.handleOne(t, msgFor("f1"), r.cfg.MaxReceiveCount, 0); len(f) != 0 {
				t.Fatalf("failures %v: want the message to succeed with a deferral\n%s", f, r.logs.String())
			}
			if n := r.s3.Calls("AbortMultipartUpload"); n != 0 || r.s3.openUploads() != 1 {
				t.Fatalf("%d aborts, %d open uploads: a transient Complete failure must not abort", n, r.s3.openUploads())
			}
			sent := r.snd.messages()
			if len(sent) != 1 || sent[0].Delay <= 0 {
				t.Fatalf("messages %+v: want one deferral", sent)
			}
			if up, f := r.st.upload("f1"), r.st.file("f1"); up == nil || up.UploadID == "" || up.PartsDone != 3 || f.Status == state.StatusFailed {
				t.Fatalf("checkpoint %+v, file %+v: want the upload kept and the file not FAILED", up, f)
			}
			r.s3.CompleteErr = nil
			r.landsFromCheckpoint(t, sent[0])
		})
	}
}

// TestCompleteInvalidUpload: S3 rejecting the part list (InvalidPart…) means
// the checkpoint is wrong: the upload is aborted, the log says why, and the
// file starts over in a continuation.
func TestCompleteInvalidUpload(t *testing.T) {
	for _, code := range []string{"InvalidPart", "InvalidPartOrder", "EntityTooSmall"} {
		t.Run(code, func(t *testing.T) {
			r := newRig(t, nil)
			r.rdp.add("f1", "big.bin", completeSize, true)
			r.s3.CompleteErr = func(context.Context, *s3.CompleteMultipartUploadInput) error { return &apiErr{code} }
			if f := r.handleOne(t, msgFor("f1"), 1, 0); len(f) != 0 {
				t.Fatalf("failures %v\n%s", f, r.logs.String())
			}
			if r.s3.Calls("AbortMultipartUpload") != 1 || r.s3.openUploads() != 0 {
				t.Fatalf("aborts %d, open uploads %d: want the invalid upload aborted", r.s3.Calls("AbortMultipartUpload"), r.s3.openUploads())
			}
			if !strings.Contains(r.logs.String(), "part list invalid") {
				t.Errorf("the log does not say why the upload was aborted:\n%s", r.logs.String())
			}
			sent := r.snd.messages()
			if len(sent) != 1 || sent[0].Delay != 0 {
				t.Fatalf("messages %+v: want a restart", sent)
			}
			r.s3.CompleteErr = nil
			if f := r.handleOne(t, sent[0], 1, 0); len(f) != 0 {
				t.Fatalf("restart: failures %v", f)
			}
			r.checkLanded(t, "f1", "big.bin", completeSize)
			if r.s3.Calls("CreateMultipartUpload") != 2 {
				t.Errorf("creates %d: want a new upload", r.s3.Calls("CreateMultipartUpload"))
			}
		})
	}
}

// TestCompleteOtherErrorKeepsUpload: any other Complete error on the last
// receive fails the file but keeps the finished upload and its checkpoint:
// the redriven message completes it without downloading a part again.
func TestCompleteOtherErrorKeepsUpload(t *testing.T) {
	r := newRig(t, nil)
	r.rdp.add("f1", "big.bin", completeSize, true)
	r.s3.CompleteErr = func(context.Context, *s3.CompleteMultipartUploadInput) error { return &apiErr{"AccessDenied"} }
	if f := r.handleOne(t, msgFor("f1"), r.cfg.MaxReceiveCount, 0); len(f) != 1 {
		t.Fatalf("failures %v: want the message to fail on its last receive", f)
	}
	if f := r.st.file("f1"); f.Status != state.StatusFailed || !strings.Contains(f.Reason, "AccessDenied") {
		t.Errorf("file %+v: want FAILED naming AccessDenied", f)
	}
	if up := r.st.upload("f1"); r.s3.Calls("AbortMultipartUpload") != 0 || up == nil || up.UploadID == "" || up.PartsDone != 3 || up.Owner != "" {
		t.Fatalf("aborts %d, checkpoint %+v: want the upload and its parts kept, the lease released", r.s3.Calls("AbortMultipartUpload"), up)
	}
	r.s3.CompleteErr = nil
	r.landsFromCheckpoint(t, msgFor("f1")) // cfsync redrive
}

// TestResumeListPartsTransient: the next invocation cannot ask S3 about the
// finished upload (ListParts 500 after the SDK's retries) on the message's
// last receive: the upload is kept and the file deferred.
func TestResumeListPartsTransient(t *testing.T) {
	r := newRig(t, nil)
	_, next := cutComplete(t, r)
	r.s3.ListPartsErr = func() error { return &apiErr{"InternalError"} }
	if f := r.handleOne(t, next, r.cfg.MaxReceiveCount, 0); len(f) != 0 {
		t.Fatalf("failures %v: want a deferral\n%s", f, r.logs.String())
	}
	sent := r.snd.messages()
	if last := sent[len(sent)-1]; len(sent) != 2 || last.Delay <= 0 || r.s3.Calls("AbortMultipartUpload") != 0 || r.s3.openUploads() != 1 {
		t.Fatalf("messages %+v, aborts %d: want the upload kept and the file deferred", sent, r.s3.Calls("AbortMultipartUpload"))
	}
	r.s3.ListPartsErr = nil
	r.landsFromCheckpoint(t, sent[1])
}

// TestFinishedUploadPartsUnlisted: S3 lists a finished upload without its
// parts (as while a Complete assembles them): no abort at once; the key is
// looked at again, and only after maxLandingChecks re-checks is the upload
// aborted and the file started over.
func TestFinishedUploadPartsUnlisted(t *testing.T) {
	r := newRig(t, nil)
	in, next := cutComplete(t, r)
	r.s3.mu.Lock()
	clear(r.s3.uploads[aws.ToString(in.UploadId)].parts)
	r.s3.mu.Unlock()
	for i := 1; i <= maxLandingChecks+1; i++ {
		if f := r.handleOne(t, next, 1, 0); len(f) != 0 {
			t.Fatalf("check %d: failures %v", i, f)
		}
		sent := r.snd.messages()
		next = sent[len(sent)-1]
		if aborts := r.s3.Calls("AbortMultipartUpload"); i <= maxLandingChecks && (next.Delay <= 0 || aborts != 0) {
			t.Fatalf("check %d: message %+v, %d aborts: want a deferral, the upload kept", i, next, aborts)
		}
	}
	if r.s3.Calls("AbortMultipartUpload") != 1 || next.Delay != 0 {
		t.Fatalf("aborts %d, message %+v: want the upload aborted and a restart after %d checks", r.s3.Calls("AbortMultipartUpload"), next, maxLandingChecks)
	}
	if f := r.handleOne(t, next, 1, 0); len(f) != 0 {
		t.Fatalf("restart: failures %v", f)
	}
	r.checkLanded(t, "f1", "big.bin", completeSize)
}
