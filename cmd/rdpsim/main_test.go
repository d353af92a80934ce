package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"1000", 1000, false},
		{"1KiB", 1024, false},
		{"1MiB", 1 << 20, false},
		{"10GiB", 10 << 30, false},
		{"1.5GB", 1500000000, false},
		{"2mb", 2000000, false},
		{"0", 0, false},
		{"", 0, true},
		{"1XB", 0, true},
		{"-1", 0, true},
		{"MiB", 0, true},
	}
	for _, tc := range tests {
		got, err := parseSize(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-size", "lots"},
		{"-fault", "boom"},
		{"-filesets", "-1"},
		{"extra"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// start runs the command in-process and returns its start line and a stop function that
// returns run's error.
func start(t *testing.T, args ...string) (startLine, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, args, pw, io.Discard)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("start line: %v (run: %v)", err, <-done)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	var out startLine
	if err := json.Unmarshal([]byte(line), &out); err != nil {
		t.Fatalf("start line %q: %v", line, err)
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("rdpsim did not stop")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return out, stop
}

func TestServeAndStop(t *testing.T) {
	out, stop := start(t, "-filesets", "3", "-pending", "1", "-files", "2", "-size", "1KiB",
		"-password", "given-pw", "-buckets", "bulk-ESG,bulk-Other", "-fault", "503,path=/file-store/v1/packages")
	if out.APIURL == out.S3URL || !strings.HasPrefix(out.APIURL, "http://127.0.0.1:") {
		t.Fatalf("urls %q %q", out.APIURL, out.S3URL)
	}
	if out.FileSets != 8 || out.Files != 16 || len(out.Packages) != 2 || out.Packages[0].PackageID != rdptest.DefaultPackageID {
		t.Fatalf("seed %+v", out)
	}
	if _, printed := out.Generated["password"]; printed {
		t.Fatal("a password given as a flag was printed")
	}
	for _, k := range []string{"appkey", "client_id", "client_secret"} {
		if out.Generated[k] == "" {
			t.Fatalf("generated %s not printed: %+v", k, out.Generated)
		}
	}
	tok, err := authClient(t, out.APIURL).PasswordGrant(context.Background(), rdp.PasswordGrant{
		Username: out.Username, Password: "given-pw", ClientID: out.Generated["appkey"], TakeExclusiveSignOnControl: true})
	if err != nil {
		t.Fatalf("password grant: %v", err)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) int {
		req, _ := http.NewRequest("GET", out.APIURL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if st := get("/file-store/v1/packages"); st != 503 {
		t.Fatalf("-fault not injected: %d", st)
	}
	if st := get("/file-store/v1/file-sets?bucket=bulk-other"); st != 200 {
		t.Fatalf("file-sets: %d", st)
	}
	res, err := c.Get(out.Admin + "counters")
	if err != nil {
		t.Fatal(err)
	}
	var counters rdptest.Counters
	_ = json.NewDecoder(res.Body).Decode(&counters)
	res.Body.Close()
	if counters.PasswordGrants != 1 || counters.FaultsFired != 1 {
		t.Fatalf("admin counters %+v", counters)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := c.Get(out.APIURL + "/file-store/v1/packages"); err == nil {
		t.Fatal("still serving after stop")
	}
}

func TestIssueRefreshToken(t *testing.T) {
	out, _ := start(t, "-filesets", "0", "-issue-refresh-token", "-appkey", "my-key")
	if out.Generated["refresh_token"] == "" || out.Generated["appkey"] != "" {
		t.Fatalf("generated %+v", out.Generated)
	}
	if _, err := authClient(t, out.APIURL).RefreshGrant(context.Background(), "my-key", out.Generated["refresh_token"]); err != nil {
		t.Fatalf("refresh with the printed token: %v", err)
	}
}

// authClient is an rdp.Client for the simulator's /auth endpoints.
func authClient(t *testing.T, apiURL string) *rdp.Client {
	t.Helper()
	c, err := rdp.NewClient(rdp.WithBaseURL(apiURL))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
