package rdptest

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// try sends a GET to an absolute URL; the status is 0 on a transport error.
func (e *env) try(u string) (resp, error) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return e.send(req)
}

func TestAPIFaults(t *testing.T) {
	const sets = "/file-store/v1/file-sets?bucket=bulk-ESG"
	tests := []struct {
		name       string
		fault      Fault
		path       string
		wantStatus int // 0: transport error
		wantMsg    string
		check      func(t *testing.T, r *http.Response, body []byte, err error)
	}{
		{"401 token expired", Fault{Kind: FaultUnauthorized, PathPrefix: "/file-store/v1/file-sets"}, sets, 401, "token expired", nil},
		{"429 retry-after", Fault{Kind: FaultTooManyRequests, RetryAfter: 2500 * time.Millisecond}, sets, 429, "Too Many Requests",
			func(t *testing.T, r *http.Response, _ []byte, _ error) {
				if r.Header.Get("Retry-After") != "3" {
					t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
				}
			}},
		{"500", Fault{Kind: FaultServerError}, sets, 500, "Internal Server Error", nil},
		{"503", Fault{Kind: FaultUnavailable, PathPrefix: "/file-store/"}, sets, 503, "Service Unavailable", nil},
		{"reset", Fault{Kind: FaultReset}, sets, 0, "", nil},
		{"truncate", Fault{Kind: FaultTruncate, After: 10}, sets, 200, "",
			func(t *testing.T, r *http.Response, body []byte, err error) {
				if !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != 10 || r.ContentLength <= 10 {
					t.Fatalf("truncate: err %v, %d of %d bytes", err, len(body), r.ContentLength)
				}
			}},
		{"stall", Fault{Kind: FaultStall, StallFor: 50 * time.Millisecond, After: -1}, sets, 200, "",
			func(t *testing.T, r *http.Response, body []byte, err error) {
				if err == nil || len(body) != 0 {
					t.Fatalf("stall: err %v, %d bytes", err, len(body))
				}
			}},
		{"file id on API host", Fault{Kind: FaultServerError, Host: HostAPI, FileID: "F1"}, "/file-store/v1/files/F1/stream?doNotRedirect=true", 500, "Internal Server Error", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			e.s.AddFileSets(DefaultBucket, DefaultPackageID, 3, 1, 1)
			e.s.AddFileSet(FileSetSpec{ID: "S1", Bucket: DefaultBucket, PackageID: DefaultPackageID, Name: "x", Files: []FileSpec{{ID: "F1", Name: "f1", Size: 1}}})
			at, _ := e.s.IssueTokens(DefaultUser, DefaultAppKey)
			// A fault for another path never fires.
			e.s.Inject(Fault{Kind: FaultServerError, PathPrefix: "/file-store/v1/packages"}, tc.fault)
			req, _ := http.NewRequest("GET", e.s.URL()+tc.path, nil)
			req.Header.Set("Authorization", "Bearer "+at)
			res, err := e.c.Do(req)
			if tc.wantStatus == 0 {
				if err == nil {
					res.Body.Close()
					t.Fatalf("want a transport error, got %d", res.StatusCode)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				body, rerr := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != tc.wantStatus {
					t.Fatalf("status %d, want %d", res.StatusCode, tc.wantStatus)
				}
				if tc.wantMsg != "" {
					if msg := (resp{body: body}).gatewayMessage(t); msg != tc.wantMsg {
						t.Fatalf("message %q, want %q", msg, tc.wantMsg)
					}
				}
				if tc.check != nil {
					tc.check(t, res, body, rerr)
				}
			}
			// Fired once: the same request now succeeds; the other fault is still pending.
			if r := e.with(t).get(tc.path, at); r.status != 200 {
				t.Fatalf("after the fault: %d %s", r.status, r.body)
			}
			if p := e.s.PendingFaults(); len(p) != 1 || p[0].PathPrefix != "/file-store/v1/packages" {
				t.Fatalf("pending %+v", p)
			}
			if e.s.Counters().FaultsFired != 1 {
				t.Fatal("FaultsFired")
			}
		})
	}
}

func TestAuthFaults(t *testing.T) {
	e := newEnv(t, Options{})
	e.s.Inject(Fault{Kind: FaultTooManyRequests, PathPrefix: "/auth/oauth2/v1/token", RetryAfter: 7 * time.Second})
	r := e.post("/auth/oauth2/v1/token", passwordForm(true), "", "")
	if code, _ := oauthErr(t, r); r.status != 429 || code != "too_many_requests" || r.header.Get("Retry-After") != "7" {
		t.Fatalf("injected 429: %d %s %v", r.status, r.body, r.header)
	}
	log := e.s.AuthLog()
	if c := e.s.Counters(); len(log) != 1 || log[0].Status != 429 || log[0].Grant != "password" || c.Auth429s != 1 || c.PasswordGrants != 1 {
		t.Fatalf("log %+v counters %+v", log, c)
	}
	// A truncated token response: the grant took effect (a session exists) but the client never
	// saw its tokens, so a non-exclusive sign-on now hits the session quota.
	e.s.Inject(Fault{Kind: FaultTruncate, PathPrefix: "/auth/oauth2/v1/token"})
	_, err := e.send(e.formRequest("/auth/oauth2/v1/token", passwordForm(false)))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", err)
	}
	r = e.post("/auth/oauth2/v1/token", passwordForm(false), "", "")
	if _, desc := oauthErr(t, r); desc != "Session quota is reached." {
		t.Fatalf("after truncated grant: %d %s", r.status, r.body)
	}
	// Reset: the request is not processed, but it is logged.
	e.s.Inject(Fault{Kind: FaultReset, PathPrefix: "/auth/"})
	if _, err := e.send(e.formRequest("/auth/oauth2/v1/token", passwordForm(true))); err == nil {
		t.Fatal("reset: no error")
	}
	if n := len(e.s.AuthLog()); n != 4 {
		t.Fatalf("auth log has %d records, want 4", n)
	}
}

func TestS3Faults(t *testing.T) {
	tests := []struct {
		name       string
		fault      Fault
		wantStatus int // 0: transport error
		wantCode   string
		wantBytes  int // for truncations
	}{
		{"500", Fault{Kind: FaultServerError, Host: HostS3}, 500, "InternalError", 0},
		{"503", Fault{Kind: FaultUnavailable, Host: HostS3}, 503, "SlowDown", 0},
		{"throttled is 503 SlowDown", Fault{Kind: FaultTooManyRequests, Host: HostS3}, 503, "SlowDown", 0},
		{"expired session token", Fault{Kind: FaultExpiredToken}, 400, "ExpiredToken", 0},
		{"401 is AccessDenied", Fault{Kind: FaultUnauthorized, Host: HostS3}, 403, "AccessDenied", 0},
		{"expired url", Fault{Kind: FaultExpiredURL}, 403, "AccessDenied", 0},
		{"reset", Fault{Kind: FaultReset, Host: HostS3}, 0, "", 0},
		{"truncate default half", Fault{Kind: FaultTruncate, Host: HostS3}, 200, "", 5000},
		{"truncate after", Fault{Kind: FaultTruncate, Host: HostS3, After: 123}, 200, "", 123},
		{"stall", Fault{Kind: FaultStall, Host: HostS3, After: 77, StallFor: 30 * time.Millisecond}, 200, "", 77},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, at := newTokenEnv(t, Options{})
			fs := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 2, 10000)[0]
			target, bystander := fs.Files[0], fs.Files[1]
			f := tc.fault
			f.FileID = target.ID
			e.s.Inject(f)
			// The other file is not affected.
			if r, err := e.try(e.with(t).streamURL(bystander.ID, at)); err != nil || r.status != 200 || len(r.body) != 10000 {
				t.Fatalf("bystander: %d %v", r.status, err)
			}
			u := e.with(t).streamURL(target.ID, at)
			// A fresh connection: net/http retries a GET once by itself when a reused one is reset.
			e.c.Transport.(*http.Transport).CloseIdleConnections()
			r, err := e.try(u)
			st, body := r.status, r.body
			switch {
			case tc.wantStatus == 0:
				if err == nil {
					t.Fatalf("want a transport error, got %d", st)
				}
			case tc.wantBytes > 0:
				if st != 200 || !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != tc.wantBytes {
					t.Fatalf("got %d, %d bytes, %v; want %d bytes then unexpected EOF", st, len(body), err, tc.wantBytes)
				}
				if !bytes.Equal(body, fullContent(target)[:tc.wantBytes]) {
					t.Fatal("partial body differs from the content")
				}
			default:
				if st != tc.wantStatus || s3Code(r) != tc.wantCode {
					t.Fatalf("got %d %s", st, body)
				}
			}
			if r, err := e.try(u); err != nil || r.status != 200 || !bytes.Equal(r.body, fullContent(target)) {
				t.Fatalf("after the fault: %d %v", r.status, err)
			}
		})
	}
}

func TestExpiredURLFromStream(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	f := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 10)[0].Files[0]
	e.s.Inject(Fault{Kind: FaultExpiredURL, Host: HostAPI})
	u := e.streamURL(f.ID, at)
	if r := e.s3("GET", u); r.status != 403 || !strings.Contains(string(r.body), "Request has expired") {
		t.Fatalf("URL from the faulted /stream: %d %s", r.status, r.body)
	}
	if r := e.s3("GET", e.streamURL(f.ID, at)); r.status != 200 {
		t.Fatalf("next URL: %d", r.status)
	}
}

func TestRepeatItemFault(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	sets := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 30, 1, 1)
	e.s.Inject(Fault{Kind: FaultRepeatItem, PathPrefix: "/file-store/v1/file-sets"})
	items, pages := e.listAll("/file-store/v1/file-sets?bucket=bulk-ESG&pageSize=10", at)
	got := ids(items)
	if pages != 3 || len(got) != 31 || got[10] != got[9] || len(sets) != 30 {
		t.Fatalf("%d pages, %d items; want page 2 to start with page 1's last item", pages, len(got))
	}
	if items, _ := e.listAll("/file-store/v1/file-sets?bucket=bulk-ESG&pageSize=10", at); len(items) != 30 {
		t.Fatal("repeat fault fired more than once")
	}
}

func TestFaultTimesForever(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	e.s.Inject(Fault{Kind: FaultUnavailable, Times: -1})
	for i := 0; i < 5; i++ {
		if r := e.get("/file-store/v1/packages", at); r.status != 503 {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
	e.s.ClearFaults()
	if r := e.get("/file-store/v1/packages", at); r.status != 200 {
		t.Fatalf("after ClearFaults: %d", r.status)
	}
	e.s.Inject(Fault{Kind: FaultUnavailable, Times: 3})
	n := 0
	for i := 0; i < 5; i++ {
		if e.get("/file-store/v1/packages", at).status == 503 {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("Times 3 fired %d times", n)
	}
}

// TestFaultEvery: a fault with Every fires on every Every-th matching request only; the
// requests in between, and requests that do not match, are served normally and do not count.
func TestFaultEvery(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	e.s.Inject(Fault{Kind: FaultUnauthorized, PathPrefix: "/file-store/v1/packages", Every: 3, Times: 2})
	var got []int
	for i := 0; i < 8; i++ {
		got = append(got, e.get("/file-store/v1/packages", at).status)
		if r := e.get("/file-store/v1/file-sets?bucket=bulk-ESG", at); r.status != 200 {
			t.Fatalf("a request the fault does not match: %d", r.status)
		}
	}
	want := []int{200, 200, 401, 200, 200, 401, 200, 200} // Times 2: spent after the 6th
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("statuses %v, want %v", got, want)
		}
	}
	if left := e.s.PendingFaults(); len(left) != 0 {
		t.Errorf("pending after firing its Times: %+v", left)
	}
	if c := e.s.Counters(); c.FaultsFired != 2 || c.FileStore401s != 2 {
		t.Errorf("fired %d, 401s %d; want 2 and 2", c.FaultsFired, c.FileStore401s)
	}
}

func waitGoroutines(t *testing.T, max int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > max {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, want <= %d:\n%s", runtime.NumGoroutine(), max, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStallReleasedByClose(t *testing.T) {
	for _, host := range []FaultHost{HostS3, HostAPI} {
		t.Run(string(host), func(t *testing.T) {
			before := runtime.NumGoroutine()
			s := NewServer(Options{})
			s.AddUser(DefaultUser, DefaultPassword, DefaultAppKey)
			at, _ := s.IssueTokens(DefaultUser, DefaultAppKey)
			f := s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 1<<20)[0].Files[0]
			tr := &http.Transport{}
			c := &http.Client{Transport: tr}
			e := &env{t: t, s: s, c: c}
			u := e.streamURL(f.ID, at)
			s.Inject(Fault{Kind: FaultStall, Host: host, After: 1000}) // no StallFor: until Close
			if host == HostAPI {
				u = s.URL() + "/file-store/v1/files/" + f.ID
			}
			req, _ := http.NewRequest("GET", u, nil)
			if host == HostAPI {
				req.Header.Set("Authorization", "Bearer "+at)
			}
			res, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got := make(chan error, 1)
			go func() {
				_, err := io.ReadAll(res.Body)
				got <- err
			}()
			select {
			case err := <-got:
				t.Fatalf("stalled body ended early: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
			closed := make(chan struct{})
			go func() { s.Close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatal("Close blocked on a stalled response")
			}
			if err := <-got; err == nil {
				t.Fatal("stalled body ended without an error")
			}
			res.Body.Close()
			tr.CloseIdleConnections()
			waitGoroutines(t, before)
		})
	}
}

func TestStallReleasedWhenClientGivesUp(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	f := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 1000)[0].Files[0]
	u := e.streamURL(f.ID, at)
	e.s.Inject(Fault{Kind: FaultStall, FileID: f.ID, After: 10})
	c := &http.Client{Timeout: 100 * time.Millisecond, Transport: e.c.Transport}
	res, err := c.Get(u)
	if err == nil {
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
	}
	if err == nil {
		t.Fatal("stall did not stall")
	}
	// The handler notices the client left: no download stays active.
	if !e.s.WaitIdle(3 * time.Second) {
		t.Fatal("stalled handler still running after the client gave up")
	}
}

func TestParseFault(t *testing.T) {
	tests := []struct {
		spec    string
		want    Fault
		wantErr bool
	}{
		{"503", Fault{Kind: FaultUnavailable}, false},
		{"429,times=2,retry-after=3s,path=/auth/", Fault{Kind: FaultTooManyRequests, Times: 2, RetryAfter: 3 * time.Second, PathPrefix: "/auth/"}, false},
		{"stall, file=abc, after=10, stall=2s, host=s3", Fault{Kind: FaultStall, FileID: "abc", After: 10, StallFor: 2 * time.Second, Host: HostS3}, false},
		{"repeat-item,times=-1", Fault{Kind: FaultRepeatItem, Times: -1}, false},
		{"401,every=7,times=-1,path=/file-store/", Fault{Kind: FaultUnauthorized, Every: 7, Times: -1, PathPrefix: "/file-store/"}, false},
		{"401,every=x", Fault{}, true},
		{"boom", Fault{}, true},
		{"503,times=x", Fault{}, true},
		{"503,host=ftp", Fault{}, true},
		{"503,colour=red", Fault{}, true},
		{"503,times", Fault{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := ParseFault(tc.spec)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
