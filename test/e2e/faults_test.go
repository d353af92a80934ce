package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// RDP misbehaving under the pipeline: every fault class the simulator can
// inject (TestEveryFault), and access tokens RDP invalidates and sessions it
// ends (TestTokenExpiryAndRevocation).

// faultData: two packages, 20 files from 4 KiB to 10 MiB (ranged and
// multipart downloads), enough file-sets for several pages per package.
func faultData(sim *rdptest.Server) {
	sim.AddPackage("bulk-ESG", pkgESG, "Bulk-ESG-Global-Scores")
	sim.AddPackage("bulk-Funds", pkgFunds, "Bulk-Funds-Holdings")
	sizes := []int64{4 << 10, 600 << 10, 3<<20 + 7, 150 << 10, 10 << 20}
	base := time.Now().UTC().Add(-24 * time.Hour).Truncate(time.Hour)
	for i := 0; i < 10; i++ {
		bucket, pkg := "bulk-ESG", pkgESG
		if i%3 == 2 {
			bucket, pkg = "bulk-Funds", pkgFunds
		}
		ts := base.Add(time.Duration(i) * time.Hour)
		sim.AddFileSet(rdptest.FileSetSpec{
			Bucket: bucket, PackageID: pkg, Name: fmt.Sprintf("Faulty-%02d", i), Created: ts, Modified: ts,
			Files: []rdptest.FileSpec{
				{Name: fmt.Sprintf("Faulty-%02d-%s-a.jsonl.gz", i, ts.Format("2006-01-02T15:04:05")), Size: sizes[i%len(sizes)]},
				{Name: fmt.Sprintf("Faulty-%02d-%s-b.jsonl.gz", i, ts.Format("2006-01-02T15:04:05")), Size: sizes[(i+2)%len(sizes)]},
			},
		})
	}
}

// everyFault is one or more faults of every class the simulator knows, on
// the file store and the presigned host (authFaults covers /auth).
func everyFault() []rdptest.Fault {
	const sets, files = "/file-store/v1/file-sets", "/file-store/v1/files/"
	return []rdptest.Fault{
		// The poller's listing.
		{Kind: rdptest.FaultUnauthorized, Host: rdptest.HostAPI, PathPrefix: sets},
		{Kind: rdptest.FaultTooManyRequests, Host: rdptest.HostAPI, PathPrefix: sets, RetryAfter: time.Second},
		{Kind: rdptest.FaultUnavailable, Host: rdptest.HostAPI, PathPrefix: sets},
		{Kind: rdptest.FaultTruncate, Host: rdptest.HostAPI, PathPrefix: sets},
		{Kind: rdptest.FaultRepeatItem},
		// The downloader's /files and /stream calls.
		{Kind: rdptest.FaultServerError, Host: rdptest.HostAPI, PathPrefix: files, Times: 2},
		{Kind: rdptest.FaultReset, Host: rdptest.HostAPI, PathPrefix: files, Times: 2},
		{Kind: rdptest.FaultStall, Host: rdptest.HostAPI, PathPrefix: files, StallFor: 3 * time.Second},
		{Kind: rdptest.FaultExpiredURL, Host: rdptest.HostAPI, Times: 2},
		{Kind: rdptest.FaultUnauthorized, Host: rdptest.HostAPI, PathPrefix: files},
		// The presigned downloads.
		{Kind: rdptest.FaultReset, Host: rdptest.HostS3, Times: 2},
		{Kind: rdptest.FaultTruncate, Host: rdptest.HostS3, Times: 2},
		{Kind: rdptest.FaultStall, Host: rdptest.HostS3, StallFor: 5 * time.Second},
		{Kind: rdptest.FaultExpiredURL, Host: rdptest.HostS3, Times: 2},
		{Kind: rdptest.FaultExpiredToken, Host: rdptest.HostS3, Times: 2}, // 400 ExpiredToken: the URL's session token ended
		{Kind: rdptest.FaultServerError, Host: rdptest.HostS3},
		{Kind: rdptest.FaultUnavailable, Host: rdptest.HostS3},
		{Kind: rdptest.FaultTooManyRequests, Host: rdptest.HostS3},
		{Kind: rdptest.FaultUnauthorized, Host: rdptest.HostS3},
	}
}

const tokenPath = "/auth/oauth2/v1/token"

// authFaults hit the refresher's grants: a 500, a reset, and a truncated
// answer to a request RDP did process (for a refresh grant: the refresh
// token rotated while the refresher never saw the new one).
var authFaults = []rdptest.Fault{
	{Kind: rdptest.FaultServerError, Host: rdptest.HostAPI, PathPrefix: tokenPath},
	{Kind: rdptest.FaultReset, Host: rdptest.HostAPI, PathPrefix: tokenPath},
	{Kind: rdptest.FaultTruncate, Host: rdptest.HostAPI, PathPrefix: tokenPath},
}

// TestEveryFault injects every simulator fault class at once, on every host,
// while the files move: nothing is lost, duplicated or corrupt, nothing ends
// in the DLQ, and the refresher stays within its auth budget over every
// 5-minute window.
//
// The /auth faults are driven by operator refreshes
// ({"action":"refresh","force":true}, which overrides the failure backoff
// but not a 429's Retry-After) while the first token, which lives 5 minutes
// here, keeps the readers going.
func TestEveryFault(t *testing.T) {
	faults := everyFault()
	kinds := map[rdptest.FaultKind]bool{rdptest.FaultTooManyRequests: true} // the 429 on /auth below
	for _, f := range append(faults, authFaults...) {
		kinds[f.Kind] = true
	}
	if len(kinds) != len(rdptest.FaultKinds) {
		t.Fatalf("the test injects %d of the simulator's %d fault kinds", len(kinds), len(rdptest.FaultKinds))
	}
	e := newEnv(t, envOptions{
		sim:  rdptest.Options{AccessTokenTTL: 5 * time.Minute},
		subs: []string{"bulk-ESG/" + pkgESG, "bulk-Funds/" + pkgFunds},
		seed: func(sim *rdptest.Server) {
			faultData(sim)
			sim.Inject(faults...)
		},
		refreshEvery: 2 * time.Second, pollEvery: 3 * time.Second,
	})
	e.waitGeneration(1, 30*time.Second)

	// Auth faults while the files move: the refresher fails, retries when
	// told to, and recovers (falling back to the password grant when the
	// truncated refresh grant left it with a dead refresh token).
	e.sim.Inject(authFaults...)
	refreshed := false
	for i := 0; i < 8 && !refreshed; i++ {
		res := e.invoke(pipeline.Refresher, `{"action":"refresh","force":true}`)
		refreshed = res.Err == nil && strings.Contains(string(res.Payload), `"outcome":"refreshed"`)
		time.Sleep(200 * time.Millisecond)
	}
	if !refreshed {
		t.Fatalf("the refresher did not recover from %d auth faults: auth log %+v", len(authFaults), e.sim.AuthLog())
	}
	// A 429 last: honoured (Retry-After, and the refresher's own backoff).
	e.sim.Inject(rdptest.Fault{Kind: rdptest.FaultTooManyRequests, Host: rdptest.HostAPI, PathPrefix: tokenPath, RetryAfter: 5 * time.Second})
	n429 := len(e.sim.AuthLog())
	res := e.invoke(pipeline.Refresher, `{"action":"refresh","force":true}`)
	if strings.Contains(string(res.Payload), `"outcome":"refreshed"`) {
		t.Errorf("refreshed through a 429: %s", res.Payload)
	}
	res = e.invoke(pipeline.Refresher, `{"action":"refresh","force":true}`)
	if got := len(e.sim.AuthLog()) - n429; got != 1 {
		t.Errorf("%d auth requests after a 429 with Retry-After (want just the one that got it): %s", got, res.Payload)
	}

	want := e.expected()
	pr := e.waitLanded(len(want), 3*time.Minute)
	if pr.Failed() != 0 || pr.DLQ != 0 {
		t.Errorf("with transient faults only: %d FAILED, %d in the DLQ", pr.Failed(), pr.DLQ)
	}
	if pr.Files != len(want) {
		t.Errorf("%d file items in the state table, want %d (duplicates?)", pr.Files, len(want))
	}
	e.verify(want)
	if left := e.sim.PendingFaults(); len(left) > 0 {
		t.Errorf("faults that never fired (the run did not exercise them): %+v", left)
	}
	e.checkAuthBudget(20)
	t.Logf("faults fired %d; auth requests %d; downloader %+v", e.sim.Counters().FaultsFired, len(e.sim.AuthLog()), pr.Events)
}

// waitGeneration waits until the ring holds a token of generation >= gen.
func (e *env) waitGeneration(gen int64, timeout time.Duration) {
	e.t.Helper()
	if !testenv.WaitUntil(timeout, 300*time.Millisecond, func() bool {
		latest, ok, err := e.ringGeneration()
		return err == nil && ok && latest >= gen
	}) {
		e.t.Fatalf("no token of generation %d in the ring after %s; auth log %+v", gen, timeout, e.sim.AuthLog())
	}
}

// TestTokenExpiryAndRevocation: RDP invalidates every access token mid-run,
// and later ends the session server-side. Readers report the refused token
// (never calling /auth themselves), the refresher replaces it - by the
// refresh grant after the expiry, by a new password grant once the session
// is revoked (its refresh token then gets invalid_grant) - and every file
// still lands exactly once, within the auth budget. Then the operator's
// {"action":"revoke"} ends the session and holds the refresher until
// {"action":"refresh","force":true}.
func TestTokenExpiryAndRevocation(t *testing.T) {
	e := newEnv(t, envOptions{
		// 64 KiB/s per connection: the run lasts long enough to interfere with.
		sim:  rdptest.Options{BandwidthPerConn: 64 << 10},
		subs: []string{"bulk-ESG/" + pkgESG},
		seed: func(sim *rdptest.Server) {
			sim.AddPackage("bulk-ESG", pkgESG, "Bulk-ESG-Global-Scores")
			base := time.Now().UTC().Add(-12 * time.Hour).Truncate(time.Hour)
			for i := 0; i < 8; i++ {
				ts := base.Add(time.Duration(i) * time.Hour)
				sim.AddFileSet(rdptest.FileSetSpec{Bucket: "bulk-ESG", PackageID: pkgESG, Name: fmt.Sprintf("Tokens-%d", i),
					Created: ts, Modified: ts,
					Files: []rdptest.FileSpec{
						{Name: fmt.Sprintf("tokens-%d-a.jsonl.gz", i), Size: 600 << 10},
						{Name: fmt.Sprintf("tokens-%d-b.jsonl.gz", i), Size: 900 << 10},
					}})
			}
		},
		refreshEvery: 2 * time.Second, pollEvery: 3 * time.Second,
	})
	want := e.expected()
	wait := func(n int) {
		e.t.Helper()
		e.waitProgress(fmt.Sprintf("%d files DONE", n), time.Minute, func(pr pipeline.Progress) bool { return pr.Done() >= n })
	}

	wait(2)
	expiredAt := len(e.sim.AuthLog())
	e.sim.ExpireAccessTokens()
	// The poller's next listing gets 401, reports, and the refresher's next
	// run replaces the token with a refresh grant.
	e.waitAuth(expiredAt, "refresh_token", 200, time.Minute)

	if pr, _ := e.p.Progress(context.Background()); pr.Done() >= len(want) {
		t.Fatalf("every file landed before the revocation: the run is too short to test it")
	}
	revokedAt := len(e.sim.AuthLog())
	e.sim.RevokeSessions(e.user)
	// Readers get 401 again; the refresher's refresh grant fails with
	// invalid_grant (the session is dead) and it signs on with the password.
	e.waitAuth(revokedAt, "password", 200, time.Minute)

	pr := e.waitLanded(len(want), 3*time.Minute)
	if pr.Failed() != 0 || pr.DLQ != 0 {
		t.Errorf("%d FAILED, %d in the DLQ", pr.Failed(), pr.DLQ)
	}
	e.verify(want)

	after := e.sim.AuthLog()[revokedAt:]
	i := indexAuth(after, "refresh_token", 400)
	j := indexAuth(after, "password", 200)
	if i < 0 || j < i {
		t.Errorf("after the revocation, want a failed refresh grant, then a password grant: %+v", after)
	}
	e.checkAuthBudget(20)

	t.Run("operator revoke holds the refresher", func(t *testing.T) {
		res := e.invoke(pipeline.Refresher, `{"action":"revoke"}`)
		if res.Err != nil {
			t.Fatalf("revoke: %s", res.Payload)
		}
		log := e.sim.AuthLog()
		if last := log[len(log)-1]; last.Grant != "revoke" || last.Status != 200 {
			t.Fatalf("last auth request %+v, want a successful revoke", last)
		}
		if e.sim.SessionLive(e.user) {
			t.Errorf("the session is still live after the revoke")
		}
		n := len(log)
		time.Sleep(5 * time.Second) // two scheduled refresher runs
		if got := e.sim.AuthLog(); len(got) != n {
			t.Errorf("auth requests after the revoke, before a forced refresh: %+v", got[n:])
		}
		res = e.invoke(pipeline.Refresher, `{"action":"refresh","force":true}`)
		if res.Err != nil || !strings.Contains(string(res.Payload), `"outcome":"refreshed"`) {
			t.Fatalf("forced refresh after the revoke: %s", res.Payload)
		}
		if !e.sim.SessionLive(e.user) {
			t.Errorf("no live session after the forced refresh")
		}
	})
}

func indexAuth(log []rdptest.AuthRecord, grant string, status int) int {
	for i, r := range log {
		if r.Grant == grant && r.Status == status {
			return i
		}
	}
	return -1
}

// waitAuth waits until the auth log, from index from on, holds a request
// of grant answered with status.
func (e *env) waitAuth(from int, grant string, status int, timeout time.Duration) {
	e.t.Helper()
	if !testenv.WaitUntil(timeout, 200*time.Millisecond, func() bool { return indexAuth(e.sim.AuthLog()[from:], grant, status) >= 0 }) {
		e.t.Fatalf("no %s grant answered %d after %s: auth log since: %+v", grant, status, timeout, e.sim.AuthLog()[from:])
	}
}
