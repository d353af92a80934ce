package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// humanBytes formats n with binary units (B, KiB, MiB, GiB).
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 3; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGT"[exp])
}

// rate formats bytes per second over d ("-" when d is zero).
func rate(n int64, d time.Duration) string {
	if d <= 0 || n <= 0 {
		return "-"
	}
	return humanBytes(int64(float64(n)/d.Seconds())) + "/s"
}

// clock formats an elapsed time as m:ss.
func clock(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// progressLine is the one-line live status.
func progressLine(pr pipeline.Progress, expected int, elapsed, xfer time.Duration, auth int) string {
	total := "?"
	if expected > 0 {
		total = fmt.Sprint(expected)
	}
	downloading := pr.ByStatus[state.StatusDownloading]
	waiting := pr.ByStatus[state.StatusQueued] + pr.ByStatus[state.StatusClaimed]
	parts := []string{
		fmt.Sprintf("%s  %d/%s files landed", clock(elapsed), pr.Done(), total),
		fmt.Sprintf("%d downloading", downloading),
		fmt.Sprintf("%d waiting", waiting),
		fmt.Sprintf("%d failed", pr.Failed()),
		fmt.Sprintf("DLQ %d", pr.DLQ),
		fmt.Sprintf("%s at %s", humanBytes(pr.BytesDone), rate(pr.BytesDone, xfer)),
	}
	if auth >= 0 {
		parts = append(parts, fmt.Sprintf("auth %d", auth))
	}
	runs := fmt.Sprintf("runs: refresher %d, poller %d, downloader %d", pr.Refresh.Runs, pr.Poll.Runs, pr.Events.Invocations)
	if pr.Read.Runs > 0 {
		runs += fmt.Sprintf(", reader %d", pr.Read.Runs)
	}
	parts = append(parts, runs)
	return strings.Join(parts, " · ")
}

// liveWriter prints status lines: on a terminal one line rewritten in place,
// elsewhere a plain line every plainEvery.
type liveWriter struct {
	w          io.Writer
	tty        bool
	width      int // terminal columns (0: unknown)
	plainEvery time.Duration
	lastPlain  time.Time
	shown      bool // a live line is on screen
}

// status shows the live line (terminal) or, at most every plainEvery, a plain line.
func (l *liveWriter) status(line string, force bool) {
	if l.tty {
		// A line wider than the terminal wraps, and \r then rewrites only its
		// last row: cut it to the width.
		if w := l.width; w > 1 && len([]rune(line)) > w-1 {
			line = string([]rune(line)[:w-2]) + "…"
		}
		fmt.Fprintf(l.w, "\r\033[K%s", line)
		l.shown = true
		return
	}
	if force || time.Since(l.lastPlain) >= l.plainEvery {
		fmt.Fprintln(l.w, line)
		l.lastPlain = time.Now()
	}
}

// event prints a line above the live line.
func (l *liveWriter) event(format string, a ...any) {
	if l.tty && l.shown {
		fmt.Fprint(l.w, "\r\033[K")
		l.shown = false
	}
	fmt.Fprintf(l.w, format+"\n", a...)
}

// endLive moves past the live line.
func (l *liveWriter) endLive() {
	if l.tty && l.shown {
		fmt.Fprintln(l.w)
		l.shown = false
	}
}

// authByGrant counts auth requests by grant ("password", "refresh_token",
// "client_credentials", "revoke"), failures separately.
func authByGrant(log []rdptest.AuthRecord) (ok map[string]int, failed map[string]int) {
	ok, failed = map[string]int{}, map[string]int{}
	for _, r := range log {
		g := grantName(r.Grant)
		if r.Status == 200 {
			ok[g]++
		} else {
			failed[g]++
		}
	}
	return ok, failed
}

func formatGrants(ok, failed map[string]int) string {
	var keys []string
	seen := map[string]bool{}
	for k := range ok {
		keys, seen[k] = append(keys, k), true
	}
	for k := range failed {
		if !seen[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var parts []string
	total := 0
	for _, k := range keys {
		s := fmt.Sprintf("%s %d", k, ok[k])
		if failed[k] > 0 {
			s += fmt.Sprintf(" (+%d failed)", failed[k])
		}
		parts = append(parts, s)
		total += ok[k] + failed[k]
	}
	if total == 0 {
		return "0"
	}
	return fmt.Sprintf("%d: %s", total, strings.Join(parts, ", "))
}

// packageRow is one line of the per-package table.
type packageRow struct {
	name         string
	want, landed int
	bytes        int64
}

func packageTable(w io.Writer, rows []packageRow) {
	width := len("bucket/package")
	for _, r := range rows {
		width = max(width, len(r.name))
	}
	fmt.Fprintf(w, "  %-*s  %7s  %10s\n", width, "bucket/package", "files", "bytes")
	for _, r := range rows {
		fmt.Fprintf(w, "  %-*s  %3d/%-3d  %10s\n", width, r.name, r.landed, r.want, humanBytes(r.bytes))
	}
}
