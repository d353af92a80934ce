package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

const (
	bigFile   = "f001-0000-00000000-0000-000000000001" // 300,000 bytes, md5 exposed
	noMD5File = "f001-0000-00000000-0000-000000000002" // 1234 bytes, no md5
	bigName   = "ESG Scores Full 2025-01-29T00_00_00.000Z part 1.jsonl.gz"
)

// content is the simulator's bytes of a file.
func content(t *testing.T, id string, size int64) []byte {
	t.Helper()
	b, err := io.ReadAll(rdptest.Content(id, size))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes differ from the source's %d", path, len(got), len(want))
	}
	if _, err := os.Stat(path + ".part"); !os.IsNotExist(err) {
		t.Errorf("%s.part left behind", path)
	}
}

func TestDownload(t *testing.T) {
	sim := newSim(t, rdptest.Options{})
	c := &cli{t: t, env: v1Env(sim)}
	want := content(t, bigFile, 300_000)

	t.Run("fresh", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "out") // created on demand
		sim.ResetCounters()
		r := c.run("download", bigFile, "-o", dir)
		if r.code != exitOK {
			t.Fatalf("code %d stderr %s", r.code, r.stderr)
		}
		checkFile(t, filepath.Join(dir, bigName), want)
		golden(t, "download.golden", normalize(r.stdout, dir, "$DIR"))
		if strings.Contains(r.stderr, "\r") {
			t.Error("progress bar drawn although stderr is not a terminal")
		}
		if !strings.Contains(r.stderr, "from "+sim.S3URL()+"\n") {
			t.Errorf("stderr does not name the download host: %q", r.stderr)
		}

		// Again: nothing to do but the one-byte probe that learns the size.
		sim.ResetCounters()
		r = c.run("download", bigFile, "-o", dir)
		if r.code != exitOK || !strings.Contains(r.stdout, "already complete (300000 bytes, md5 verified)") || sim.Counters().S3Requests != 1 {
			t.Errorf("second run: code %d stdout %q, %d S3 requests", r.code, r.stdout, sim.Counters().S3Requests)
		}
		// A different file of the same name is not overwritten without --force.
		if err := os.WriteFile(filepath.Join(dir, bigName), []byte("other"), 0o644); err != nil {
			t.Fatal(err)
		}
		r = c.run("download", bigFile, "-o", dir)
		if r.code != exitError || !strings.Contains(r.stderr, "use --force") {
			t.Errorf("existing different file: code %d stderr %q", r.code, r.stderr)
		}
		r = c.run("download", bigFile, "-o", dir, "--force")
		if r.code != exitOK {
			t.Fatalf("--force: code %d stderr %s", r.code, r.stderr)
		}
		checkFile(t, filepath.Join(dir, bigName), want)
	})

	t.Run("resume from partial file", func(t *testing.T) {
		dir := t.TempDir()
		const have = 123_457
		if err := os.WriteFile(filepath.Join(dir, bigName+".part"), want[:have], 0o644); err != nil {
			t.Fatal(err)
		}
		sim.ResetCounters()
		r := c.run("download", "-o", dir, bigFile)
		if r.code != exitOK {
			t.Fatalf("code %d stderr %s", r.code, r.stderr)
		}
		checkFile(t, filepath.Join(dir, bigName), want)
		sim.WaitIdle(2 * time.Second)
		cn := sim.Counters()
		// The one-byte probe (size, ETag), then the rest from where the partial file stops.
		if cn.BytesServed != int64(len(want)-have)+1 || cn.RangeRequests != 2 {
			t.Errorf("served %d bytes in %d range requests; want %d in 2", cn.BytesServed, cn.RangeRequests, len(want)-have+1)
		}
		if !strings.Contains(r.stderr, "resuming") || !strings.Contains(r.stdout, "resumed: at 123457 bytes") {
			t.Errorf("resume not reported: stdout %q stderr %q", r.stdout, r.stderr)
		}
	})

	t.Run("corrupt partial file fails md5 and is removed", func(t *testing.T) {
		dir := t.TempDir()
		bad := append([]byte(nil), want[:1000]...)
		bad[10] ^= 0xff
		part := filepath.Join(dir, bigName+".part")
		if err := os.WriteFile(part, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		r := c.run("download", bigFile, "-o", dir)
		if r.code != exitError || !strings.Contains(r.stderr, "md5 mismatch") {
			t.Fatalf("code %d stderr %s", r.code, r.stderr)
		}
		for _, p := range []string{part, filepath.Join(dir, bigName)} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s exists after an md5 mismatch", p)
			}
		}
		// The next run starts from scratch and succeeds.
		if r := c.run("download", bigFile, "-o", dir); r.code != exitOK {
			t.Fatalf("rerun: code %d stderr %s", r.code, r.stderr)
		}
		checkFile(t, filepath.Join(dir, bigName), want)
	})

	t.Run("403 gets a new URL", func(t *testing.T) {
		dir := t.TempDir()
		sim.ResetCounters()
		sim.Inject(rdptest.Fault{Kind: rdptest.FaultExpiredURL, Host: rdptest.HostAPI}) // /stream hands out an expired URL
		r := c.run("download", bigFile, "-o", dir)
		if r.code != exitOK {
			t.Fatalf("code %d stderr %s", r.code, r.stderr)
		}
		checkFile(t, filepath.Join(dir, bigName), want)
		sim.WaitIdle(2 * time.Second)
		cn := sim.Counters()
		if cn.S3Expired != 1 || cn.StreamURLs != 2 {
			t.Errorf("S3Expired %d, StreamURLs %d; want 1 and 2", cn.S3Expired, cn.StreamURLs)
		}
		if !strings.Contains(r.stdout, "renewed: 1 download URL(s) after 403") || !strings.Contains(r.stderr, "answered 403") {
			t.Errorf("renewal not reported: stdout %q stderr %q", r.stdout, r.stderr)
		}
	})

	t.Run("broken connections resume where they stopped", func(t *testing.T) {
		dir := t.TempDir()
		sim.ResetCounters()
		sim.Inject(
			rdptest.Fault{Kind: rdptest.FaultTruncate, FileID: bigFile, After: 100_000},
			rdptest.Fault{Kind: rdptest.FaultServerError, FileID: bigFile},
			rdptest.Fault{Kind: rdptest.FaultReset, FileID: bigFile},
		)
		r := c.run("download", bigFile, "-o", dir)
		if r.code != exitOK {
			t.Fatalf("code %d stderr %s", r.code, r.stderr)
		}
		checkFile(t, filepath.Join(dir, bigName), want)
		sim.WaitIdle(2 * time.Second)
		if cn := sim.Counters(); cn.BytesServed != int64(len(want)) || cn.FaultsFired != 3 {
			t.Errorf("served %d bytes (want %d: nothing twice), %d faults fired", cn.BytesServed, len(want), cn.FaultsFired)
		}
	})

	t.Run("gives up without progress", func(t *testing.T) {
		dir := t.TempDir()
		var waits []time.Duration
		c := &cli{t: t, env: c.env, waits: &waits}
		sim.Inject(rdptest.Fault{Kind: rdptest.FaultServerError, FileID: bigFile, Times: -1})
		r := c.run("download", bigFile, "-o", dir)
		sim.ClearFaults()
		if r.code != exitError || !strings.Contains(r.stderr, "giving up") || !strings.Contains(r.stderr, "run again to resume") {
			t.Errorf("code %d stderr %s", r.code, r.stderr)
		}
		// One wait between attempts, each within the backoff's ceiling (1s, 2s, 4s, 8s).
		if len(waits) != maxStalledAttempts-1 {
			t.Fatalf("%d waits %v, want %d", len(waits), waits, maxStalledAttempts-1)
		}
		for i, w := range waits {
			if ceil := time.Second << i; w < 0 || w > ceil {
				t.Errorf("wait %d = %v, want within [0, %v]", i+1, w, ceil)
			}
		}
	})

	t.Run("no plain-MD5 ETag from the source", func(t *testing.T) {
		sim := newSim(t, rdptest.Options{NoETag: true})
		c := &cli{t: t, env: v1Env(sim)}
		dir := t.TempDir()
		r := c.run("download", noMD5File, "-o", dir)
		if r.code != exitOK || !strings.Contains(r.stdout, "not verified: the source's ETag is not a plain MD5") {
			t.Fatalf("code %d stdout %s stderr %s", r.code, r.stdout, r.stderr)
		}
		checkFile(t, filepath.Join(dir, "ESG Scores Full 2025-01-29T00_00_00.000Z part 2.jsonl.gz"), content(t, noMD5File, 1234))
	})

	t.Run("unknown file", func(t *testing.T) {
		r := c.run("download", "ffff-0000-00000000-0000-00000000dead", "-o", t.TempDir())
		if r.code != exitError || !strings.Contains(r.stderr, "not found") {
			t.Errorf("code %d stderr %s", r.code, r.stderr)
		}
	})

	t.Run("progress bar", func(t *testing.T) {
		for _, tt := range []struct {
			name     string
			terminal bool
			args     []string
			want     bool
		}{
			{"flag", false, []string{"--progress"}, true},
			{"terminal", true, nil, true},
			{"terminal, disabled", true, []string{"--progress=false"}, false},
		} {
			cc := &cli{t: t, env: v1Env(sim), terminal: tt.terminal}
			r := cc.run(append([]string{"download", bigFile, "-o", t.TempDir()}, tt.args...)...)
			if r.code != exitOK {
				t.Fatalf("%s: code %d stderr %s", tt.name, r.code, r.stderr)
			}
			drawn := strings.Contains(r.stderr, "\r") && strings.Contains(r.stderr, "100%") && strings.Contains(r.stderr, "293.0 KiB")
			if drawn != tt.want {
				t.Errorf("%s: progress drawn=%v, want %v; stderr %q", tt.name, drawn, tt.want, r.stderr)
			}
			if strings.Contains(r.stdout, "\r") {
				t.Errorf("%s: progress on stdout", tt.name)
			}
		}
	})
}

func TestCheckLocalName(t *testing.T) {
	for name, ok := range map[string]bool{
		"ESG Scores 2025-01-29T00_00_00.000Z.jsonl.gz": true, "a..b": true,
		"": false, ".": false, "..": false, "../../etc/passwd": false, `..\\x`: false, "a/b": false, "a\x00b": false,
	} {
		if err := checkLocalName(name); (err == nil) != ok {
			t.Errorf("checkLocalName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}
