package state_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
)

var authT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// authBackends runs fn against moto_server (the expressions are DynamoDB's
// to evaluate, not a fake's).
func authBackends(t *testing.T, fn func(t *testing.T, newTable func(t *testing.T) *state.Table)) {
	t.Run("moto", func(t *testing.T) {
		_, cfg := testenv.MotoConfig(t)
		db := dynamodb.NewFromConfig(cfg)
		n := 0
		fn(t, func(t *testing.T) *state.Table {
			n++
			name := fmt.Sprintf("state-%d", n)
			testenv.StateTable(t, db, name)
			tb := state.New(db, name)
			tb.Now = func() time.Time { return authT0 }
			return tb
		})
	})
}

// TestAuthAndRingItems runs the AUTH / RING item tests against (one) moto_server.
func TestAuthAndRingItems(t *testing.T) {
	authBackends(t, func(t *testing.T, newTable func(t *testing.T) *state.Table) {
		t.Run("RingState", func(t *testing.T) { testRingState(t, newTable) })
		t.Run("ClaimGenerationRace", func(t *testing.T) { testClaimGenerationRace(t, newTable) })
		t.Run("TokenReports", func(t *testing.T) { testTokenReports(t, newTable) })
		t.Run("AuthStateOptimisticLock", func(t *testing.T) { testAuthStateOptimisticLock(t, newTable) })
	})
}

func testRingState(t *testing.T, newTable func(t *testing.T) *state.Table) {
	ctx := context.Background()
	tb := newTable(t)
	st, err := tb.GetRingState(ctx)
	if err != nil || st.Generation != 0 || len(st.Slots) != 0 {
		t.Fatalf("empty ring state = %+v, %v", st, err)
	}
	st1, err := tb.ClaimGeneration(ctx, st, 1, "slot-a", authT0)
	if err != nil {
		t.Fatalf("claim 1: %v", err)
	}
	// A second writer still holding generation 0 loses.
	if _, err := tb.ClaimGeneration(ctx, st, 1, "slot-b", authT0); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("stale claim: %v, want ErrConflict", err)
	}
	st2, err := tb.ClaimGeneration(ctx, st1, 2, "slot-b", authT0.Add(8*time.Minute))
	if err != nil {
		t.Fatalf("claim 2: %v", err)
	}
	if _, err := tb.ClaimGeneration(ctx, st1, 2, "slot-c", authT0); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("stale claim 2: %v, want ErrConflict", err)
	}
	if _, err := tb.ClaimGeneration(ctx, st2, 2, "slot-c", authT0); err == nil {
		t.Fatal("claim of a generation not above the stored one succeeded")
	}
	got, err := tb.GetRingState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]state.SlotWrite{
		"slot-a": {Generation: 1, WrittenAt: authT0},
		"slot-b": {Generation: 2, WrittenAt: authT0.Add(8 * time.Minute)},
	}
	if got.Generation != 2 || len(got.Slots) != 2 {
		t.Fatalf("ring state = %+v", got)
	}
	for k, w := range want {
		if g := got.Slots[k]; g.Generation != w.Generation || !g.WrittenAt.Equal(w.WrittenAt) {
			t.Errorf("slot %s = %+v, want %+v", k, g, w)
		}
	}
}

func testClaimGenerationRace(t *testing.T, newTable func(t *testing.T) *state.Table) {
	ctx := context.Background()
	tb := newTable(t)
	st, _ := tb.GetRingState(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := tb.ClaimGeneration(ctx, st, 1, fmt.Sprintf("slot-%d", i), authT0); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, state.ErrConflict) {
				t.Errorf("claim: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent claims of generation 1 won, want 1", wins)
	}
}

func testTokenReports(t *testing.T, newTable func(t *testing.T) *state.Table) {
	ctx := context.Background()
	tb := newTable(t)
	if _, err := tb.GetTokenReport(ctx, 3); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("missing report: %v", err)
	}
	if err := tb.ReportInvalidToken(ctx, 0, "x"); err == nil {
		t.Fatal("report of generation 0 accepted")
	}
	if err := tb.ReportInvalidToken(ctx, 3, "401 token expired (GET /file-store/v1/file-sets)"); err != nil {
		t.Fatal(err)
	}
	later := authT0.Add(time.Minute)
	tb.Now = func() time.Time { return later }
	if err := tb.ReportInvalidToken(ctx, 3, "401 Unauthorized (GET /file-store/v1/files/{id}/stream)"); err != nil {
		t.Fatal(err)
	}
	r, err := tb.GetTokenReport(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if r.Generation != 3 || r.Reports != 2 || !r.FirstAt.Equal(authT0) || !r.LastAt.Equal(later) ||
		r.Reason != "401 Unauthorized (GET /file-store/v1/files/{id}/stream)" || r.TTL != later.Add(state.ReportTTL).Unix() {
		t.Fatalf("report = %+v", r)
	}
	if r.SK != "REPORT#3" || r.PK != "RING" {
		t.Errorf("key = %s / %s", r.PK, r.SK)
	}
	if _, err := tb.GetTokenReport(ctx, 4); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("report 4: %v", err)
	}
	testReportChecked(t, tb, later)
}

// testReportChecked: a check dismisses the reports so far; a later report
// makes the report unconfirmed again; checking never creates a report.
func testReportChecked(t *testing.T, tb *state.Table, reportedAt time.Time) {
	ctx := context.Background()
	if r, _ := tb.GetTokenReport(ctx, 3); !r.Unconfirmed() {
		t.Fatal("a report never checked counts as checked")
	}
	checked := reportedAt.Add(time.Second)
	if err := tb.MarkReportChecked(ctx, 3, checked); err != nil {
		t.Fatal(err)
	}
	r, err := tb.GetTokenReport(ctx, 3)
	if err != nil || !r.CheckedAt.Equal(checked) || r.Unconfirmed() || r.Reports != 2 {
		t.Fatalf("checked report = %+v, %v", r, err)
	}
	tb.Now = func() time.Time { return checked.Add(time.Minute) }
	if err := tb.ReportInvalidToken(ctx, 3, "401 token expired"); err != nil {
		t.Fatal(err)
	}
	if r, _ = tb.GetTokenReport(ctx, 3); !r.Unconfirmed() || !r.CheckedAt.Equal(checked) {
		t.Fatalf("report after the check = %+v, want unconfirmed", r)
	}
	if err := tb.MarkReportChecked(ctx, 9, checked); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("check of a missing report: %v, want ErrNotFound", err)
	}
	if _, err := tb.GetTokenReport(ctx, 9); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("checking created report 9: %v", err)
	}
}

// The queue-credentials item against moto: the generation claim is a
// conditional write (two refresher runs never both write), reports are
// recorded per generation.
func TestQueueCredsState(t *testing.T) {
	authBackends(t, func(t *testing.T, newTable func(t *testing.T) *state.Table) {
		ctx := context.Background()
		tb := newTable(t)
		st, err := tb.GetQueueCredsState(ctx)
		if err != nil || st.Generation != 0 || st.Reported() {
			t.Fatalf("empty state %+v %v", st, err)
		}
		if err := tb.ClaimQueueCredsGeneration(ctx, 0, 1, authT0); err != nil {
			t.Fatal(err)
		}
		if err := tb.ClaimQueueCredsGeneration(ctx, 0, 1, authT0); !errors.Is(err, state.ErrConflict) {
			t.Fatalf("second claim of generation 1: %v, want ErrConflict", err)
		}
		if err := tb.ReportQueueCredentials(ctx, 1, "receive: ExpiredToken"); err != nil {
			t.Fatal(err)
		}
		st, _ = tb.GetQueueCredsState(ctx)
		if st.Generation != 1 || !st.WrittenAt.Equal(authT0) || !st.Reported() || st.Reports != 1 || st.Reason != "receive: ExpiredToken" {
			t.Fatalf("state %+v", st)
		}
		if err := tb.ClaimQueueCredsGeneration(ctx, 1, 2, authT0.Add(10*time.Minute)); err != nil {
			t.Fatal(err)
		}
		st, _ = tb.GetQueueCredsState(ctx)
		if st.Generation != 2 || st.Reported() {
			t.Fatalf("after renewal %+v: the old report must not count", st)
		}
	})
}
