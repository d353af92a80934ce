package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

func TestLogin(t *testing.T) {
	sim := newSim(t, rdptest.Options{})
	norm := func(s string) string { return normalize(s, sim.URL(), "http://RDP") }

	t.Run("v1 text", func(t *testing.T) {
		r := (&cli{t: t, env: v1Env(sim)}).run("login")
		if r.code != exitOK {
			t.Fatalf("code %d stderr %s", r.code, r.stderr)
		}
		golden(t, "login-v1.golden", norm(r.stdout))
		// The CLI revoked its session: the account holds none, so a
		// non-exclusive sign-on (the refresher's next one) succeeds.
		if sim.SessionLive(testUser) {
			t.Error("the CLI left its v1 session open")
		}
		grants := sim.AuthLog()
		if len(grants) != 2 || grants[0].Grant != "password" || grants[1].Grant != "revoke" {
			t.Errorf("auth requests = %+v, want one password grant and one revoke", grants)
		}
	})

	t.Run("v2 json", func(t *testing.T) {
		r := (&cli{t: t, env: v2Env(sim)}).run("login", "--json")
		if r.code != exitOK {
			t.Fatalf("code %d stderr %s", r.code, r.stderr)
		}
		got := jsonOut[struct {
			Source, Grant, TokenType, ExpiresIn string
			ExpiresAt                           time.Time
			HasRefreshToken, SessionEnded       bool
		}](t, r)
		want := t0.Add(sim.Options().ServiceTokenTTL)
		if got.Grant != "client_credentials" || !got.ExpiresAt.Equal(want) || got.HasRefreshToken || got.SessionEnded || got.ExpiresIn != fmtAge(want.Sub(t0)) {
			t.Errorf("login --json = %+v; want client_credentials expiring %s", got, want)
		}
	})

	t.Run("credentials file", func(t *testing.T) {
		path := credsFile(t, fmt.Sprintf(`{"username":%q,"password":%q,"client_id":%q,"take_exclusive_sign_on_control":true}`, testUser, testPassword, testAppKey))
		// The file wins over the environment's (wrong) credentials.
		env := map[string]string{"RDP_BASE_URL": sim.URL(), "RDP_CLIENT_ID": "wrong", "RDP_CLIENT_SECRET": "wrong"}
		r := (&cli{t: t, env: env}).run("login", "--credentials", path)
		if r.code != exitOK || !strings.Contains(r.stdout, "password grant with "+path) {
			t.Fatalf("code %d stdout %s stderr %s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("refresh-token credentials are refused", func(t *testing.T) {
		path := credsFile(t, `{"client_id":"k","refresh_token":"rt-abc"}`)
		sim.ResetCounters()
		r := (&cli{t: t, env: map[string]string{"RDP_BASE_URL": sim.URL()}}).run("login", "--credentials", path)
		if r.code != exitError || !strings.Contains(r.stderr, "--token-ring") || sim.Counters().AuthRequests != 0 {
			t.Errorf("code %d stderr %s auth requests %d", r.code, r.stderr, sim.Counters().AuthRequests)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		env := v1Env(sim)
		env["RDP_PASSWORD"] = "not-the-password"
		r := (&cli{t: t, env: env}).run("login")
		if r.code != exitError || !strings.Contains(r.stderr, "access_denied") || !strings.Contains(r.stderr, "check the username and password") {
			t.Errorf("code %d stderr %s", r.code, r.stderr)
		}
	})

	t.Run("session quota", func(t *testing.T) {
		// The deployed refresher holds a session.
		sim.IssueTokens(testUser, testAppKey)
		r := (&cli{t: t, env: v1Env(sim)}).run("login")
		if r.code != exitError {
			t.Fatalf("code %d, want 1; stdout %s", r.code, r.stdout)
		}
		for _, s := range []string{"Session quota is reached.", "--token-ring", "--take-exclusive"} {
			if !strings.Contains(r.stderr, s) {
				t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
			}
		}
		if !sim.SessionLive(testUser) {
			t.Error("the refresher's session was ended without --take-exclusive")
		}
		r = (&cli{t: t, env: v1Env(sim)}).run("login", "--take-exclusive")
		if r.code != exitOK || !strings.Contains(r.stderr, "warning: --take-exclusive ends any other session") {
			t.Fatalf("--take-exclusive: code %d stderr %s", r.code, r.stderr)
		}
	})

	t.Run("take-exclusive needs v1", func(t *testing.T) {
		r := (&cli{t: t, env: v2Env(sim)}).run("login", "--take-exclusive")
		if r.code != exitUsage {
			t.Errorf("code %d, want 2", r.code)
		}
	})
}

func TestPackages(t *testing.T) {
	sim := newSim(t, rdptest.Options{})
	c := &cli{t: t, env: v2Env(sim)}

	r := c.run("packages", "--bucket", "BULK-esg") // bucket names are case-insensitive
	if r.code != exitOK {
		t.Fatalf("code %d stderr %s", r.code, r.stderr)
	}
	golden(t, "packages.golden", r.stdout)

	r = c.run("packages", "--json")
	pkgs := jsonOut[[]rdp.Package](t, r)
	var ids []string
	for _, p := range pkgs {
		ids = append(ids, p.PackageID)
	}
	if got, want := strings.Join(ids, ","), strings.Join([]string{pkgScores, pkgRatings, pkgOwn}, ","); got != want {
		t.Errorf("packages --json ids = %s, want %s", got, want)
	}

	r = c.run("packages", "--bucket", "bulk-Nothing")
	if r.code != exitError || !strings.Contains(r.stderr, `no bucket "bulk-Nothing" visible`) || !strings.Contains(r.stderr, "EDS.CFS.NoBucketFound") {
		t.Errorf("empty bucket: code %d stderr %q", r.code, r.stderr)
	}

	sim.Inject(rdptest.Fault{Kind: rdptest.FaultServerError, PathPrefix: rdp.PackagesPath, Times: -1})
	r = c.run("packages", "--bucket", bucketESG)
	sim.ClearFaults()
	if r.code != exitError || !strings.Contains(r.stderr, "list packages") || !strings.Contains(r.stderr, "500") {
		t.Errorf("server error: code %d stderr %q", r.code, r.stderr)
	}
}

func TestFileSets(t *testing.T) {
	sim := newSim(t, rdptest.Options{})
	c := &cli{t: t, env: v2Env(sim)}

	r := c.run("filesets", "--bucket", bucketESG, "--package", pkgScores)
	if r.code != exitOK {
		t.Fatalf("code %d stderr %s", r.code, r.stderr)
	}
	golden(t, "filesets.golden", r.stdout)

	// --since 36h and --status READY leave the 2025-01-30 delta only.
	r = c.run("filesets", "--bucket", bucketESG, "--package", pkgScores, "--since", "36h", "--status", "ready", "--json")
	sets := jsonOut[[]rdp.FileSet](t, r)
	if len(sets) != 1 || sets[0].ID != "4a1b-2c3d-5e6f7a8b-9c0d-000000000002" || sets[0].Status != "READY" || len(sets[0].Files) != 1 {
		t.Errorf("filtered file-sets = %+v", sets)
	}

	// Every page is followed; --limit stops early.
	sim.AddFileSets(bucketOwn, pkgOwn, 130, 1, 10)
	for _, tt := range []struct {
		args []string
		want int
	}{{nil, 130}, {[]string{"--limit", "7"}, 7}} {
		r = c.run(append([]string{"filesets", "--bucket", bucketOwn, "--json"}, tt.args...)...)
		sets := jsonOut[[]rdp.FileSet](t, r)
		if len(sets) != tt.want {
			t.Errorf("filesets %v: %d file-sets, want %d", tt.args, len(sets), tt.want)
		}
	}
}

func TestFiles(t *testing.T) {
	// MD5: an API that gives one shows it; RDP by default gives none (see TestFilesWithoutMD5).
	sim := newSim(t, rdptest.Options{MD5: true})
	c := &cli{t: t, env: v2Env(sim)}
	r := c.run("files", "4a1b-2c3d-5e6f7a8b-9c0d-000000000001")
	if r.code != exitOK {
		t.Fatalf("code %d stderr %s", r.code, r.stderr)
	}
	golden(t, "files.golden", r.stdout)

	r = c.run("files", "--json", "4a1b-2c3d-5e6f7a8b-9c0d-000000000001")
	files := jsonOut[[]rdp.File](t, r)
	if len(files) != 2 || files[0].Size != 300_000 || files[0].MD5 != rdptest.ContentMD5(files[0].ID, 300_000) || files[1].MD5 != "" {
		t.Errorf("files --json = %+v", files)
	}
}

func TestFilesWithoutMD5(t *testing.T) {
	sim := newSim(t, rdptest.Options{})
	c := &cli{t: t, env: v2Env(sim)}
	r := c.run("files", "--json", "4a1b-2c3d-5e6f7a8b-9c0d-000000000001")
	files := jsonOut[[]rdp.File](t, r)
	if len(files) != 2 || files[0].Size != 300_000 || files[0].MD5 != "" || files[1].MD5 != "" {
		t.Errorf("files --json = %+v, want sizes and no md5", files)
	}
}

func TestSubscriptionsCheck(t *testing.T) {
	sim := newSim(t, rdptest.Options{})
	env := v2Env(sim)
	env["SUBSCRIPTIONS"] = strings.Join([]string{
		"bulk-ESG/" + pkgScores,
		"bulk-esg/*",
		"bulk-ESG/" + strings.ToUpper(pkgRatings),
		"bulk-ESG/0000-not-a-package",
		"bulk-Nowhere/*",
		"bulk-ESG",
		"/" + pkgOwn,
		"bulk-Ownership/" + pkgOwn,
	}, ", ")
	c := &cli{t: t, env: env}
	r := c.run("subscriptions", "check")
	if r.code != exitCheckFailed {
		t.Fatalf("code %d, want 3; stderr %s", r.code, r.stderr)
	}
	golden(t, "subscriptions-check.golden", r.stdout)
	if !strings.Contains(r.stderr, "5 of 8 subscriptions are not valid") {
		t.Errorf("stderr = %q", r.stderr)
	}
	// Each bucket is listed once, whatever its case.
	if n := sim.Counters().Requests[rdptest.EPPackages]; n != 3 {
		t.Errorf("%d /packages requests, want 3 (one per bucket)", n)
	}

	// The flag wins over the environment; all good → 0; --json parses.
	r = c.run("subscriptions", "check", "--json", "--subscriptions", "bulk-ESG/"+pkgRatings+",bulk-Ownership/*")
	if r.code != exitOK {
		t.Fatalf("code %d stderr %s", r.code, r.stderr)
	}
	res := jsonOut[[]subscriptionResult](t, r)
	if len(res) != 2 || res[0].Result != resultOK || res[0].Detail != "ESG Ratings Delta" || res[1].Result != resultOK || res[1].Detail != "1 package(s)" {
		t.Errorf("--json = %+v", res)
	}

	// A bucket the API answers 404 for is unknown too.
	sim404 := newSim(t, rdptest.Options{UnknownBucket404: true})
	r = (&cli{t: t, env: v2Env(sim404)}).run("subscriptions", "check", "--subscriptions", "bulk-Nowhere/*")
	if r.code != exitCheckFailed || !strings.Contains(r.stdout, resultUnknownBucket) {
		t.Errorf("404 bucket: code %d stdout %s stderr %s", r.code, r.stdout, r.stderr)
	}
}

// TestTokenRenewal: a command that outlives its access token refreshes it
// (v1) through the session's token source, judged by the app's clock.
func TestTokenRenewal(t *testing.T) {
	sim := newSim(t, rdptest.Options{})
	now := t0
	a := newApp(&strings.Builder{}, &strings.Builder{}, func(k string) string { return v1Env(sim)[k] })
	a.now = func() time.Time { return now }
	ctx := context.Background()
	s, err := a.signOn(ctx, &rdpFlags{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(a)
	count := func() int {
		n := 0
		for p, err := range s.client.Packages(ctx, bucketESG) {
			if err != nil {
				t.Fatalf("packages: %v (%v)", err, p)
			}
			n++
		}
		return n
	}
	if count() != 2 {
		t.Fatal("want 2 packages")
	}
	before := sim.Counters().RefreshGrants
	now = t0.Add(9*time.Minute + 45*time.Second) // within the 30s margin of the 10-minute token
	if count() != 2 {
		t.Fatal("want 2 packages after renewal")
	}
	if got := sim.Counters().RefreshGrants - before; got != 1 {
		t.Errorf("%d refresh grants, want 1", got)
	}
}
