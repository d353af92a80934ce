package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/lambdaerr"
	"github.com/cfsync/cfsync/internal/metrics"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer = testenv.SyncBuffer

type rig struct {
	h       *Handler
	s3      *fakeS3
	rdp     *fakeRDP
	st      *fakeState
	snd     *fakeSender
	logs    *syncBuffer
	metrics *syncBuffer
	cfg     Settings
}

// ms is n milliseconds of a deadline test, times deadlineScale. A deadline
// test's range delays and invocation timeout are scaled together: what fits
// before the soft deadline stays the same, while the bookkeeping after it
// (the margin, a quarter of the invocation: marginShare) gets more time on a
// loaded machine. Keep a scaled timeout under 4 × the DeadlineMargin below,
// or the margin stops growing with it.
func ms(n int) time.Duration { return time.Duration(n*deadlineScale) * time.Millisecond }

const deadlineScale = 2

func testSettings() Settings {
	// config.Downloader's defaults, changed for quick tests.
	s := Settings{DownloaderKnobs: config.Defaults[config.Downloader]().DownloaderKnobs}
	s.DestBucket, s.DestPrefix, s.PartSize, s.ParallelRanges = "dest", "cfs/", 5*MiB, 3
	s.MessageConcurrency, s.DeadlineMargin, s.RangeReadTimeout, s.RangeAttempts = 2, 300*time.Millisecond, time.Second, 4
	s.RetryBaseDelay, s.RetryMaxDelay, s.CheckpointInterval = time.Millisecond, 5*time.Millisecond, time.Hour
	s.SinglePutMax = 0 // multipart, as these tests were written for; the single-PUT tests turn it on
	return s
}

func newRig(t *testing.T, mod func(*Settings)) *rig {
	t.Helper()
	r := &rig{s3: newFakeS3("dest"), rdp: newFakeRDP(), st: newFakeState(), snd: &fakeSender{},
		logs: &syncBuffer{}, metrics: &syncBuffer{}, cfg: testSettings()}
	if mod != nil {
		mod(&r.cfg)
	}
	r.h = newTestHandler(t, Deps{S3: r.s3, RDP: r.rdp, State: r.st, Sender: r.snd}, r.cfg, r.logs, r.metrics)
	return r
}

// newTestHandler is New(d, s) whose log (JSON, debug level) goes to logs
// and whose EMF metrics go to emf.
func newTestHandler(t testing.TB, d Deps, s Settings, logs, emf *syncBuffer) *Handler {
	t.Helper()
	d.Log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d.Metrics = metrics.New(emf, "downloader")
	h, err := New(d, s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// bigFileRig is a rig that downloads one range at a time (5 s a range
// read), mod changing more settings, whose RDP serves f1: big.bin, 25 MiB
// (five parts) with a plain ETag.
func bigFileRig(t *testing.T, mod func(*Settings)) *rig {
	t.Helper()
	r := newRig(t, func(s *Settings) {
		s.ParallelRanges = 1
		s.RangeReadTimeout = 5 * time.Second
		if mod != nil {
			mod(s)
		}
	})
	r.rdp.add("f1", "big.bin", 25*MiB, true)
	return r
}

// msgFor is the poller's message for file id: with the size (and md5, if
// the test gave one) the listing has for it.
func msgFor(id string) queue.Message {
	m := oldMsgFor(id)
	if f, ok := listing.listed(id); ok {
		m.Size = &f.size
		m.MD5 = f.md5
	}
	return m
}

// oldMsgFor is a message of the first format: no size, no name.
func oldMsgFor(id string) queue.Message {
	return queue.Message{FileID: id, FileSetID: "fs1", FileSetName: "Set 1", Bucket: "bulk-ESG", PackageID: "pkg1"}
}

func event(bodies ...string) events.SQSEvent {
	var evt events.SQSEvent
	for i, b := range bodies {
		evt.Records = append(evt.Records, events.SQSMessage{MessageId: "m" + strconv.Itoa(i), Body: b})
	}
	return evt
}

func failedIDs(resp events.SQSEventResponse) []string {
	ids := []string{}
	for _, f := range resp.BatchItemFailures {
		ids = append(ids, f.ItemIdentifier)
	}
	return ids
}

// keyOf is the key docs/design.md#output-layout gives a file of msgFor(id) named name.
func keyOf(name string) string {
	return "cfs/bulk-ESG/pkg1/fs1/" + strings.ReplaceAll(name, ":", "_")
}

// checkLanded asserts the object is byte-identical with its docs/design.md#output-layout metadata
// and the state is DONE.
func (r *rig) checkLanded(t *testing.T, id, name string, size int64) {
	t.Helper()
	o := r.s3.object(keyOf(name))
	if o == nil {
		t.Fatalf("no object at %s", keyOf(name))
	}
	want, _ := io.ReadAll(rdptest.Content(id, size))
	if !bytes.Equal(o.data, want) {
		t.Fatalf("object %s: %d bytes, not byte-identical with the %d-byte source", keyOf(name), len(o.data), size)
	}
	wantMeta := map[string]string{"cfs-file-id": id, "cfs-fileset-id": "fs1", "cfs-package-id": "pkg1", "cfs-bucket": "bulk-ESG", "cfs-size": strconv.FormatInt(size, 10)}
	for k, v := range wantMeta {
		if o.meta[k] != v {
			t.Errorf("metadata %s = %q, want %q", k, o.meta[k], v)
		}
	}
	if len(o.meta) != len(wantMeta) {
		t.Errorf("metadata %v has extra entries", o.meta)
	}
	f := r.st.file(id)
	if f.Status != state.StatusDone || f.Key != keyOf(name) || f.Size != size || f.ETag != o.etag {
		t.Errorf("state %+v, want DONE with key %s, size %d, etag %s", f, keyOf(name), size, o.etag)
	}
	if u := r.st.upload(id); u != nil {
		t.Errorf("checkpoint left behind: %+v", u)
	}
	if n := r.s3.openUploads(); n != 0 {
		t.Errorf("%d multipart uploads left open", n)
	}
}

// metric sums the values of an EMF metric whose dimensions include dims.
func metric(t *testing.T, emf string, name string, dims ...string) float64 {
	t.Helper()
	var sum float64
	for _, v := range testenv.Metric(t, emf, name, dims...) {
		sum += v
	}
	return sum
}

func TestChoosePartSize(t *testing.T) {
	tests := []struct {
		name     string
		size     int64
		override int64
		want     int64
		wantErr  bool
	}{
		{"empty file", 0, 0, 8 * MiB, false},
		{"tiny file", 1, 0, 8 * MiB, false},
		{"1 GiB", GiB, 0, 8 * MiB, false},
		{"50 GiB still fits 8 MiB parts", 50 * GiB, 0, 8 * MiB, false},
		{"80 GiB needs 9 MiB parts", 80 * GiB, 0, 9 * MiB, false},
		{"5 TiB needs 525 MiB parts", 5 << 40, 0, 525 * MiB, false},
		{"override used", GiB, 5 * MiB, 5 * MiB, false},
		{"override raised to fit 10,000 parts", 100 * GiB, 5 * MiB, 11 * MiB, false},
		{"override too small", GiB, 4 * MiB, 0, true},
		{"override too large", GiB, 6 * GiB, 0, true},
		{"larger than S3 allows", 5<<40 + 1, 0, 0, true},
		{"negative size", -1, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := choosePartSize(tt.size, tt.override)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got != tt.want {
				t.Errorf("part size %d (%.2f MiB), want %d (%.2f MiB)", got, float64(got)/float64(MiB), tt.want, float64(tt.want)/float64(MiB))
			}
			if n := partCount(tt.size, got); n > maxParts || got < minPartSize || got > maxPartSize {
				t.Errorf("part size %d gives %d parts: outside S3's limits", got, n)
			}
		})
	}
}

func TestPartLen(t *testing.T) {
	tests := []struct {
		size, ps int64
		n        int32
		want     int64
	}{
		{12*MiB + 7, 5 * MiB, 1, 5 * MiB},
		{12*MiB + 7, 5 * MiB, 3, 2*MiB + 7},
		{10 * MiB, 5 * MiB, 2, 5 * MiB},
	}
	for _, tt := range tests {
		if got := partLen(tt.size, tt.ps, tt.n); got != tt.want {
			t.Errorf("partLen(%d, %d, %d) = %d, want %d", tt.size, tt.ps, tt.n, got, tt.want)
		}
	}
	if got := partCount(10*MiB, 5*MiB); got != 2 {
		t.Errorf("partCount = %d, want 2", got)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want decision
	}{
		{"stall", fmt.Errorf("x: %w", errStalled), decision{actRetry, kindStall}},
		{"truncated", fmt.Errorf("%w: got 1 of 2 bytes", errTruncated), decision{actRetry, kindTruncated}},
		{"unexpected EOF", io.ErrUnexpectedEOF, decision{actRetry, kindTruncated}},
		{"connection reset", resetErr(), decision{actRetry, kindReset}},
		{"EOF before response", fmt.Errorf("get range from http://h: %w", io.EOF), decision{actRetry, kindReset}},
		{"403 expired URL", &rdp.PresignedError{Host: "h", StatusCode: 403, Code: "AccessDenied"}, decision{actRefreshURL, kindURLExpired}},
		{"404 gone", &rdp.PresignedError{Host: "h", StatusCode: 404, Code: "NoSuchKey"}, decision{actFail, "gone"}},
		{"429", &rdp.PresignedError{Host: "h", StatusCode: 429, Code: "SlowDown"}, decision{actRetry, kindThrottle}},
		{"503 SlowDown", &rdp.PresignedError{Host: "h", StatusCode: 503, Code: "SlowDown"}, decision{actRetry, kindThrottle}},
		{"500", &rdp.PresignedError{Host: "h", StatusCode: 500, Code: "InternalError"}, decision{actRetry, kindServer}},
		{"400", &rdp.PresignedError{Host: "h", StatusCode: 400, Code: "InvalidArgument"}, decision{actFail, "http-400"}},
		{"size mismatch", &sizeMismatchError{want: 1, got: 2}, decision{actFail, "size-mismatch"}},
		{"unknown", errors.New("tls: something odd"), decision{actRetry, kindNetwork}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Errorf("classify(%v) = %+v, want %+v", tt.err, got, tt.want)
			}
		})
	}
}

func TestEqualJitter(t *testing.T) {
	for attempt := 1; attempt <= 10; attempt++ {
		want := min(100*time.Millisecond<<(attempt-1), 2*time.Second)
		for range 50 {
			d := equalJitter(100*time.Millisecond, 2*time.Second, attempt)
			if d < want/2 || d > want {
				t.Fatalf("attempt %d: backoff %s outside [%s, %s]", attempt, d, want/2, want)
			}
		}
	}
}

// faultAt fails the first attempt of the range at off with f.
func faultAt(off int64, f func(id string, off, n int64) (*rdp.RangeResponse, error)) rangeFault {
	return func(_ context.Context, o, n int64, attempt int) (*rdp.RangeResponse, error) {
		if o == off && attempt == 1 {
			return f("f1", o, n)
		}
		return nil, nil
	}
}

func TestHandle(t *testing.T) {
	const big = 12*MiB + 7 // three parts of 5 MiB
	bigName := "ESG Delta 2024-01-01T00:00:00Z part 1.jsonl.gz"
	tests := []struct {
		name  string
		mod   func(*Settings)
		setup func(r *rig)
		msgs  []string // bodies; "f1" etc. stand for msgFor(id)
		fail  []string
		check func(t *testing.T, r *rig)
	}{
		{
			name:  "small file lands with one PutObject",
			setup: func(r *rig) { r.rdp.add("f1", "small:file 1.csv", 3*MiB+1, true) },
			msgs:  []string{"f1"},
			check: func(t *testing.T, r *rig) {
				r.checkLanded(t, "f1", "small:file 1.csv", 3*MiB+1)
				if r.s3.Calls("PutObject") != 1 || r.s3.Calls("CreateMultipartUpload") != 0 {
					t.Errorf("PutObject %d, CreateMultipartUpload %d: want 1, 0", r.s3.Calls("PutObject"), r.s3.Calls("CreateMultipartUpload"))
				}
				if !strings.Contains(r.logs.String(), `"md5_verified":true`) {
					t.Error("md5 not verified")
				}
				if metric(t, r.metrics.String(), "FilesDownloaded") != 1 || metric(t, r.metrics.String(), "BytesDownloaded") != float64(3*MiB+1) {
					t.Errorf("metrics: %s", r.metrics.String())
				}
			},
		},
		{
			name:  "empty file lands without a range request",
			setup: func(r *rig) { r.rdp.add("f1", "empty.csv", 0, true) },
			msgs:  []string{"f1"},
			check: func(t *testing.T, r *rig) {
				r.checkLanded(t, "f1", "empty.csv", 0)
				if r.rdp.Ranges() != 0 {
					t.Errorf("%d range requests for an empty file", r.rdp.Ranges())
				}
			},
		},
		{
			name:  "multipart file lands in three parts",
			setup: func(r *rig) { r.rdp.add("f1", bigName, big, true) },
			msgs:  []string{"f1"},
			check: func(t *testing.T, r *rig) {
				r.checkLanded(t, "f1", bigName, big)
				if r.s3.Calls("UploadPart") != 3 || r.rdp.Ranges() != 3 {
					t.Errorf("UploadPart %d, ranges %d: want 3, 3", r.s3.Calls("UploadPart"), r.rdp.Ranges())
				}
				if !strings.HasSuffix(r.st.file("f1").ETag, `-3"`) {
					t.Errorf("etag %s: not a 3-part etag", r.st.file("f1").ETag)
				}
				if !strings.Contains(r.logs.String(), `"md5_verified":true`) {
					t.Error("md5 not verified")
				}
			},
		},
		{
			name:  "PART_SIZE unset: chosen from the size (8 MiB)",
			mod:   func(s *Settings) { s.PartSize = 0 },
			setup: func(r *rig) { r.rdp.add("f1", bigName, big, false) },
			msgs:  []string{"f1"},
			check: func(t *testing.T, r *rig) {
				r.checkLanded(t, "f1", bigName, big)
				if r.s3.Calls("UploadPart") != 2 {
					t.Errorf("UploadPart %d, want 2 parts of 8 MiB", r.s3.Calls("UploadPart"))
				}
			},
		},
		{
			name: "state DONE: nothing is downloaded",
			setup: func(r *rig) {
				r.rdp.add("f1", "a.csv", MiB, true)
				r.st.files["f1"] = &state.FileItem{FileID: "f1", Status: state.StatusDone, Key: keyOf("a.csv")}
			},
			msgs: []string{"f1"},
			check: func(t *testing.T, r *rig) {
				if r.rdp.Ranges() != 0 || r.rdp.StreamURLs() != 0 || r.s3.Calls("PutObject") != 0 {
					t.Errorf("ranges %d, stream calls %d, puts %d: want none", r.rdp.Ranges(), r.rdp.StreamURLs(), r.s3.Calls("PutObject"))
				}
			},
		},
		{
			name: "object already in S3 with matching cfs-size: marked DONE without downloading",
			setup: func(r *rig) {
				r.rdp.add("f1", "a.csv", MiB, true)
				r.s3.objects[keyOf("a.csv")] = &fakeObject{data: make([]byte, MiB), meta: map[string]string{"cfs-file-id": "f1", "cfs-size": strconv.Itoa(int(MiB))}, etag: `"e1"`}
			},
			msgs: []string{"f1"},
			check: func(t *testing.T, r *rig) {
				if r.rdp.Ranges() != 0 || r.s3.Calls("PutObject") != 0 {
					t.Errorf("ranges %d, puts %d: want none", r.rdp.Ranges(), r.s3.Calls("PutObject"))
				}
				if f := r.st.file("f1"); f.Status != state.StatusDone || f.ETag != `"e1"` {
					t.Errorf("state %+v, want DONE with the object's etag", f)
				}
			},
		},
		{
			name: "object in S3 with another cfs-size: downloaded again",
			setup: func(r *rig) {
				r.rdp.add("f1", "a.csv", MiB, true)
				r.s3.objects[keyOf("a.csv")] = &fakeObject{data: make([]byte, 10), meta: map[string]string{"cfs-file-id": "f1", "cfs-size": "10"}, etag: `"old"`}
			},
			msgs:  []string{"f1"},
			check: func(t *testing.T, r *rig) { r.checkLanded(t, "f1", "a.csv", MiB) },
		},
		{
			name:  "poison messages fail alone, naming the field",
			setup: func(r *rig) { r.rdp.add("f1", "a.csv", MiB, true) },
			msgs:  []string{"not json", `{"fileId":"f9","bucket":"b","packageId":"p"}`, `{"fileId":5,"fileSetId":"s","bucket":"b","packageId":"p"}`, "f1"},
			fail:  []string{"m0", "m1", "m2"},
			check: func(t *testing.T, r *rig) {
				r.checkLanded(t, "f1", "a.csv", MiB)
				logs := r.logs.String()
				for _, want := range []string{"not a JSON object", `\"fileSetId\" is required`, `field \"fileId\"`} {
					if !strings.Contains(logs, want) {
						t.Errorf("logs lack %q", want)
					}
				}
				if metric(t, r.metrics.String(), "PoisonMessages") != 3 {
					t.Errorf("PoisonMessages != 3")
				}
			},
		},
		{
			name:  "duplicate delivery in one batch: one download",
			setup: func(r *rig) { r.rdp.add("f1", bigName, big, true) },
			msgs:  []string{"f1", "f1"},
			check: func(t *testing.T, r *rig) {
				r.checkLanded(t, "f1", bigName, big)
				if r.rdp.Ranges() != 3 || r.s3.Calls("CreateMultipartUpload") != 1 {
					t.Errorf("ranges %d, uploads %d: want one download (3, 1)", r.rdp.Ranges(), r.s3.Calls("CreateMultipartUpload"))
				}
			},
		},
		{
			name: "lease held by another invocation: not acknowledged as done, a delayed copy follows",
			setup: func(r *rig) {
				r.rdp.add("f1", "a.csv", MiB, true)
				r.st.uploads["f1"] = &state.Upload{FileID: "f1", Owner: "someone", LeaseUntilMs: time.Now().Add(time.Hour).UnixMilli()}
			},
			msgs: []string{"f1"},
			check: func(t *testing.T, r *rig) {
				if r.rdp.Ranges() != 0 {
					t.Errorf("ranges %d", r.rdp.Ranges())
				}
				sent := r.snd.messages()
				if len(sent) != 1 || sent[0].FileID != "f1" || sent[0].Delay <= 0 || sent[0].Seq != 0 || sent[0].Deferrals != 1 {
					t.Fatalf("sent %+v: want one delayed copy of the same chain link", sent)
				}
			},
		},
		{
			name: "expired lease is taken over",
			setup: func(r *rig) {
				r.rdp.add("f1", "a.csv", MiB, true)
				r.st.uploads["f1"] = &state.Upload{FileID: "f1", Owner: "crashed", LeaseUntilMs: time.Now().Add(-time.Minute).UnixMilli()}
			},
			msgs:  []string{"f1"},
			check: func(t *testing.T, r *rig) { r.checkLanded(t, "f1", "a.csv", MiB) },
		},
		{
			name:  "404 from /stream: fails as gone",
			setup: func(r *rig) {},
			msgs:  []string{"f1"},
			fail:  []string{"m0"},
			check: func(t *testing.T, r *rig) {
				if f := r.st.file("f1"); f.Status != state.StatusFailed || !strings.HasPrefix(f.Reason, "gone:") {
					t.Errorf("state %+v, want FAILED gone", f)
				}
			},
		},
		{
			name: "401 on /stream after the reader's retry: deferred with a delay, the message succeeds",
			setup: func(r *rig) {
				r.rdp.add("f1", "a.csv", MiB, true)
				r.rdp.StreamErr = func(string, int) error {
					return tokenRefused()
				}
			},
			msgs: []string{"f1"},
			check: func(t *testing.T, r *rig) {
				if f := r.st.file("f1"); f.Status != state.StatusDownloading || !strings.HasPrefix(f.Reason, "deferred (unauthorized)") {
					t.Errorf("state %+v, want DOWNLOADING, deferred (unauthorized)", f)
				}
				sent := r.snd.messages()
				if len(sent) != 1 || sent[0].Deferrals != 1 || sent[0].Delay <= 0 || sent[0].Seq != 1 {
					t.Fatalf("sent %+v, want one delayed message, deferral 1, seq 1", sent)
				}
				if metric(t, r.metrics.String(), "FilesDeferred") != 1 {
					t.Errorf("FilesDeferred not counted: %s", r.metrics.String())
				}
			},
		},
		{
			name: "md5 mismatch: fails, upload aborted, no object",
			setup: func(r *rig) {
				r.rdp.add("f1", bigName, big, false)
				f := r.rdp.files["f1"]
				f.md5 = "0123456789abcdef0123456789abcdef"
				r.rdp.files["f1"] = f
			},
			msgs: []string{"f1"},
			fail: []string{"m0"},
			check: func(t *testing.T, r *rig) {
				if r.s3.object(keyOf(bigName)) != nil || r.s3.openUploads() != 0 {
					t.Error("object or open upload left after an md5 mismatch")
				}
				if f := r.st.file("f1"); !strings.HasPrefix(f.Reason, "md5-mismatch") {
					t.Errorf("reason %q", f.Reason)
				}
			},
		},
		{
			name: "S3 refuses a part: upload aborted, FAILED",
			setup: func(r *rig) {
				r.rdp.add("f1", bigName, big, true)
				r.s3.UploadPartErr = func(n int32) error {
					if n == 2 {
						return &apiErr{"AccessDenied"}
					}
					return nil
				}
			},
			msgs: []string{"f1"},
			fail: []string{"m0"},
			check: func(t *testing.T, r *rig) {
				if r.s3.openUploads() != 0 || r.s3.Calls("AbortMultipartUpload") != 1 {
					t.Errorf("open uploads %d, aborts %d", r.s3.openUploads(), r.s3.Calls("AbortMultipartUpload"))
				}
				if f := r.st.file("f1"); f.Status != state.StatusFailed || !strings.HasPrefix(f.Reason, "s3:") {
					t.Errorf("state %+v", f)
				}
				if r.st.upload("f1") != nil {
					t.Error("checkpoint left after the failure")
				}
			},
		},
		{
			name: "a panic fails only its message",
			setup: func(r *rig) {
				r.rdp.add("f1", "a.csv", MiB, true)
				r.rdp.StreamErr = func(id string, _ int) error {
					if id == "boom" {
						panic("fake crash")
					}
					return nil
				}
			},
			msgs:  []string{"boom", "f1"},
			fail:  []string{"m0"},
			check: func(t *testing.T, r *rig) { r.checkLanded(t, "f1", "a.csv", MiB) },
		},
		{
			name: "parts finishing out of order are hashed in order",
			mod:  func(s *Settings) { s.RangeReadTimeout = 5 * time.Second },
			setup: func(r *rig) {
				r.rdp.add("f1", bigName, big, true)
				r.rdp.Delay = func(off int64) time.Duration {
					if off == 0 {
						return 150 * time.Millisecond
					}
					return 0
				}
			},
			msgs: []string{"f1"},
			check: func(t *testing.T, r *rig) {
				r.checkLanded(t, "f1", bigName, big)
				if !strings.Contains(r.logs.String(), `"md5_verified":true`) {
					t.Error("md5 not verified")
				}
			},
		},
		{
			name: "ranges in flight never exceed PARALLEL_RANGES across the batch",
			mod:  func(s *Settings) { s.ParallelRanges = 2; s.RangeReadTimeout = 5 * time.Second },
			setup: func(r *rig) {
				r.rdp.add("f1", bigName, big, true)
				r.rdp.add("f2", "other.bin", big, false)
				r.rdp.Delay = func(int64) time.Duration { return 20 * time.Millisecond }
			},
			msgs: []string{"f1", "f2"},
			check: func(t *testing.T, r *rig) {
				r.checkLanded(t, "f1", bigName, big)
				r.checkLanded(t, "f2", "other.bin", big)
				if m := r.rdp.maxFlight.Load(); m > 2 || m < 2 {
					t.Errorf("at most %d ranges in flight, want exactly PARALLEL_RANGES=2", m)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.mod)
			tt.setup(r)
			var bodies []string
			for _, m := range tt.msgs {
				if !strings.ContainsAny(m, "{ ") {
					m = msgFor(m).Encode()
				}
				bodies = append(bodies, m)
			}
			resp, err := r.h.Handle(context.Background(), event(bodies...))
			if err != nil {
				t.Fatalf("Handle returned an error: %v", err)
			}
			want := tt.fail
			if want == nil {
				want = []string{}
			}
			if got := failedIDs(resp); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("failed messages %v, want %v\nlogs:\n%s", got, want, r.logs.String())
			}
			if strings.Contains(r.logs.String(), "SECRET") || strings.Contains(r.logs.String(), "X-Amz-") {
				t.Error("a presigned URL reached the logs")
			}
			tt.check(t, r)
		})
	}
}

// TestHandleRangeFaults: each fault on the second part's first attempt is
// retried (that range only) and the file still lands byte-identical; the
// permanent ones fail the file with no open upload.
func TestHandleRangeFaults(t *testing.T) {
	const size = 12*MiB + 7
	name := "faulty.bin"
	off := 5 * MiB
	tests := []struct {
		name     string
		fault    rangeFault
		kind     string // Retries{kind} expected once; "" for failures
		failure  string // state reason prefix when the file must fail
		urls     int    // /stream calls expected (0: don't check)
		deferred bool   // RDP unavailable: deferred, not failed
	}{
		{name: "connection reset", kind: kindReset, fault: faultAt(off, func(string, int64, int64) (*rdp.RangeResponse, error) { return nil, resetErr() })},
		{name: "truncated body", kind: kindTruncated, fault: faultAt(off, func(id string, o, n int64) (*rdp.RangeResponse, error) {
			return truncatedBody(id, o, n, size), nil
		})},
		{name: "stall: no byte within the read timeout", kind: kindStall, fault: func(ctx context.Context, o, n int64, attempt int) (*rdp.RangeResponse, error) {
			if o == off && attempt == 1 {
				// Like a real response body, it ends only when its request is cancelled.
				return &rdp.RangeResponse{Body: stallBody{ctx}, Offset: o, Length: n, TotalSize: size}, nil
			}
			return nil, nil
		}},
		{name: "403 expired URL: new URL from /stream", kind: kindURLExpired, urls: 2, fault: faultAt(off, func(string, int64, int64) (*rdp.RangeResponse, error) {
			return nil, &rdp.PresignedError{Host: "h", StatusCode: 403, Code: "AccessDenied", Message: "Request has expired"}
		})},
		{name: "400 ExpiredToken (session token ended): new URL from /stream", kind: kindURLExpired, urls: 2, fault: faultAt(off, func(string, int64, int64) (*rdp.RangeResponse, error) {
			return nil, &rdp.PresignedError{Host: "h", StatusCode: 400, Code: "ExpiredToken", Message: "The provided token has expired."}
		})},
		{name: "400 TokenRefreshRequired: new URL from /stream", kind: kindURLExpired, urls: 2, fault: faultAt(off, func(string, int64, int64) (*rdp.RangeResponse, error) {
			return nil, &rdp.PresignedError{Host: "h", StatusCode: 400, Code: "TokenRefreshRequired"}
		})},
		{name: "400 InvalidToken: new URL from /stream", kind: kindURLExpired, urls: 2, fault: faultAt(off, func(string, int64, int64) (*rdp.RangeResponse, error) {
			return nil, &rdp.PresignedError{Host: "h", StatusCode: 400, Code: "InvalidToken"}
		})},
		{name: "400 other code: fails", failure: "download:", fault: faultAt(off, func(string, int64, int64) (*rdp.RangeResponse, error) {
			return nil, &rdp.PresignedError{Host: "h", StatusCode: 400, Code: "InvalidArgument"}
		})},
		{name: "503 SlowDown", kind: kindThrottle, fault: faultAt(off, func(string, int64, int64) (*rdp.RangeResponse, error) {
			return nil, &rdp.PresignedError{Host: "h", StatusCode: 503, Code: "SlowDown"}
		})},
		{name: "500", kind: kindServer, fault: faultAt(off, func(string, int64, int64) (*rdp.RangeResponse, error) {
			return nil, &rdp.PresignedError{Host: "h", StatusCode: 500, Code: "InternalError"}
		})},
		{name: "404 on the URL: permanent", failure: "gone:", fault: faultAt(off, func(string, int64, int64) (*rdp.RangeResponse, error) {
			return nil, &rdp.PresignedError{Host: "h", StatusCode: 404, Code: "NoSuchKey"}
		})},
		{name: "500 on every attempt: deferred, upload kept", deferred: true, fault: func(_ context.Context, o, n int64, attempt int) (*rdp.RangeResponse, error) {
			if o == off {
				return nil, &rdp.PresignedError{Host: "h", StatusCode: 500, Code: "InternalError"}
			}
			return nil, nil
		}},
		{name: "size differs from the listing", failure: "size-mismatch:", fault: faultAt(off, func(id string, o, n int64) (*rdp.RangeResponse, error) {
			return &rdp.RangeResponse{Body: io.NopCloser(strings.NewReader("")), Offset: o, Length: n, TotalSize: size + 1}, nil
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			r.rdp.add("f1", name, size, true)
			r.rdp.Fault = tt.fault
			resp, _ := r.h.Handle(context.Background(), event(msgFor("f1").Encode()))
			if tt.deferred {
				sent := r.snd.messages()
				if len(resp.BatchItemFailures) != 0 || len(sent) != 1 || sent[0].Delay <= 0 || sent[0].Deferrals != 1 {
					t.Fatalf("failures %v, sent %+v: want the message acknowledged and a delayed copy", failedIDs(resp), sent)
				}
				if up := r.st.upload("f1"); up == nil || up.UploadID == "" || r.s3.openUploads() != 1 {
					t.Errorf("checkpoint %+v: want the upload kept", up)
				}
				if r.rdp.attempts[off] != r.cfg.RangeAttempts {
					t.Errorf("%d attempts at the range, want RANGE_ATTEMPTS=%d", r.rdp.attempts[off], r.cfg.RangeAttempts)
				}
				if strings.Contains(r.metrics.String(), "FilesFailed") {
					t.Error("FilesFailed counted for a deferral")
				}
				return
			}
			if tt.failure != "" {
				if len(resp.BatchItemFailures) != 1 {
					t.Fatalf("want the message to fail, got %v", failedIDs(resp))
				}
				f := r.st.file("f1")
				if f.Status != state.StatusFailed || !strings.HasPrefix(f.Reason, tt.failure) {
					t.Errorf("state %s %q, want FAILED %q…", f.Status, f.Reason, tt.failure)
				}
				if r.s3.openUploads() != 0 || r.s3.object(keyOf(name)) != nil {
					t.Error("open upload or object left after a failure")
				}
				return
			}
			if len(resp.BatchItemFailures) != 0 {
				t.Fatalf("message failed:\n%s", r.logs.String())
			}
			r.checkLanded(t, "f1", name, size)
			if got := metric(t, r.metrics.String(), "Retries", "kind", tt.kind); got != 1 {
				t.Errorf("Retries{kind=%s} = %v, want 1; metrics: %s", tt.kind, got, r.metrics.String())
			}
			if r.rdp.attempts[0] != 1 || r.rdp.attempts[10*MiB] != 1 || r.rdp.attempts[off] != 2 {
				t.Errorf("attempts per range %v: want only the faulty range retried (once)", r.rdp.attempts)
			}
			if tt.urls > 0 && r.rdp.StreamURLs() != tt.urls {
				t.Errorf("/stream calls %d, want %d", r.rdp.StreamURLs(), tt.urls)
			}
		})
	}
}

func TestHandleEventMalformed(t *testing.T) {
	tests := []struct {
		raw  string
		want string // substring of the error; "" for success
	}{
		{`not json`, "event: not valid JSON"},
		{`[1,2]`, "want a JSON object"},
		{`{"Records":"x"}`, `field "Records"`},
		{`{"Records":[{"body":5}]}`, `field "Records.body"`},
		{`{"Records":[]}`, ""},
		{`{}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			r := newRig(t, nil)
			out, err := r.h.Invoke(context.Background(), []byte(tt.raw))
			if tt.want == "" {
				if err != nil || string(out) != `{"batchItemFailures":[]}` {
					t.Fatalf("got %s, %v", out, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if got := lambdaerr.TypeName(err); got != "MalformedEvent" {
				t.Errorf("errorType %s, want MalformedEvent", got)
			}
		})
	}
}

// TestLeaseLost: when a checkpoint finds the lease taken over, the upload
// (now someone else's) is neither aborted nor deleted.
func TestLeaseLost(t *testing.T) {
	r := bigFileRig(t, func(s *Settings) { s.CheckpointInterval = time.Second }) // CHECKPOINT_INTERVAL's least
	var once sync.Once
	r.rdp.Delay = func(off int64) time.Duration {
		if off >= 10*MiB {
			once.Do(func() { // another invocation takes over while part 3 downloads
				r.st.mu.Lock()
				r.st.uploads["f1"].Owner = "usurper"
				r.st.mu.Unlock()
			})
		}
		if off == 10*MiB {
			return 2500 * time.Millisecond // the first checkpoints fall in part 3, well before Complete
		}
		return 0
	}
	resp, _ := r.h.Handle(context.Background(), event(msgFor("f1").Encode()))
	if len(resp.BatchItemFailures) != 1 {
		t.Fatalf("failures %v, want the message to fail", failedIDs(resp))
	}
	if r.s3.Calls("AbortMultipartUpload") != 0 || r.s3.openUploads() != 1 || r.st.upload("f1") == nil {
		t.Errorf("aborts %d, open uploads %d, checkpoint %v: the new holder's upload was touched",
			r.s3.Calls("AbortMultipartUpload"), r.s3.openUploads(), r.st.upload("f1"))
	}
	if f := r.st.file("f1"); f.Status == state.StatusFailed {
		t.Errorf("state %s: the file must not be marked FAILED under the new holder", f.Status)
	}
}

// TestNewChecksSettings: New applies no defaults of its own and clamps
// nothing (the defaults and bounds are config.DownloaderKnobs' tags): a knob
// out of bounds is a start-up error naming its variable (a fixed setting:
// its field). RETRY_MAX_DELAY below RETRY_BASE_DELAY names both. The memory
// guard: part size × (PARALLEL_RANGES + 1) + overhead must fit the
// function's memory, or the error names the variables.
func TestNewChecksSettings(t *testing.T) {
	memory := []string{"PART_SIZE", "PARALLEL_RANGES", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"}
	sizes := func(part int64, ranges, mb int) func(*Settings) {
		return func(s *Settings) { s.PartSize, s.ParallelRanges, s.MemoryMB = part, ranges, mb }
	}
	for _, tt := range []struct {
		name  string
		set   func(*Settings)
		names []string // the variables the error names; none: New succeeds
	}{
		{"the test defaults", func(*Settings) {}, nil},
		{"config's defaults", func(s *Settings) {
			s.DownloaderKnobs = config.Defaults[config.Downloader]().DownloaderKnobs
			s.DestBucket = "dest"
		}, nil},
		{"empty DEST_BUCKET", func(s *Settings) { s.DestBucket = "" }, []string{"DEST_BUCKET"}},
		{"PART_SIZE unset: chosen", sizes(0, 4, 0), nil},
		{"PART_SIZE at S3's minimum", sizes(minPartSize, 4, 0), nil},
		{"PART_SIZE below S3's minimum", sizes(minPartSize-1, 4, 0), []string{"PART_SIZE"}},
		{"PART_SIZE at S3's maximum", sizes(maxPartSize, 4, 0), nil},
		{"PART_SIZE above S3's maximum", sizes(maxPartSize+1, 4, 0), []string{"PART_SIZE"}},
		{"zero PARALLEL_RANGES", sizes(8*MiB, 0, 0), []string{"PARALLEL_RANGES"}},
		{"zero MESSAGE_CONCURRENCY", func(s *Settings) { s.MessageConcurrency = 0 }, []string{"MESSAGE_CONCURRENCY"}},
		{"zero RANGE_ATTEMPTS", func(s *Settings) { s.RangeAttempts = 0 }, []string{"RANGE_ATTEMPTS"}},
		{"RETRY_MAX_DELAY below RETRY_BASE_DELAY", func(s *Settings) { s.RetryBaseDelay, s.RetryMaxDelay = time.Second, time.Second-1 }, []string{"RETRY_MAX_DELAY", "RETRY_BASE_DELAY"}},
		{"RETRY_MAX_DELAY equal to RETRY_BASE_DELAY", func(s *Settings) { s.RetryBaseDelay, s.RetryMaxDelay = time.Second, time.Second }, nil},
		{"DEFER_MAX_DELAY at SQS's maximum delay", func(s *Settings) { s.DeferMaxDelay = queue.MaxDelay }, nil},
		{"DEFER_MAX_DELAY above SQS's maximum delay", func(s *Settings) { s.DeferMaxDelay = queue.MaxDelay + time.Second }, []string{"DEFER_MAX_DELAY"}},
		{"zero MaxURLRefreshes", func(s *Settings) { s.MaxURLRefreshes = 0 }, []string{"MaxURLRefreshes"}},
		{"zero MaxNoProgress", func(s *Settings) { s.MaxNoProgress = 0 }, []string{"MaxNoProgress"}},
		{"zero CleanupTimeout", func(s *Settings) { s.CleanupTimeout = 0 }, []string{"CleanupTimeout"}},
		{"zero RANGE_READ_TIMEOUT", func(s *Settings) { s.RangeReadTimeout = 0 }, []string{"RANGE_READ_TIMEOUT"}},
		{"zero CHECKPOINT_INTERVAL", func(s *Settings) { s.CheckpointInterval = 0 }, []string{"CHECKPOINT_INTERVAL"}},
		{"zero DEFER_BASE_DELAY", func(s *Settings) { s.DeferBaseDelay = 0 }, []string{"DEFER_BASE_DELAY"}},
		{"zero DEFER_MAX_DELAY", func(s *Settings) { s.DeferMaxDelay = 0 }, []string{"DEFER_MAX_DELAY"}},
		{"negative DEFER_BASE_DELAY", func(s *Settings) { s.DeferBaseDelay = -time.Second }, []string{"DEFER_BASE_DELAY"}},
		{"negative CleanupTimeout", func(s *Settings) { s.CleanupTimeout = -time.Second }, []string{"CleanupTimeout"}},
		{"zero MAX_RECEIVE_COUNT", func(s *Settings) { s.MaxReceiveCount = 0 }, []string{"MAX_RECEIVE_COUNT"}},
		{"64 MiB parts × 4 in 128 MB", sizes(64*MiB, 4, 128), memory},
		{"chosen parts × 16 in 128 MB", sizes(0, 16, 128), memory},
		{"8 MiB parts × 4 in 128 MB", sizes(8*MiB, 4, 128), nil},
		{"64 MiB parts × 4 in 1024 MB", sizes(64*MiB, 4, 1024), nil},
		{"memory unknown: not checked", sizes(5*GiB, 8, 0), nil},
	} {
		s := testSettings()
		tt.set(&s)
		_, err := New(Deps{S3: newFakeS3("dest"), RDP: newFakeRDP(), State: newFakeState(), Sender: &fakeSender{}}, s)
		if (err == nil) != (len(tt.names) == 0) {
			t.Errorf("%s: New = %v", tt.name, err)
			continue
		}
		for _, v := range tt.names {
			if !strings.Contains(err.Error(), v) {
				t.Errorf("%s: error %q does not name %s", tt.name, err, v)
			}
		}
	}
}
