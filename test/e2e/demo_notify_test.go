package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/testenv"
)

var (
	publishedLine = regexp.MustCompile(`^  published (\S+) \(2 files\) \[(\d+)/(\d+)\]$`)
	latencyLine   = regexp.MustCompile(`^  landed (\S+): publish → landed (\d+\.\d)s$`)
	notifyRow     = regexp.MustCompile(`^  notifications +(\d+) published, (\d+) landed; publish → landed p50 (\d+\.\d)s, p95 (\d+\.\d)s, max (\d+\.\d)s`)
	downloaderRow = regexp.MustCompile(`^  downloader +(\d+) invocations, (\d+) messages, (\d+) deleted$`)
	retriesRow    = regexp.MustCompile(`^  retries +(\d+) redeliveries`)
	callersRow    = regexp.MustCompile(`^  auth callers +(.*)$`)
	deliveredRow  = regexp.MustCompile(`^  notification API +1 subscription, (\d+) notifications delivered, (\d+) queue credentials`)
)

// TestDemoNotifications runs `make demo NOTIFICATIONS=1`'s command
// (cfsync-local -notifications) with a compressed reader schedule: the
// file-sets published while it runs are landed by the notification-reader
// (the poller runs once, at the start, as the 15-minute reconciler), each
// file is queued and downloaded once, a publish → landed line is printed
// per file-set and p50/p95 at the end, and the simulator saw /auth requests
// from the token-refresher only (by User-Agent).
func TestDemoNotifications(t *testing.T) {
	testenv.Moto(t) // skips under -short or without moto_server
	functionBinaries(t)
	bin := buildDemo(t)
	const publish = 4
	d := startDemo(t, bin, "-notifications", "-sets", "1", "-publish", strconv.Itoa(publish), "-publish-every", "2s",
		"-read-every", "6s", "-bandwidth", "0", "-timeout", "4m")
	d.waitLine(t, upLine, 3*time.Minute)
	if err := d.waitExit(t, 4*time.Minute); err != nil {
		t.Fatalf("cfsync-local exited with %v, want 0", err)
	}
	lines := strings.Split(d.output(), "\n")
	published, landed := map[string]bool{}, map[string]float64{}
	rows := map[*regexp.Regexp][]string{}
	for _, l := range lines {
		if m := publishedLine.FindStringSubmatch(l); m != nil {
			published[m[1]] = true
		}
		if m := latencyLine.FindStringSubmatch(l); m != nil {
			if _, dup := landed[m[1]]; dup {
				t.Errorf("file-set %s reported landed twice", m[1])
			}
			landed[m[1]], _ = strconv.ParseFloat(m[2], 64)
		}
		for _, re := range []*regexp.Regexp{doneLine, notifyRow, downloaderRow, retriesRow, callersRow, deliveredRow} {
			if m := re.FindStringSubmatch(l); m != nil {
				rows[re] = m
			}
		}
	}
	if len(published) != publish || len(landed) != publish {
		t.Fatalf("%d file-sets published, %d latency lines, want %d each", len(published), len(landed), publish)
	}
	for name, s := range landed {
		if !published[name] {
			t.Errorf("landed %s was never published", name)
		}
		if s <= 0 || s > 30 {
			t.Errorf("%s: publish → landed %.1fs, want within 30s with a 6 s reader schedule", name, s)
		}
	}
	checkDemoNotifyRows(t, rows, publish)
}

func checkDemoNotifyRows(t *testing.T, rows map[*regexp.Regexp][]string, publish int) {
	t.Helper()
	for re, what := range map[*regexp.Regexp]string{doneLine: "verified line", notifyRow: "latency summary", downloaderRow: "downloader row",
		retriesRow: "retries row", callersRow: "auth callers row", deliveredRow: "notification API row"} {
		if rows[re] == nil {
			t.Fatalf("no %s in the output", what)
		}
	}
	files := 2 + 2*publish // the one seeded file-set and the published ones, two files each
	if m := rows[doneLine]; m[1] != m[2] || m[1] != strconv.Itoa(files) {
		t.Errorf("%s of %s files landed and verified, want %d of %d", m[1], m[2], files, files)
	}
	if m := rows[notifyRow]; m[1] != strconv.Itoa(publish) || m[2] != strconv.Itoa(publish) {
		t.Errorf("summary: %s published, %s landed, want %d", m[1], m[2], publish)
	}
	// Each file queued once and downloaded once: as many download-queue
	// messages as files, all deleted, none redelivered.
	if m := rows[downloaderRow]; m[2] != strconv.Itoa(files) || m[3] != m[2] {
		t.Errorf("downloader: %s messages, %s deleted, want %d each (each file queued once)", m[2], m[3], files)
	}
	if m := rows[retriesRow]; m[1] != "0" {
		t.Errorf("%s redeliveries, want 0", m[1])
	}
	if m := rows[deliveredRow]; m[1] != strconv.Itoa(publish) {
		t.Errorf("the simulator delivered %s notifications, want %d", m[1], publish)
	}
	callers := rows[callersRow][1]
	if !regexp.MustCompile(`^cfsync-token-refresher \d+$`).MatchString(callers) {
		t.Errorf("/auth callers %q, want the token-refresher only", callers)
	}
}
