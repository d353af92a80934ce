package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// singleRig: 5 MiB parts, 3 slots, SINGLE_PUT_MAX 15 MiB (three ranges).
func singleRig(t *testing.T, mod func(*Settings)) *rig {
	return newRig(t, func(s *Settings) {
		s.SinglePutMax = 15 * MiB
		if mod != nil {
			mod(s)
		}
	})
}

// namedMsg is the poller's message for id with the listing's name and size.
func namedMsg(id, name string) queue.Message {
	m := msgFor(id)
	m.FileName = name
	return m
}

// addQueued adds a file to the file store and its item, QUEUED with no
// attempt yet, to the state (as the poller leaves it).
func (r *rig) addQueued(id, name string, size int64, plainETag bool) {
	r.rdp.add(id, name, size, plainETag)
	r.st.files[id] = &state.FileItem{FileID: id, FileSetID: "fs1", Bucket: "bulk-ESG", PackageID: "pkg1", Status: state.StatusQueued}
}

// s3Calls counts the S3 requests of a kind.
func (r *rig) s3Calls(ops ...string) map[string]int {
	got := map[string]int{}
	for _, op := range ops {
		got[op] = r.s3.Calls(op)
	}
	return got
}

var uploadOps = []string{"HeadObject", "PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}

// TestSinglePut: a file whose ranges fit the PARALLEL_RANGES slots (and
// SINGLE_PUT_MAX) is fetched in parallel ranges and stored with one
// PutObject, with no HEAD first and no state write before it when the
// listing gives its key; any other file, or a later invocation of it, uses
// a multipart upload as before.
func TestSinglePut(t *testing.T) {
	single := map[string]int{"HeadObject": 0, "PutObject": 1, "CreateMultipartUpload": 0, "UploadPart": 0, "CompleteMultipartUpload": 0}
	multi := func(parts int) map[string]int {
		return map[string]int{"HeadObject": 1, "PutObject": 0, "CreateMultipartUpload": 1, "UploadPart": parts, "CompleteMultipartUpload": 1}
	}
	tests := []struct {
		name    string
		size    int64
		mod     func(*Settings)
		msg     func(id, name string) queue.Message
		setup   func(r *rig)
		timeout time.Duration
		want    map[string]int
		saves   int // state writes of the UPLOAD item (target records, checkpoints)
	}{
		{name: "three ranges, one PutObject", size: 12*MiB + 3, msg: namedMsg, want: single},
		{name: "exactly SINGLE_PUT_MAX", size: 15 * MiB, msg: namedMsg, want: single},
		{name: "md5 in the message verified", size: 11 * MiB, msg: func(id, name string) queue.Message {
			m := namedMsg(id, name)
			m.MD5 = rdptest.ContentMD5(id, 11*MiB)
			return m
		}, want: single},
		{name: "message without a name: the target is recorded first", size: 12 * MiB, msg: func(id, _ string) queue.Message { return msgFor(id) }, want: single, saves: 1},
		{name: "over SINGLE_PUT_MAX: multipart", size: 15*MiB + 1, msg: namedMsg, want: multi(4), saves: 1},
		{name: "more ranges than PARALLEL_RANGES: multipart", size: 12 * MiB, mod: func(s *Settings) { s.ParallelRanges = 2 }, msg: namedMsg, want: multi(3), saves: 1},
		{name: "SINGLE_PUT_MAX 0: multipart", size: 6 * MiB, mod: func(s *Settings) { s.SinglePutMax = 0 }, msg: namedMsg, want: multi(2), saves: 1},
		{name: "SINGLE_PUT_MAX 0, one part: single", size: 5 * MiB, mod: func(s *Settings) { s.SinglePutMax = 0 }, msg: namedMsg, want: single},
		{name: "a later invocation of the file: multipart", size: 12 * MiB, msg: namedMsg, want: multi(3), saves: 1,
			setup: func(r *rig) { r.st.uploads["f1"] = &state.Upload{FileID: "f1", Invocations: 1} }},
		{name: "no state item (state lost): HEAD first", size: 12 * MiB, msg: namedMsg, want: withHead(single),
			setup: func(r *rig) { delete(r.st.files, "f1") }},
		{name: "an earlier attempt: HEAD first", size: 5 * MiB, msg: namedMsg, want: withHead(single),
			setup: func(r *rig) { r.st.files["f1"].Attempts = 1 }},
		{name: "less than 2 × RANGE_READ_TIMEOUT left: multipart", size: 12 * MiB, msg: namedMsg, want: multi(3), saves: 1,
			mod: func(s *Settings) { s.RangeReadTimeout = 10 * time.Second }, timeout: 15 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := singleRig(t, tt.mod)
			r.addQueued("f1", "mid:file.bin", tt.size, true)
			if tt.setup != nil {
				tt.setup(r)
			}
			if failed := r.handleOne(t, tt.msg("f1", "mid:file.bin"), 1, tt.timeout); len(failed) != 0 {
				t.Fatalf("failed %v\n%s", failed, r.logs.String())
			}
			r.checkLanded(t, "f1", "mid:file.bin", tt.size)
			if got := r.s3Calls(uploadOps...); !equalCounts(got, tt.want) {
				t.Errorf("S3 requests %v, want %v", got, tt.want)
			}
			if want := partCount(tt.size, 5*MiB); r.rdp.Ranges() != int(want) {
				t.Errorf("%d ranges, want %d", r.rdp.Ranges(), want)
			}
			if r.st.saves != tt.saves {
				t.Errorf("%d UPLOAD item writes, want %d", r.st.saves, tt.saves)
			}
			if !strings.Contains(r.logs.String(), `"md5_verified":true`) {
				t.Error("md5 not verified")
			}
		})
	}
}

func withHead(want map[string]int) map[string]int {
	c := maps.Clone(want)
	c["HeadObject"] = 1
	return c
}

func equalCounts(a, b map[string]int) bool {
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

// TestSinglePutSharesSlots: two files of one batch that each need every
// slot (PARALLEL_RANGES 2, two ranges each) take turns and both land.
func TestSinglePutSharesSlots(t *testing.T) {
	r := singleRig(t, func(s *Settings) { s.ParallelRanges = 2; s.MessageConcurrency = 4 })
	ids := []string{"f1", "f2", "f3", "f4"}
	var msgs []queue.Message
	for _, id := range ids {
		r.addQueued(id, id+".bin", 8*MiB, true)
		msgs = append(msgs, namedMsg(id, id+".bin"))
	}
	r.rdp.Delay = func(int64) time.Duration { return 20 * time.Millisecond }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, _ := r.h.Handle(ctx, eventOf(1, msgs...))
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("failed %v\n%s", failedIDs(resp), r.logs.String())
	}
	for _, id := range ids {
		r.checkLanded(t, id, id+".bin", 8*MiB)
	}
	if got := r.s3.Calls("PutObject"); got != len(ids) {
		t.Errorf("%d PutObject, want %d", got, len(ids))
	}
}

// TestSinglePutKeyTaken: the PutObject of a fresh file is sent with
// If-None-Match: * and no HEAD first; only its 412 costs a HEAD, which
// tells another file (key collision: never overwritten), this file (it
// landed: DONE, not stored twice) and an older version of this file
// (replaced, as when the HEAD came first) apart.
func TestSinglePutKeyTaken(t *testing.T) {
	const size = 7 * MiB
	source, _ := io.ReadAll(rdptest.Content("f1", size))
	tests := []struct {
		name          string
		obj           *fakeObject
		wantStatus    string
		wantPuts      int
		wantReason    string
		wantUntouched bool
	}{
		{name: "another file", obj: &fakeObject{data: []byte("other"), meta: map[string]string{"cfs-file-id": "f9", "cfs-size": "5"}, etag: `"o"`},
			wantStatus: state.StatusFailed, wantPuts: 1, wantReason: "key-collision: s3://dest/" + keyOf("a.bin") + " already holds file f9", wantUntouched: true},
		{name: "an object cfsync did not write", obj: &fakeObject{data: []byte("x"), meta: map[string]string{}, etag: `"x"`},
			wantStatus: state.StatusFailed, wantPuts: 1, wantReason: "key-collision", wantUntouched: true},
		{name: "this file, landed (state lost)", obj: &fakeObject{data: source, meta: map[string]string{"cfs-file-id": "f1", "cfs-size": strconv.Itoa(int(size))}, etag: `"landed"`},
			wantStatus: state.StatusDone, wantPuts: 1, wantUntouched: true},
		{name: "an older version of this file", obj: &fakeObject{data: []byte("old"), meta: map[string]string{"cfs-file-id": "f1", "cfs-size": "3"}, etag: `"old"`},
			wantStatus: state.StatusDone, wantPuts: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := singleRig(t, nil)
			r.addQueued("f1", "a.bin", size, true)
			r.s3.objects[keyOf("a.bin")] = tt.obj
			before := *tt.obj
			failed := r.handleOne(t, namedMsg("f1", "a.bin"), 1, 0)
			f := r.st.file("f1")
			if f.Status != tt.wantStatus || !strings.HasPrefix(f.Reason, tt.wantReason) {
				t.Fatalf("state %s %q, want %s %q (failed %v)\n%s", f.Status, f.Reason, tt.wantStatus, tt.wantReason, failed, r.logs.String())
			}
			if got := r.s3Calls("HeadObject", "PutObject"); got["HeadObject"] != 1 || got["PutObject"] != tt.wantPuts {
				t.Errorf("S3 requests %v, want 1 HEAD (after the 412) and %d PutObject", got, tt.wantPuts)
			}
			o := r.s3.object(keyOf("a.bin"))
			switch {
			case tt.wantUntouched && (!bytes.Equal(o.data, before.data) || o.etag != before.etag):
				t.Error("the object at the key was overwritten")
			case tt.wantStatus == state.StatusDone && f.ETag != o.etag:
				t.Errorf("state etag %s, object %s", f.ETag, o.etag)
			case !tt.wantUntouched:
				r.checkLanded(t, "f1", "a.bin", size)
			}
		})
	}
}

// TestSinglePutDeadline: a deadline while the ranges of a single PUT are
// in flight stores nothing and hands the file to a continuation, which (a
// later invocation) uses a checkpointed multipart upload: the file lands
// once, whole.
func TestSinglePutDeadline(t *testing.T) {
	const size = 12 * MiB
	r := singleRig(t, nil)
	r.addQueued("f1", "a.bin", size, true)
	r.rdp.Delay = func(off int64) time.Duration {
		if off == 5*MiB {
			return time.Minute // the second range never comes within this invocation
		}
		return 0
	}
	if failed := r.handleOne(t, namedMsg("f1", "a.bin"), 1, 3*time.Second); len(failed) != 0 {
		t.Fatalf("failed %v\n%s", failed, r.logs.String())
	}
	sent := r.snd.messages()
	if len(sent) != 1 || sent[0].Seq != 1 {
		t.Fatalf("messages %v, want one continuation", sent)
	}
	if r.s3.object(keyOf("a.bin")) != nil || r.s3.Calls("PutObject") != 0 {
		t.Fatal("something was stored before every range arrived")
	}
	r.rdp.Delay = nil
	if failed := r.handleOne(t, sent[0], 1, 0); len(failed) != 0 {
		t.Fatalf("continuation failed %v\n%s", failed, r.logs.String())
	}
	r.checkLanded(t, "f1", "a.bin", size)
	if got := r.s3Calls(uploadOps...); got["PutObject"] != 0 || got["CreateMultipartUpload"] != 1 || got["CompleteMultipartUpload"] != 1 {
		t.Errorf("S3 requests %v: want the continuation to use one multipart upload", got)
	}
}

// TestSinglePutFaultBeforeDone: the PutObject landed but MarkDone failed
// (as a crash between them): the redelivery finds the object (HEAD first:
// not the first invocation any more) and marks the file DONE without
// downloading or storing it again — also when the file is gone from the
// file store by then and no target was recorded (the listing's name and
// size give the key).
func TestSinglePutFaultBeforeDone(t *testing.T) {
	const size = 12 * MiB
	for _, gone := range []bool{false, true} {
		t.Run("gone="+strconv.FormatBool(gone), func(t *testing.T) {
			r := singleRig(t, nil)
			r.addQueued("f1", "a.bin", size, true)
			r.st.MarkDoneErr = func() error { r.st.MarkDoneErr = nil; return errors.New("ProvisionedThroughputExceededException") }
			if failed := r.handleOne(t, namedMsg("f1", "a.bin"), 1, 0); len(failed) != 1 {
				t.Fatalf("failed %v: want the message to fail and come back", failed)
			}
			if r.st.saves != 1 || r.st.upload("f1").Key != "" {
				t.Fatalf("%d UPLOAD writes, target %q: want only the lease release, no target record", r.st.saves, r.st.upload("f1").Key)
			}
			if gone {
				r.rdp.StreamErr = func(string, int) error { return &rdp.APIError{Endpoint: "get stream url", StatusCode: 404} }
			}
			ranges := r.rdp.Ranges()
			if failed := r.handleOne(t, namedMsg("f1", "a.bin"), 2, 0); len(failed) != 0 {
				t.Fatalf("redelivery failed %v\n%s", failed, r.logs.String())
			}
			r.checkLanded(t, "f1", "a.bin", size)
			if r.rdp.Ranges() != ranges || r.s3.Calls("PutObject") != 1 {
				t.Errorf("redelivery: %d more ranges, %d PutObject in all: want none and 1", r.rdp.Ranges()-ranges, r.s3.Calls("PutObject"))
			}
		})
	}
}

// TestSinglePutDuplicateDelivery: two deliveries of one message at once
// (SQS delivers twice): one holds the lease and stores the file, the other
// re-sends a delayed copy, which then finds the file DONE. One PutObject.
func TestSinglePutDuplicateDelivery(t *testing.T) {
	const size = 12 * MiB
	r := singleRig(t, func(s *Settings) { s.MessageConcurrency = 2 })
	r.addQueued("f1", "a.bin", size, true)
	r.rdp.Delay = func(int64) time.Duration { return 50 * time.Millisecond }
	m := namedMsg("f1", "a.bin")
	resp, _ := r.h.Handle(context.Background(), eventOf(1, m, m))
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("failed %v\n%s", failedIDs(resp), r.logs.String())
	}
	sent := r.snd.messages()
	if len(sent) != 1 {
		t.Fatalf("messages %v, want the duplicate's delayed copy", sent)
	}
	if failed := r.handleOne(t, sent[0], 1, 0); len(failed) != 0 {
		t.Fatalf("copy failed %v", failed)
	}
	r.checkLanded(t, "f1", "a.bin", size)
	if got := r.s3.Calls("PutObject"); got != 1 {
		t.Errorf("%d PutObject, want 1", got)
	}
}

// TestPiecesReader: the PutObject body reads its pieces as one file, from
// any offset, and an empty body reads as empty.
func TestPiecesReader(t *testing.T) {
	whole := []byte("0123456789abcdefghij-tail")
	pieces := piecesReader{whole[0:10], whole[10:20], whole[20:]}
	for _, off := range []int64{0, 3, 10, 19, 20, 24} {
		got, err := io.ReadAll(io.NewSectionReader(pieces, off, int64(len(whole))-off))
		if err != nil || !bytes.Equal(got, whole[off:]) {
			t.Errorf("from %d: %q, %v; want %q", off, got, err, whole[off:])
		}
	}
	if got, err := io.ReadAll(io.NewSectionReader(piecesReader{{}}, 0, 0)); err != nil || len(got) != 0 {
		t.Errorf("empty body: %q, %v", got, err)
	}
	if n, err := (piecesReader{{}}).ReadAt(make([]byte, 4), 0); n != 0 || err != io.EOF {
		t.Errorf("empty body ReadAt: %d, %v; want 0, EOF", n, err)
	}
	if got := checksumCRC32C(pieces...); got != checksumCRC32C(whole) {
		t.Errorf("CRC32C of the pieces %s, of the whole %s", got, checksumCRC32C(whole))
	}
}
