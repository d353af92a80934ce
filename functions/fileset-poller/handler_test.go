package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/metrics"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	h     *Handler
	files *fakeFiles
	st    *fakeState
	q     *fakeSender
	logs  *bytes.Buffer
	emf   *bytes.Buffer
	now   time.Time
}

func newFixture(subs ...string) *fixture {
	f := &fixture{files: newFakeFiles(), q: &fakeSender{}, logs: &bytes.Buffer{}, emf: &bytes.Buffer{}, now: t0}
	f.st = newFakeState(func() time.Time { return f.now })
	h, err := newLogged(Deps{Files: f.files, State: f.st, Queue: f.q, Now: func() time.Time { return f.now }},
		testSettings(subs...), f.logs, f.emf)
	if err != nil {
		panic(err)
	}
	f.h = h
	return f
}

// newLogged is New(d, s) whose log (JSON, debug level) goes to logs and
// whose EMF metrics go to emf.
func newLogged(d Deps, s Settings, logs, emf *bytes.Buffer) (*Handler, error) {
	d.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d.Metrics = metrics.New(emf, "fileset-poller")
	return New(d, s)
}

// testSettings are the production defaults (config.Poller's tags) with the
// subscriptions subs.
func testSettings(subs ...string) Settings {
	s := Settings{config.Defaults[config.Poller]().PollerKnobs}
	s.Subscriptions = subs
	return s
}

func (f *fixture) handle(t *testing.T, evt string) (*Result, error) {
	t.Helper()
	return f.h.Handle(context.Background(), json.RawMessage(evt))
}

func (f *fixture) mustHandle(t *testing.T, evt string) *Result {
	t.Helper()
	res, err := f.handle(t, evt)
	if err != nil {
		t.Fatalf("Handle(%s): %v", evt, err)
	}
	return res
}

// mkSets makes n READY file-sets of filesPer files each, modified one
// minute apart starting at base, available for 30 days.
func mkSets(bucket, pkg string, from, n, filesPer int, base time.Time) []rdp.FileSet {
	var out []rdp.FileSet
	for i := from; i < from+n; i++ {
		fs := rdp.FileSet{
			ID: fmt.Sprintf("fs-%s-%04d", pkg, i), Name: fmt.Sprintf("%s set %d", pkg, i),
			BucketName: bucket, PackageID: pkg, Status: rdp.StatusReady,
			Created: base.Add(time.Duration(i) * time.Minute), Modified: base.Add(time.Duration(i) * time.Minute),
			AvailableTo: base.Add(30 * 24 * time.Hour),
		}
		for j := range filesPer {
			fs.Files = append(fs.Files, fmt.Sprintf("f-%s-%d-%d", pkg, i, j))
		}
		fs.NumFiles = len(fs.Files)
		out = append(out, fs)
	}
	return out
}

func allFiles(sets []rdp.FileSet) []string {
	var ids []string
	for _, s := range sets {
		ids = append(ids, s.Files...)
	}
	return ids
}

// assertSentOnce checks that exactly want were sent, each once.
func assertSentOnce(t *testing.T, q *fakeSender, want []string) {
	t.Helper()
	got := q.Counts()
	for _, id := range want {
		if got[id] != 1 {
			t.Errorf("file %s sent %d times, want 1", id, got[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("sent %d distinct files, want %d", len(got), len(want))
	}
}

func TestParseEvent(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    Event
		wantErr string // substring; "" = no error
	}{
		{"empty object is scheduled", `{}`, Event{}, ""},
		{"eventbridge scheduled event", `{"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events","detail":{}}`, Event{}, ""},
		{"scheduler payload with unknown fields", `{"action":"whatever","n":1}`, Event{}, ""},
		{"subscriptions", `{"subscriptions":["bulk-ESG/p1","bulk-ESG/*"]}`, Event{Subscriptions: []string{"bulk-ESG/p1", "bulk-ESG/*"}}, ""},
		{"full", `{"full":true}`, Event{Full: true}, ""},
		{"full false", `{"full":false}`, Event{}, ""},
		{"both", `{"full":true,"subscriptions":["b/p"]}`, Event{Full: true, Subscriptions: []string{"b/p"}}, ""},
		{"not json", `poll now`, Event{}, "event: not JSON"},
		{"empty payload", ``, Event{}, "event: empty payload"},
		{"truncated json", `{"full":`, Event{}, "event: not JSON"},
		{"array", `[1,2]`, Event{}, "want a JSON object, got JSON array"},
		{"string", `"go"`, Event{}, "want a JSON object, got JSON string"},
		{"null", `null`, Event{}, "got null"},
		{"subscriptions string", `{"subscriptions":"bulk-ESG/p1"}`, Event{}, `field "subscriptions": want an array of "bucket/packageId" strings, got a string`},
		{"subscriptions numbers", `{"subscriptions":["b/p",7]}`, Event{}, `field "subscriptions": want an array of "bucket/packageId" strings, got an array containing a number`},
		{"subscriptions null", `{"subscriptions":null}`, Event{}, `field "subscriptions"`},
		{"subscriptions empty", `{"subscriptions":[]}`, Event{}, `field "subscriptions": empty array`},
		{"full string", `{"full":"true"}`, Event{}, `field "full": want true or false, got a string`},
		{"full number", `{"full":1}`, Event{}, `field "full": want true or false, got a number`},
		{"full null", `{"full":null}`, Event{}, `field "full": want true or false, got null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEvent([]byte(tt.payload))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseEvent(%s) error = %v, want containing %q", tt.payload, err, tt.wantErr)
				}
				// The handler refuses it too, before touching anything.
				f := newFixture("b/p")
				if _, err := f.handle(t, tt.payload); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Handle(%s) error = %v, want containing %q", tt.payload, err, tt.wantErr)
				}
				if len(f.files.queries) != 0 {
					t.Fatalf("a bad event must not poll anything")
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEvent(%s): %v", tt.payload, err)
			}
			if got.Full != tt.want.Full || strings.Join(got.Subscriptions, ",") != strings.Join(tt.want.Subscriptions, ",") ||
				(got.Subscriptions == nil) != (tt.want.Subscriptions == nil) {
				t.Fatalf("ParseEvent(%s) = %+v, want %+v", tt.payload, got, tt.want)
			}
		})
	}
}

func TestParseSubscription(t *testing.T) {
	tests := []struct {
		in      string
		want    Subscription
		wantErr string
	}{
		{"bulk-ESG/4867-9a46", Subscription{Raw: "bulk-ESG/4867-9a46", Bucket: "bulk-ESG", PackageID: "4867-9a46"}, ""},
		{"bulk-ESG/*", Subscription{Raw: "bulk-ESG/*", Bucket: "bulk-ESG", All: true}, ""},
		{" bulk-ESG/p ", Subscription{Raw: " bulk-ESG/p ", Bucket: "bulk-ESG", PackageID: "p"}, ""},
		{"bulk-ESG", Subscription{}, `subscription "bulk-ESG": no '/'`},
		{"/p", Subscription{}, `subscription "/p": empty bucket`},
		{"bulk-ESG/", Subscription{}, `subscription "bulk-ESG/": empty package id`},
		{"a/b/c", Subscription{}, `subscription "a/b/c": more than one '/'`},
		{"bulk ESG/p", Subscription{}, `subscription "bulk ESG/p": contains white space`},
		{"", Subscription{}, `subscription "": empty`},
		{"b/p?x=1", Subscription{}, `contains one of ?#&%`},
		{"*/p", Subscription{}, `invalid bucket`},
		{"b/p*", Subscription{}, `'*' must be the whole package id`},
		{"b/..", Subscription{}, `invalid package id`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSubscription(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "want bucket/packageId or bucket/*") {
					t.Fatalf("ParseSubscription(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSubscription(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

// TestHandleSelectsSubscriptions: which packages an event polls, and that a
// bad entry fails the invocation while the others are still polled.
func TestHandleSelectsSubscriptions(t *testing.T) {
	tests := []struct {
		name       string
		subs       []string
		event      string
		wantPolled []string // bucket/packageId, in order
		wantErr    []string // substrings of the returned error
	}{
		{"scheduled polls every entry", []string{"bulk-ESG/p1", "bulk-other/p3"}, `{}`, []string{"bulk-ESG/p1", "bulk-other/p3"}, nil},
		{"event selects", []string{"bulk-ESG/p1", "bulk-ESG/p2"}, `{"subscriptions":["bulk-ESG/p2"]}`, []string{"bulk-ESG/p2"}, nil},
		{"star resolves packages", []string{"bulk-ESG/*"}, `{}`, []string{"bulk-ESG/p1", "bulk-ESG/p2"}, nil},
		{"duplicates polled once", []string{"bulk-ESG/*", "bulk-esg/p1", "bulk-ESG/p2"}, `{}`, []string{"bulk-ESG/p1", "bulk-ESG/p2"}, nil},
		{"malformed entry named, others polled", []string{"nonsense", "bulk-ESG/p1", "a/b/c", "bulk-other/p3"}, `{}`,
			[]string{"bulk-ESG/p1", "bulk-other/p3"}, []string{`subscription "nonsense"`, `subscription "a/b/c"`}},
		{"malformed entry in event", []string{"bulk-ESG/p1"}, `{"subscriptions":["bulk-ESG","bulk-ESG/p1"]}`,
			[]string{"bulk-ESG/p1"}, []string{`subscription "bulk-ESG": no '/'`}},
		{"unknown bucket star named, others polled", []string{"nobucket/*", "bulk-ESG/p1"}, `{}`,
			[]string{"bulk-ESG/p1"}, []string{`subscription "nobucket/*": bucket "nobucket": no package visible`}},
		{"unknown bucket named, others polled", []string{"nobucket/p9", "bulk-ESG/p1"}, `{}`,
			[]string{"nobucket/p9", "bulk-ESG/p1"}, []string{`subscription "nobucket/p9": bucket "nobucket": no package visible`}},
		{"unknown package named", []string{"bulk-ESG/p9", "bulk-ESG/p1"}, `{}`,
			[]string{"bulk-ESG/p9", "bulk-ESG/p1"}, []string{`subscription "bulk-ESG/p9": package "p9" not found in bucket "bulk-ESG"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(tt.subs...)
			f.files.add(mkSets("bulk-ESG", "p1", 0, 3, 1, t0.Add(-time.Hour))...)
			f.files.add(mkSets("bulk-ESG", "p2", 0, 2, 1, t0.Add(-time.Hour))...)
			f.files.add(mkSets("bulk-other", "p3", 0, 1, 2, t0.Add(-time.Hour))...)
			res, err := f.handle(t, tt.event)
			var polled []string
			for _, q := range f.files.queries {
				polled = append(polled, q.Bucket+"/"+q.PackageID)
			}
			if strings.Join(polled, ",") != strings.Join(tt.wantPolled, ",") {
				t.Errorf("polled %v, want %v", polled, tt.wantPolled)
			}
			if len(tt.wantErr) == 0 && err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if len(tt.wantErr) > 0 && err == nil {
				t.Fatalf("Handle succeeded, want errors %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			// Every file of every polled, existing package was queued once.
			var want []string
			for _, p := range tt.wantPolled {
				b, pkg, _ := strings.Cut(p, "/")
				want = append(want, allFiles(f.files.sets[strings.ToLower(b)+"/"+pkg])...)
			}
			assertSentOnce(t, f.q, want)
			if res == nil || res.FilesQueued != len(want) {
				t.Errorf("result %+v, want FilesQueued %d", res, len(want))
			}
			for _, q := range f.files.queries {
				if q.PageSize != 100 || q.Status != rdp.StatusReady {
					t.Errorf("query %+v: want pageSize 100 and status READY", q)
				}
			}
		})
	}
}

func TestIncrementalAndFullDecisions(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.h.FullReconcileEvery = 3
	f.h.PollOverlap = 30 * time.Minute
	base := t0.Add(-48 * time.Hour)
	sets := mkSets("bulk-ESG", "p1", 0, 250, 1, base) // 3 pages
	f.files.add(sets...)
	newest := sets[len(sets)-1].Modified

	steps := []struct {
		name      string
		event     string
		add       int // file-sets published before this poll
		wantFull  bool
		wantSince time.Time
		wantPages int
		wantNew   int
	}{
		{"first poll is full", `{}`, 0, true, time.Time{}, 3, 250},
		{"then incremental, nothing new", `{}`, 0, false, newest.Add(-30 * time.Minute), 1, 0},
		{"incremental picks up new file-sets", `{}`, 5, false, newest.Add(-30 * time.Minute), 1, 5},
		{"every 3rd poll is full", `{}`, 0, true, time.Time{}, 3, 0},
		{"incremental again", `{}`, 0, false, newest.Add(5*time.Minute - 30*time.Minute), 1, 0},
		{"forced full ignores the watermark", `{"full":true}`, 0, true, time.Time{}, 3, 0},
	}
	next := 250
	for _, s := range steps {
		if s.add > 0 {
			// published after the watermark, modified later than any before
			f.files.add(mkSets("bulk-ESG", "p1", next, s.add, 1, base)...)
			next += s.add
		}
		f.q.Reset()
		f.now = f.now.Add(time.Hour)
		pagesBefore := f.files.pages
		res := f.mustHandle(t, s.event)
		q := f.files.lastQuery()
		pr := res.Packages[0]
		if pr.Full != s.wantFull || !q.ModifiedSince.Equal(s.wantSince) {
			t.Fatalf("%s: full=%v modifiedSince=%v, want full=%v since=%v", s.name, pr.Full, q.ModifiedSince, s.wantFull, s.wantSince)
		}
		if got := f.files.pages - pagesBefore; got != s.wantPages || pr.Pages != s.wantPages || res.PagesFetched != s.wantPages {
			t.Errorf("%s: pages fetched %d (result %d), want %d", s.name, got, pr.Pages, s.wantPages)
		}
		if len(f.q.Counts()) != s.wantNew || pr.New != s.wantNew {
			t.Errorf("%s: sent %d, new %d; want %d", s.name, len(f.q.Counts()), pr.New, s.wantNew)
		}
	}
	w := f.st.watermark("bulk-ESG", "p1")
	if want := base.Add(254 * time.Minute); !w.Modified.Equal(want) || w.PollsSinceFull != 0 || !w.LastFullAt.Equal(f.now) {
		t.Errorf("watermark %+v, want modified %v after a full poll", w, want)
	}
	// Every file queued exactly once over all the polls.
	for id, st := range f.st.files {
		if st.Status != state.StatusQueued {
			t.Errorf("file %s status %s, want QUEUED", id, st.Status)
		}
	}
	if len(f.st.files) != 255 {
		t.Errorf("%d file items, want 255", len(f.st.files))
	}
}

func TestClaimItemContents(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.h.FileTTLMargin = 48 * time.Hour
	sets := mkSets("bulk-ESG", "p1", 0, 1, 2, t0.Add(-time.Hour))
	f.files.add(sets...)
	f.mustHandle(t, `{}`)
	for _, id := range sets[0].Files {
		it := f.st.files[id]
		want := state.FileItem{FileID: id, FileSetID: sets[0].ID, FileSetName: sets[0].Name, Bucket: "bulk-ESG", PackageID: "p1",
			FileName: id + ".csv", Size: int64(100 + len(id)), NonFinal: state.NonFinalValue,
			Status: state.StatusQueued, AvailableTo: sets[0].AvailableTo, TTL: sets[0].AvailableTo.Add(48 * time.Hour).Unix(),
			CreatedAt: f.now, UpdatedAt: f.now}
		if it != want {
			t.Errorf("item %+v\nwant %+v", it, want)
		}
	}
	// The message carries the name and size from /files?filesetId=.
	sent := f.q.Sent()[0]
	id := sets[0].Files[0]
	want := queue.Message{FileID: id, FileSetID: sets[0].ID, FileSetName: sets[0].Name, Bucket: "bulk-ESG", PackageID: "p1", FileName: id + ".csv"}
	if sent.Size == nil || *sent.Size != int64(100+len(id)) {
		t.Errorf("message size %v, want %d", sent.Size, 100+len(id))
	}
	if sent.Size = nil; sent != want {
		t.Errorf("message %+v, want %+v", sent, want)
	}
}

func TestResendsClaimedOnly(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	sets := mkSets("bulk-ESG", "p1", 0, 5, 1, t0.Add(-time.Hour))
	f.files.add(sets...)
	statuses := []string{state.StatusClaimed, state.StatusQueued, state.StatusDownloading, state.StatusDone, state.StatusFailed}
	for i, s := range statuses {
		f.st.setStatus(sets[i].Files[0], s)
	}
	res := f.mustHandle(t, `{}`)
	assertSentOnce(t, f.q, []string{sets[0].Files[0]})
	if pr := res.Packages[0]; pr.Resent != 1 || pr.New != 0 || pr.Queued != 1 {
		t.Errorf("result %+v, want 1 resent", pr)
	}
	if got := f.st.status(sets[0].Files[0]); got != state.StatusQueued {
		t.Errorf("resent file status %s, want QUEUED", got)
	}
}

func TestDuplicateAcrossPagesQueuedOnce(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	sets := mkSets("bulk-ESG", "p1", 0, 250, 2, t0.Add(-time.Hour))
	f.files.add(sets...)
	f.files.Repeat = func(page int) bool { return true } // pages 2 and 3 start with the previous page's last item
	res := f.mustHandle(t, `{}`)
	assertSentOnce(t, f.q, allFiles(sets))
	if res.FileSetsSeen != 250 || res.Packages[0].Files != 500 {
		t.Errorf("result %+v, want 250 file-sets / 500 files", res.Packages[0])
	}
}

func TestSendFailureLeavesClaimedAndNextPollSends(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	sets := mkSets("bulk-ESG", "p1", 0, 30, 1, t0.Add(-time.Hour))
	f.files.add(sets...)
	failing := map[string]bool{sets[3].Files[0]: true, sets[17].Files[0]: true}
	f.q.Fail = func(m queue.Message) bool { return failing[m.FileID] }
	res, err := f.handle(t, `{}`)
	if err == nil || !strings.Contains(err.Error(), `subscription "bulk-ESG/p1": 2 message(s) not sent`) {
		t.Fatalf("Handle error = %v, want the unsent messages named", err)
	}
	if res.FilesQueued != 28 || res.Packages[0].SendFailed != 2 {
		t.Errorf("result %+v, want 28 queued, 2 failed", res.Packages[0])
	}
	for id := range failing {
		if got := f.st.status(id); got != state.StatusClaimed {
			t.Errorf("unsent file %s status %s, want CLAIMED", id, got)
		}
	}
	if w := f.st.watermark("bulk-ESG", "p1"); !w.Modified.IsZero() {
		t.Errorf("watermark advanced to %v despite unsent messages", w.Modified)
	}
	// SQS recovers: the next poll sends exactly the two.
	f.q.Fail = nil
	f.q.Reset()
	res = f.mustHandle(t, `{}`)
	assertSentOnce(t, f.q, ids(map[string]int{sets[3].Files[0]: 1, sets[17].Files[0]: 1}))
	if res.Packages[0].Resent != 2 {
		t.Errorf("result %+v, want 2 resent", res.Packages[0])
	}
	if w := f.st.watermark("bulk-ESG", "p1"); !w.Modified.Equal(sets[29].Modified) {
		t.Errorf("watermark %v, want %v", w.Modified, sets[29].Modified)
	}
}

func TestCrashBetweenClaimAndSend(t *testing.T) {
	f := newFixture("bulk-ESG/p1", "bulk-ESG/p2")
	sets := mkSets("bulk-ESG", "p1", 0, 150, 1, t0.Add(-time.Hour))
	f.files.add(sets...)
	f.files.add(mkSets("bulk-ESG", "p2", 0, 1, 1, t0.Add(-time.Hour))...)
	crashes := 0
	f.h.AfterClaim = func(ctx context.Context, tg Target, msgs []queue.Message) error {
		crashes++
		return errors.New("injected crash")
	}
	_, err := f.handle(t, `{}`)
	if err == nil || !strings.Contains(err.Error(), "injected crash") {
		t.Fatalf("Handle error = %v, want the injected crash", err)
	}
	if crashes != 1 || len(f.q.Sent()) != 0 || len(f.files.queries) != 1 {
		t.Fatalf("after a crash nothing more may happen: crashes=%d sent=%d queries=%d", crashes, len(f.q.Sent()), len(f.files.queries))
	}
	claimed := 0
	for _, it := range f.st.files {
		if it.Status == state.StatusClaimed {
			claimed++
		}
	}
	if claimed != 100 { // the first flush: 100 files
		t.Fatalf("%d files CLAIMED, want 100", claimed)
	}
	f.h.AfterClaim = nil
	f.mustHandle(t, `{}`)
	assertSentOnce(t, f.q, append(allFiles(sets), "f-p2-0-0"))
}

func TestNearingExpiry(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	sets := mkSets("bulk-ESG", "p1", 0, 4, 2, t0.Add(-time.Hour))
	sets[0].AvailableTo = t0.Add(10 * time.Hour) // expires soon: 2 new files
	sets[1].AvailableTo = t0.Add(23 * time.Hour) // expires soon: one DONE, one FAILED
	sets[2].AvailableTo = t0.Add(25 * time.Hour) // not soon
	f.files.add(sets...)
	f.st.setStatus(sets[1].Files[0], state.StatusDone)
	f.st.setStatus(sets[1].Files[1], state.StatusFailed)
	res := f.mustHandle(t, `{}`)
	if res.FilesNearingExpiry != 3 {
		t.Errorf("FilesNearingExpiry %d, want 3", res.FilesNearingExpiry)
	}
	if n := strings.Count(f.logs.String(), `"level":"ERROR","msg":"files nearing expiry`); n != 2 {
		t.Errorf("%d nearing-expiry error logs, want 2 (one per file-set):\n%s", n, f.logs)
	}
	if !strings.Contains(f.emf.String(), `"FilesNearingExpiry":3`) {
		t.Errorf("EMF output lacks FilesNearingExpiry=3:\n%s", f.emf)
	}
}

func TestUnauthorizedAbortsInvocation(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"401 after the ring re-read", fmt.Errorf("list file-sets: token generation 4: %w: %w", &rdp.APIError{Endpoint: "GET /file-store/v1/file-sets", StatusCode: 401, Message: "token expired"}, tokenring.ErrTokenInvalid)},
		{"empty ring", fmt.Errorf("%w (3 slots, none holds a token)", tokenring.ErrNoValidToken)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture("bulk-ESG/p1", "bulk-ESG/p2")
			f.files.add(mkSets("bulk-ESG", "p1", 0, 2, 1, t0)...)
			f.files.add(mkSets("bulk-ESG", "p2", 0, 2, 1, t0)...)
			f.files.PageErr = func(rdp.FileSetQuery, int) error { return tt.err }
			_, err := f.handle(t, `{}`)
			if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), `subscription "bulk-ESG/p1"`) {
				t.Fatalf("Handle error = %v, want %v for bulk-ESG/p1", err, tt.err)
			}
			if len(f.files.queries) != 1 {
				t.Errorf("%d listings, want 1: the invocation stops at the first refused token", len(f.files.queries))
			}
			if w := f.st.watermark("bulk-ESG", "p1"); !w.Modified.IsZero() {
				t.Errorf("watermark advanced on a failed poll")
			}
		})
	}
}

func TestListingErrorsNamedOthersPolled(t *testing.T) {
	malformed := &rdp.DecodeError{Endpoint: "list file-sets", Err: errors.New("invalid character 'x' looking for beginning of value")}
	tests := []struct {
		name    string
		pageErr error
		wantErr string
	}{
		{"malformed API JSON", malformed, `subscription "bulk-ESG/p1": list file-sets: malformed response`},
		{"404 bucket", &rdp.APIError{Endpoint: "list file-sets", StatusCode: 404, Message: "bucket not found"}, `subscription "bulk-ESG/p1": list file-sets: 404 bucket not found`},
		{"5xx after retries", &rdp.APIError{Endpoint: "list file-sets", StatusCode: 503}, `subscription "bulk-ESG/p1": list file-sets: 503`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture("bulk-ESG/p1", "bulk-ESG/p2")
			p1 := mkSets("bulk-ESG", "p1", 0, 150, 1, t0.Add(-time.Hour))
			p2 := mkSets("bulk-ESG", "p2", 0, 3, 1, t0.Add(-time.Hour))
			f.files.add(p1...)
			f.files.add(p2...)
			f.files.PageErr = func(q rdp.FileSetQuery, page int) error {
				if q.PackageID == "p1" && page == 1 {
					return tt.pageErr
				}
				return nil
			}
			_, err := f.handle(t, `{}`)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Handle error = %v, want %q", err, tt.wantErr)
			}
			// p1's first page was processed, p2 entirely; p1's watermark stays.
			assertSentOnce(t, f.q, append(allFiles(p1[:100]), allFiles(p2)...))
			if w := f.st.watermark("bulk-ESG", "p1"); !w.Modified.IsZero() {
				t.Errorf("p1 watermark advanced after a failed listing")
			}
			if w := f.st.watermark("bulk-ESG", "p2"); w.Modified.IsZero() {
				t.Errorf("p2 watermark not advanced")
			}
		})
	}
}

func TestMalformedFileSetsNamed(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	sets := mkSets("bulk-ESG", "p1", 0, 4, 1, t0.Add(-time.Hour))
	sets[1].ID = ""
	sets[2].Files = []string{"bad/id"}
	sets[3].Status = "PENDING"
	f.files.add(sets...)
	f.files.IgnoreStatus = true // an API ignoring status=READY
	_, err := f.handle(t, `{}`)
	if err == nil || !strings.Contains(err.Error(), `field "id" is empty`) || !strings.Contains(err.Error(), `field "fileId" has an invalid value`) {
		t.Fatalf("Handle error = %v, want both malformed file-sets named", err)
	}
	// The good one is queued; the PENDING one (listed despite status=READY) is not.
	assertSentOnce(t, f.q, sets[0].Files)
}

func TestWatermarkNeverPassesNow(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	sets := mkSets("bulk-ESG", "p1", 0, 2, 1, t0.Add(-time.Hour))
	sets[1].Modified = t0.Add(400 * 24 * time.Hour) // a clock far ahead
	f.files.add(sets...)
	f.mustHandle(t, `{}`)
	if w := f.st.watermark("bulk-ESG", "p1"); !w.Modified.Equal(t0) {
		t.Errorf("watermark %v, want capped at the poll's start %v", w.Modified, t0)
	}
}

func TestClaimConflictSendsIfStillClaimed(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	sets := mkSets("bulk-ESG", "p1", 0, 3, 1, t0.Add(-time.Hour))
	f.files.add(sets...)
	// Another poll claims two of them between our lookup and our claim: one
	// it already sent (QUEUED), one it has not (CLAIMED).
	f.st.ClaimErr = func(id string) error {
		switch id {
		case sets[0].Files[0]:
			f.st.setStatus(id, state.StatusQueued)
		case sets[1].Files[0]:
			f.st.setStatus(id, state.StatusClaimed)
		}
		return nil
	}
	res := f.mustHandle(t, `{}`)
	assertSentOnce(t, f.q, []string{sets[1].Files[0], sets[2].Files[0]})
	if pr := res.Packages[0]; pr.New != 1 || pr.Resent != 1 {
		t.Errorf("result %+v, want 1 new and 1 resent", pr)
	}
}

func TestClaimErrorFailsPackage(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	sets := mkSets("bulk-ESG", "p1", 0, 3, 1, t0.Add(-time.Hour))
	f.files.add(sets...)
	f.st.ClaimErr = func(id string) error {
		if id == sets[1].Files[0] {
			return errors.New("claim file: ProvisionedThroughputExceededException")
		}
		return nil
	}
	_, err := f.handle(t, `{}`)
	if err == nil || !strings.Contains(err.Error(), "ProvisionedThroughputExceeded") {
		t.Fatalf("Handle error = %v, want the claim failure", err)
	}
	// What was claimed is still sent; the failed one is left for the next poll.
	assertSentOnce(t, f.q, []string{sets[0].Files[0], sets[2].Files[0]})
	if w := f.st.watermark("bulk-ESG", "p1"); !w.Modified.IsZero() {
		t.Errorf("watermark advanced after a claim failure")
	}
	f.st.ClaimErr = nil
	f.q.Reset()
	f.mustHandle(t, `{}`)
	assertSentOnce(t, f.q, sets[1].Files)
}

func TestMarkQueuedFailureIsNotLoss(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	sets := mkSets("bulk-ESG", "p1", 0, 2, 1, t0.Add(-time.Hour))
	f.files.add(sets...)
	f.st.MarkQueuedErr = func(id string) error { return errors.New("throttled") }
	f.mustHandle(t, `{}`)
	assertSentOnce(t, f.q, allFiles(sets))
	if !strings.Contains(f.logs.String(), "not marked QUEUED") {
		t.Errorf("no warning logged:\n%s", f.logs)
	}
	// Still CLAIMED: a full poll sends them again (a duplicate, never a loss).
	f.st.MarkQueuedErr = nil
	f.q.Reset()
	f.mustHandle(t, `{"full":true}`)
	assertSentOnce(t, f.q, allFiles(sets))
}

func TestLogsAndMetrics(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.files.add(mkSets("bulk-ESG", "p1", 0, 120, 1, t0.Add(-time.Hour))...)
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "req-123"})
	if _, err := f.h.Handle(ctx, json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	var sawPackage, sawDone bool
	for _, line := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		if rec["request_id"] != "req-123" {
			t.Errorf("log line without request id: %s", line)
		}
		switch rec["msg"] {
		case "package polled":
			sawPackage = rec["subscription"] == "bulk-ESG/p1" && rec["queued"] == float64(120) && rec["pages"] == float64(2)
		case "poll done":
			sawDone = rec["files_queued"] == float64(120)
		}
	}
	if !sawPackage || !sawDone {
		t.Errorf("missing per-package or summary log with counts:\n%s", f.logs)
	}
	var emf map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(f.emf.Bytes()), &emf); err != nil {
		t.Fatalf("EMF: %v\n%s", err, f.emf)
	}
	for name, want := range map[string]float64{"FileSetsSeen": 120, "FilesQueued": 120, "PagesFetched": 2, "FilesNearingExpiry": 0} {
		if emf[name] != want {
			t.Errorf("EMF %s = %v, want %v", name, emf[name], want)
		}
	}
	if _, ok := emf["PollSeconds"].(float64); !ok {
		t.Errorf("EMF lacks PollSeconds: %v", emf)
	}
}

// TestMetricsFlushFailureLogged: EMF metrics that cannot be written are a
// warning in the log, not lost without a trace.
func TestMetricsFlushFailureLogged(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.files.add(mkSets("bulk-ESG", "p1", 0, 1, 1, t0.Add(-time.Hour))...)
	f.h.Metrics = metrics.New(failingWriter{}, "fileset-poller")
	f.mustHandle(t, `{}`)
	if !strings.Contains(f.logs.String(), `"msg":"flush metrics"`) || !strings.Contains(f.logs.String(), "stdout closed") {
		t.Errorf("failed metrics flush not logged:\n%s", f.logs)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("stdout closed") }

func TestNoSubscriptions(t *testing.T) {
	f := newFixture()
	if _, err := f.handle(t, `{}`); err == nil || !strings.Contains(err.Error(), "SUBSCRIPTIONS is empty") {
		t.Fatalf("Handle error = %v, want SUBSCRIPTIONS named", err)
	}
}

func TestInvokeRawPayload(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.files.add(mkSets("bulk-ESG", "p1", 0, 1, 1, t0.Add(-time.Hour))...)
	if _, err := f.h.Invoke(context.Background(), []byte("not json")); err == nil || !strings.Contains(err.Error(), "event: not JSON") {
		t.Fatalf("Invoke(non-JSON) error = %v", err)
	}
	out, err := f.h.Invoke(context.Background(), []byte(`{"full":true}`))
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	if err := json.Unmarshal(out, &res); err != nil || !res.Full || res.FilesQueued != 1 {
		t.Fatalf("Invoke result %s (%v)", out, err)
	}
}
