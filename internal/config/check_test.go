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

// TestFixedAndUnsetTags: a field with a default and no env tag always gets
// its default (the environment cannot set it; EnvNames omits it) and its
// errors name the field; a zero:"unset" field may be zero, other values
// must be within its bounds.
func TestFixedAndUnsetTags(t *testing.T) {
	type knobs struct {
		Fixed int   `default:"8" min:"1"`
		Size  int64 `env:"SIZE" zero:"unset" min:"5" max:"10"`
	}
	if k := Defaults[knobs](); k != (knobs{Fixed: 8}) {
		t.Errorf("Defaults = %+v, want Fixed 8, Size 0", k)
	}
	var k knobs
	if err := LoadFrom(env(map[string]string{"Fixed": "3", "SIZE": "0"}), &k); err != nil || k != (knobs{Fixed: 8}) {
		t.Errorf("Load = %+v, %v; want Fixed 8 (not from the environment), Size 0", k, err)
	}
	if names := EnvNames(knobs{}); len(names) != 1 || names[0] != "SIZE" {
		t.Errorf("EnvNames = %v, want [SIZE]", names)
	}
	for _, size := range []string{"4", "11"} {
		if err := LoadFrom(env(map[string]string{"SIZE": size}), &k); err == nil || !strings.Contains(err.Error(), `SIZE="`+size+`"`) {
			t.Errorf("SIZE=%s: Load = %v, want an error naming it", size, err)
		}
	}
	for _, tc := range []struct {
		k    knobs
		want string // "" accepted, else what the error names
	}{
		{knobs{Fixed: 1}, ""},
		{knobs{Fixed: 1, Size: 5}, ""},
		{knobs{Fixed: 1, Size: 10}, ""},
		{knobs{Fixed: 0}, "Fixed=0: must be at least 1"},
		{knobs{Fixed: 1, Size: 4}, "SIZE=4: must be at least 5"},
		{knobs{Fixed: 1, Size: 11}, "SIZE=11: must be at most 10"},
	} {
		err := Check(tc.k)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Check(%+v) = %v, want %q", tc.k, err, tc.want)
		}
	}
}
