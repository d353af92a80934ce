package main

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// eventAt is a batch of msgFor(ids) on their receive-th receive
// (ApproximateReceiveCount, as the SQS event source sets it).
func eventAt(receive int, ids ...string) events.SQSEvent {
	var ms []queue.Message
	for _, id := range ids {
		ms = append(ms, msgFor(id))
	}
	return eventOf(receive, ms...)
}

// eventOf is a batch of messages on their receive-th receive.
func eventOf(receive int, ms ...queue.Message) events.SQSEvent {
	var evt events.SQSEvent
	for i, m := range ms {
		evt.Records = append(evt.Records, events.SQSMessage{MessageId: "m" + strconv.Itoa(i), Body: m.Encode(),
			Attributes: map[string]string{"ApproximateReceiveCount": strconv.Itoa(receive)}})
	}
	return evt
}

const retrySize = 25 * MiB // five 5 MiB parts

// transientFaults fail a file after parts 1 and 2 landed (ParallelRanges 1),
// or before its multipart upload exists, or while a checkpoint is resumed.
var transientFaults = []struct {
	name   string
	resume bool // the fault hits the resumption of a checkpoint (prepare)
	before bool // the fault hits before any upload exists
	reason string
	set    func(r *rig)
}{
	{name: "connection resets on every attempt", reason: "download:", set: func(r *rig) {
		r.rdp.Fault = func(_ context.Context, o, n int64, attempt int) (*rdp.RangeResponse, error) {
			if o == 10*MiB {
				return nil, resetErr()
			}
			return nil, nil
		}
	}},
	{name: "UploadPart error after the SDK's retries", reason: "s3:", set: func(r *rig) {
		r.s3.UploadPartErr = func(n int32) error {
			if n == 3 {
				return &apiErr{"InternalError"}
			}
			return nil
		}
	}},
	{name: "ListParts throttled while resuming", resume: true, reason: "s3:", set: func(r *rig) {
		r.s3.ListPartsErr = func() error { return &apiErr{"SlowDown"} }
	}},
	{name: "DynamoDB throttled loading the parts", resume: true, reason: "state:", set: func(r *rig) {
		r.st.LoadPartsErr = func() error { return &apiErr{"ProvisionedThroughputExceededException"} }
	}},
}

func clearFaults(r *rig) {
	r.rdp.Fault, r.rdp.StreamErr = nil, nil
	r.s3.UploadPartErr, r.s3.ListPartsErr, r.st.LoadPartsErr = nil, nil, nil
}

// checkpointAfterTwoParts makes a first receive leave a checkpoint with
// parts 1 and 2 (part 3 fails transiently).
func checkpointAfterTwoParts(t *testing.T, r *rig) {
	t.Helper()
	r.s3.UploadPartErr = func(n int32) error {
		if n == 3 {
			return &apiErr{"InternalError"}
		}
		return nil
	}
	resp, _ := r.h.Handle(context.Background(), eventAt(1, "f1"))
	r.s3.UploadPartErr = nil
	if up := r.st.upload("f1"); len(resp.BatchItemFailures) != 1 || up == nil || up.PartsDone != 2 {
		t.Fatalf("setup: failures %v, checkpoint %+v: want a failed receive leaving 2 parts\n%s", failedIDs(resp), up, r.logs.String())
	}
}

// TestTransientFailureKeepsUpload: a transient failure before the last
// receive keeps the multipart upload and its checkpoint (lease released),
// records the reason without FAILED, and fails the message; the redelivery
// resumes and lands the file without downloading the saved parts again.
func TestTransientFailureKeepsUpload(t *testing.T) {
	for _, tt := range transientFaults {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, func(s *Settings) { s.ParallelRanges = 1 })
			r.rdp.add("f1", "big.bin", retrySize, true)
			receive := 1
			if tt.resume {
				checkpointAfterTwoParts(t, r)
				receive = 2
			}
			tt.set(r)
			resp, _ := r.h.Handle(context.Background(), eventAt(receive, "f1"))
			if len(resp.BatchItemFailures) != 1 {
				t.Fatalf("failures %v, want the message to fail (SQS redelivers it)\n%s", failedIDs(resp), r.logs.String())
			}
			if f := r.st.file("f1"); f.Status != state.StatusDownloading || !strings.HasPrefix(f.Reason, tt.reason) {
				t.Errorf("state %s %q, want DOWNLOADING with a reason %q… (not FAILED before the last receive)", f.Status, f.Reason, tt.reason)
			}
			if n := r.s3.Calls("AbortMultipartUpload"); n != 0 {
				t.Errorf("%d aborts: a transient failure must keep the upload", n)
			}
			up := r.st.upload("f1")
			if tt.before {
				if r.s3.Calls("CreateMultipartUpload") != 0 || (up != nil && up.Owner != "") {
					t.Errorf("uploads created %d, checkpoint %+v: want no upload and a released lease", r.s3.Calls("CreateMultipartUpload"), up)
				}
			} else if up == nil || up.UploadID == "" || up.Owner != "" || up.PartsDone != 2 || r.s3.openUploads() != 1 {
				t.Fatalf("checkpoint %+v, open uploads %d: want the upload kept with parts 1–2 and the lease released", up, r.s3.openUploads())
			}
			clearFaults(r)
			before := r.rdp.Ranges()
			resp, _ = r.h.Handle(context.Background(), eventAt(receive+1, "f1"))
			if len(resp.BatchItemFailures) != 0 {
				t.Fatalf("redelivery failed:\n%s", r.logs.String())
			}
			r.checkLanded(t, "f1", "big.bin", retrySize)
			if !strings.Contains(r.logs.String(), `"md5_verified":true`) {
				t.Error("md5 not verified across the redelivery")
			}
			if tt.before {
				return
			}
			if r.s3.Calls("CreateMultipartUpload") != 1 {
				t.Errorf("%d uploads created: the redelivery did not resume", r.s3.Calls("CreateMultipartUpload"))
			}
			if got := r.rdp.Ranges() - before; got != 3 {
				t.Errorf("the redelivery fetched %d ranges, want the 3 missing parts only", got)
			}
		})
	}
}

// TestLastReceiveIsFinal: on the receive that is the last before the DLQ
// (MAX_RECEIVE_COUNT) the same transient failures are final: the upload is
// aborted, the checkpoint deleted, the state FAILED with the reason.
func TestLastReceiveIsFinal(t *testing.T) {
	for _, maxReceive := range []int{testSettings().MaxReceiveCount, 3} { // config's default (5), and 3
		last := maxReceive
		for _, tt := range transientFaults {
			t.Run(strconv.Itoa(last)+"/"+tt.name, func(t *testing.T) {
				r := newRig(t, func(s *Settings) { s.ParallelRanges = 1; s.MaxReceiveCount = maxReceive })
				r.rdp.add("f1", "big.bin", retrySize, true)
				if tt.resume {
					checkpointAfterTwoParts(t, r)
				}
				tt.set(r)
				resp, _ := r.h.Handle(context.Background(), eventAt(last, "f1"))
				if len(resp.BatchItemFailures) != 1 {
					t.Fatalf("failures %v, want the message to fail", failedIDs(resp))
				}
				if f := r.st.file("f1"); f.Status != state.StatusFailed || !strings.HasPrefix(f.Reason, tt.reason) {
					t.Errorf("state %s %q, want FAILED %q… on the last receive", f.Status, f.Reason, tt.reason)
				}
				if r.s3.openUploads() != 0 || r.st.upload("f1") != nil || r.s3.object(keyOf("big.bin")) != nil {
					t.Errorf("open uploads %d, checkpoint %+v: want the upload aborted and the checkpoint deleted", r.s3.openUploads(), r.st.upload("f1"))
				}
			})
		}
	}
}

// TestPermanentFailureOnFirstReceive: permanent failures are final at once.
func TestPermanentFailureOnFirstReceive(t *testing.T) {
	tests := []struct {
		name, reason string
		set          func(r *rig)
	}{
		{"404 on the URL", "gone:", func(r *rig) {
			r.rdp.Fault = faultAt(10*MiB, func(string, int64, int64) (*rdp.RangeResponse, error) {
				return nil, &rdp.PresignedError{Host: "h", StatusCode: 404, Code: "NoSuchKey"}
			})
		}},
		{"an upload S3 no longer knows", "upload-gone:", func(r *rig) {
			r.s3.UploadPartErr = func(n int32) error {
				if n == 3 {
					return &types.NoSuchUpload{}
				}
				return nil
			}
		}},
		{"md5 mismatch", "md5-mismatch:", func(r *rig) {
			f := r.rdp.files["f1"]
			f.md5 = "0123456789abcdef0123456789abcdef"
			r.rdp.files["f1"] = f
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, func(s *Settings) { s.ParallelRanges = 1 })
			r.rdp.add("f1", "big.bin", retrySize, true)
			tt.set(r)
			resp, _ := r.h.Handle(context.Background(), eventAt(1, "f1"))
			if len(resp.BatchItemFailures) != 1 {
				t.Fatalf("failures %v, want the message to fail", failedIDs(resp))
			}
			if f := r.st.file("f1"); f.Status != state.StatusFailed || !strings.HasPrefix(f.Reason, tt.reason) {
				t.Errorf("state %s %q, want FAILED %q…", f.Status, f.Reason, tt.reason)
			}
			if r.s3.openUploads() != 0 || r.st.upload("f1") != nil {
				t.Errorf("open uploads %d, checkpoint %+v after a permanent failure", r.s3.openUploads(), r.st.upload("f1"))
			}
		})
	}
}

// TestEveryReceiveFails: bookkeeping that fails on every receive (the
// checkpoint save, the continuation message) ends FAILED with a reason and
// no open upload on the last receive — not DOWNLOADING in the DLQ.
func TestEveryReceiveFails(t *testing.T) {
	const size = 100 * MiB // twenty parts: never done within six short invocations
	deadlineRun := func(r *rig, receive int, timeout time.Duration) events.SQSEventResponse {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		m := msgFor("f1")
		if sent := r.snd.messages(); len(sent) > 0 {
			m = sent[0] // the continuation, redelivered
		}
		resp, _ := r.h.Handle(ctx, eventOf(receive, m))
		return resp
	}
	tests := []struct {
		name, reason string
		set          func(r *rig)
	}{
		{"checkpoint save", "checkpoint:", func(r *rig) {
			r.st.SaveErr = func() error { return &apiErr{"ProvisionedThroughputExceededException"} }
		}},
		{"continuation message", "continuation:", func(r *rig) { r.snd.Err = context.Canceled }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A high DEADLINE_MARGIN: each run's margin is a quarter of its
			// time (marginShare), the setup's half a second.
			r := newRig(t, func(s *Settings) {
				s.ParallelRanges = 1
				s.RangeReadTimeout = 5 * time.Second
				s.DeadlineMargin = 2 * time.Second
			})
			r.rdp.add("f1", "big.bin", size, true)
			var delay atomic.Int64 // per range
			r.rdp.Delay = func(int64) time.Duration { return time.Duration(delay.Load()) }
			// A first message saves a checkpoint and continues normally: two
			// slow parts before the soft deadline (1.5 s) of a 2 s invocation,
			// which leaves its bookkeeping a third of a second even on a
			// loaded machine.
			delay.Store(int64(800 * time.Millisecond))
			if resp := deadlineRun(r, 1, 2*time.Second); len(resp.BatchItemFailures) != 0 || len(r.snd.messages()) != 1 {
				t.Fatalf("setup: failures %v\n%s", failedIDs(resp), r.logs.String())
			}
			tt.set(r)
			delay.Store(int64(ms(150))) // at most three parts per receive
			for receive := 1; receive <= 5; receive++ {
				if resp := deadlineRun(r, receive, ms(550)); len(resp.BatchItemFailures) != 1 {
					t.Fatalf("receive %d: failures %v, want the message to fail", receive, failedIDs(resp))
				}
				f := r.st.file("f1")
				if receive < 5 {
					if f.Status != state.StatusDownloading || r.s3.openUploads() != 1 || r.st.upload("f1") == nil || r.st.upload("f1").Owner != "" {
						t.Fatalf("receive %d: state %s, open uploads %d, checkpoint %+v: want the upload kept, lease released", receive, f.Status, r.s3.openUploads(), r.st.upload("f1"))
					}
					continue
				}
				if f.Status != state.StatusFailed || !strings.HasPrefix(f.Reason, tt.reason) {
					t.Errorf("last receive: state %s %q, want FAILED %q…", f.Status, f.Reason, tt.reason)
				}
				if r.s3.openUploads() != 0 || r.st.upload("f1") != nil {
					t.Errorf("last receive: open uploads %d, checkpoint %+v: want no orphaned upload", r.s3.openUploads(), r.st.upload("f1"))
				}
			}
		})
	}
}

// TestSingleLandedThenGone: a crash after a single PutObject and before
// MarkDone (here: MarkDone failing), then the file is gone from the file
// store: the redelivery finds the object through the key recorded before
// the PutObject and records it DONE instead of FAILED.
func TestSingleLandedThenGone(t *testing.T) {
	r := newRig(t, nil)
	r.rdp.add("f1", "small.csv", MiB, true)
	var fail atomic.Bool
	fail.Store(true)
	r.st.MarkDoneErr = func() error {
		if fail.Load() {
			return &apiErr{"InternalServerError"}
		}
		return nil
	}
	resp, _ := r.h.Handle(context.Background(), eventAt(1, "f1"))
	if len(resp.BatchItemFailures) != 1 || r.s3.object(keyOf("small.csv")) == nil {
		t.Fatalf("failures %v: want the object put and the message failed", failedIDs(resp))
	}
	if up := r.st.upload("f1"); up == nil || up.Key != keyOf("small.csv") || up.Bucket != "dest" || up.Size != MiB {
		t.Fatalf("checkpoint %+v: want the target recorded before the PutObject", up)
	}
	fail.Store(false)
	r.rdp.mu.Lock()
	delete(r.rdp.files, "f1") // gone: 404 from now on
	r.rdp.mu.Unlock()
	resp, _ = r.h.Handle(context.Background(), eventAt(2, "f1"))
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("failures %v:\n%s", failedIDs(resp), r.logs.String())
	}
	o := r.s3.object(keyOf("small.csv"))
	if f := r.st.file("f1"); f.Status != state.StatusDone || f.Key != keyOf("small.csv") || f.ETag != o.etag {
		t.Errorf("state %+v, want DONE with the landed object", f)
	}
	if r.st.upload("f1") != nil || r.s3.Calls("PutObject") != 1 {
		t.Errorf("checkpoint %+v, puts %d", r.st.upload("f1"), r.s3.Calls("PutObject"))
	}
}
