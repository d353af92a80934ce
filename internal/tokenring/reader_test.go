package tokenring_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go"

	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/internal/tokenring/ringtest"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeReporter records the reader's token-invalid reports.
type fakeReporter struct {
	mu  sync.Mutex
	got []report
}

type report struct {
	gen    int64
	reason string
}

func (f *fakeReporter) ReportInvalidToken(_ context.Context, gen int64, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, report{gen, reason})
	return nil
}

func (f *fakeReporter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

var _ tokenring.Reporter = (*fakeReporter)(nil)

// slot is the ring slot of generation gen holding access until expires.
func slot(gen int64, access string, expires time.Time) tokenring.Slot {
	return tokenring.Slot{AccessToken: access, RefreshToken: "rt-" + access, TokenType: "Bearer", Scope: "trapi",
		ExpiresAt: expires, IssuedAt: expires.Add(-10 * time.Minute), Generation: gen}
}

// slotJSON is slot's secret value.
func slotJSON(t *testing.T, gen int64, access string, expires time.Time) string {
	t.Helper()
	b, err := json.Marshal(slot(gen, access, expires))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ptr(s string) *string { return &s }

func TestTokenPicksNewestUnexpired(t *testing.T) {
	ids := []string{"ring-0", "ring-1", "ring-2"}
	tests := []struct {
		name     string
		slots    map[string]*string // nil value: secret without a version; missing key: secret does not exist
		noBatch  bool
		want     string // access token, or "" for ErrNoValidToken
		wantErrs []string
	}{
		{name: "highest generation wins", slots: map[string]*string{
			"ring-0": ptr(slotJSON(t, 4, "tok4", t0.Add(5*time.Minute))),
			"ring-1": ptr(slotJSON(t, 6, "tok6", t0.Add(9*time.Minute))),
			"ring-2": ptr(slotJSON(t, 5, "tok5", t0.Add(7*time.Minute))),
		}, want: "tok6"},
		{name: "newest expired falls back to older valid", slots: map[string]*string{
			"ring-0": ptr(slotJSON(t, 7, "tok7", t0.Add(-time.Minute))),
			"ring-1": ptr(slotJSON(t, 6, "tok6", t0.Add(3*time.Minute))),
			"ring-2": ptr(`{}`),
		}, want: "tok6"},
		{name: "token inside the skew counts as expired", slots: map[string]*string{
			"ring-0": ptr(slotJSON(t, 9, "tok9", t0.Add(20*time.Second))),
			"ring-1": ptr(slotJSON(t, 8, "tok8", t0.Add(2*time.Minute))),
			"ring-2": nil,
		}, want: "tok8"},
		{name: "empty placeholder, no version and missing secret are empty", slots: map[string]*string{
			"ring-0": ptr(`{}`),
			"ring-1": nil,
			"ring-2": ptr(slotJSON(t, 1, "tok1", t0.Add(9*time.Minute))),
		}, want: "tok1"},
		{name: "fallback to GetSecretValue when batch is unsupported", noBatch: true, slots: map[string]*string{
			"ring-0": ptr(slotJSON(t, 2, "tok2", t0.Add(9*time.Minute))),
			"ring-1": nil,
			"ring-2": ptr(`{}`),
		}, want: "tok2"},
		{name: "malformed slot skipped", slots: map[string]*string{
			"ring-0": ptr(`{"access_token":"x","generation":"seven"}`),
			"ring-1": ptr(slotJSON(t, 3, "tok3", t0.Add(9*time.Minute))),
			"ring-2": ptr(`not json`),
		}, want: "tok3"},
		{name: "all empty", slots: map[string]*string{"ring-0": ptr(`{}`), "ring-1": nil}, wantErrs: []string{"none holds a token"}},
		{name: "all expired", slots: map[string]*string{
			"ring-0": ptr(slotJSON(t, 3, "tok3", t0.Add(-time.Minute))),
			"ring-1": ptr(slotJSON(t, 2, "tok2", t0.Add(-5*time.Minute))),
		}, wantErrs: []string{"newest generation 3 expired"}},
		{name: "malformed slots reported when nothing usable", slots: map[string]*string{
			"ring-0": ptr(`{"access_token":"sekrit","generation":"seven"}`),
			"ring-1": ptr(`{"access_token":"sekrit","generation":2}`),
			"ring-2": ptr(`[1,2]`),
		}, wantErrs: []string{`ring-0`, `"generation"`, `ring-1`, `"expires_at" is missing`, `ring-2`, "not a JSON object"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := rdptest.NewClock(t0)
			sm := ringtest.NewSecrets(clk.Now)
			sm.NoBatch = tc.noBatch
			for id, v := range tc.slots {
				sm.Create(id, v)
			}
			r := tokenring.NewReader(sm, nil, ids, tokenring.ReaderOptions{Skew: 30 * time.Second, Now: clk.Now})
			tok, err := r.Token()
			if tc.want == "" {
				if !errors.Is(err, tokenring.ErrNoValidToken) {
					t.Fatalf("err = %v, want ErrNoValidToken", err)
				}
				for _, w := range tc.wantErrs {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				if strings.Contains(err.Error(), "sekrit") {
					t.Errorf("error reveals slot content: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if tok.AccessToken != tc.want || tok.TokenType != "Bearer" {
				t.Fatalf("token = %q %q, want %q Bearer", tok.AccessToken, tok.TokenType, tc.want)
			}
			if tc.noBatch && sm.Calls("GetSecretValue") != len(ids) {
				t.Errorf("GetSecretValue calls = %d, want %d", sm.Calls("GetSecretValue"), len(ids))
			}
			if !tc.noBatch && sm.Calls("GetSecretValue") != 0 {
				t.Errorf("GetSecretValue calls = %d with batch available", sm.Calls("GetSecretValue"))
			}
		})
	}
}

func TestTokenCachedUntilNearExpiry(t *testing.T) {
	clk := rdptest.NewClock(t0)
	sm := ringtest.NewSecrets(clk.Now)
	sm.Create("a", ptr(slotJSON(t, 1, "tok1", t0.Add(10*time.Minute))))
	sm.Create("b", ptr(`{}`))
	r := tokenring.NewReader(sm, nil, []string{"a", "b"}, tokenring.ReaderOptions{Skew: 30 * time.Second, Now: clk.Now})
	for i := range 5 {
		if _, err := r.Token(); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Minute)
		_ = i
	}
	if n := sm.Calls("BatchGetSecretValue"); n != 1 {
		t.Fatalf("ring read %d times in 5 minutes of a 10-minute token, want 1", n)
	}
	// A newer token arrives; the cached one is still used until near its expiry.
	if err := tokenring.Write(context.Background(), sm, "b", slot(2, "tok2", t0.Add(20*time.Minute))); err != nil {
		t.Fatal(err)
	}
	tok, _ := r.Token()
	if tok.AccessToken != "tok1" {
		t.Fatalf("got %q before near-expiry, want cached tok1", tok.AccessToken)
	}
	clk.Advance(4*time.Minute + 31*time.Second) // 9m31s: inside the 30s skew
	tok, err := r.Token()
	if err != nil || tok.AccessToken != "tok2" {
		t.Fatalf("got %v %v, want tok2 after the cache expired", tok, err)
	}
	if n := sm.Calls("BatchGetSecretValue"); n != 2 {
		t.Fatalf("ring reads = %d, want 2", n)
	}
	if !tok.Expiry.Equal(t0.Add(20*time.Minute - 30*time.Second)) {
		t.Errorf("oauth2 expiry = %s, want expires_at minus skew", tok.Expiry)
	}
}

func TestBatchWholeFailureFallsBack(t *testing.T) {
	// moto fails the whole batch when one slot has no value.
	clk := rdptest.NewClock(t0)
	sm := ringtest.NewSecrets(clk.Now)
	sm.Create("a", nil)
	sm.Create("b", ptr(slotJSON(t, 1, "tok1", t0.Add(10*time.Minute))))
	sm.BatchErr = func([]string) error {
		return &smithy.GenericAPIError{Code: "ResourceNotFoundException", Message: "no value"}
	}
	r := tokenring.NewReader(sm, nil, []string{"a", "b"}, tokenring.ReaderOptions{Now: clk.Now})
	tok, err := r.Token()
	if err != nil || tok.AccessToken != "tok1" {
		t.Fatalf("got %v, %v", tok, err)
	}
	r.Invalidate()
	if _, err := r.Token(); err != nil {
		t.Fatal(err)
	}
	// Not an "unsupported" error: the batch is tried again each time.
	if n := sm.Calls("BatchGetSecretValue"); n != 2 {
		t.Errorf("batch calls = %d, want 2", n)
	}
	// Unsupported: tried once, then never again.
	sm2 := ringtest.NewSecrets(clk.Now)
	sm2.NoBatch = true
	sm2.Create("a", ptr(slotJSON(t, 1, "tok1", t0.Add(10*time.Minute))))
	r2 := tokenring.NewReader(sm2, nil, []string{"a"}, tokenring.ReaderOptions{Now: clk.Now})
	for range 3 {
		r2.Invalidate()
		if _, err := r2.Token(); err != nil {
			t.Fatal(err)
		}
	}
	if n := sm2.Calls("BatchGetSecretValue"); n != 1 {
		t.Errorf("unsupported batch called %d times, want 1", n)
	}
}

func TestReadErrors(t *testing.T) {
	clk := rdptest.NewClock(t0)
	sm := ringtest.NewSecrets(clk.Now)
	sm.Create("a", ptr(slotJSON(t, 1, "tok1", t0.Add(10*time.Minute))))
	sm.NoBatch = true
	sm.GetErr = func(string) error { return &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "denied"} }
	r := tokenring.NewReader(sm, nil, []string{"a"}, tokenring.ReaderOptions{Now: clk.Now})
	_, err := r.Token()
	if !errors.Is(err, tokenring.ErrNoValidToken) || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("err = %v, want ErrNoValidToken naming AccessDenied", err)
	}
}

// TOKEN_SKEW=0s serves a token until its last second; 30s (the default) does not.
func TestReaderSkew(t *testing.T) {
	for _, tt := range []struct {
		skew    time.Duration
		wantErr bool
	}{{0, false}, {config.Defaults[config.Reader]().TokenSkew, true}} {
		clk := rdptest.NewClock(t0)
		sm := ringtest.NewSecrets(clk.Now)
		sm.Create("a", ptr(slotJSON(t, 1, "tok1", t0.Add(10*time.Second))))
		r := tokenring.NewReader(sm, nil, []string{"a"}, tokenring.ReaderOptions{Skew: tt.skew, Now: clk.Now})
		if _, err := r.Token(); (err != nil) != tt.wantErr {
			t.Errorf("skew %s, token with 10s left: err = %v, want error %v", tt.skew, err, tt.wantErr)
		}
	}
}
