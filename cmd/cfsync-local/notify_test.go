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
