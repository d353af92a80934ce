package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

func TestAuthCallers(t *testing.T) {
	tests := []struct {
		name       string
		log        []rdptest.AuthRecord
		wantRow    string
		wantOthers []string
	}{
		{"none", nil, "none", nil},
		{"the refresher only", []rdptest.AuthRecord{{UserAgent: "cfsync-token-refresher"}, {UserAgent: "cfsync-token-refresher"}},
			"cfsync-token-refresher 2", nil},
		{"the reader too", []rdptest.AuthRecord{{UserAgent: "cfsync-token-refresher"}, {UserAgent: "cfsync-notification-reader"}},
			"cfsync-notification-reader 1, cfsync-token-refresher 1", []string{"cfsync-notification-reader"}},
		{"an unnamed client", []rdptest.AuthRecord{{}}, "(no user agent) 1", []string{"(no user agent)"}},
	}
	for _, tt := range tests {
		row, others := authCallers(tt.log)
		if row != tt.wantRow || !reflect.DeepEqual(others, tt.wantOthers) {
			t.Errorf("%s: authCallers = %q, %v; want %q, %v", tt.name, row, others, tt.wantRow, tt.wantOthers)
		}
	}
}

func TestConfigureNotifications(t *testing.T) {
	for _, tt := range []struct {
		readEvery   time.Duration
		wantEnv     []string
		wantTimeout time.Duration
	}{
		{time.Minute, nil, 0}, // the template's own: nothing overridden
		{6 * time.Second, []string{"NOTIFY_WAIT=2s", "NOTIFY_DEADLINE_MARGIN=1s"}, 6 * time.Second},
		{3 * time.Minute, []string{"NOTIFY_WAIT=20s", "NOTIFY_DEADLINE_MARGIN=30s"}, 3 * time.Minute},
	} {
		cfg := pipeline.Config{Params: map[string]string{}, Env: map[string][]string{}, Timeouts: map[string]time.Duration{}}
		o := options{readEvery: tt.readEvery, publish: 6, publishEvery: 25 * time.Second, timeout: defaultTimeout}
		n := configureNotifications(&cfg, &o, nil)
		if cfg.Params["Notifications"] != "true" || cfg.ReadEvery != tt.readEvery || cfg.Prepare == nil || n.Package.ID != notifyPackage.ID {
			t.Errorf("read every %s: config %+v", tt.readEvery, cfg)
		}
		if !reflect.DeepEqual(cfg.Env[pipeline.Reader], tt.wantEnv) || cfg.Timeouts[pipeline.Reader] != tt.wantTimeout {
			t.Errorf("read every %s: reader env %v timeout %s, want %v %s", tt.readEvery, cfg.Env[pipeline.Reader], cfg.Timeouts[pipeline.Reader], tt.wantEnv, tt.wantTimeout)
		}
		if !strings.Contains(strings.Join(cfg.Env[pipeline.Refresher], " "), "QUEUE_CREDENTIALS_REFRESH=1m") {
			t.Errorf("refresher env %v", cfg.Env[pipeline.Refresher])
		}
		if want := defaultTimeout + 6*25*time.Second + 2*tt.readEvery; o.timeout != want {
			t.Errorf("read every %s: timeout %s, want %s", tt.readEvery, o.timeout, want)
		}
	}
}

// TestPublisherStep: step publishes once the backlog landed, and records a
// publication as landed from the tick's progress (the tick's one read of the
// state table) when all its files are DONE, at the last one's time.
func TestPublisherStep(t *testing.T) {
	sim := rdptest.NewServer(rdptest.Options{})
	t.Cleanup(sim.Close)
	pb := &publisher{sim: sim, n: 1, every: time.Hour}
	if lines := pb.step(pipeline.Progress{}, false); len(lines) != 0 || len(pb.pubs) != 0 {
		t.Fatalf("published before the backlog landed: %q", lines)
	}
	if lines := pb.step(pipeline.Progress{}, true); len(pb.pubs) != 1 || len(lines) != 1 || !strings.Contains(lines[0], "published") {
		t.Fatalf("after the backlog: %q, %d publications; want one published", lines, len(pb.pubs))
	}
	files, at := pb.pubs[0].FileSet.Files, pb.pubs[0].At
	pr := pipeline.Progress{DoneAt: map[string]time.Time{files[0].ID: at.Add(time.Second)}}
	if lines := pb.step(pr, true); len(lines) != 0 || pb.done() {
		t.Fatalf("one of two files DONE: %q, done %v; want nothing landed", lines, pb.done())
	}
	pr.DoneAt[files[1].ID] = at.Add(3 * time.Second)
	if lines := pb.step(pr, true); len(lines) != 1 || !strings.Contains(lines[0], "publish → landed 3.0s") || !pb.done() {
		t.Errorf("both files DONE: %q, done %v; want landed after 3.0s", lines, pb.done())
	}
	if len(pb.pubs) != 1 {
		t.Errorf("%d publications, want -publish 1", len(pb.pubs))
	}
}
