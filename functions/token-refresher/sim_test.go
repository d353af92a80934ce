package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

type simConfig struct {
	accessTTL time.Duration // simulator access-token life
	slots     int           // ring size
	duration  time.Duration // simulated time, one refresher run per minute
	// injectAfter: after the first refresh at or after this time, every
	// access token is expired at RDP (0: never): readers get 401, report, and
	// the refresher must write out of cadence, right after a regular write.
	injectAfter time.Duration
	// spuriousEvery: every so often a reader reports the newest token
	// invalid although RDP still accepts it (a one-off 401, 0: never).
	spuriousEvery time.Duration
}

type simStats struct {
	passwordGrants, refreshGrants, auth429s, authRequests int
	maxAuthIn5m                                           int
	readerNoToken                                         []time.Duration // minutes a reader found no unexpired token
	readerCallFailures                                    []time.Duration // minutes a file-store call through the reader's transport failed
	injectedAt                                            time.Duration
	minSlotGap                                            time.Duration
	writes                                                int
	deferred                                              int
	slotsNeeded                                           int // largest RingSlotsNeeded the refresher reported
	handlerErrors                                         []error
	spuriousReports                                       int
}

const simMargin = 2 * time.Minute

// simulate runs the refresher on a fake clock against the RDP simulator,
// with in-memory Secrets Manager and DynamoDB fakes, for cfg.duration.
func simulate(t *testing.T, cfg simConfig) simStats {
	t.Helper()
	start := time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)
	clk := rdptest.NewClock(start)
	sim := rdptest.NewServer(rdptest.Options{Now: clk.Now, AccessTokenTTL: cfg.accessTTL, RefreshTokenTTL: 900 * time.Second, RefreshMaxLifetime: 18 * time.Hour})
	sim.AddPackage("bulk-ESG", "pkg-1", "ESG package") // an unknown bucket is a 404 at RDP
	defer sim.Close()
	sim.AddUser("machine-user", "pw-secret", "appkey-secret")

	var ids []string
	for i := range cfg.slots {
		ids = append(ids, fmt.Sprintf("cfsync/token-%d", i))
	}
	h, sm, table := newSimHandler(t, clk, sim, ids, io.Discard, func(o *Options) { o.RefreshMargin = simMargin })
	creds := `{"username":"machine-user","password":"pw-secret","client_id":"appkey-secret"}`
	sm.Create(credsSecretID, &creds)
	reader := tokenring.NewReader(sm, table, ids, tokenring.ReaderOptions{Skew: 30 * time.Second, Now: clk.Now})
	listPackages := readerLister(t, sim, reader, rdp.WithClock(clk.Now))

	var st simStats
	ctx := context.Background()
	injected := false
	for m := time.Duration(0); m < cfg.duration; m += time.Minute {
		clk.Set(start.Add(m))
		res, err := h.Handle(ctx, json.RawMessage(`{"version":"0","detail-type":"Scheduled Event","source":"aws.events","detail":{}}`))
		if err != nil {
			st.handlerErrors = append(st.handlerErrors, fmt.Errorf("minute %s: %w", m, err))
		}
		if res.Outcome == OutcomeDeferred {
			st.deferred++
		}
		st.slotsNeeded = max(st.slotsNeeded, res.SlotsNeeded)
		if cfg.injectAfter > 0 && !injected && m >= cfg.injectAfter && res.Outcome == OutcomeRefreshed {
			sim.ExpireAccessTokens()
			injected, st.injectedAt = true, m
		}
		if cfg.spuriousEvery > 0 && m%cfg.spuriousEvery == 0 {
			// RDP answers one request with 401 although the token is valid:
			// the reader re-reads the ring and, with nothing newer, reports.
			sim.Inject(rdptest.Fault{Kind: rdptest.FaultUnauthorized, PathPrefix: rdp.PackagesPath, Times: 1})
			if err := listPackages(ctx); errors.Is(err, tokenring.ErrTokenInvalid) {
				st.spuriousReports++
			}
		}
		// A reader at this minute: an unexpired token, accepted by RDP.
		tok, err := reader.Token()
		if err != nil || !tok.Expiry.After(clk.Now()) {
			st.readerNoToken = append(st.readerNoToken, m)
		}
		if err := listPackages(ctx); err != nil {
			st.readerCallFailures = append(st.readerCallFailures, m)
			if !errors.Is(err, tokenring.ErrTokenInvalid) && !errors.Is(err, tokenring.ErrNoValidToken) {
				t.Fatalf("minute %s: unexpected reader error: %v", m, err)
			}
		}
	}

	c := sim.Counters()
	st.passwordGrants, st.refreshGrants, st.auth429s, st.authRequests = c.PasswordGrants, c.RefreshGrants, c.Auth429s, c.AuthRequests
	var times []time.Time
	for _, rec := range sim.AuthLog() {
		times = append(times, rec.Time)
	}
	for i := range times {
		n := 0
		for j := i; j >= 0 && times[i].Sub(times[j]) < 5*time.Minute; j-- {
			n++
		}
		st.maxAuthIn5m = max(st.maxAuthIn5m, n)
	}
	last := map[string]time.Time{}
	st.minSlotGap = cfg.duration
	for _, w := range sm.Writes() {
		if p, ok := last[w.ID]; ok {
			st.minSlotGap = min(st.minSlotGap, w.At.Sub(p))
		}
		last[w.ID] = w.At
		st.writes++
	}
	return st
}

// healthy reports whether a simulation kept every invariant: readers always
// had an unexpired token that RDP accepted (except at the injected minute),
// no refresh was deferred for lack of a slot, no slot was rewritten within
// 10 minutes, and no /auth request failed with 429.
func (s simStats) healthy() bool {
	okCalls := len(s.readerCallFailures) == 0 ||
		(len(s.readerCallFailures) == 1 && s.readerCallFailures[0] == s.injectedAt && s.injectedAt > 0)
	return okCalls && len(s.readerNoToken) == 0 && s.deferred == 0 && s.minSlotGap >= 10*time.Minute &&
		s.auth429s == 0 && len(s.handlerErrors) == 0
}

func (s simStats) String() string {
	return fmt.Sprintf("password=%d refresh=%d auth=%d max/5min=%d 429=%d writes=%d minSlotGap=%s deferred=%d slotsNeeded=%d readerNoToken=%d readerCallFailures=%v errors=%d",
		s.passwordGrants, s.refreshGrants, s.authRequests, s.maxAuthIn5m, s.auth429s, s.writes, s.minSlotGap, s.deferred,
		s.slotsNeeded, len(s.readerNoToken), s.readerCallFailures, len(s.handlerErrors))
}

// minRefreshGrants is the fewest refresh grants that keep a token with at
// least the margin left all day: one token per (life − margin), less the
// two password grants.
func minRefreshGrants(d, ttl time.Duration) int {
	cadence := ttl - simMargin
	n := int((d + cadence - 1) / cadence)
	return n - 2
}

func checkDay(t *testing.T, cfg simConfig, st simStats) {
	t.Helper()
	if !st.healthy() {
		t.Errorf("invariants broken: %s; first errors: %v", st, st.handlerErrors[:min(3, len(st.handlerErrors))])
	}
	if st.passwordGrants != 2 {
		t.Errorf("password grants = %d, want 2", st.passwordGrants)
	}
	minRG := minRefreshGrants(cfg.duration, cfg.accessTTL)
	if float64(st.refreshGrants) > 1.05*float64(minRG) || st.refreshGrants < minRG {
		t.Errorf("refresh grants = %d, want within 5%% above the minimum %d", st.refreshGrants, minRG)
	}
	if st.maxAuthIn5m > 20 {
		t.Errorf("%d auth requests in 5 minutes, budget 20", st.maxAuthIn5m)
	}
	if st.auth429s != 0 {
		t.Errorf("%d 429s", st.auth429s)
	}
}

// TestSimulateDay600: 24 h of a 1-minute schedule, 600 s access tokens,
// 900 s refresh extension, 18 h sessions, ring of 3, with one out-of-cadence
// write forced by a reader's report right after a regular write.
func TestSimulateDay600(t *testing.T) {
	cfg := simConfig{accessTTL: 600 * time.Second, slots: 3, duration: 24 * time.Hour, injectAfter: 6 * time.Hour}
	st := simulate(t, cfg)
	t.Logf("600 s tokens, N=3: %s (minimum refresh grants %d)", st, minRefreshGrants(cfg.duration, cfg.accessTTL))
	checkDay(t, cfg, st)
	if st.injectedAt == 0 {
		t.Fatal("the reader-report fault was never injected")
	}
	if got := SlotsNeeded(10*time.Minute, cfg.accessTTL-simMargin); got != 3 {
		t.Errorf("formula says %d slots for 600 s tokens", got)
	}
}

// TestSimulateDayRingSize finds the smallest ring that keeps every invariant
// for 600 s and 300 s tokens, and checks the refresher names the ring size it
// needs (⌈interval ÷ cadence⌉ + 1) when the ring is smaller.
func TestSimulateDayRingSize(t *testing.T) {
	if testing.Short() {
		t.Skip("runs several simulated days")
	}
	for _, ttl := range []time.Duration{600 * time.Second, 300 * time.Second} {
		formula := SlotsNeeded(10*time.Minute, ttl-simMargin)
		found := 0
		for n := 1; n <= formula; n++ {
			cfg := simConfig{accessTTL: ttl, slots: n, duration: 24 * time.Hour, injectAfter: 6 * time.Hour}
			st := simulate(t, cfg)
			t.Logf("%s tokens, N=%d: healthy=%v %s", ttl, n, st.healthy(), st)
			if n < formula && st.slotsNeeded != formula && st.deferred > 0 {
				t.Errorf("N=%d: refresher reported %d slots needed, want %d", n, st.slotsNeeded, formula)
			}
			if st.healthy() {
				if found == 0 {
					found = n
				}
				checkDay(t, cfg, st)
			}
			if n == formula && !st.healthy() {
				t.Errorf("%s tokens: the formula's ring of %d is not enough: %s", ttl, n, st)
			}
		}
		t.Logf("%s tokens: smallest healthy ring N=%d (formula ⌈10m ÷ %s⌉ + 1 = %d)", ttl, found, ttl-simMargin, formula)
		if found == 0 || found > formula {
			t.Errorf("%s tokens: no healthy ring up to %d slots", ttl, formula)
		}
		if ttl == 600*time.Second && found != 3 {
			t.Errorf("600 s tokens need N=%d, want 3", found)
		}
	}
}

// TestSimulateDaySpuriousReports: 24 h in which RDP answers a valid token
// with a one-off 401 every 3 minutes, so a reader reports the newest token
// invalid, plus one real invalidation: no reader ever lacks a usable token,
// no refresh is deferred, and the spurious reports cost no ring write (the
// same writes as a quiet day).
func TestSimulateDaySpuriousReports(t *testing.T) {
	cfg := simConfig{accessTTL: 600 * time.Second, slots: 3, duration: 24 * time.Hour, injectAfter: 6 * time.Hour,
		spuriousEvery: 3 * time.Minute}
	st := simulate(t, cfg)
	t.Logf("600 s tokens, N=3, spurious 401 reports every 3 min: %s spurious=%d", st, st.spuriousReports)
	if st.spuriousReports < 200 {
		t.Fatalf("only %d spurious reports filed", st.spuriousReports)
	}
	checkDay(t, cfg, st)
	quiet := simulate(t, simConfig{accessTTL: cfg.accessTTL, slots: cfg.slots, duration: cfg.duration, injectAfter: cfg.injectAfter})
	if st.writes != quiet.writes {
		t.Errorf("%d ring writes with spurious reports, %d without: spurious reports cost writes", st.writes, quiet.writes)
	}
}
