package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/state"
)

// TestSweepCountsStuckFiles: FilesStuck counts the non-final files not
// updated for twice StuckAfter (re-sent or not) and becomes a CloudWatch
// metric only when nonzero: FilesStuckAlarm treats missing data as fine.
func TestSweepCountsStuckFiles(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ages      map[string]time.Duration
		wantStuck int
	}{
		{"none past 12 h", map[string]time.Duration{"lost-7h": 7 * time.Hour, "lost-11h": 11 * time.Hour}, 0},
		{"two past 12 h", map[string]time.Duration{"lost-13h": 13 * time.Hour, "held-30h": 30 * time.Hour, "lost-9h": 9 * time.Hour}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture("bulk-ESG/p1")
			f.h.StuckAfter = 6 * time.Hour
			for id, ago := range tc.ages {
				f.stale(id, state.StatusDownloading, ago, f.now.Add(30*24*time.Hour))
			}
			f.st.uploads["held-30h"] = state.Upload{FileID: "held-30h", Owner: "inv-1", LeaseUntilMs: f.now.Add(time.Hour).UnixMilli()}
			res := f.mustHandle(t, `{}`)
			if res.Sweep == nil || res.Sweep.Stuck != tc.wantStuck {
				t.Fatalf("sweep %+v, want %d stuck", res.Sweep, tc.wantStuck)
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
