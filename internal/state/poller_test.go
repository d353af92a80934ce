package state_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/state"
)

func TestSubscriptionPK(t *testing.T) {
	tests := []struct{ bucket, pkg, want string }{
		{"bulk-ESG", "4867-9a46", "SUB#bulk-esg/4867-9a46"},
		{"BULK-esg", "4867-9a46", "SUB#bulk-esg/4867-9a46"},
		{"b", "P-Upper", "SUB#b/P-Upper"}, // package ids keep their case
	}
	for _, tt := range tests {
		if got := state.SubscriptionPK(tt.bucket, tt.pkg); got != tt.want {
			t.Errorf("SubscriptionPK(%q, %q) = %q, want %q", tt.bucket, tt.pkg, got, tt.want)
		}
	}
}

func TestWatermarkRejectsBadKeys(t *testing.T) {
	tb := state.New(nil, "unused") // never reached: the keys are checked first
	for _, k := range [][2]string{{"", "p"}, {"b", ""}, {"a/b", "p"}, {"b", "p/q"}} {
		if _, err := tb.GetWatermark(context.Background(), k[0], k[1]); err == nil || !strings.Contains(err.Error(), "get watermark") {
			t.Errorf("GetWatermark(%q, %q) error = %v", k[0], k[1], err)
		}
		if err := tb.PutWatermark(context.Background(), state.Watermark{Bucket: k[0], PackageID: k[1]}); err == nil || !strings.Contains(err.Error(), "put watermark") {
			t.Errorf("PutWatermark(%q, %q) error = %v", k[0], k[1], err)
		}
	}
}

// TestWatermarkMoto checks the watermark item against DynamoDB semantics
// (moto): zero when absent, round trip, never moving backwards (also within
// a second), counters always recorded, bucket case-insensitive.
func TestWatermarkMoto(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tb := newTestTable(t)
	tb.Now = func() time.Time { return now }

	w, err := tb.GetWatermark(ctx, "bulk-ESG", "p1")
	if err != nil || !w.Modified.IsZero() || w.PollsSinceFull != 0 || w.Bucket != "bulk-ESG" || w.PackageID != "p1" {
		t.Fatalf("absent watermark = %+v, %v", w, err)
	}
	t1 := now.Add(-time.Hour).Add(500 * time.Millisecond)
	steps := []struct {
		name      string
		put       state.Watermark
		wantMod   time.Time
		wantPolls int
	}{
		{"first", state.Watermark{Modified: t1, PollsSinceFull: 0, LastFullAt: now, LastPollAt: now}, t1, 0},
		{"older is ignored, counters kept", state.Watermark{Modified: t1.Add(-time.Minute), PollsSinceFull: 1, LastPollAt: now}, t1, 1},
		{"older within the second", state.Watermark{Modified: t1.Add(-400 * time.Millisecond), PollsSinceFull: 2}, t1, 2},
		{"equal", state.Watermark{Modified: t1, PollsSinceFull: 3}, t1, 3},
		{"newer by a millisecond", state.Watermark{Modified: t1.Add(time.Millisecond), PollsSinceFull: 4}, t1.Add(time.Millisecond), 4},
		{"zero keeps it", state.Watermark{PollsSinceFull: 5}, t1.Add(time.Millisecond), 5},
		{"next day", state.Watermark{Modified: t1.Add(24 * time.Hour), PollsSinceFull: 0}, t1.Add(24 * time.Hour), 0},
	}
	for _, s := range steps {
		s.put.Bucket, s.put.PackageID = "bulk-ESG", "p1"
		if err := tb.PutWatermark(ctx, s.put); err != nil {
			t.Fatalf("%s: PutWatermark: %v", s.name, err)
		}
		got, err := tb.GetWatermark(ctx, "BULK-esg", "p1") // same item, any case
		if err != nil {
			t.Fatalf("%s: GetWatermark: %v", s.name, err)
		}
		if !got.Modified.Equal(s.wantMod) || got.PollsSinceFull != s.wantPolls {
			t.Fatalf("%s: got modified %v polls %d, want %v %d", s.name, got.Modified, got.PollsSinceFull, s.wantMod, s.wantPolls)
		}
		if !got.LastFullAt.Equal(now) || got.PK != "SUB#bulk-esg/p1" || got.SK != state.SKWatermark {
			t.Fatalf("%s: item %+v", s.name, got)
		}
	}
	// Another package is independent.
	if w, err := tb.GetWatermark(ctx, "bulk-ESG", "p2"); err != nil || !w.Modified.IsZero() {
		t.Fatalf("p2 watermark %+v, %v", w, err)
	}
}

// TestListingPassMoto: a saved pass round-trips, survives counter updates,
// and a completed poll (PutWatermark) ends it.
func TestListingPassMoto(t *testing.T) {
	ctx := context.Background()
	tb := newTestTable(t)
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	p := state.Pass{Full: true, StartedAt: start, Cursor: "/file-store/v1/file-sets?bucket=b&skipToken=ZmlsZXNldElkPTE", Pages: 3, Runs: 1}
	if err := tb.SavePass(ctx, "b", "p1", p); err != nil {
		t.Fatal(err)
	}
	w, err := tb.GetWatermark(ctx, "b", "p1")
	if err != nil || w.Pass == nil || *w.Pass != p || !w.Modified.IsZero() {
		t.Fatalf("after SavePass: %+v (pass %+v), %v", w, w.Pass, err)
	}
	if err := tb.PutWatermark(ctx, state.Watermark{Bucket: "b", PackageID: "p1", Modified: start}); err != nil {
		t.Fatal(err)
	}
	if w, err := tb.GetWatermark(ctx, "b", "p1"); err != nil || w.Pass != nil || !w.Modified.Equal(start) {
		t.Fatalf("after PutWatermark: %+v (pass %+v), %v", w, w.Pass, err)
	}
}
