package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"},
		{20 << 20, "20.0 MiB"}, {3 << 30, "3.0 GiB"}, {5 << 40, "5.0 TiB"},
	}
	for _, tt := range tests {
		if got := humanBytes(tt.n); got != tt.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestRateAndClock(t *testing.T) {
	tests := []struct {
		n    int64
		d    time.Duration
		want string
	}{
		{10 << 20, 2 * time.Second, "5.0 MiB/s"},
		{0, time.Second, "-"},
		{100, 0, "-"},
	}
	for _, tt := range tests {
		if got := rate(tt.n, tt.d); got != tt.want {
			t.Errorf("rate(%d, %s) = %q, want %q", tt.n, tt.d, got, tt.want)
		}
	}
	for d, want := range map[time.Duration]string{0: "0:00", 61 * time.Second: "1:01", 125*time.Second + 400*time.Millisecond: "2:05"} {
		if got := clock(d); got != want {
			t.Errorf("clock(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestFormatGrants(t *testing.T) {
	ok, failed := authByGrant([]rdptest.AuthRecord{
		{Grant: "password", Status: 200}, {Grant: "refresh_token", Status: 200}, {Grant: "refresh_token", Status: 200},
		{Grant: "refresh_token", Status: 400, Error: "invalid_grant"}, {Grant: "revoke", Status: 200}, {Status: 401},
	})
	if got, want := formatGrants(ok, failed), "6: password 1, refresh_token 2 (+1 failed), revoke 1, unknown 0 (+1 failed)"; got != want {
		t.Errorf("formatGrants = %q, want %q", got, want)
	}
	if got := formatGrants(map[string]int{}, map[string]int{}); got != "0" {
		t.Errorf("no grants: %q", got)
	}
}

// TestRealRDP: the target of a run against the real RDP, read from the
// environment, with the credentials secret's JSON (v1 takes exclusive
// sign-on control, as a deployed refresher does). TestParseArgs has the
// environments that stop the run.
func TestRealRDP(t *testing.T) {
	for kind, tc := range map[string]struct {
		env map[string]string
		doc map[string]any
	}{
		"v1 password": {
			env: map[string]string{"RDP_USERNAME": "u", "RDP_PASSWORD": "p", "RDP_CLIENT_ID": "k", "SUBSCRIPTIONS": "bulk-ESG/x, bulk-ESG/*", "RDP_BASE_URL": "https://api.refinitiv.com"},
			doc: map[string]any{"username": "u", "password": "p", "client_id": "k", "take_exclusive_sign_on_control": true}},
		"v2 service account": {
			env: map[string]string{"RDP_CLIENT_ID": "id", "RDP_CLIENT_SECRET": "s", "SUBSCRIPTIONS": "bulk-ESG/x", "RDP_BASE_URL": "https://api.refinitiv.com"},
			doc: map[string]any{"client_id": "id", "client_secret": "s"}},
	} {
		target, err := realRDP(func(k string) string { return tc.env[k] })
		if err != nil || target == nil {
			t.Fatalf("%s: target %v, err %v; want a real target", kind, target, err)
		}
		if target.kind != kind || len(target.subs) == 0 || target.baseURL == "" {
			t.Errorf("%s: target %+v", kind, target)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(target.creds), &doc); err != nil {
			t.Fatal(err)
		}
		if len(doc) != len(tc.doc) {
			t.Errorf("%s: credentials %v, want %v", kind, doc, tc.doc)
		}
		for k, v := range tc.doc {
			if doc[k] != v {
				t.Errorf("%s: credentials[%s] = %v, want %v", kind, k, doc[k], v)
			}
		}
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr bool
	}{
		{nil, false},
		{[]string{"-keep", "-out", "./downloads", "-sets", "5"}, false},
		{[]string{"-sets", "0"}, true},
		{[]string{"-token-ttl", "5s"}, true},
		{[]string{"extra"}, true},
		{[]string{"-nope"}, true},
		{[]string{"-notifications"}, false},
		{[]string{"-notifications", "-publish", "0"}, true},
		{[]string{"-notifications", "-publish-every", "0s"}, true},
		{[]string{"-notifications", "-read-every", "1s"}, true},
		{[]string{"-notifications", "-read-every", "6s", "-publish", "2", "-publish-every", "2s"}, false},
		{[]string{"-publish", "0"}, false}, // without -notifications the publication flags are unused
	}
	for _, tt := range tests {
		_, err := parseFlags(tt.args, io.Discard)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseFlags(%v) error = %v, want error %v", tt.args, err, tt.wantErr)
		}
	}
}

// TestParseArgs: the exit codes of a run that stops before starting, and
// -notifications refused against the real RDP.
func TestParseArgs(t *testing.T) {
	realEnv := map[string]string{"RDP_CLIENT_ID": "id", "RDP_CLIENT_SECRET": "s", "SUBSCRIPTIONS": "b/p", "RDP_BASE_URL": "https://x"}
	for _, tc := range []struct {
		args     []string
		env      map[string]string
		code     int
		ok, real bool
		stderr   string
	}{
		{args: nil, ok: true},
		{args: nil, env: realEnv, ok: true, real: true},
		{args: []string{"-h"}, code: 0},
		{args: []string{"-sets", "0"}, code: 2, stderr: "-sets must be at least 1"},
		{args: nil, env: map[string]string{"SUBSCRIPTIONS": "b/p"}, code: 2, stderr: "real RDP: set RDP_USERNAME"},
		{args: nil, env: map[string]string{"RDP_CLIENT_ID": "id", "RDP_CLIENT_SECRET": "s", "RDP_BASE_URL": "https://x"}, code: 2, stderr: "set SUBSCRIPTIONS"},
		{args: nil, env: map[string]string{"RDP_CLIENT_ID": "id", "RDP_CLIENT_SECRET": "s", "SUBSCRIPTIONS": "b/p"}, code: 2, stderr: "set RDP_BASE_URL"},
		{args: nil, env: map[string]string{"RDP_USERNAME": "u", "RDP_PASSWORD": "p", "SUBSCRIPTIONS": "b/p", "RDP_BASE_URL": "https://x"}, code: 2, stderr: "RDP_CLIENT_ID"},
		{args: []string{"-notifications"}, env: realEnv, code: 2, stderr: "-notifications runs with the simulator only"},
	} {
		var stderr bytes.Buffer
		_, target, code, ok := parseArgs(tc.args, &stderr, func(k string) string { return tc.env[k] })
		if ok != tc.ok || code != tc.code || (target != nil) != tc.real || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("parseArgs(%v) = real %v, %d, %v (stderr %q); want real %v, %d, %v (stderr with %q)",
				tc.args, target != nil, code, ok, stderr.String(), tc.real, tc.code, tc.ok, tc.stderr)
		}
	}
}

func TestLiveWriter(t *testing.T) {
	pr := pipeline.Progress{ByStatus: map[string]int{state.StatusDone: 3, state.StatusDownloading: 2, state.StatusQueued: 1}, BytesDone: 3 << 20}
	line := progressLine(pr, 6, 5*time.Second, 2*time.Second, 1)
	for _, want := range []string{"0:05", "3/6 files landed", "2 downloading", "1 waiting", "3.0 MiB at 1.5 MiB/s", "auth 1"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line %q lacks %q", line, want)
		}
	}

	var tty bytes.Buffer
	lw := &liveWriter{w: &tty, tty: true, width: 20}
	lw.status("a line much longer than twenty columns", false)
	lw.event("event %d", 1)
	lw.status("short", false)
	lw.endLive()
	if got, want := tty.String(), "\r\033[Ka line much longer…\r\033[Kevent 1\n\r\033[Kshort\n"; got != want {
		t.Errorf("terminal output %q, want %q", got, want)
	}

	var plain bytes.Buffer
	lw = &liveWriter{w: &plain, plainEvery: time.Hour}
	lw.status("first", false)
	lw.status("suppressed", false)
	lw.status("forced", true)
	lw.endLive()
	if got, want := plain.String(), "first\nforced\n"; got != want {
		t.Errorf("plain output %q, want %q", got, want)
	}
}
