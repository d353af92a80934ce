package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// recorder is an http.RoundTripper that collects every secret the RDP API
// hands the CLI: access and refresh tokens and presigned URLs (with their
// signature and session token).
type recorder struct {
	mu      sync.Mutex
	secrets map[string]bool
	urls    int
}

func (r *recorder) add(s string) {
	if len(s) >= 8 {
		r.secrets[s] = true
	}
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var v struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		URL          string `json:"url"`
	}
	_ = json.Unmarshal(body, &v)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.add(v.AccessToken)
	r.add(v.RefreshToken)
	if v.URL != "" {
		r.urls++
		r.add(v.URL)
		if u, err := url.Parse(v.URL); err == nil {
			r.add(u.RawQuery)
			for _, k := range []string{"X-Amz-Signature", "X-Amz-Security-Token", "X-Amz-Credential"} {
				r.add(u.Query().Get(k))
			}
		}
	}
	return resp, nil
}

// TestNoSecretsInOutput runs every RDP command, successful and failing,
// and checks that no output contains a password, client secret, client_id
// (app key), token or presigned URL.
func TestNoSecretsInOutput(t *testing.T) {
	sim := newSim(t, rdptest.Options{})
	rec := &recorder{secrets: map[string]bool{}}
	dir := t.TempDir()
	credFile := credsFile(t, `{"username":"`+testUser+`","password":"`+testPassword+`","client_id":"`+testAppKey+`"}`)
	badPw := v1Env(sim)
	badPw["RDP_PASSWORD"] = testPassword + "-wrong"
	badKey := v1Env(sim)
	badKey["RDP_CLIENT_ID"] = testAppKey + "-wrong"
	badSecret := v2Env(sim)
	badSecret["RDP_CLIENT_SECRET"] = testSASecret + "-wrong"

	runs := []struct {
		env  map[string]string
		args []string
	}{
		{v1Env(sim), []string{"login"}},
		{v1Env(sim), []string{"login", "--json"}},
		{v2Env(sim), []string{"login", "--json"}},
		{map[string]string{"RDP_BASE_URL": sim.URL()}, []string{"login", "--credentials", credFile}},
		{badPw, []string{"login"}},
		{badKey, []string{"login"}},
		{badSecret, []string{"login"}},
		{v1Env(sim), []string{"packages", "--bucket", bucketESG}},
		{v2Env(sim), []string{"packages", "--json"}},
		{v2Env(sim), []string{"filesets", "--bucket", bucketESG, "--json"}},
		{v2Env(sim), []string{"files", "--json", "4a1b-2c3d-5e6f7a8b-9c0d-000000000001"}},
		{v1Env(sim), []string{"download", bigFile, "-o", dir, "--progress"}},
		{v1Env(sim), []string{"download", noMD5File, "-o", dir}},
		{v2Env(sim), []string{"subscriptions", "check", "--subscriptions", "bulk-ESG/*,bulk-x/y"}},
	}
	var all strings.Builder
	for _, r := range runs {
		res := (&cli{t: t, env: r.env, rec: rec}).run(r.args...)
		all.WriteString(res.stdout)
		all.WriteString(res.stderr)
	}
	// Faults whose error paths print RDP's answers.
	sim.Inject(rdptest.Fault{Kind: rdptest.FaultUnauthorized, PathPrefix: "/file-store/", Times: -1})
	res := (&cli{t: t, env: v2Env(sim), rec: rec}).run("packages")
	sim.ClearFaults()
	all.WriteString(res.stdout + res.stderr)
	sim.Inject(rdptest.Fault{Kind: rdptest.FaultExpiredURL, FileID: bigFile, Times: -1})
	res = (&cli{t: t, env: v2Env(sim), rec: rec}).run("download", bigFile, "-o", t.TempDir())
	sim.ClearFaults()
	all.WriteString(res.stdout + res.stderr)
	if res.code != exitError {
		t.Errorf("download with URLs always refused: code %d", res.code)
	}

	if len(rec.secrets) < 10 || rec.urls < 3 {
		t.Fatalf("recorded only %d secrets and %d URLs: the test does not see what it should", len(rec.secrets), rec.urls)
	}
	out := all.String()
	if !strings.Contains(out, "login OK") || !strings.Contains(out, "downloaded ") {
		t.Fatalf("the commands did not run as expected:\n%s", out)
	}
	fixed := []string{testPassword, testAppKey, testSASecret, testSAID, "X-Amz-", "Security-Token"}
	for _, s := range fixed {
		if strings.Contains(out, s) {
			t.Errorf("output contains %q", s)
		}
	}
	for s := range rec.secrets {
		if strings.Contains(out, s) {
			t.Errorf("output contains a token or presigned URL part (%d chars)", len(s))
		}
	}
}
