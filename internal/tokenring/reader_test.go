package tokenring_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/internal/tokenring/ringtest"
	"github.com/cfsync/cfsync/pkg/rdp"
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

func slotJSON(t *testing.T, gen int64, access string, expires time.Time) string {
	t.Helper()
	b, err := json.Marshal(tokenring.Slot{AccessToken: access, RefreshToken: "rt-" + access, TokenType: "Bearer", Scope: "trapi",
		ExpiresAt: expires, IssuedAt: expires.Add(-10 * time.Minute), Generation: gen})
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
	if _, err := sm.PutSecretValue(context.Background(), putInput("b", slotJSON(t, 2, "tok2", t0.Add(20*time.Minute)))); err != nil {
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

func putInput(id, v string) *secretsmanager.PutSecretValueInput {
	return &secretsmanager.PutSecretValueInput{SecretId: aws.String(id), SecretString: aws.String(v)}
}

const body401 = `{"error":{"id":"x","code":"401","message":"token expired","status":"Unauthorized"}}`

// scripted is a file store answering each request with the next status of
// its script (200 when the script is done), recording what it was sent.
type scripted struct {
	mu     sync.Mutex
	script []int
	auth   []string
	bodies []string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	s.mu.Lock()
	n := len(s.auth)
	s.auth = append(s.auth, req.Header.Get("Authorization"))
	s.bodies = append(s.bodies, string(b))
	status := 200
	if n < len(s.script) {
		status = s.script[n]
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	switch status {
	case 200:
		fmt.Fprint(w, `{"value":[]}`)
	case 401:
		fmt.Fprint(w, body401)
	}
}

// ringWithNewer is a two-slot ring whose reader has cached generation 1
// ("tok1"); with newer, slot b then receives generation 2 ("tok2").
func ringWithNewer(t *testing.T, newer bool) (*tokenring.Reader, *ringtest.Secrets, *fakeReporter) {
	t.Helper()
	clk := rdptest.NewClock(t0)
	sm := ringtest.NewSecrets(clk.Now)
	sm.Create("a", ptr(slotJSON(t, 1, "tok1", t0.Add(10*time.Minute))))
	sm.Create("b", ptr(`{}`))
	rep := &fakeReporter{}
	r := tokenring.NewReader(sm, rep, []string{"a", "b"}, tokenring.ReaderOptions{Now: clk.Now})
	if _, err := r.Token(); err != nil { // cache generation 1
		t.Fatal(err)
	}
	if newer {
		if _, err := sm.PutSecretValue(context.Background(), putInput("b", slotJSON(t, 2, "tok2", t0.Add(15*time.Minute)))); err != nil {
			t.Fatal(err)
		}
	}
	return r, sm, rep
}

func TestTransport(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		body       string
		newer      bool  // a newer generation is in the ring when RDP first refuses
		script     []int // the file store's answers, in order
		wantAuth   []string
		wantStatus int     // status handed to the caller (0: an error instead)
		wantErr    []error // errors the caller's error must wrap
		wantReport int64   // generation reported, 0 for none
	}{
		{name: "success", method: "GET", script: []int{200}, wantAuth: []string{"Bearer tok1"}, wantStatus: 200},
		{name: "other error passes through", method: "GET", script: []int{404}, wantAuth: []string{"Bearer tok1"}, wantStatus: 404},
		{name: "401 then newer token works", method: "GET", newer: true, script: []int{401, 200},
			wantAuth: []string{"Bearer tok1", "Bearer tok2"}, wantStatus: 200},
		{name: "HEAD is retried too", method: "HEAD", newer: true, script: []int{401, 200},
			wantAuth: []string{"Bearer tok1", "Bearer tok2"}, wantStatus: 200},
		{name: "body re-sent with the retry", method: "GET", body: "q=1", newer: true, script: []int{401, 200},
			wantAuth: []string{"Bearer tok1", "Bearer tok2"}, wantStatus: 200},
		{name: "401 twice reports the newer generation", method: "GET", newer: true, script: []int{401, 401},
			wantAuth: []string{"Bearer tok1", "Bearer tok2"}, wantErr: []error{rdp.ErrUnauthorized, rdp.ErrTokenExpired, tokenring.ErrTokenInvalid}, wantReport: 2},
		{name: "401 and nothing newer reports at once", method: "GET", script: []int{401},
			wantAuth: []string{"Bearer tok1"}, wantErr: []error{rdp.ErrUnauthorized, tokenring.ErrTokenInvalid}, wantReport: 1},
		{name: "401 then other error", method: "GET", newer: true, script: []int{401, 404},
			wantAuth: []string{"Bearer tok1", "Bearer tok2"}, wantStatus: 404},
		{name: "POST 401 is never sent twice", method: "POST", body: "{}", newer: true, script: []int{401, 200},
			wantAuth: []string{"Bearer tok1"}, wantStatus: 401},
		{name: "POST 401 and nothing newer reports", method: "POST", body: "{}", script: []int{401, 200},
			wantAuth: []string{"Bearer tok1"}, wantErr: []error{rdp.ErrUnauthorized, tokenring.ErrTokenInvalid}, wantReport: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _, rep := ringWithNewer(t, tc.newer)
			fs := &scripted{script: tc.script}
			srv := httptest.NewServer(fs)
			defer srv.Close()
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, srv.URL+"/file-store/v1/file-sets?bucket=b", body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := r.HTTPClient(nil).Do(req)
			if fmt.Sprint(fs.auth) != fmt.Sprint(tc.wantAuth) {
				t.Errorf("sent Authorization %v, want %v", fs.auth, tc.wantAuth)
			}
			for i, b := range fs.bodies {
				if b != tc.body {
					t.Errorf("request %d body = %q, want %q", i+1, b, tc.body)
				}
			}
			switch {
			case tc.wantStatus != 0 && err != nil:
				t.Fatalf("err = %v, want status %d", err, tc.wantStatus)
			case tc.wantStatus != 0:
				resp.Body.Close()
				if resp.StatusCode != tc.wantStatus {
					t.Errorf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
				}
			case err == nil:
				resp.Body.Close()
				t.Fatalf("status %d, want an error", resp.StatusCode)
			}
			for _, w := range tc.wantErr {
				if !errors.Is(err, w) {
					t.Errorf("err = %v, want it to wrap %v", err, w)
				}
			}
			checkReport(t, rep, tc.wantReport)
		})
	}
}

// checkReport checks the reporter got one report for gen (none for 0)
// that explains the 401 without holding a token.
func checkReport(t *testing.T, rep *fakeReporter, gen int64) {
	t.Helper()
	if gen == 0 {
		if rep.count() != 0 {
			t.Fatalf("reports recorded: %v, want none", rep.got)
		}
		return
	}
	if len(rep.got) != 1 || rep.got[0].gen != gen || !strings.Contains(rep.got[0].reason, "401 token expired") {
		t.Fatalf("reports = %+v, want one for generation %d saying 401 token expired", rep.got, gen)
	}
	if raw := fmt.Sprint(rep.got); strings.Contains(raw, "tok1") || strings.Contains(raw, "tok2") {
		t.Errorf("report holds a token: %s", raw)
	}
}

func TestTransportNoValidToken(t *testing.T) {
	clk := rdptest.NewClock(t0)
	sm := ringtest.NewSecrets(clk.Now)
	sm.Create("a", ptr(`{}`))
	r := tokenring.NewReader(sm, nil, []string{"a"}, tokenring.ReaderOptions{Now: clk.Now})
	fs := &scripted{}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	_, err := r.HTTPClient(nil).Get(srv.URL)
	if len(fs.auth) != 0 || !errors.Is(err, tokenring.ErrNoValidToken) {
		t.Fatalf("sent %d requests, err=%v; want ErrNoValidToken without a request", len(fs.auth), err)
	}
}

// TestTransportRingUnreadableAfter401: the 401 and the ring's failure both
// reach the caller; nothing is reported (no proof the token is bad).
func TestTransportRingUnreadableAfter401(t *testing.T) {
	r, sm, rep := ringWithNewer(t, true)
	down := errors.New("secrets manager down")
	sm.BatchErr = func([]string) error { return down }
	sm.GetErr = func(string) error { return down }
	fs := &scripted{script: []int{401}}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	_, err := r.HTTPClient(nil).Get(srv.URL)
	if len(fs.auth) != 1 || !errors.Is(err, rdp.ErrUnauthorized) || !errors.Is(err, tokenring.ErrNoValidToken) {
		t.Fatalf("sent %d, err = %v; want one request and an error wrapping the 401 and ErrNoValidToken", len(fs.auth), err)
	}
	checkReport(t, rep, 0)
}

func TestHTTPClientSendsBearer(t *testing.T) {
	clk := rdptest.NewClock(t0)
	sm := ringtest.NewSecrets(clk.Now)
	sm.Create("a", ptr(slotJSON(t, 1, "tok1", t0.Add(10*time.Minute))))
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		got = req.Header.Get("Authorization")
	}))
	defer srv.Close()
	r := tokenring.NewReader(sm, nil, []string{"a"}, tokenring.ReaderOptions{Now: clk.Now})
	hc := r.HTTPClient(&http.Client{Timeout: 5 * time.Second})
	if hc.Timeout != 5*time.Second {
		t.Errorf("timeout not kept")
	}
	resp, err := hc.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got != "Bearer tok1" {
		t.Fatalf("Authorization = %q", got)
	}
}

// TestTransportWithRDPClient: a plain rdp.Client call, no wrapper. A 401
// with a newer token in the ring succeeds; a 401 with nothing newer reaches
// the caller as rdp.ErrUnauthorized and ErrTokenInvalid after one request
// (the client's own retries do not resend it), with one report.
func TestTransportWithRDPClient(t *testing.T) {
	for _, tc := range []struct {
		name     string
		newer    bool
		wantSent int
		wantErr  bool
	}{
		{name: "newer token", newer: true, wantSent: 2},
		{name: "nothing newer", wantSent: 1, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _, rep := ringWithNewer(t, tc.newer)
			fs := &scripted{script: []int{401}}
			srv := httptest.NewServer(fs)
			defer srv.Close()
			c, err := rdp.NewClient(rdp.WithBaseURL(srv.URL), rdp.WithHTTPClient(r.HTTPClient(nil)), rdp.WithNoRetrySleep())
			if err != nil {
				t.Fatal(err)
			}
			for _, err = range c.Packages(context.Background(), "bulk-ESG") {
				if err != nil {
					break
				}
			}
			if len(fs.auth) != tc.wantSent {
				t.Errorf("sent %d requests, want %d", len(fs.auth), tc.wantSent)
			}
			if !tc.wantErr {
				if err != nil || r.Generation() != 2 {
					t.Fatalf("err = %v, generation %d; want success on generation 2", err, r.Generation())
				}
				checkReport(t, rep, 0)
				return
			}
			var ae *rdp.APIError
			if !errors.Is(err, rdp.ErrUnauthorized) || !errors.Is(err, tokenring.ErrTokenInvalid) || !errors.As(err, &ae) || ae.StatusCode != 401 {
				t.Fatalf("err = %v, want a 401 *rdp.APIError and ErrTokenInvalid", err)
			}
			checkReport(t, rep, 1)
		})
	}
}

// TestReaderConcurrent: many goroutines share one reader (the downloader's
// parallel ranges); a 401 storm on the old generation ends in one re-read
// per goroutine at most and no report, since the ring holds a newer token.
func TestReaderConcurrent(t *testing.T) {
	r, sm, rep := ringWithNewer(t, true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Authorization") != "Bearer tok2" {
			w.WriteHeader(401)
			fmt.Fprint(w, body401)
		}
	}))
	defer srv.Close()
	hc := r.HTTPClient(nil)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := hc.Get(srv.URL)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("GET: %v", err)
		}
	}
	if n := sm.Calls("BatchGetSecretValue"); n > 17 {
		t.Errorf("%d ring reads for 16 goroutines", n)
	}
	if rep.count() != 0 {
		t.Errorf("reports recorded although a newer token was available: %v", rep.got)
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
