package e2e

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/lambdarun"
	"github.com/cfsync/cfsync/internal/testenv"
)

// demoProcess is a running cfsync-local.
type demoProcess struct {
	cmd    *exec.Cmd
	binDir string
	mu     sync.Mutex
	lines  []string
	seen   chan string // every line, for waiters
	done   chan error
}

func buildDemo(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cfsync-local")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/cfsync-local")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build cfsync-local: %v\n%s", err, out)
	}
	return bin
}

// startDemo runs cfsync-local with args (and never the real RDP: the RDP_*
// variables are removed from its environment).
func startDemo(t *testing.T, bin string, args ...string) *demoProcess {
	t.Helper()
	d := &demoProcess{binDir: filepath.Join(t.TempDir(), "bin"), seen: make(chan string, 1024), done: make(chan error, 1)}
	args = append([]string{"-bin", d.binDir, "-logs", t.TempDir(), "-status-every", "1s"}, args...)
	d.cmd = exec.Command(bin, args...)
	d.cmd.Dir = repoRoot
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RDP_") && !strings.HasPrefix(kv, "SUBSCRIPTIONS=") {
			d.cmd.Env = append(d.cmd.Env, kv)
		}
	}
	pr, pw := io.Pipe()
	d.cmd.Stdout, d.cmd.Stderr = pw, pw
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			d.mu.Lock()
			d.lines = append(d.lines, sc.Text())
			d.mu.Unlock()
			select {
			case d.seen <- sc.Text():
			default:
			}
		}
	}()
	go func() { err := d.cmd.Wait(); pw.Close(); d.done <- err }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("cfsync-local output:\n%s", d.output())
		}
	})
	return d
}

func (d *demoProcess) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.lines, "\n")
}

// waitLine waits for a line matching re and returns its submatches.
func (d *demoProcess) waitLine(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l := <-d.seen:
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		case err := <-d.done:
			d.done <- err
			t.Fatalf("cfsync-local exited (%v) before printing a line matching %s", err, re)
		case <-deadline:
			t.Fatalf("no line matching %s after %s", re, timeout)
		}
	}
}

// waitExit waits for cfsync-local to exit and returns its exit error (nil:
// status 0); it fails the test if it is still running after timeout.
func (d *demoProcess) waitExit(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-d.done:
		d.done <- err
		return err
	case <-time.After(timeout):
		t.Fatalf("cfsync-local still running %s later", timeout)
		return nil
	}
}

// bootstrapPIDs lists the running processes whose executable is under dir.
func bootstrapPIDs(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.HasPrefix(exe, dir+string(filepath.Separator)) && lambdarun.Alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

var (
	upLine   = regexp.MustCompile(`up in .*moto_server http://127\.0\.0\.1:(\d+) \(pid (\d+)\)`)
	keepLine = regexp.MustCompile(`-keep: everything keeps running`)
	doneLine = regexp.MustCompile(`(\d+) of (\d+) files landed in .* and verified`)
)

// TestDemo runs `make demo`'s command (cfsync-local) on a small data set:
// the files land and are verified, -keep keeps everything up, and Ctrl-C
// (SIGINT) stops it cleanly with moto_server and every bootstrap gone; and
// when cfsync-local is killed outright (SIGKILL), its children die with it.
func TestDemo(t *testing.T) {
	testenv.Moto(t) // skips under -short or without moto_server
	if runtime.GOOS != "linux" {
		t.Skip("the orphan check reads /proc")
	}
	functionBinaries(t) // finds the repository root; the demo builds its own
	bin := buildDemo(t)

	t.Run("Ctrl-C", func(t *testing.T) {
		d := startDemo(t, bin, "-sets", "3", "-keep", "-bandwidth", "0")
		up := d.waitLine(t, upLine, 3*time.Minute)
		motoPID, _ := strconv.Atoi(up[2])
		m := d.waitLine(t, doneLine, 2*time.Minute)
		if m[1] != m[2] || m[1] != "6" {
			t.Errorf("%s of %s files landed, want 6 of 6", m[1], m[2])
		}
		d.waitLine(t, keepLine, time.Minute)
		boots := bootstrapPIDs(d.binDir)
		if len(boots) != 4 { // refresher, poller, 2 downloaders
			t.Errorf("%d bootstrap processes running, want 4", len(boots))
		}
		if !lambdarun.Alive(motoPID) {
			t.Fatalf("moto_server (pid %d) is not running", motoPID)
		}
		start := time.Now()
		if err := d.cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		if err := d.waitExit(t, 30*time.Second); err != nil {
			t.Errorf("cfsync-local exited with %v after Ctrl-C following success, want status 0", err)
		}
		t.Logf("stopped %.1fs after SIGINT", time.Since(start).Seconds())
		if !strings.Contains(d.output(), "cfsync-local: stopped") {
			t.Errorf("no shutdown line")
		}
		for _, pid := range append(boots, motoPID) {
			if lambdarun.Alive(pid) {
				t.Errorf("process %d still running after cfsync-local exited (orphan)", pid)
			}
		}
	})

	t.Run("SIGKILL", func(t *testing.T) {
		d := startDemo(t, bin, "-sets", "1", "-keep", "-bandwidth", "0")
		up := d.waitLine(t, upLine, 3*time.Minute)
		motoPID, _ := strconv.Atoi(up[2])
		d.waitLine(t, keepLine, 2*time.Minute)
		boots := bootstrapPIDs(d.binDir)
		if len(boots) == 0 {
			t.Fatal("no bootstrap processes found")
		}
		_ = d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.done
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, pid := range append(boots, motoPID) {
			if testenv.Poll(ctx, 100*time.Millisecond, func() bool { return !lambdarun.Alive(pid) }) != nil {
				t.Errorf("process %d outlived a SIGKILLed cfsync-local by 10s (orphan)", pid)
			}
		}
	})
}

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
