package tokenring_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/internal/tokenring/ringtest"
	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

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
		if err := tokenring.Write(context.Background(), sm, "b", slot(2, "tok2", t0.Add(15*time.Minute))); err != nil {
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
