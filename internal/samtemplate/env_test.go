package samtemplate

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"testing"

	"github.com/cfsync/cfsync/internal/config"
)

// contractEnv is the variable table of docs/configuration.md#environment-variables: deployment
// settings the template must set for every function that reads them. Any
// other variable a function reads is a tuning knob with a safe default
// (internal/config): the template may leave it unset, and operators add it to
// a function's Environment when they need another value (docs/operations.md#tuning-knobs).
//
// Rule, checked below per function:
//   - every variable the template sets is read by that function's config;
//   - every required variable is set;
//   - every contract variable the function reads is set.
var contractEnv = []string{
	"RDP_BASE_URL", "RDP_CREDENTIALS_SECRET_ID", "TOKEN_SECRET_IDS", "STATE_TABLE",
	"DOWNLOAD_QUEUE_URL", "SUBSCRIPTIONS", "DEST_BUCKET", "DEST_PREFIX", "LOG_LEVEL",
}

var functionConfigs = []struct {
	id  string
	cfg any
}{
	{TokenRefresher, config.Refresher{}},
	{FilesetPoller, config.Poller{}},
	{Downloader, config.Downloader{}},
	{NotificationReader, config.NotificationReader{}},
}

// requiredEnv lists the variables of a config struct tagged required:"true".
func requiredEnv(v any) []string {
	var out []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			if f.Tag.Get("required") == "true" {
				out = append(out, f.Tag.Get("env"))
			}
		}
	}
	walk(reflect.TypeOf(v))
	return out
}

func TestFunctionEnvironmentMatchesConfig(t *testing.T) {
	tpl := loadRepoTemplate(t)
	var ids []string
	for _, f := range tpl.Functions() {
		ids = append(ids, f.ID)
	}
	var want []string
	for _, fc := range functionConfigs {
		want = append(want, fc.id)
	}
	sort.Strings(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("template functions = %v, want %v (add the new function's config here)", ids, want)
	}
	for _, fc := range functionConfigs {
		t.Run(fc.id, func(t *testing.T) {
			env, err := tpl.FunctionEnv(fc.id)
			if err != nil {
				t.Fatal(err)
			}
			set := SortedKeys(env)
			reads := config.EnvNames(fc.cfg)
			for _, name := range set {
				if !slices.Contains(reads, name) {
					t.Errorf("template sets %s, which %T does not read", name, fc.cfg)
				}
			}
			for _, name := range requiredEnv(fc.cfg) {
				if !slices.Contains(set, name) {
					t.Errorf("%T requires %s, which the template does not set", fc.cfg, name)
				}
			}
			for _, name := range reads {
				if slices.Contains(contractEnv, name) && !slices.Contains(set, name) {
					t.Errorf("%T reads %s (docs/configuration.md#environment-variables), which the template does not set", fc.cfg, name)
				}
			}
		})
	}
}

func TestFunctionEnvironmentValues(t *testing.T) {
	tpl := loadRepoTemplate(t)
	credARN := "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rdp-AbCdEf"
	tests := []struct {
		name      string
		overrides map[string]string
		want      map[string]map[string]string // function → variable → value
	}{
		{"defaults", nil, map[string]map[string]string{
			TokenRefresher: {
				"RDP_BASE_URL": "https://api.refinitiv.com", "LOG_LEVEL": "info", "STATE_TABLE": "{StateTable}",
				"TOKEN_SECRET_IDS": ringARNs(3), "RDP_CREDENTIALS_SECRET_ID": "{CredentialsSecret}",
				"NOTIFY_SUBSCRIPTION_SECRET_ID": "", "NOTIFY_CREDENTIALS_SECRET_ID": "",
			},
			FilesetPoller: {
				"TOKEN_SECRET_IDS": ringARNs(3), "DOWNLOAD_QUEUE_URL": "{DownloadQueue}", "SUBSCRIPTIONS": "",
			},
			Downloader: {
				"TOKEN_SECRET_IDS": ringARNs(3), "DOWNLOAD_QUEUE_URL": "{DownloadQueue}",
				"DEST_BUCKET": "{DestBucket}", "DEST_PREFIX": "", "STATE_TABLE": "{StateTable}",
			},
		}},
		{"existing secret and bucket", map[string]string{
			"CredentialsSecretArn": credARN, "DestBucketName": "my-bucket", "DestPrefix": "cfs/",
			"Subscriptions": "bulk-ESG/a,bulk-ESG/b", "LogLevel": "debug", "RdpBaseUrl": "http://127.0.0.1:8080",
		}, map[string]map[string]string{
			TokenRefresher: {"RDP_CREDENTIALS_SECRET_ID": credARN, "LOG_LEVEL": "debug", "RDP_BASE_URL": "http://127.0.0.1:8080"},
			FilesetPoller:  {"SUBSCRIPTIONS": "bulk-ESG/a,bulk-ESG/b"},
			Downloader:     {"DEST_BUCKET": "my-bucket", "DEST_PREFIX": "cfs/"},
		}},
	}
	for n := 1; n <= 5; n++ {
		tests = append(tests, struct {
			name      string
			overrides map[string]string
			want      map[string]map[string]string
		}{fmt.Sprintf("TokenSlots=%d", n), map[string]string{"TokenSlots": fmt.Sprint(n)}, map[string]map[string]string{
			TokenRefresher: {"TOKEN_SECRET_IDS": ringARNs(n)},
			FilesetPoller:  {"TOKEN_SECRET_IDS": ringARNs(n)},
			Downloader:     {"TOKEN_SECRET_IDS": ringARNs(n)},
		}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, res := specialize(t, tpl, tt.overrides)
			for fn, vars := range tt.want {
				env, err := spec.FunctionEnv(fn)
				if err != nil {
					t.Fatal(err)
				}
				for name, want := range vars {
					got, err := res.ResolveString(env[name])
					if err != nil {
						t.Fatalf("%s %s: %v", fn, name, err)
					}
					if got != want {
						t.Errorf("%s %s = %q, want %q", fn, name, got, want)
					}
				}
			}
		})
	}
}

func TestRingSecretsFollowTokenSlots(t *testing.T) {
	tpl := loadRepoTemplate(t)
	for n := 1; n <= 5; n++ {
		t.Run(fmt.Sprintf("TokenSlots=%d", n), func(t *testing.T) {
			spec, res := specialize(t, tpl, map[string]string{"TokenSlots": fmt.Sprint(n)})
			var slots []string
			for _, r := range spec.ResourcesOfType("AWS::SecretsManager::Secret") {
				if r.ID == "CredentialsSecret" {
					continue
				}
				slots = append(slots, r.ID)
				if v := r.Properties["SecretString"]; v != "{}" {
					t.Errorf("%s SecretString = %v, want {}", r.ID, v)
				}
			}
			if len(slots) != n {
				t.Fatalf("ring secrets = %v, want %d", slots, n)
			}
			out, err := res.ResolveString(get(spec["Outputs"], "TokenSecretIds", "Value"))
			if err != nil {
				t.Fatal(err)
			}
			if out != ringARNs(n) {
				t.Errorf("output TokenSecretIds = %q, want %q", out, ringARNs(n))
			}
			for k := 1; k <= 5; k++ {
				_, has := spec["Outputs"].(map[string]any)[fmt.Sprintf("TokenSlot%dArn", k)]
				if has != (k <= n) {
					t.Errorf("output TokenSlot%dArn present = %v", k, has)
				}
			}
		})
	}
}
