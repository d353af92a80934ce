package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// t0 is the fixed clock of the CLI and the simulator in tests.
var t0 = time.Date(2025, 1, 31, 9, 0, 0, 0, time.UTC)

func fixedClock() time.Time { return t0 }

// Test identities: distinctive, so that the no-secrets test can look for them.
const (
	testUser     = "GE-A-01234567-3-1234"
	testPassword = "pw-Zq8!s3cr3t-Password"
	testAppKey   = "appkey-7f3c9e1d2b4a6c8e0f1a"
	testSAID     = "sa-client-5b7d9f1e3a"
	testSASecret = "sa-secret-c0ffee-b4dc0de"
)

// Package and file-set fixtures.
const (
	bucketESG  = "bulk-ESG"
	pkgScores  = "4e94-6d63-fea034ad-9a0b-2b2e4c3a8a17"
	pkgRatings = "4c80-73b5-d9e2f2d1-8f3c-7b5e6a1d2c40"
	bucketOwn  = "bulk-Ownership"
	pkgOwn     = "4b19-2d3f-aa01b2c3-4d5e-6f708192a3b4"
)

// newSim starts a simulator on the fixed clock with a v1 user, a v2 service
// account and a small catalogue.
func newSim(t *testing.T, opts rdptest.Options) *rdptest.Server {
	t.Helper()
	opts.Now = fixedClock
	s := rdptest.NewServer(opts)
	t.Cleanup(s.Close)
	s.AddUser(testUser, testPassword, testAppKey)
	s.AddServiceAccount(testSAID, testSASecret)
	s.AddPackage(bucketESG, pkgScores, "ESG Scores Full")
	s.AddPackage(bucketESG, pkgRatings, "ESG Ratings Delta")
	s.AddPackage(bucketOwn, pkgOwn, "Ownership Consolidated")
	day := 24 * time.Hour
	s.AddFileSet(rdptest.FileSetSpec{
		ID: "4a1b-2c3d-5e6f7a8b-9c0d-000000000001", Bucket: bucketESG, PackageID: pkgScores,
		Name: "ESG-Scores-Full-2025-01-29", Created: t0.Add(-2 * day), AvailableTo: t0.Add(28 * day),
		Files: []rdptest.FileSpec{
			{ID: "f001-0000-00000000-0000-000000000001", Name: "ESG Scores Full 2025-01-29T00:00:00.000Z part 1.jsonl.gz", Size: 300_000},
			{ID: "f001-0000-00000000-0000-000000000002", Name: "ESG Scores Full 2025-01-29T00:00:00.000Z part 2.jsonl.gz", Size: 1234, NoMD5: true},
		},
	})
	s.AddFileSet(rdptest.FileSetSpec{
		ID: "4a1b-2c3d-5e6f7a8b-9c0d-000000000002", Bucket: bucketESG, PackageID: pkgScores,
		Name: "ESG-Scores-Delta-2025-01-30", Created: t0.Add(-1 * day), AvailableTo: t0.Add(29 * day),
		Files: []rdptest.FileSpec{{ID: "f002-0000-00000000-0000-000000000001", Name: "ESG Scores Delta 2025-01-30.jsonl.gz", Size: 4096}},
	})
	s.AddFileSet(rdptest.FileSetSpec{
		ID: "4a1b-2c3d-5e6f7a8b-9c0d-000000000003", Bucket: bucketESG, PackageID: pkgScores, Status: "PENDING",
		Name: "ESG-Scores-Delta-2025-01-31", Created: t0.Add(-time.Hour), AvailableTo: t0.Add(30 * day),
		Files: []rdptest.FileSpec{{ID: "f003-0000-00000000-0000-000000000001", Name: "ESG Scores Delta 2025-01-31.jsonl.gz", Size: 10}},
	})
	s.AddFileSet(rdptest.FileSetSpec{
		ID: "4a1b-2c3d-5e6f7a8b-9c0d-000000000004", Bucket: bucketESG, PackageID: pkgRatings,
		Name: "ESG-Ratings-Delta-2025-01-30", Created: t0.Add(-1 * day),
		Files: []rdptest.FileSpec{{ID: "f004-0000-00000000-0000-000000000001", Name: "ESG Ratings Delta 2025-01-30.csv.gz", Size: 99}},
	})
	return s
}

// cli runs the CLI in-process with a fixed clock and no sleeps.
type cli struct {
	t   *testing.T
	env map[string]string
	// rec, when set, sees every RDP API request and response (not the
	// presigned downloads, which use their own client).
	rec http.RoundTripper
	// terminal pretends stderr is a terminal.
	terminal bool
	// waits, when set, records the command's own sleeps (not the rdp client's).
	waits *[]time.Duration
}

type result struct {
	code           int
	stdout, stderr string
}

func (c *cli) run(args ...string) result {
	c.t.Helper()
	var out, errb bytes.Buffer
	a := newApp(&out, &errb, func(k string) string { return c.env[k] })
	a.now = fixedClock
	a.sleep = func(ctx context.Context, d time.Duration) error {
		if c.waits != nil {
			*c.waits = append(*c.waits, d)
		}
		return ctx.Err()
	}
	a.isTerminal = func(io.Writer) bool { return c.terminal }
	a.rdpOptions = []rdp.Option{rdp.WithSleep(func(ctx context.Context, d time.Duration) error { return ctx.Err() })}
	if c.rec != nil {
		a.httpClient = &http.Client{Transport: c.rec, Timeout: 30 * time.Second}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := a.run(ctx, args)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// jsonOut decodes a run's --json output as a T; output that does not parse
// fails the test.
func jsonOut[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("parse --json: %v\nstdout %s\nstderr %s", err, r.stdout, r.stderr)
	}
	return v
}

// credsFile writes body to a credentials file in a temporary directory and
// returns its path.
func credsFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "creds.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// v1Env is the environment of a v1 user against sim.
func v1Env(sim *rdptest.Server) map[string]string {
	return map[string]string{"RDP_BASE_URL": sim.URL(), "RDP_USERNAME": testUser, "RDP_PASSWORD": testPassword, "RDP_CLIENT_ID": testAppKey}
}

// v2Env is the environment of a v2 service account against sim.
func v2Env(sim *rdptest.Server) map[string]string {
	return map[string]string{"RDP_BASE_URL": sim.URL(), "RDP_CLIENT_ID": testSAID, "RDP_CLIENT_SECRET": testSASecret}
}

// golden compares got with testdata/name (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update once): %v", err)
	}
	if string(want) != got {
		t.Errorf("output differs from %s (rerun with -update if intended)\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

// normalize replaces the run-specific parts of output.
func normalize(s string, pairs ...string) string {
	return strings.NewReplacer(pairs...).Replace(s)
}

func TestUsageErrors(t *testing.T) {
	c := &cli{t: t, env: map[string]string{"RDP_BASE_URL": "http://127.0.0.1:1"}}
	tests := []struct {
		name     string
		args     []string
		code     int
		inStderr []string
	}{
		{"no command", nil, exitUsage, []string{"Usage: cfsync COMMAND"}},
		{"unknown command", []string{"frobnicate"}, exitUsage, []string{`unknown command "frobnicate"`, "Usage: cfsync COMMAND"}},
		{"help of unknown command", []string{"help", "frobnicate"}, exitUsage, []string{`unknown command "frobnicate"`}},
		{"unknown flag", []string{"packages", "--nope"}, exitUsage, []string{"flag provided but not defined: -nope", "Usage: cfsync packages", "Examples:"}},
		{"bad flag value", []string{"status", "--window", "soon"}, exitUsage, []string{"invalid value", "Usage: cfsync status"}},
		{"filesets without bucket", []string{"filesets"}, exitUsage, []string{"--bucket is required", "Usage: cfsync filesets"}},
		{"filesets bad since", []string{"filesets", "--bucket", "b", "--since", "last tuesday"}, exitUsage, []string{`--since "last tuesday"`}},
		{"filesets negative limit", []string{"filesets", "--bucket", "b", "--limit", "-1"}, exitUsage, []string{"--limit must not be negative"}},
		{"packages extra argument", []string{"packages", "bulk-ESG"}, exitUsage, []string{`unexpected argument "bulk-ESG"`}},
		{"download without id", []string{"download"}, exitUsage, []string{"want exactly one FILE_ID", "Usage: cfsync download"}},
		{"download two ids", []string{"download", "a", "b"}, exitUsage, []string{"want exactly one FILE_ID"}},
		{"files without id", []string{"files"}, exitUsage, []string{"want exactly one FILESET_ID"}},
		{"subscriptions without check", []string{"subscriptions"}, exitUsage, []string{`missing subcommand: want "check"`}},
		{"subscriptions unknown subcommand", []string{"subscriptions", "fix"}, exitUsage, []string{`unknown subcommand "fix"`}},
		{"subscriptions none", []string{"subscriptions", "check"}, exitUsage, []string{"no subscriptions"}},
		{"no credentials", []string{"packages", "--bucket", "b"}, exitUsage, []string{"no RDP credentials"}},
		{"two credential flags", []string{"login", "--token-ring", "--credentials", "x.json"}, exitUsage, []string{"at most one of"}},
		{"take-exclusive with ring", []string{"login", "--token-ring", "--take-exclusive"}, exitUsage, []string{"cannot be combined"}},
		{"ring without ids", []string{"login", "--token-ring"}, exitUsage, []string{"TOKEN_SECRET_IDS"}},
		{"status without table", []string{"status"}, exitUsage, []string{"--table (or STATE_TABLE) is required"}},
		{"redrive without dlq", []string{"redrive"}, exitUsage, []string{"--dlq-url (or DLQ_URL) is required"}},
		{"redrive without queue", []string{"redrive", "--dlq-url", "http://q/dlq"}, exitUsage, []string{"--queue-url (or DOWNLOAD_QUEUE_URL) is required"}},
		{"redrive same queue", []string{"redrive", "--dlq-url", "http://q/a", "--queue-url", "http://q/a"}, exitUsage, []string{"same queue"}},
		{"redrive long wait", []string{"redrive", "--dlq-url", "http://q/a", "--queue-url", "http://q/b", "--wait", "30s"}, exitUsage, []string{"--wait must be within 0-20s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.run(tt.args...)
			if r.code != tt.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", r.code, tt.code, r.stderr)
			}
			for _, s := range tt.inStderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty on a usage error: %q", r.stdout)
			}
		})
	}
}

func TestPartialEnvCredentials(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"v1 without password", map[string]string{"RDP_USERNAME": "u", "RDP_CLIENT_ID": "k"}, "RDP_PASSWORD is not set"},
		{"v2 without client id", map[string]string{"RDP_CLIENT_SECRET": "s"}, "RDP_CLIENT_ID is not"},
		{"v1 and v2", map[string]string{"RDP_USERNAME": "u", "RDP_PASSWORD": "p", "RDP_CLIENT_ID": "k", "RDP_CLIENT_SECRET": "s"}, "not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := (&cli{t: t, env: tt.env}).run("login")
			if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("code %d, stderr %q; want 2 and %q", r.code, r.stderr, tt.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	c := &cli{t: t}
	r := c.run("--help")
	if r.code != exitOK || r.stderr != "" {
		t.Fatalf("--help: code %d, stderr %q", r.code, r.stderr)
	}
	golden(t, "help.golden", r.stdout)
	for _, cmd := range commands() {
		t.Run(cmd.name, func(t *testing.T) {
			for _, args := range [][]string{{cmd.name, "--help"}, {"help", cmd.name}, {cmd.name, "-h"}} {
				r := c.run(args...)
				if r.code != exitOK {
					t.Fatalf("%v: code %d, stderr %s", args, r.code, r.stderr)
				}
				for _, s := range []string{"Usage: cfsync " + cmd.name, "Examples:\n", "cfsync " + cmd.name + " ", "Flags:\n"} {
					if !strings.Contains(r.stdout, s) {
						t.Errorf("%v: help lacks %q:\n%s", args, s, r.stdout)
					}
				}
			}
			golden(t, "help-"+cmd.name+".golden", c.run(cmd.name, "--help").stdout)
		})
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args    []string
		wantPos []string
		wantO   string
	}{
		{[]string{"ID", "-o", "dir"}, []string{"ID"}, "dir"},
		{[]string{"-o", "dir", "ID"}, []string{"ID"}, "dir"},
		{[]string{"A", "-o", "dir", "B"}, []string{"A", "B"}, "dir"},
		{[]string{"A", "--", "-o"}, []string{"A", "-o"}, "."},
		{nil, nil, "."},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		o := fs.String("o", ".", "")
		pos, err := parseInterspersed(fs, tt.args)
		if err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if strings.Join(pos, "|") != strings.Join(tt.wantPos, "|") || *o != tt.wantO {
			t.Errorf("%v: pos %q -o %q; want %q, %q", tt.args, pos, *o, tt.wantPos, tt.wantO)
		}
	}
}

func TestParseSince(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2025-01-30T12:00:00Z", time.Date(2025, 1, 30, 12, 0, 0, 0, time.UTC), true},
		{"2025-01-30T13:00:00+01:00", time.Date(2025, 1, 30, 12, 0, 0, 0, time.UTC), true},
		{"2025-01-30", time.Date(2025, 1, 30, 0, 0, 0, 0, time.UTC), true},
		{"24h", t0.Add(-24 * time.Hour), true},
		{"-1h", time.Time{}, false},
		{"yesterday", time.Time{}, false},
	}
	for _, tt := range tests {
		got, err := parseSince(tt.in, t0)
		if (err == nil) != tt.ok || !got.Equal(tt.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestFormatters(t *testing.T) {
	ages := map[time.Duration]string{
		12 * time.Second: "12s", 90 * time.Second: "1m30s", 5*time.Hour + 12*time.Minute: "5h12m",
		76 * time.Hour: "3d4h", -2 * time.Hour: "-2h0m",
	}
	for d, want := range ages {
		if got := fmtAge(d); got != want {
			t.Errorf("fmtAge(%v) = %q, want %q", d, got, want)
		}
	}
	sizes := map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"}
	for n, want := range sizes {
		if got := fmtBytes(n); got != want {
			t.Errorf("fmtBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{24 * time.Hour: "24h", 90 * time.Minute: "1h30m", 30 * time.Second: "30s", 10 * time.Minute: "10m", 0: "0s"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
	if got := truncate("abcdef", 4); got != "abc…" {
		t.Errorf("truncate = %q", got)
	}
	if !md5Equal("1B2M2Y8AsgTpgAmY7PhCfg==", "d41d8cd98f00b204e9800998ecf8427e") || md5Equal("00", "d41d8cd98f00b204e9800998ecf8427e") {
		t.Error("md5Equal: base64 form not handled")
	}
}

// TOKEN_SKEW: config.Reader's default when unset, an explicit 0s means none,
// a bad value is a usage error naming it.
func TestTokenSkew(t *testing.T) {
	for _, tt := range []struct {
		env, wantErr string
		want         time.Duration
	}{{"", "", 30 * time.Second}, {"0s", "", 0}, {"90s", "", 90 * time.Second}, {"soon", "TOKEN_SKEW", 0}, {"-1s", "TOKEN_SKEW", 0}} {
		a := newApp(io.Discard, io.Discard, func(k string) string { return map[string]string{"TOKEN_SKEW": tt.env}[k] })
		got, err := a.tokenSkew()
		if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("TOKEN_SKEW=%q: %s, %v; want %s, an error naming %q", tt.env, got, err, tt.want, tt.wantErr)
		}
	}
}
