package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// set makes one READY file-set of bucket-ESG/p1 with one file "f-<id>".
func set(id string, modified time.Time) rdp.FileSet {
	return rdp.FileSet{ID: id, Name: "set " + id, BucketName: "bulk-ESG", PackageID: "p1", Status: rdp.StatusReady,
		Files: []string{"f-" + id}, NumFiles: 1, Created: modified, Modified: modified, AvailableTo: t0.Add(30 * 24 * time.Hour)}
}

// pausingRun runs the handler with a deadline so short that the listing's
// time budget is spent once page 0 is processed (AfterPage sleeps past it):
// the run lists exactly one page and pauses.
func (f *fixture) pausingRun(t *testing.T, evt string) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	prev := f.files.AfterPage
	f.files.AfterPage = func(page int) {
		if prev != nil {
			prev(page)
		}
		time.Sleep(1600 * time.Millisecond) // past stopAt = deadline - 500ms
	}
	defer func() { f.files.AfterPage = prev }()
	res, err := f.h.Handle(ctx, json.RawMessage(evt))
	if err != nil {
		t.Fatalf("Handle(%s): %v", evt, err)
	}
	return res
}

// TestPublishedBehindTheCursorIsNotMissed: the listing is in id order, so a
// file-set published while a pass pages — here over two runs, the first
// stopped by its time budget — can land behind the cursor, with a
// `modified` later than the pass's start. The watermark must not pass the
// pass's start (not the resuming run's), so the next incremental poll finds it.
func TestPublishedBehindTheCursorIsNotMissed(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.h.PollOverlap, f.h.PollPageSize, f.h.FullReconcileEvery = time.Minute, 2, 1000
	f.files.add(set("c1", t0.Add(-2*time.Hour)))
	f.mustHandle(t, `{}`) // first poll: full

	f.now = t0.Add(time.Hour)
	for i, id := range []string{"m1", "m2", "m3", "m4", "m5", "m6"} {
		f.files.add(set(id, t0.Add(time.Duration(30+i)*time.Minute)))
	}
	f.files.AfterPage = func(page int) {
		if page == 0 { // published mid-listing, behind the cursor (id "a0" < "m2")
			f.files.add(set("a0", f.now))
		}
	}
	res := f.pausingRun(t, `{}`)
	f.files.AfterPage = nil
	if pr := res.Packages[0]; !pr.Paused || pr.Pages != 1 {
		t.Fatalf("run 1: %+v, want paused after 1 page", pr)
	}
	w := f.st.watermark("bulk-ESG", "p1")
	if w.Pass == nil || w.Pass.Cursor == "" || !w.Pass.StartedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("run 1 saved pass %+v, want a cursor and the pass's start", w.Pass)
	}

	f.now = t0.Add(2 * time.Hour) // the next run resumes the pass, an hour later
	f.files.add(set("z9", f.now))
	res = f.mustHandle(t, `{}`)
	if pr := res.Packages[0]; !pr.Resumed || pr.Paused {
		t.Fatalf("run 2: %+v, want the pass resumed and completed", pr)
	}
	if from := f.files.froms[len(f.files.froms)-1]; from == "" {
		t.Fatalf("run 2 listed from page 1, want from the saved cursor")
	}
	if w := f.st.watermark("bulk-ESG", "p1"); w.Pass != nil || w.Modified.After(t0.Add(time.Hour)) {
		t.Fatalf("after the pass: watermark %v pass %+v, want ≤ the pass's start %v and no pass", w.Modified, w.Pass, t0.Add(time.Hour))
	}

	f.now = t0.Add(3 * time.Hour)
	f.mustHandle(t, `{}`)
	assertSentOnce(t, f.q, []string{"f-c1", "f-m1", "f-m2", "f-m3", "f-m4", "f-m5", "f-m6", "f-z9", "f-a0"})
}

// TestFullListingResumesAcrossRuns: a full listing longer than a run is
// saved page by page and resumed; only the completed pass moves the
// watermark and resets the full-reconciliation counter.
func TestFullListingResumesAcrossRuns(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.h.PollPageSize = 10
	sets := mkSets("bulk-ESG", "p1", 0, 100, 1, t0.Add(-48*time.Hour))
	f.files.add(sets...)
	res := f.pausingRun(t, `{"full":true}`)
	if pr := res.Packages[0]; !pr.Paused || pr.Pages != 1 || pr.Queued != 10 {
		t.Fatalf("run 1: %+v, want paused after 1 page of 10", pr)
	}
	if w := f.st.watermark("bulk-ESG", "p1"); !w.Modified.IsZero() || w.Pass == nil || !w.Pass.Full {
		t.Fatalf("run 1: watermark %+v, want unchanged with a full pass saved", w)
	}
	pagesBefore := f.files.pages
	f.now = t0.Add(10 * time.Minute)
	res = f.mustHandle(t, `{}`) // a scheduled run continues the full pass
	if pr := res.Packages[0]; !pr.Full || !pr.Resumed || pr.Pages != 9 {
		t.Fatalf("run 2: %+v, want the full pass resumed for the 9 pages left", pr)
	}
	if got := f.files.pages - pagesBefore; got != 9 {
		t.Errorf("run 2 fetched %d pages, want 9 (no page fetched twice)", got)
	}
	w := f.st.watermark("bulk-ESG", "p1")
	if !w.Modified.Equal(sets[99].Modified) || w.PollsSinceFull != 0 || !w.LastFullAt.Equal(f.now) || w.Pass != nil {
		t.Errorf("after the pass: %+v, want watermark %v, counters reset, no pass", w, sets[99].Modified)
	}
	assertSentOnce(t, f.q, allFiles(sets))
}

// TestRefusedCursorRestartsThePass: a saved cursor the API no longer takes
// (400 on the skipToken) restarts the pass from page 1; nothing is lost.
func TestRefusedCursorRestartsThePass(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	sets := mkSets("bulk-ESG", "p1", 0, 3, 1, t0.Add(-time.Hour))
	f.files.add(sets...)
	_ = f.st.SavePass(context.Background(), "bulk-ESG", "p1", state.Pass{Full: true, StartedAt: t0.Add(-time.Minute),
		Cursor: rdp.FileSetsPath + "?skipToken=%%%not-base64"})
	res := f.mustHandle(t, `{}`)
	if pr := res.Packages[0]; !pr.Full || pr.Paused {
		t.Fatalf("result %+v, want the full pass completed", pr)
	}
	assertSentOnce(t, f.q, allFiles(sets))
	if w := f.st.watermark("bulk-ESG", "p1"); w.Pass != nil || w.Modified.IsZero() {
		t.Errorf("watermark %+v, want advanced and no pass", w)
	}
}

// TestIncompleteEmbeddedFilesAreListed: a file-set whose `files` array is
// shorter than `numFiles` is not trusted: /files?filesetId= is listed and
// every file queued, with its name and size.
func TestIncompleteEmbeddedFilesAreListed(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	fs := set("s1", t0.Add(-time.Hour))
	fs.NumFiles = 3
	f.files.add(fs)
	f.files.FilesOf = map[string][]rdp.File{"s1": {
		{ID: "f-s1", FileName: "a.csv", Size: 1}, {ID: "x2", FileName: "b:c.csv", Size: 2}, {ID: "x3", FileName: "d.csv", Size: 0},
	}}
	f.mustHandle(t, `{}`)
	assertSentOnce(t, f.q, []string{"f-s1", "x2", "x3"})
	for _, m := range f.q.Sent() {
		if m.FileName == "" || m.Size == nil {
			t.Errorf("message %+v without the listing's name and size", m)
		}
	}
	if it := f.st.file("x2"); it.FileName != "b:c.csv" || it.Size != 2 {
		t.Errorf("item %+v, want name and size recorded", it)
	}
}

// TestListingMD5IsPassedOn: an md5 in the listing (no public RDP sample
// shows one; the downloader verifies it when present) reaches the message.
func TestListingMD5IsPassedOn(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.files.add(set("s1", t0.Add(-time.Hour)))
	f.files.FilesOf = map[string][]rdp.File{"s1": {{ID: "f-s1", FileName: "a.csv", Size: 1, MD5: "0cc175b9c0f1b6a831c399e269772661"}}}
	f.mustHandle(t, `{}`)
	if len(f.q.Sent()) != 1 || f.q.Sent()[0].MD5 != "0cc175b9c0f1b6a831c399e269772661" {
		t.Fatalf("sent %+v, want the listing's md5 in the message", f.q.Sent())
	}
}

// TestKnownFileSetsCostNoFilesRequest: /files?filesetId= is asked only for
// file-sets with a file not yet known; a full reconciliation of known,
// complete file-sets costs none.
func TestKnownFileSetsCostNoFilesRequest(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.files.add(mkSets("bulk-ESG", "p1", 0, 20, 2, t0.Add(-time.Hour))...)
	f.mustHandle(t, `{}`)
	if f.files.filesCalls != 20 {
		t.Fatalf("first poll: %d /files requests, want 20 (one per new file-set)", f.files.filesCalls)
	}
	gets := f.st.batchGets
	f.mustHandle(t, `{"full":true}`)
	if f.files.filesCalls != 20 {
		t.Errorf("full reconciliation of known file-sets made %d more /files requests, want 0", f.files.filesCalls-20)
	}
	if got := f.st.batchGets - gets; got != 1 {
		t.Errorf("full reconciliation of 40 known files (one page) made %d BatchGetItem requests, want 1", got)
	}
}

// TestFilesListingNotFoundFallsBackToEmbeddedIDs: a 404 from
// /files?filesetId= for a file-set that lists every id still queues them.
func TestFilesListingNotFoundFallsBackToEmbeddedIDs(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.files.add(set("s1", t0.Add(-time.Hour)))
	f.files.FilesErr = func(string) error {
		return &rdp.APIError{Endpoint: "list files", StatusCode: 404, Code: "EDS.CFS.NoFilesetFound"}
	}
	f.mustHandle(t, `{}`)
	assertSentOnce(t, f.q, []string{"f-s1"})
}

// TestTTLFloor: an item's TTL is max(availableTo, now) + FILE_TTL_MARGIN.
func TestTTLFloor(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.h.FileTTLMargin = 7 * 24 * time.Hour
	old := set("old", t0.Add(-time.Hour))
	old.AvailableTo = t0.Add(-300 * 24 * time.Hour) // a backfill of an old file-set
	fresh := set("new", t0.Add(-time.Hour))
	f.files.add(old, fresh)
	f.mustHandle(t, `{}`)
	if got, want := f.st.file("f-old").TTL, t0.Add(7*24*time.Hour).Unix(); got != want {
		t.Errorf("TTL of a past availableTo: %d, want now + margin %d", got, want)
	}
	if got, want := f.st.file("f-new").TTL, fresh.AvailableTo.Add(7*24*time.Hour).Unix(); got != want {
		t.Errorf("TTL of a future availableTo: %d, want availableTo + margin %d", got, want)
	}
}

// TestNameSQSRefusesFailsThatFileOnly: a file whose name SQS would refuse
// (U+FFFF) is a named, permanent FAILED of that file alone; the package's
// other files are queued and its watermark advances.
func TestNameSQSRefusesFailsThatFileOnly(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	fs := set("s1", t0.Add(-time.Hour))
	fs.Files, fs.NumFiles = []string{"good", "bad"}, 2
	f.files.add(fs)
	f.files.FilesOf = map[string][]rdp.File{"s1": {{ID: "good", FileName: "ok.csv"}, {ID: "bad", FileName: "x\uffff.csv"}}}
	res := f.mustHandle(t, `{}`)
	assertSentOnce(t, f.q, []string{"good"})
	it := f.st.file("bad")
	if it.Status != state.StatusFailed || !strings.Contains(it.Reason, `x\uffff.csv`) || !strings.Contains(it.Reason, "U+FFFF") {
		t.Errorf("refused file: status %s reason %q, want FAILED naming the name and the character", it.Status, it.Reason)
	}
	if res.FilesFailed != 1 || res.Packages[0].Failed != 1 {
		t.Errorf("result %+v, want 1 failed file", res)
	}
	if w := f.st.watermark("bulk-ESG", "p1"); w.Modified.IsZero() {
		t.Errorf("watermark blocked by the refused name")
	}
	if emf := lastEMF(t, f.emf); emf["FilesFailed"] != float64(1) {
		t.Errorf("EMF FilesFailed = %v, want 1", emf["FilesFailed"])
	}
	f.emf.Reset()
	if res := f.mustHandle(t, `{"full":true}`); res.FilesFailed != 0 {
		t.Errorf("second poll counted the FAILED file again: %d", res.FilesFailed)
	}
}

// TestOutageFailsCleanlyAndNextRunCatchesUp: no usable token, or RDP
// rate limiting that outlasts the client's retries, fails the run (logged,
// PollErrors) without touching the other packages; the pages done stay
// done, and the next run resumes where the listing stopped.
func TestOutageFailsCleanlyAndNextRunCatchesUp(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"rate limited", &rdp.RateLimitError{Endpoint: "list file-sets", RetryAfter: time.Minute}},
		{"no valid token", tokenring.ErrNoValidToken},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture("bulk-ESG/p1", "bulk-ESG/p2")
			f.h.PollPageSize = 10
			p1 := mkSets("bulk-ESG", "p1", 0, 30, 1, t0.Add(-time.Hour))
			p2 := mkSets("bulk-ESG", "p2", 0, 3, 1, t0.Add(-time.Hour))
			f.files.add(p1...)
			f.files.add(p2...)
			f.files.PageErr = func(q rdp.FileSetQuery, page int) error {
				if page == 1 {
					return tt.err
				}
				return nil
			}
			_, err := f.handle(t, `{}`)
			if err == nil || !errors.Is(err, tt.err) {
				t.Fatalf("Handle error = %v, want the outage", err)
			}
			if emf := lastEMF(t, f.emf); emf["PollErrors"] != float64(1) {
				t.Errorf("EMF PollErrors = %v, want 1", emf["PollErrors"])
			}
			if len(f.files.queries) != 1 {
				t.Errorf("%d listings, want p2 left alone during the outage", len(f.files.queries))
			}
			f.files.PageErr = nil
			f.mustHandle(t, `{}`)
			if f.files.froms[1] == "" {
				t.Errorf("the next run listed p1 from page 1, want from the saved cursor")
			}
			assertSentOnce(t, f.q, append(allFiles(p1), allFiles(p2)...))
		})
	}
}

// lastEMF returns the merged metrics of the EMF lines in buf.
func lastEMF(t *testing.T, buf *bytes.Buffer) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("EMF: %v\n%s", err, buf)
		}
		for k, v := range rec {
			out[k] = v
		}
	}
	return out
}

// TestPassCursorSavedEveryTenPagesAndOnFailure: a running pass saves its
// cursor every 10 pages (a killed run re-lists at most 10) and when it
// fails; the next run resumes after the last page done.
func TestPassCursorSavedEveryTenPagesAndOnFailure(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.h.PollPageSize = 1
	sets := mkSets("bulk-ESG", "p1", 0, 25, 1, t0.Add(-time.Hour))
	f.files.add(sets...)
	f.h.AfterClaim = func(ctx context.Context, target Target, msgs []queue.Message) error {
		if msgs[0].FileSetID == sets[14].ID { // a crash while page 15 is processed
			return errors.New("injected crash")
		}
		return nil
	}
	if _, err := f.handle(t, `{}`); err == nil {
		t.Fatal("want the injected crash")
	}
	if f.st.passSaves != 2 { // after page 10, and on the failure (after page 14)
		t.Errorf("%d pass saves, want 2", f.st.passSaves)
	}
	f.h.AfterClaim = nil
	pages := f.files.pages
	f.mustHandle(t, `{}`)
	if got := f.files.pages - pages; got != 11 {
		t.Errorf("the next run fetched %d pages, want 11 (pages 15-25)", got)
	}
	if f.st.passSaves != 3 { // one more, after page 24
		t.Errorf("%d pass saves, want 3", f.st.passSaves)
	}
	assertSentOnce(t, f.q, allFiles(sets))
}

// TestProblemsOfAPausedRunKeepTheWatermark: a message not sent in a run
// that then paused is remembered by the pass: the run fails, the completed
// pass leaves the watermark, and the next pass sends the file.
func TestProblemsOfAPausedRunKeepTheWatermark(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.h.PollPageSize = 1
	sets := mkSets("bulk-ESG", "p1", 0, 3, 1, t0.Add(-time.Hour))
	f.files.add(sets...)
	f.q.Fail = func(m queue.Message) bool { return m.FileSetID == sets[0].ID }
	f.files.AfterPage = func(int) { time.Sleep(1600 * time.Millisecond) }
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	res, err := f.h.Handle(ctx, json.RawMessage(`{}`))
	cancel()
	if err == nil || !strings.Contains(err.Error(), "1 message(s) not sent") || !res.Packages[0].Paused {
		t.Fatalf("run 1: %v (%+v), want paused and failed for the unsent message", err, res.Packages)
	}
	if w := f.st.watermark("bulk-ESG", "p1"); w.Pass == nil || w.Pass.Problems != 1 {
		t.Fatalf("saved pass %+v, want 1 problem", w.Pass)
	}
	f.q.Fail, f.files.AfterPage = nil, nil
	if _, err := f.handle(t, `{}`); err == nil || !strings.Contains(err.Error(), "earlier runs of this listing pass") {
		t.Fatalf("run 2: %v, want the earlier problem reported", err)
	}
	if w := f.st.watermark("bulk-ESG", "p1"); !w.Modified.IsZero() || w.Pass != nil {
		t.Fatalf("after run 2: %+v, want the pass ended and the watermark unmoved", w)
	}
	f.mustHandle(t, `{}`) // a new full pass re-sends the CLAIMED file
	assertSentOnce(t, f.q, allFiles(sets))
	if w := f.st.watermark("bulk-ESG", "p1"); w.Modified.IsZero() {
		t.Errorf("watermark not advanced after a clean pass")
	}
}
