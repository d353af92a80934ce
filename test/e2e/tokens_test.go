package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

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
		e.waitLandedAtLeast(n, time.Minute)
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
	deadline := time.Now().Add(timeout)
	for indexAuth(e.sim.AuthLog()[from:], grant, status) < 0 {
		if time.Now().After(deadline) {
			e.t.Fatalf("no %s grant answered %d after %s: auth log since: %+v", grant, status, timeout, e.sim.AuthLog()[from:])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitLandedAtLeast waits until at least n files are DONE.
func (e *env) waitLandedAtLeast(n int, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pr, err := e.p.Progress(context.Background())
		if err == nil && pr.Done() >= n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("fewer than %d files landed after %s: %s", n, timeout, describe(pr))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
