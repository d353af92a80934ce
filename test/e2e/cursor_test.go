package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// TestPublishedBehindCursorLands (issue 12): RDP lists file-sets in
// ascending id order, so a file-set published while the poller pages can
// get an id behind the listing's cursor, and the pass that was paging never
// sees it. Its files still land, once: the watermark stays at the pass's
// start, so the next incremental poll lists it.
func TestPublishedBehindCursorLands(t *testing.T) {
	e, proxy := proxiedEnv(t, envOptions{
		subs: []string{"bulk-ESG/" + pkgHeal},
		seed: func(sim *rdptest.Server) {
			sim.AddPackage("bulk-ESG", pkgHeal, "Bulk-ESG-Heal")
			sim.AddFileSets("bulk-ESG", pkgHeal, 14, 1, 4<<10) // three pages of POLL_PAGE_SIZE=5
		},
		refreshEvery: 2 * time.Second,
	})
	e.waitGeneration(1, time.Minute)
	before := len(e.expected())
	spec := healSet(0, time.Now().UTC())
	spec.Files = spec.Files[:2]
	published := e.sim.PublishBehindCursor(1, spec)

	if res := e.invoke(pipeline.Poller, `{}`); res.Err != nil {
		t.Fatalf("first poll: %s", res.Payload)
	}
	var fs rdptest.FileSet
	select {
	case fs = <-published:
	default:
		t.Fatal("the poller's listing did not page: nothing was published behind its cursor")
	}
	e.waitLanded(before, 2*time.Minute)
	pr, _ := e.p.Progress(context.Background())
	t.Logf("after the pass that paged: %d file items for %d files listed before the publication (+%d behind the cursor)", pr.Files, before, len(fs.Files))

	// The next scheduled poll is incremental.
	if res := e.invoke(pipeline.Poller, `{}`); res.Err != nil {
		t.Fatalf("second poll: %s", res.Payload)
	}
	want := e.expected()
	if len(want) != before+len(fs.Files) {
		t.Fatalf("ground truth %d files, want %d", len(want), before+len(fs.Files))
	}
	pr = e.waitLanded(len(want), 2*time.Minute)
	// A third poll (and its sweep) sends nothing again.
	if res := e.invoke(pipeline.Poller, `{}`); res.Err != nil {
		t.Fatalf("third poll: %s", res.Payload)
	}
	pr = e.waitLanded(len(want), time.Minute)
	e.checkOnce(pr, want, proxy)
	if pr.Events.Messages != int64(len(want)) {
		t.Errorf("%d messages delivered for %d files: %+v", pr.Events.Messages, len(want), pr.Events)
	}
}
