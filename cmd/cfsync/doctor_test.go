package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// doctorRows parses `cfsync doctor --json`.
func doctorRows(t *testing.T, stdout string) (doctorReport, map[string]check) {
	t.Helper()
	var rep doctorReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("parse --json: %v\n%s", err, stdout)
	}
	rows := map[string]check{}
	for _, c := range rep.Checks {
		rows[c.Name] = c
	}
	return rep, rows
}

// TestDoctor runs `cfsync doctor` against the simulator in its default mode
// and in modes where RDP differs: the right row fails (or, for what cfsync
// does not depend on, is merely reported), with the right exit code, and no
// secret reaches the output.
func TestDoctor(t *testing.T) {
	rec := &recorder{secrets: map[string]bool{}}
	var out strings.Builder
	tests := []struct {
		name     string
		opts     rdptest.Options
		setup    func(sim *rdptest.Server, env map[string]string)
		wantCode int
		want     map[string]string // check → result
		wantText string            // in the failing row's observation
	}{
		{"default: all OK", rdptest.Options{}, nil, exitOK, map[string]string{
			"sign-on": resOK, "expires_in": resOK, "packages": resOK, "file-sets": resOK, "file-set order": resInfo,
			"files": resOK, "md5": resNotOffered, "GET /files/{id}": resNotOffered, "stream URL": resOK, "Range": resOK,
			"ETag": resInfo, "revoke": resOK,
		}, ""},
		{"GET /files/{id} offered is only reported", rdptest.Options{FileEndpoint: true, MD5: true}, nil, exitOK,
			map[string]string{"GET /files/{id}": resInfo, "md5": resInfo, "Range": resOK}, ""},
		{"expires_in as a number", rdptest.Options{ExpiresInNumber: true}, nil, exitOK,
			map[string]string{"expires_in": resOK}, ""},
		{"wrong password", rdptest.Options{}, func(_ *rdptest.Server, env map[string]string) { env["RDP_PASSWORD"] = testPassword + "-wrong" },
			exitCheckFailed, map[string]string{"sign-on": resDiffers, "file store": resSkipped}, "rejected the username or password"},
		{"claim missing", rdptest.Options{}, func(sim *rdptest.Server, _ map[string]string) { sim.RemoveClaim(bucketESG) },
			exitCheckFailed, map[string]string{"sign-on": resOK, "packages": resDiffers, "revoke": resOK}, "403 missing entitlement"},
		{"presigned URL refused: 400 ExpiredToken", rdptest.Options{},
			func(sim *rdptest.Server, _ map[string]string) {
				sim.Inject(rdptest.Fault{Kind: rdptest.FaultExpiredToken, Times: -1})
			},
			exitCheckFailed, map[string]string{"stream URL": resOK, "Range": resDiffers}, "ExpiredToken"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sim := newSim(t, tc.opts)
			env := v1Env(sim)
			if tc.setup != nil {
				tc.setup(sim, env)
			}
			r := (&cli{t: t, env: env, rec: rec}).run("doctor", "--bucket", bucketESG, "--page-size", "1", "--json")
			out.WriteString(r.stdout + r.stderr)
			if r.code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", r.code, tc.wantCode, r.stdout, r.stderr)
			}
			rep, rows := doctorRows(t, r.stdout)
			if rep.OK != (tc.wantCode == exitOK) {
				t.Errorf("ok = %t", rep.OK)
			}
			for name, want := range tc.want {
				if got := rows[name]; got.Result != want {
					t.Errorf("%s: %q (%s), want %q", name, got.Result, got.Observed, want)
				}
				if want == resDiffers && !strings.Contains(rows[name].Observed, tc.wantText) {
					t.Errorf("%s: observed %q lacks %q", name, rows[name].Observed, tc.wantText)
				}
				if want == resDiffers && !strings.Contains(r.stderr, name) {
					t.Errorf("stderr %q does not name %s", r.stderr, name)
				}
			}
			if sim.SessionLive(testUser) {
				t.Error("doctor left its session open")
			}
			for _, g := range sim.AuthLog() {
				if g.Grant == "password" && g.Status != 200 && len(sim.AuthLog()) > 1 {
					t.Errorf("doctor retried a failed sign-on: %+v", sim.AuthLog())
				}
			}
		})
	}
	t.Run("text output", func(t *testing.T) {
		sim := newSim(t, rdptest.Options{})
		r := (&cli{t: t, env: v1Env(sim), rec: rec}).run("doctor", "--bucket", bucketESG, "--page-size", "1")
		out.WriteString(r.stdout + r.stderr)
		if r.code != exitOK || !strings.Contains(r.stdout, "[OK]") || !strings.Contains(r.stdout, "skipToken = base64(filesetId=<last id>)") ||
			!strings.Contains(r.stdout, "21600 s") || !strings.Contains(r.stdout, "Every RDP behaviour cfsync depends on is as expected.") {
			t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("never exclusive", func(t *testing.T) {
		sim := newSim(t, rdptest.Options{})
		if r := (&cli{t: t, env: v1Env(sim)}).run("doctor", "--take-exclusive"); r.code != exitUsage || len(sim.AuthLog()) != 0 {
			t.Fatalf("exit %d, %d auth requests", r.code, len(sim.AuthLog()))
		}
	})
	t.Run("no secret in any output", func(t *testing.T) {
		if len(rec.secrets) < 6 || rec.urls < 3 {
			t.Fatalf("recorded only %d secrets and %d URLs", len(rec.secrets), rec.urls)
		}
		all := out.String()
		for _, s := range []string{testPassword, testAppKey, "X-Amz-", "Security-Token", "Signature"} {
			if strings.Contains(all, s) {
				t.Errorf("output contains %q", s)
			}
		}
		for s := range rec.secrets {
			if strings.Contains(all, s) {
				t.Errorf("output contains a token or presigned URL part (%d chars)", len(s))
			}
		}
	})
}

// TestDoctorTokenRing: with --token-ring the doctor borrows the deployed
// stack's token: no /auth request, the refresher's session stays, and the
// sign-on-only rows say why they were skipped.
func TestDoctorTokenRing(t *testing.T) {
	m, cfg := testenv.MotoConfig(t)
	ctx := context.Background()
	sim := newSim(t, rdptest.Options{})
	access, refresh := sim.IssueTokens(testUser, testAppKey) // the refresher's session
	b, _ := json.Marshal(tokenring.Slot{AccessToken: access, RefreshToken: refresh, TokenType: "Bearer", ExpiresAt: t0.Add(10 * time.Minute), IssuedAt: t0, Generation: 3})
	if _, err := secretsmanager.NewFromConfig(cfg).CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("cfsync/token-1"), SecretString: aws.String(string(b))}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"AWS_ENDPOINT_URL": m.Endpoint, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
		"RDP_BASE_URL": sim.URL(), "TOKEN_SECRET_IDS": "cfsync/token-1"}
	sim.ResetCounters()
	r := (&cli{t: t, env: env}).run("doctor", "--token-ring", "--bucket", bucketESG, "--page-size", "1", "--json")
	if r.code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	_, rows := doctorRows(t, r.stdout)
	for name, want := range map[string]string{"sign-on": resOK, "expires_in": resSkipped, "Range": resOK, "revoke": resSkipped} {
		if rows[name].Result != want {
			t.Errorf("%s: %q (%s), want %q", name, rows[name].Result, rows[name].Observed, want)
		}
	}
	if n := sim.Counters().AuthRequests; n != 0 || !sim.SessionLive(testUser) {
		t.Errorf("%d /auth requests, refresher's session live: %t", n, sim.SessionLive(testUser))
	}
	if strings.Contains(r.stdout+r.stderr, access) || strings.Contains(r.stdout+r.stderr, refresh) {
		t.Error("output contains a ring token")
	}
}
