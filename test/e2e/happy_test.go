package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

const (
	pkgESG     = "4e94-6d63-fea034dc-90e2-de33895bd4e9"
	pkgFunds   = "4b2c-81aa-0d6e4f3b-2c1d-7a9e5f0b3c42"
	pkgIgnored = "4f00-1111-22223333-4444-555566667777"
)

// mixedData is the happy path's data: explicit and bucket/* subscriptions,
// LSEG-style names (':' spaces '+' parentheses), sizes from 1 KiB to 12 MiB
// (a multipart upload with the default 8 MiB parts), a file without md5, a
// PENDING file-set and an unsubscribed package that must be left alone.
func mixedData(sim *rdptest.Server) {
	sim.AddPackage("bulk-ESG", pkgESG, "Bulk-ESG-Global-Scores")
	sim.AddPackage("bulk-Funds", pkgFunds, "Bulk-Funds-Holdings")
	sim.AddPackage("bulk-ESG", pkgIgnored, "Not subscribed")
	base := time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Hour)
	sizes := []int64{1 << 10, 70 << 10, 1 << 20, 300 << 10, 2<<20 + 12345, 5 << 10}
	for i := 0; i < 6; i++ {
		ts := base.Add(time.Duration(i) * time.Hour)
		stamp := ts.Format("2006-01-02T15:04:05.000Z")
		sim.AddFileSet(rdptest.FileSetSpec{
			Bucket: "bulk-ESG", PackageID: pkgESG, Name: "ESG-Scores-Delta-" + ts.Format("2006-01-02T15"),
			Created: ts, Modified: ts,
			Files: []rdptest.FileSpec{
				{Name: fmt.Sprintf("RFT-ESG-Scores-Delta-%s-part1.jsonl.gz", stamp), Size: sizes[i]},
				{Name: fmt.Sprintf("RFT ESG: Scores+Delta (v2) %s.csv.gz", stamp), Size: sizes[(i+3)%len(sizes)], NoMD5: i == 2},
			},
		})
	}
	sim.AddFileSet(rdptest.FileSetSpec{
		Bucket: "bulk-Funds", PackageID: pkgFunds, Name: "Funds-Holdings-Init",
		Files: []rdptest.FileSpec{{Name: "Funds-Holdings-Init-part1.jsonl.gz", Size: 12 << 20}, {Name: "Funds-Holdings-Init-part2.jsonl.gz", Size: 40 << 10}},
	})
	sim.AddFileSet(rdptest.FileSetSpec{
		Bucket: "BULK-FUNDS", PackageID: pkgFunds, Name: "Funds-Holdings-Delta",
		Files: []rdptest.FileSpec{{Name: "Funds-Holdings-Delta.jsonl.gz", Size: 5<<20 + 1}},
	})
	sim.AddFileSet(rdptest.FileSetSpec{Bucket: "bulk-ESG", PackageID: pkgESG, Name: "ESG-Pending", Status: "PENDING",
		Files: []rdptest.FileSpec{{Name: "pending.jsonl.gz", Size: 1000}}})
	sim.AddFileSet(rdptest.FileSetSpec{Bucket: "bulk-ESG", PackageID: pkgIgnored, Name: "Ignored",
		Files: []rdptest.FileSpec{{Name: "ignored.jsonl.gz", Size: 1000}}})
}

var mixedSubs = []string{"bulk-ESG/" + pkgESG, "bulk-Funds/*"}

// TestHappyPath: every ground-truth file lands byte-identical with the right
// key, metadata and state, only the refresher signs in, within budget, and
// no ring slot is written more often than SECRET_MIN_WRITE_INTERVAL. Then,
// with the refresher paused, the poller and the downloader keep working from
// the ring without a single /auth request; a token RDP stops accepting is
// reported and replaced by the refresher's next run (docs/design.md#only-the-refresher-signs-in).
func TestHappyPath(t *testing.T) {
	e := newEnv(t, envOptions{subs: mixedSubs, seed: mixedData, refreshEvery: 2 * time.Second, pollEvery: 3 * time.Second})
	want := e.expected()
	if len(want) != 15 {
		t.Fatalf("ground truth has %d subscribed files, want 15", len(want))
	}
	e.waitLanded(len(want), 2*time.Minute)
	e.verify(want)

	log := e.sim.AuthLog()
	if len(log) == 0 || log[0].Grant != "password" || log[0].Status != 200 {
		t.Fatalf("first auth request: %+v, want a successful password grant", log)
	}
	for _, r := range log {
		if r.Status != 200 {
			t.Errorf("failed auth request without any fault: %+v", r)
		}
		if r.Grant == "password" && r != log[0] {
			t.Errorf("a second password grant without a reason: %+v", r)
		}
	}
	e.checkAuthBudget(20)
	e.checkSlotWriteInterval(5 * time.Second)

	t.Run("refresher paused: readers never call /auth", func(t *testing.T) {
		// A fresh token, then no refresher at all.
		if res := e.invoke(pipeline.Refresher, `{"action":"refresh","force":true}`); res.Err != nil {
			t.Fatalf("forced refresh: %s", res.Payload)
		}
		e.p.RefreshSchedule.Pause()
		time.Sleep(500 * time.Millisecond) // a scheduled run in flight finishes
		before := len(e.sim.AuthLog())

		ts := time.Now().UTC()
		for i := 0; i < 3; i++ {
			e.sim.AddFileSet(rdptest.FileSetSpec{Bucket: "bulk-ESG", PackageID: pkgESG, Name: fmt.Sprintf("ESG-Late-%d", i),
				Created: ts, Modified: ts,
				Files: []rdptest.FileSpec{{Name: fmt.Sprintf("late-%d.jsonl.gz", i), Size: int64(i+1) * 100 << 10}}})
		}
		want := e.expected()
		e.waitLanded(len(want), time.Minute)
		e.verify(want)
		if after := len(e.sim.AuthLog()); after != before {
			t.Fatalf("auth requests while the refresher was paused: %d -> %d: %+v", before, after, e.sim.AuthLog()[before:])
		}

		// RDP stops accepting the token: the poller re-reads the ring, retries
		// once, reports the token and fails - still without calling /auth.
		e.p.PollSchedule.Pause()
		time.Sleep(500 * time.Millisecond)
		gen := e.newestGeneration()
		e.sim.ExpireAccessTokens()
		res := e.invoke(pipeline.Poller, `{}`)
		if res.Err == nil {
			t.Fatalf("poller succeeded with a token RDP refuses: %s", res.Payload)
		}
		if after := len(e.sim.AuthLog()); after != before {
			t.Fatalf("a reader called /auth after a 401: %+v", e.sim.AuthLog()[before:])
		}
		rep, err := e.p.State.GetTokenReport(context.Background(), gen)
		if err != nil {
			t.Fatalf("no token-invalid report for generation %d after the poller's 401s: %v", gen, err)
		}
		if rep.Reports < 1 || rep.Reason == "" {
			t.Errorf("token report %+v: want a count and a reason", rep)
		}

		// The refresher's next run replaces the reported token although it has
		// time left (a refresh grant), and the poller works again.
		res = e.invoke(pipeline.Refresher, `{}`)
		if res.Err != nil {
			t.Fatalf("refresher after a report: %s", res.Payload)
		}
		newLog := e.sim.AuthLog()[before:]
		if len(newLog) != 1 || newLog[0].Grant != "refresh_token" || newLog[0].Status != 200 {
			t.Fatalf("auth requests replacing the reported token: %+v, want one successful refresh grant", newLog)
		}
		if g := e.newestGeneration(); g <= gen {
			t.Errorf("ring generation %d after the replacement, want > %d", g, gen)
		}
		if res := e.invoke(pipeline.Poller, `{}`); res.Err != nil {
			t.Errorf("poller with the replaced token: %s", res.Payload)
		}
		e.p.RefreshSchedule.Resume()
		e.p.PollSchedule.Resume()
	})
}

// newestGeneration reads the ring's highest generation.
func (e *env) newestGeneration() int64 {
	e.t.Helper()
	latest, ok, err := e.ringGeneration()
	if err != nil {
		e.t.Fatal(err)
	}
	if !ok {
		e.t.Fatal("the ring holds no token")
	}
	return latest
}

// ringGeneration reads the ring's highest generation (ok false: no token).
func (e *env) ringGeneration() (latest int64, ok bool, err error) {
	vals, err := (&tokenring.Ring{SM: e.p.Secrets, IDs: e.p.Res.TokenSecretIDs}).Read(context.Background())
	slot, ok := tokenring.Latest(vals)
	return slot.Slot.Generation, ok, err
}

// checkSlotWriteInterval checks docs/design.md#slot-write-interval on every slot's version history.
func (e *env) checkSlotWriteInterval(min time.Duration) {
	e.t.Helper()
	hist, err := e.p.RingHistory(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	bySlot := map[string][]time.Time{}
	for _, v := range hist {
		bySlot[v.SecretID] = append(bySlot[v.SecretID], v.Created)
	}
	for id, times := range bySlot {
		sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
		for i := 1; i < len(times); i++ {
			// CreatedDate has whole-second precision in moto: allow 1 s.
			if gap := times[i].Sub(times[i-1]); gap < min-time.Second {
				e.t.Errorf("slot %s written twice within %s (min %s)", id[strings.LastIndex(id, ":")+1:], gap, min)
			}
		}
	}
}
