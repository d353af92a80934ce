package main

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// stale puts a file item last updated `ago` before the fixture's clock (in
// package bulk-ESG/p1, which lists no file-set).
func (f *fixture) stale(id, status string, ago time.Duration, availableTo time.Time) {
	f.files.packages["bulk-esg"] = []rdp.Package{{PackageID: "p1"}}
	nonFinal := state.NonFinalValue
	if status == state.StatusDone || status == state.StatusFailed {
		nonFinal = ""
	}
	f.st.put(state.FileItem{FileID: id, FileSetID: "s-" + id, FileSetName: "set", FileName: id + ".csv", Size: 42,
		Bucket: "bulk-ESG", PackageID: "p1", Status: status, AvailableTo: availableTo, NonFinal: nonFinal,
		CreatedAt: f.now.Add(-ago), UpdatedAt: f.now.Add(-ago)})
}

// TestSweepResendsStaleFiles: a non-final file whose message is gone (not
// updated for StuckAfter, lease free) is sent again, once; a recent one, a
// final one and one whose lease a downloader holds are left alone.
func TestSweepResendsStaleFiles(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.h.StuckAfter = 6 * time.Hour
	later := f.now.Add(30 * 24 * time.Hour)
	f.stale("queued-lost", state.StatusQueued, 7*time.Hour, later)
	f.stale("downloading-lost", state.StatusDownloading, 8*time.Hour, later)
	f.stale("claimed-crash", state.StatusClaimed, 9*time.Hour, later)
	f.stale("recent", state.StatusQueued, time.Hour, later)
	f.stale("done", state.StatusDone, 9*time.Hour, later)
	f.stale("leased", state.StatusDownloading, 9*time.Hour, later)
	f.st.uploads["leased"] = state.Upload{FileID: "leased", Owner: "inv-1", LeaseUntilMs: f.now.Add(time.Hour).UnixMilli()}
	f.stale("lease-expired", state.StatusDownloading, 9*time.Hour, later)
	f.st.uploads["lease-expired"] = state.Upload{FileID: "lease-expired", Owner: "inv-1", LeaseUntilMs: f.now.Add(-time.Minute).UnixMilli()}

	res := f.mustHandle(t, `{}`)
	assertSentOnce(t, f.q, []string{"queued-lost", "downloading-lost", "claimed-crash", "lease-expired"})
	if sr := res.Sweep; sr == nil || sr.Stale != 5 || sr.Resent != 4 || sr.LeaseHeld != 1 {
		t.Fatalf("sweep %+v, want 5 stale, 4 resent, 1 lease held", sr)
	}
	for _, m := range f.q.Sent() {
		if m.FileName != m.FileID+".csv" || m.Size == nil || *m.Size != 42 || m.FileSetID != "s-"+m.FileID {
			t.Errorf("re-sent message %+v, want the item's file-set, name and size", m)
		}
	}
	if it := f.st.file("queued-lost"); it.Status != state.StatusQueued || it.Resends != 1 || !it.UpdatedAt.Equal(f.now) {
		t.Errorf("re-sent item %+v, want QUEUED, 1 resend, updated now", it)
	}
	// The oldest non-final file is now the held one (9 h).
	if got := res.Sweep.OldestAgeSeconds; got != (9 * time.Hour).Seconds() {
		t.Errorf("oldest non-final age %v s, want %v", got, (9 * time.Hour).Seconds())
	}
	if emf := lastEMF(t, f.emf); emf["FilesResent"] != float64(4) || emf["OldestNonFinalAgeSeconds"] != (9*time.Hour).Seconds() {
		t.Errorf("EMF FilesResent %v OldestNonFinalAgeSeconds %v", emf["FilesResent"], emf["OldestNonFinalAgeSeconds"])
	}
	// The next poll, soon after: nothing is stale any more.
	f.q.Reset()
	f.now = f.now.Add(10 * time.Minute)
	f.mustHandle(t, `{}`)
	assertSentOnce(t, f.q, nil)
}

// TestSweepFailsFilesPastAvailableTo: a stale file whose file-set left RDP
// is FAILED with the reason and counted in FilesFailed, not re-sent.
func TestSweepFailsFilesPastAvailableTo(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.stale("expired", state.StatusQueued, 7*time.Hour, f.now.Add(-time.Hour))
	res := f.mustHandle(t, `{}`)
	assertSentOnce(t, f.q, nil)
	it := f.st.file("expired")
	if it.Status != state.StatusFailed || !strings.Contains(it.Reason, "availableTo") || !strings.Contains(it.Reason, "s-expired") {
		t.Errorf("item %+v, want FAILED with a reason naming the file-set and availableTo", it)
	}
	if res.FilesFailed != 1 || res.Sweep.Expired != 1 {
		t.Errorf("result %+v sweep %+v, want 1 failed", res, res.Sweep)
	}
	if emf := lastEMF(t, f.emf); emf["FilesFailed"] != float64(1) {
		t.Errorf("EMF FilesFailed = %v, want 1", emf["FilesFailed"])
	}
}

// TestSweepIsBounded: at most SweepLimit stale files per run, oldest first;
// the next runs take the rest.
func TestSweepIsBounded(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	f.h.SweepLimit = 2
	later := f.now.Add(30 * 24 * time.Hour)
	for i, id := range []string{"a", "b", "c", "d", "e"} {
		f.stale(id, state.StatusQueued, time.Duration(20-i)*time.Hour, later)
	}
	f.mustHandle(t, `{}`)
	assertSentOnce(t, f.q, []string{"a", "b"})
	f.mustHandle(t, `{}`)
	f.mustHandle(t, `{}`)
	assertSentOnce(t, f.q, []string{"a", "b", "c", "d", "e"})
}

// TestConcurrentSweepsSendOnce: two polls sweeping at once (Lambda runs
// invocations concurrently) send each stale file once: the re-claim is
// conditional on the item being unchanged.
func TestConcurrentSweepsSendOnce(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	later := f.now.Add(30 * 24 * time.Hour)
	var want []string
	for i := range 40 {
		id := "s" + string(rune('A'+i))
		f.stale(id, state.StatusQueued, 7*time.Hour, later)
		want = append(want, id)
	}
	h2 := *f.h
	var wg sync.WaitGroup
	for _, h := range []*Handler{f.h, &h2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.Handle(t.Context(), []byte(`{}`)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	assertSentOnce(t, f.q, want)
}

// TestLegacyItemsJoinTheSweep: a non-final item written before the sparse
// index existed (no nonFinal) is added to it when a poll lists its
// file-set, and then swept like any other; final ones are not touched.
func TestLegacyItemsJoinTheSweep(t *testing.T) {
	f := newFixture("bulk-ESG/p1")
	fs := set("s1", t0.Add(-time.Hour))
	fs.Files, fs.NumFiles = []string{"legacy-queued", "legacy-done"}, 2
	f.files.add(fs)
	for id, st := range map[string]string{"legacy-queued": state.StatusQueued, "legacy-done": state.StatusDone} {
		f.st.put(state.FileItem{FileID: id, FileSetID: "s1", Bucket: "bulk-ESG", PackageID: "p1", Status: st,
			CreatedAt: f.now.Add(-7 * time.Hour), UpdatedAt: f.now.Add(-7 * time.Hour)})
	}
	f.mustHandle(t, `{}`)
	if f.st.markNonFinal != 1 || f.st.file("legacy-queued").NonFinal == "" {
		t.Fatalf("MarkNonFinal calls %d, item %+v; want the QUEUED legacy item indexed", f.st.markNonFinal, f.st.file("legacy-queued"))
	}
	assertSentOnce(t, f.q, []string{"legacy-queued"}) // swept in the same run: 7 h without a move
	f.mustHandle(t, `{"full":true}`)
	if f.st.markNonFinal != 1 {
		t.Errorf("MarkNonFinal called again for an indexed item (%d calls)", f.st.markNonFinal)
	}
}

// TestSweepCountsStuckFiles: FilesStuck counts the non-final files not
// updated for twice StuckAfter (re-sent or not) and becomes a CloudWatch
// metric only when nonzero: FilesStuckAlarm treats missing data as fine.
func TestSweepCountsStuckFiles(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ages       map[string]time.Duration
		limit      int // SweepLimit; 0: the default
		wantStuck  int
		wantOldest time.Duration
		lag        string // a file the sweep's first query misses
	}{
		{"none past 12 h", map[string]time.Duration{"lost-7h": 7 * time.Hour, "lost-11h": 11 * time.Hour}, 0, 0, 0, ""},
		{"two past 12 h", map[string]time.Duration{"lost-13h": 13 * time.Hour, "held-30h": 30 * time.Hour, "lost-9h": 9 * time.Hour}, 0, 2, 30 * time.Hour, ""},
		// Only the swept files count, least recently updated first: the
		// oldest is among them, so a stuck file is never missed.
		{"limit 1 sweeps the oldest", map[string]time.Duration{"lost-13h": 13 * time.Hour, "lost-30h": 30 * time.Hour}, 1, 1, 13 * time.Hour, ""},
		// The oldest-age query sees a stuck file the first query missed.
		{"index lag", map[string]time.Duration{"lost-7h": 7 * time.Hour, "late-30h": 30 * time.Hour}, 0, 1, 30 * time.Hour, "late-30h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture("bulk-ESG/p1")
			f.h.StuckAfter = 6 * time.Hour
			if tc.limit > 0 {
				f.h.SweepLimit = tc.limit
			}
			for id, ago := range tc.ages {
				f.stale(id, state.StatusDownloading, ago, f.now.Add(30*24*time.Hour))
			}
			f.st.IndexLag = map[string]bool{tc.lag: true}
			f.st.uploads["held-30h"] = state.Upload{FileID: "held-30h", Owner: "inv-1", LeaseUntilMs: f.now.Add(time.Hour).UnixMilli()}
			res := f.mustHandle(t, `{}`)
			if res.Sweep == nil || res.Sweep.Stuck != tc.wantStuck {
				t.Fatalf("sweep %+v, want %d stuck", res.Sweep, tc.wantStuck)
			}
			if res.Sweep.OldestAgeSeconds != tc.wantOldest.Seconds() {
				t.Errorf("oldest non-final age %vs, want %v (after the re-sends)", res.Sweep.OldestAgeSeconds, tc.wantOldest)
			}
			emf := f.emf.String()
			if got := lastEMF(t, f.emf)["FilesStuck"]; got != float64(tc.wantStuck) {
				t.Errorf("FilesStuck field %v, want %d", got, tc.wantStuck)
			}
			if published := strings.Contains(emf, `{"Name":"FilesStuck"`); published != (tc.wantStuck > 0) {
				t.Errorf("FilesStuck published = %v with %d stuck: %s", published, tc.wantStuck, emf)
			}
		})
	}
}
