package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cfsync/cfsync/internal/lambdamain"
	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// The -notifications mode (docs/local.md#notifications): the
// notification-reader runs on the template's schedule, the poller only as
// the reconciler, and new file-sets are published while the demo runs.

// notifyPackage is the subscribed package the live file-sets are published in.
var notifyPackage = pipeline.DemoPackages[0]

// refresherAgent is the User-Agent of the token-refresher's RDP client.
var refresherAgent = lambdamain.UserAgent(pipeline.Refresher)

// configureNotifications deploys the reader and sets its schedule (the
// template's rate(1 minute), 60 s timeout, 20 s waits and 10 s margin unless
// -read-every compresses it: timeout = period, waits a third, margin a
// sixth) and queue credentials that expire after 2 minutes, renewed every minute.
func configureNotifications(cfg *pipeline.Config, o *options, sim *rdptest.Server) *pipeline.Notifications {
	cfg.Params["Notifications"] = "true"
	if o.timeout == defaultTimeout {
		// Room for the publications and the last one's landing.
		o.timeout += time.Duration(o.publish)*o.publishEvery + 2*o.readEvery
	}
	cfg.ReadEvery = o.readEvery
	if o.readEvery != time.Minute {
		cfg.Timeouts[pipeline.Reader] = o.readEvery
		cfg.Env[pipeline.Reader] = []string{"NOTIFY_WAIT=" + min(20*time.Second, o.readEvery/3).String(),
			"NOTIFY_DEADLINE_MARGIN=" + (o.readEvery / 6).String()}
	}
	cfg.Env[pipeline.Refresher] = append(cfg.Env[pipeline.Refresher], "QUEUE_CREDENTIALS_REFRESH=1m")
	n := &pipeline.Notifications{Sim: sim, Package: notifyPackage, CredentialsTTL: 2 * time.Minute}
	cfg.Prepare = n.Prepare
	return n
}

// publisher publishes -publish file-sets, one every -publish-every, once
// the seeded file-sets have landed, and reports when each landed.
type publisher struct {
	sim   *rdptest.Server
	n     int
	every time.Duration
	pubs  []pipeline.Publication
	next  time.Time
}

// step publishes when one is due and records the landings seen in pr (the
// tick's one read of the state table); it returns the event lines to print.
func (pb *publisher) step(pr pipeline.Progress, backlogDone bool) []string {
	var lines []string
	now := time.Now()
	if backlogDone && len(pb.pubs) < pb.n && !now.Before(pb.next) {
		pub := pipeline.Publish(pb.sim, notifyPackage, len(pb.pubs)+1)
		pb.pubs = append(pb.pubs, pub)
		pb.next = now.Add(pb.every)
		lines = append(lines, fmt.Sprintf("  published %s (%d files) [%d/%d]", pub.FileSet.Name, len(pub.FileSet.Files), len(pb.pubs), pb.n))
	}
	for i := range pb.pubs {
		pub := &pb.pubs[i]
		if !pub.Landed.IsZero() {
			continue
		}
		at, ok := pr.LandedAt(pub.FileSet)
		if !ok {
			continue
		}
		pub.Landed = at
		lines = append(lines, fmt.Sprintf("  landed %s: publish → landed %.1fs", pub.FileSet.Name, pub.Latency().Seconds()))
	}
	return lines
}

// done reports whether every file-set was published and has landed.
func (pb *publisher) done() bool {
	return len(pb.pubs) == pb.n && !slices.ContainsFunc(pb.pubs, func(p pipeline.Publication) bool { return p.Landed.IsZero() })
}

// files are the published files.
func (pb *publisher) files() []rdptest.File {
	var out []rdptest.File
	for _, p := range pb.pubs {
		out = append(out, p.FileSet.Files...)
	}
	return out
}

// summaryRow is the latency line of the summary.
func (pb *publisher) summaryRow(o options) [2]string {
	var lat []time.Duration
	for _, p := range pb.pubs {
		if !p.Landed.IsZero() {
			lat = append(lat, p.Latency())
		}
	}
	s := func(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }
	v := fmt.Sprintf("%d published, %d landed; publish → landed p50 %s, p95 %s, max %s (reader every %s)",
		len(pb.pubs), len(lat), s(pipeline.Percentile(lat, 50)), s(pipeline.Percentile(lat, 95)), s(pipeline.Percentile(lat, 100)), o.readEvery)
	return [2]string{"notifications", v}
}

// authCallers counts /auth requests by the program that sent them
// (User-Agent); others lists the callers other than the token-refresher.
func authCallers(log []rdptest.AuthRecord) (row string, others []string) {
	by := map[string]int{}
	for _, r := range log {
		ua := r.UserAgent
		if ua == "" {
			ua = "(no user agent)"
		}
		by[ua]++
	}
	var parts []string
	for _, ua := range slices.Sorted(maps.Keys(by)) {
		parts = append(parts, fmt.Sprintf("%s %d", ua, by[ua]))
		if ua != refresherAgent {
			others = append(others, ua)
		}
	}
	if len(parts) == 0 {
		return "none", nil
	}
	return strings.Join(parts, ", "), others
}
