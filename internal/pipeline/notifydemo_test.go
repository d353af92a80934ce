package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

func TestPercentile(t *testing.T) {
	s := time.Second
	ten := []time.Duration{10 * s, 1 * s, 9 * s, 2 * s, 8 * s, 3 * s, 7 * s, 4 * s, 6 * s, 5 * s}
	for _, tc := range []struct {
		name string
		ds   []time.Duration
		q    int
		want time.Duration
	}{
		{"none", nil, 50, 0},
		{"one", []time.Duration{3 * s}, 95, 3 * s},
		{"p50 of ten is the 5th", ten, 50, 5 * s},
		{"p95 of ten is the 10th", ten, 95, 10 * s},
		{"p90 of ten is the 9th", ten, 90, 9 * s},
		{"p50 of six is the 3rd", []time.Duration{6 * s, 5 * s, 4 * s, 3 * s, 2 * s, 1 * s}, 50, 3 * s},
		{"p95 of six is the max", []time.Duration{6 * s, 5 * s, 4 * s, 3 * s, 2 * s, 1 * s}, 95, 6 * s},
	} {
		if got := Percentile(tc.ds, tc.q); got != tc.want {
			t.Errorf("%s: Percentile(%v, %d) = %s, want %s", tc.name, tc.ds, tc.q, got, tc.want)
		}
	}
	if ten[0] != 10*s {
		t.Error("Percentile sorted its argument in place")
	}
}

func TestDeployed(t *testing.T) {
	for _, tc := range []struct {
		params map[string]string
		want   []string
	}{
		{nil, []string{Refresher, Poller, Downloader}},
		{map[string]string{"Notifications": "false"}, []string{Refresher, Poller, Downloader}},
		{map[string]string{"Notifications": "true"}, []string{Refresher, Poller, Downloader, Reader}},
	} {
		got := Deployed(tc.params)
		if len(got) != len(tc.want) {
			t.Errorf("Deployed(%v) = %v, want %v", tc.params, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("Deployed(%v) = %v, want %v", tc.params, got, tc.want)
			}
		}
	}
	if len(Functions) != 3 {
		t.Errorf("Deployed changed Functions: %v", Functions)
	}
}

func TestPublish(t *testing.T) {
	sim := rdptest.NewServer(rdptest.Options{})
	t.Cleanup(sim.Close)
	pkg := DemoPackages[0]
	a, b := Publish(sim, pkg, 1), Publish(sim, pkg, 2)
	for _, pb := range []Publication{a, b} {
		if pb.FileSet.Status != "READY" || len(pb.FileSet.Files) != 2 || pb.FileSet.PackageID != pkg.ID {
			t.Errorf("published %+v, want a READY file-set of 2 files in %s", pb.FileSet, pkg.ID)
		}
		if pb.At.IsZero() || pb.Latency() != 0 {
			t.Errorf("publication time %v, latency %s before landing", pb.At, pb.Latency())
		}
	}
	if a.FileSet.ID == b.FileSet.ID || a.FileSet.Name == b.FileSet.Name {
		t.Errorf("two publications share id or name: %s %s", a.FileSet.Name, b.FileSet.Name)
	}
	a.Landed = a.At.Add(1500 * time.Millisecond)
	if a.Latency() != 1500*time.Millisecond {
		t.Errorf("latency %s, want 1.5s", a.Latency())
	}
}

// An Env entry under a key that is not a function would reach no function:
// Start refuses it before starting anything.
func TestStartRejectsEnvForNoFunction(t *testing.T) {
	for _, tc := range []struct {
		key     string
		wantErr bool
	}{
		{"", true}, {"poller", true}, {Poller, false}, {Reader, false},
	} {
		err := checkEnvKeys(map[string][]string{tc.key: {"TOKEN_SKEW=5s"}})
		if (err != nil) != tc.wantErr {
			t.Errorf("Env key %q: error %v, want error %v", tc.key, err, tc.wantErr)
		}
	}
	_, err := Start(t.Context(), Config{Credentials: "{}", Env: map[string][]string{"": {"TOKEN_SKEW=5s"}}})
	if err == nil || !strings.Contains(err.Error(), `Config.Env: "" is not a function`) {
		t.Errorf("Start with Env[\"\"]: %v, want the bad key named", err)
	}
}
