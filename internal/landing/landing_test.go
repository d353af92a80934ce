package landing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"

	"github.com/cfsync/cfsync/internal/backoff"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

const (
	destBucket = "dest"
	prefix     = "cfs/"
	pkg        = "pkg-1"
)

type env struct {
	clock  *rdptest.Clock
	state  *fakeState
	s3     *fakeS3
	events *fakeEvents
	l      *Lander
}

func newEnv(t testing.TB) *env {
	t.Helper()
	c := rdptest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	e := &env{clock: c, state: newFakeState(c), s3: newFakeS3(), events: &fakeEvents{}}
	l, err := New(e.state, e.s3, e.events, Config{DestBucket: destBucket, DestPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	l.now = c.Now
	l.sleep = func(context.Context, time.Duration) error { return nil }
	e.l = l
	return e
}

// fileSet records a file-set of n files created at the given hour.
func (e *env) fileSet(id, name string, n, hour int) []string {
	var ids []string
	for i := 1; i <= n; i++ {
		ids = append(ids, fmt.Sprintf("%s-f%d", id, i))
	}
	e.state.record(state.FileSetItem{
		FileSetID: id, Name: name, Bucket: "bulk-ESG", PackageID: pkg, FileIDs: ids,
		Attributes:  []state.Attribute{{Name: "ContentFrom", Value: "2026-02-01"}, {Name: "ContentTo", Value: "2026-02-02"}},
		Created:     time.Date(2026, 2, 1, hour, 0, 0, 0, time.UTC),
		AvailableTo: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC),
	})
	return ids
}

// landedSet records a file-set as fileSet does, with every file downloaded.
func (e *env) landedSet(id, name string, n, hour int) []string {
	ids := e.fileSet(id, name, n, hour)
	for _, f := range ids {
		e.land(id, f)
	}
	return ids
}

func (e *env) land(fsID, fileID string) {
	e.state.done(fileID, fsID, prefix+"bulk-ESG/"+pkg+"/"+fsID+"/"+fileID+".jsonl.gz", int64(len(fileID))*1000, `"etag-`+fileID+`"`)
}

func (e *env) manifest(t *testing.T, fsID string) *Manifest {
	t.Helper()
	b, ok := e.s3.object(ManifestKey(prefix, "bulk-ESG", pkg, fsID))
	if !ok {
		return nil
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("manifest is not JSON: %v", err)
	}
	return &m
}

func (e *env) index(t *testing.T) *Index {
	t.Helper()
	b, ok := e.s3.object(IndexKey(prefix, "bulk-ESG", pkg))
	if !ok {
		return &Index{}
	}
	var x Index
	if err := json.Unmarshal(b, &x); err != nil {
		t.Fatalf("index is not JSON: %v", err)
	}
	return &x
}

func TestLastFileLandsPublishesOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ids := e.fileSet("fs1", "ESG-Scores-Init-2026-02-01", 3, 1)
	for i, id := range ids {
		e.land("fs1", id)
		got, err := e.l.FileLanded(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want := Incomplete
		if i == len(ids)-1 {
			want = Published
		}
		if got != want {
			t.Fatalf("file %d: outcome %s, want %s", i+1, got, want)
		}
		if n := len(e.events.all()); (i < len(ids)-1 && n != 0) || e.manifest(t, "fs1") != nil != (i == len(ids)-1) {
			t.Fatalf("after file %d of %d: %d events, manifest written %v", i+1, len(ids), n, e.manifest(t, "fs1") != nil)
		}
	}
	// Redeliveries of every part: nothing more.
	for _, id := range ids {
		if got, err := e.l.FileLanded(ctx, id); err != nil || got != AlreadyDone {
			t.Fatalf("redelivery of %s: %s, %v; want %s", id, got, err, AlreadyDone)
		}
	}
	evs := e.events.all()
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
	ev := evs[0]
	if aws.ToString(ev.Source) != "cfsync" || aws.ToString(ev.DetailType) != "FileSet Landed" || aws.ToString(ev.EventBusName) != "default" {
		t.Errorf("event envelope: source %q detail-type %q bus %q", aws.ToString(ev.Source), aws.ToString(ev.DetailType), aws.ToString(ev.EventBusName))
	}
	m := e.manifest(t, "fs1")
	var detail Manifest
	if err := json.Unmarshal([]byte(aws.ToString(ev.Detail)), &detail); err != nil {
		t.Fatal(err)
	}
	mb, _ := json.Marshal(m)
	db, _ := json.Marshal(&detail)
	if string(mb) != string(db) {
		t.Errorf("event detail differs from the manifest:\n%s\n%s", db, mb)
	}
	if m.FileSetID != "fs1" || m.Kind != KindInit || m.PackageID != pkg || m.Bucket != "bulk-ESG" || m.DestBucket != destBucket ||
		m.ContentFrom != "2026-02-01" || m.ContentTo != "2026-02-02" || m.AvailableTo == nil || m.FileCount != 3 || len(m.Files) != 3 {
		t.Errorf("manifest: %+v", m)
	}
	var total int64
	for _, f := range m.Files {
		fi, _ := e.state.GetFile(ctx, f.FileID)
		if f.Key != fi.Key || f.Size != fi.Size || f.ETag != fi.ETag {
			t.Errorf("manifest file %+v, state %+v", f, fi)
		}
		total += f.Size
	}
	if m.TotalSize != total {
		t.Errorf("totalSize %d, want %d", m.TotalSize, total)
	}
	if x := e.index(t); len(x.FileSets) != 1 || x.FileSets[0].FileSetID != "fs1" || x.FileSets[0].Kind != KindInit || x.FileSets[0].ManifestKey != m.ManifestKey {
		t.Errorf("index: %+v", x)
	}
}

func TestFileLandedNothingToDo(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ids := e.fileSet("fs1", "x", 1, 1)
	if got, err := e.l.FileLanded(ctx, ids[0]); err != nil || got != NotDone {
		t.Errorf("unknown file: %s, %v", got, err)
	}
	e.state.done("orphan", "never-recorded", "k", 1, `"e"`)
	if got, err := e.l.FileLanded(ctx, "orphan"); err != nil || got != UnknownFileSet {
		t.Errorf("file-set never recorded: %s, %v", got, err)
	}
	if len(e.events.all()) != 0 {
		t.Error("events were put")
	}
}

// Every part of a file-set lands at once, each delivered twice, in
// concurrent invocations: one manifest write, one event, one index entry.
func TestConcurrentLandingsPublishOnce(t *testing.T) {
	for round := 0; round < 20; round++ {
		e := newEnv(t)
		ids := e.fileSet("fs1", "ESG-Delta", 8, 1)
		var wg sync.WaitGroup
		outcomes := make(chan Outcome, 2*len(ids))
		for _, id := range ids {
			e.land("fs1", id)
		}
		for _, id := range append(ids, ids...) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o, err := e.l.FileLanded(context.Background(), id)
				if err != nil {
					t.Error(err)
				}
				outcomes <- o
			}()
		}
		wg.Wait()
		close(outcomes)
		published := 0
		for o := range outcomes {
			if o == Published {
				published++
			}
		}
		if n := len(e.events.all()); n != 1 || published != 1 {
			t.Fatalf("round %d: %d events, %d published outcomes; want 1 and 1", round, n, published)
		}
		if n := e.s3.puts[ManifestKey(prefix, "bulk-ESG", pkg, "fs1")]; n != 1 {
			t.Fatalf("round %d: manifest written %d times", round, n)
		}
	}
}

// Many file-sets of one package land at once: the index keeps every entry
// (the conditional PUT makes the losers read again), in creation order.
func TestIndexConcurrentWritersLoseNothing(t *testing.T) {
	e := newEnv(t)
	e.s3.getDelay = time.Millisecond
	e.l.sleep = backoff.Sleep // the jittered backoff spreads the writers out
	const n = 12
	var all []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("fs%02d", i)
		kind := "Delta"
		if i == 0 || i == 6 {
			kind = "Init"
		}
		// created in reverse of the landing order below
		ids := e.landedSet(id, fmt.Sprintf("ESG-%s-%02d", kind, i), 1, n-i)
		all = append(all, ids[0])
	}
	var wg sync.WaitGroup
	for _, id := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.l.FileLanded(context.Background(), id); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	x := e.index(t)
	if len(x.FileSets) != n {
		t.Fatalf("index lists %d file-sets, want %d: %+v", len(x.FileSets), n, x.FileSets)
	}
	for i, f := range x.FileSets {
		if want := fmt.Sprintf("fs%02d", n-1-i); f.FileSetID != want {
			t.Errorf("index entry %d is %s, want %s (creation order)", i, f.FileSetID, want)
		}
	}
	if x.PackageID != pkg || x.Bucket != "bulk-ESG" || x.Version != 1 {
		t.Errorf("index header: %+v", x)
	}
}

// The fake S3 enforces the conditions, so the index test above can fail:
// show that a writer holding a stale ETag is refused.
func TestFakeS3RefusesStaleIndexWrite(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	publish := func(id, name string, hour int) { // a one-file file-set, landed
		if _, err := e.l.FileLanded(ctx, e.landedSet(id, name, 1, hour)[0]); err != nil {
			t.Fatal(err)
		}
	}
	publish("a", "A-Init", 1)
	_, etag, err := e.l.readIndex(ctx, IndexKey(prefix, "bulk-ESG", pkg))
	if err != nil || etag == "" {
		t.Fatalf("read index: %q %v", etag, err)
	}
	publish("b", "B-Delta", 2)
	_, err = e.s3.PutObject(ctx, putInput(IndexKey(prefix, "bulk-ESG", pkg), etag))
	if !lostRace(err) {
		t.Fatalf("stale If-Match put: %v, want a precondition failure", err)
	}
}

func TestPublishFailureIsRetriedByTheRedelivery(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ids := e.landedSet("fs1", "ESG-Delta", 2, 1)
	if o, _ := e.l.FileLanded(ctx, ids[0]); o != Incomplete {
		t.Fatalf("first file: %s", o)
	}
	e.events.failNext = 1
	if _, err := e.l.FileLanded(ctx, ids[1]); err == nil || !strings.Contains(err.Error(), "put event") {
		t.Fatalf("PutEvents failure: %v, want an error naming the step", err)
	}
	// The lease was released: the redelivery (no clock change) publishes.
	if o, err := e.l.FileLanded(ctx, ids[1]); err != nil || o != Published {
		t.Fatalf("redelivery: %s, %v", o, err)
	}
	if n := len(e.events.all()); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
	if x := e.index(t); len(x.FileSets) != 1 {
		t.Fatalf("index after a retried landing: %+v", x.FileSets)
	}
}

func TestCrashedPublisherBlocksOnlyUntilTheLeaseExpires(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ids := e.landedSet("fs1", "ESG-Delta", 1, 1)
	if _, err := e.state.AddLanded(ctx, "fs1", ids[0]); err != nil {
		t.Fatal(err)
	}
	// An invocation claimed the step and died before publishing.
	if err := e.state.ClaimLanding(ctx, "fs1", "crashed", e.clock.Now().Add(DefaultLease)); err != nil {
		t.Fatal(err)
	}
	if o, err := e.l.FileLanded(ctx, ids[0]); err != nil || o != InProgress {
		t.Fatalf("under the crashed lease: %s, %v", o, err)
	}
	e.clock.Advance(DefaultLease + time.Second)
	if o, err := e.l.FileLanded(ctx, ids[0]); err != nil || o != Published {
		t.Fatalf("after the lease expired: %s, %v", o, err)
	}
	if n := len(e.events.all()); n != 1 {
		t.Fatalf("%d events", n)
	}
}

// A file-set whose manifest exceeds EventBridge's entry size gets an event
// without the file list; the manifest object keeps every file.
func TestHugeFileSetEventStaysSmall(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ids := e.landedSet("big", "ESG-Init", 3000, 1)
	var last Outcome
	for _, id := range ids {
		o, err := e.l.FileLanded(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		last = o
	}
	if last != Published {
		t.Fatalf("last outcome %s", last)
	}
	ev := e.events.all()
	if len(ev) != 1 {
		t.Fatalf("%d events", len(ev))
	}
	d := aws.ToString(ev[0].Detail)
	if len(d) > 256<<10-1024 {
		t.Fatalf("event detail %d bytes: too large for EventBridge", len(d))
	}
	var m Manifest
	if err := json.Unmarshal([]byte(d), &m); err != nil {
		t.Fatal(err)
	}
	if !m.FilesOmitted || len(m.Files) != 0 || m.FileCount != 3000 || m.ManifestKey == "" {
		t.Errorf("small event: omitted %v, %d files, count %d, key %q", m.FilesOmitted, len(m.Files), m.FileCount, m.ManifestKey)
	}
	if full := e.manifest(t, "big"); len(full.Files) != 3000 || full.FilesOmitted {
		t.Errorf("manifest object lists %d files", len(full.Files))
	}
}

func TestKind(t *testing.T) {
	tests := []struct {
		name  string
		attrs []state.Attribute
		want  string
	}{
		{"ESG-Scores-Init-2026-02-01", nil, KindInit},
		{"ESG-Scores-Delta-2026-02-01T10", nil, KindDelta},
		{"Funds_Holdings_Full", nil, KindInit},
		{"Symbology-Incremental", nil, KindDelta},
		{"Initiative-Delta", nil, KindDelta}, // "Initiative" is not "Init"
		{"ESG-Scores", nil, KindUnknown},
		{"ESG-Scores", []state.Attribute{{Name: "ContentKey", Value: "Delta"}}, KindUnknown}, // not a type attribute
		{"ESG-Scores-Init", []state.Attribute{{Name: "FileSetType", Value: "delta"}}, KindDelta},
		{"ESG", []state.Attribute{{Name: "Kind", Value: "INIT"}}, KindInit},
	}
	for _, tt := range tests {
		if got := Kind(tt.name, tt.attrs); got != tt.want {
			t.Errorf("Kind(%q, %v) = %s, want %s", tt.name, tt.attrs, got, tt.want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	c := rdptest.NewClock(time.Time{})
	if _, err := New(newFakeState(c), newFakeS3(), &fakeEvents{}, Config{}); err == nil || !strings.Contains(err.Error(), "DestBucket") {
		t.Errorf("no bucket: %v", err)
	}
	if _, err := New(nil, newFakeS3(), &fakeEvents{}, Config{DestBucket: "b"}); err == nil {
		t.Error("no state: no error")
	}
}

func TestRecordable(t *testing.T) {
	ids := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("4e94-6d63-fea034dc-90e2-%012d", i))
		}
		return out
	}
	if !Recordable(state.FileSetItem{FileSetID: "fs", FileIDs: ids(3000)}) {
		t.Error("3,000 files: not recordable")
	}
	if Recordable(state.FileSetItem{FileSetID: "fs", FileIDs: ids(5000)}) {
		t.Error("5,000 files (over 400 KB with the landed set): recordable")
	}
}

func TestLostRace(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&smithy.GenericAPIError{Code: "PreconditionFailed"}, true},
		{&smithy.GenericAPIError{Code: "ConditionalRequestConflict"}, true},
		{&smithy.GenericAPIError{Code: "NoSuchKey"}, true},
		{&smithy.GenericAPIError{Code: "NoSuchBucket"}, false},
		{&smithy.GenericAPIError{Code: "AccessDenied"}, false},
		{errors.New("connection reset"), false},
	}
	for _, tt := range tests {
		if got := lostRace(tt.err); got != tt.want {
			t.Errorf("lostRace(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
