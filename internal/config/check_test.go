package config

import (
	"strings"
	"testing"
	"time"
)

// TestCheck: Check applies the tags to values set by hand, naming the
// variable; the defaults pass.
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want string // "" accepted, else what the error names
	}{
		{"poller defaults", Defaults[Poller]().PollerKnobs, ""},
		{"reader defaults", Defaults[NotificationReader]().ReaderKnobs, ""},
		{"a pointer", &PollerKnobs{FileTTL: FileTTL{FileTTLMargin: time.Hour}, PollOverlap: time.Minute}, "FULL_RECONCILE_EVERY"}, // in field order: the first bad one
		{"zero nonzero duration", func() any { k := Defaults[Poller]().PollerKnobs; k.StuckAfter = 0; return k }(), "STUCK_AFTER=0s: must not be zero"},
		{"zero in an embedded struct", func() any { k := Defaults[Poller]().PollerKnobs; k.FileTTLMargin = 0; return k }(), "FILE_TTL_MARGIN"},
		{"int below min", func() any { k := Defaults[Poller]().PollerKnobs; k.SweepLimit = 0; return k }(), "SWEEP_LIMIT=0: must be at least 1"},
		{"int above max", func() any { k := Defaults[Poller]().PollerKnobs; k.PollPageSize = 101; return k }(), "POLL_PAGE_SIZE=101: must be at most 100"},
		{"duration above max", func() any { k := Defaults[NotificationReader]().ReaderKnobs; k.Wait = time.Minute; return k }(), "NOTIFY_WAIT"},
		{"not a struct", 3, "want a struct"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.v)
			if tc.want == "" && err != nil {
				t.Fatalf("Check: %v, want nil", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Check: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestLoadNonzero: a nonzero knob set to 0 in the environment is an error
// naming it (not its default).
func TestLoadNonzero(t *testing.T) {
	base := map[string]string{"TOKEN_SECRET_IDS": "a", "STATE_TABLE": "t", "DOWNLOAD_QUEUE_URL": "q"}
	for _, name := range []string{"POLL_OVERLAP", "EXPIRY_WARNING", "FILE_TTL_MARGIN", "STUCK_AFTER"} {
		if err := LoadFrom(withEnv(base, name, "0s"), &Poller{}); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=0s: err = %v, want one naming it", name, err)
		}
	}
	base["NOTIFY_SUBSCRIPTION_SECRET_ID"], base["NOTIFY_CREDENTIALS_SECRET_ID"] = "s", "c"
	for _, name := range []string{"NOTIFY_WAIT", "NOTIFY_DEADLINE_MARGIN"} {
		if err := LoadFrom(withEnv(base, name, "0s"), &NotificationReader{}); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=0s: err = %v, want one naming it", name, err)
		}
	}
}
