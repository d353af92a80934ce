package config

import (
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) Getenv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// withEnv is the environment base (not changed) plus the pairs kv (name,
// value, …).
func withEnv(base map[string]string, kv ...string) Getenv {
	m := maps.Clone(base)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return env(m)
}

// refresherEnv is a refresher's environment: its required variables and kv.
func refresherEnv(kv ...string) Getenv {
	return withEnv(map[string]string{"TOKEN_SECRET_IDS": "a, b,,c", "STATE_TABLE": "t", "RDP_CREDENTIALS_SECRET_ID": "cred"}, kv...)
}

func TestLoadRefresher(t *testing.T) {
	var c Refresher
	if err := LoadFrom(refresherEnv(), &c); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.TokenSecretIDs, []string{"a", "b", "c"}) {
		t.Errorf("TokenSecretIDs = %q", c.TokenSecretIDs)
	}
	if c.RefreshMargin != 2*time.Minute || c.SecretMinWriteInterval != 10*time.Minute || c.AuthBudget != 20 || c.RDPBaseURL != "https://api.refinitiv.com" || c.LogLevel != "info" {
		t.Errorf("defaults wrong: %+v", c)
	}
	if err := LoadFrom(refresherEnv("TOKEN_REFRESH_MARGIN", "90s", "AUTH_BUDGET", "7"), &c); err != nil || c.RefreshMargin != 90*time.Second || c.AuthBudget != 7 {
		t.Errorf("overrides not applied: %+v (%v)", c, err)
	}
	// Each bad environment is an error naming the variable.
	for _, kv := range [][]string{
		{"RDP_CREDENTIALS_SECRET_ID", ""},   // missing required
		{"TOKEN_SECRET_IDS", " , "},         // empty ring
		{"SECRET_MIN_WRITE_INTERVAL", "10"}, // bad duration
		{"TOKEN_REFRESH_MARGIN", "-1m"},     // negative duration
		{"AUTH_BUDGET", "lots"},             // bad int
		{"AUTH_BUDGET", "0"},                // int below min
		{"RDP_SESSION_MAX_LIFETIME", "5m"},  // duration below min
	} {
		if err := LoadFrom(refresherEnv(kv...), &Refresher{}); err == nil || !strings.Contains(err.Error(), kv[0]) {
			t.Errorf("%s=%q: err = %v, want one naming %s", kv[0], kv[1], err, kv[0])
		}
	}
}

func TestEnvNames(t *testing.T) {
	got := EnvNames(Refresher{})
	for _, want := range []string{"RDP_BASE_URL", "TOKEN_SECRET_IDS", "STATE_TABLE", "LOG_LEVEL", "RDP_CREDENTIALS_SECRET_ID", "AUTH_BUDGET"} {
		found := false
		for _, g := range got {
			found = found || g == want
		}
		if !found {
			t.Errorf("EnvNames(Refresher) lacks %s: %v", want, got)
		}
	}
	if err := LoadFrom(env(nil), Refresher{}); err == nil {
		t.Error("LoadFrom accepted a non-pointer")
	}
}

func TestLoadPollerPageSizeBounds(t *testing.T) {
	base := map[string]string{"TOKEN_SECRET_IDS": "a", "STATE_TABLE": "t", "DOWNLOAD_QUEUE_URL": "q"}
	for _, tt := range []struct {
		v       string
		wantErr bool
	}{{"100", false}, {"1", false}, {"101", true}, {"0", true}} {
		err := LoadFrom(withEnv(base, "POLL_PAGE_SIZE", tt.v), &Poller{})
		if tt.wantErr != (err != nil) || (err != nil && !strings.Contains(err.Error(), "POLL_PAGE_SIZE")) {
			t.Errorf("POLL_PAGE_SIZE=%s: err = %v", tt.v, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	r := Defaults[Refresher]()
	if r.RefreshMargin != 2*time.Minute || r.AuthBudget != 20 || r.SessionMaxLifetime != 18*time.Hour || r.RDPBaseURL != "https://api.refinitiv.com" {
		t.Errorf("Defaults[Refresher]() = %+v, want the tag defaults", r)
	}
	if r.CredentialsSecretID != "" || r.TokenSecretIDs != nil || r.StateTable != "" {
		t.Errorf("Defaults[Refresher]() filled a required field without a default: %+v", r)
	}
	d := Defaults[Downloader]()
	if d.TokenSkew != 30*time.Second || d.DeferMaxDelay != 15*time.Minute || d.PartSize != 0 || d.MaxReceiveCount != 5 || d.MaxURLRefreshes != 8 || d.CleanupTimeout != 10*time.Second {
		t.Errorf("Defaults[Downloader]() = %+v, want the tag defaults (embedded structs included)", d)
	}
	// The defaults are exactly what Load gives an environment holding only the required variables.
	var loaded Downloader
	req := map[string]string{"TOKEN_SECRET_IDS": "a", "STATE_TABLE": "t", "DOWNLOAD_QUEUE_URL": "q", "DEST_BUCKET": "b"}
	if err := LoadFrom(env(req), &loaded); err != nil {
		t.Fatal(err)
	}
	d.TokenSecretIDs, d.StateTable, d.DownloadQueueURL, d.DestBucket = []string{"a"}, "t", "q", "b"
	if !reflect.DeepEqual(d, loaded) {
		t.Errorf("Defaults[Downloader]() + required = %+v, Load = %+v", d, loaded)
	}
	defer func() {
		if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), "N=") {
			t.Errorf("a default below its min: panic %v, want one naming N", p)
		}
	}()
	Defaults[struct {
		N int `env:"N" default:"0" min:"1"`
	}]()
}
