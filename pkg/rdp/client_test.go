package rdp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// recordSleep returns a WithSleep option that records waits without sleeping.
func recordSleep(waits *[]time.Duration) Option {
	return WithSleep(func(ctx context.Context, d time.Duration) error {
		*waits = append(*waits, d)
		return ctx.Err()
	})
}

// testServer serves h until the test ends and returns its URL.
func testServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func newTestClient(t *testing.T, h http.Handler, opts ...Option) *Client {
	t.Helper()
	c, err := NewClient(append([]Option{WithBaseURL(testServer(t, h))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPagingGuards(t *testing.T) {
	tests := []struct {
		name      string
		next      func(page int, host string) string
		wantItems int
		wantErr   error
	}{
		{"three pages then end", func(p int, _ string) string {
			if p < 3 {
				return fmt.Sprintf("/file-store/v1/file-sets?bucket=b&skipToken=%d", p)
			}
			return ""
		}, 3, nil},
		{"repeated link stops", func(p int, _ string) string { return "/file-store/v1/file-sets?bucket=b&skipToken=same" }, 2, ErrRepeatedLink},
		{"absolute link on the same host is followed", func(p int, host string) string {
			if p < 2 {
				return "http://" + host + "/file-store/v1/file-sets?bucket=b&skipToken=abs"
			}
			return ""
		}, 2, nil},
		{"cross-host link refused", func(p int, _ string) string { return "https://evil.example.com/file-store/v1/file-sets?x=1" }, 1, ErrForeignLink},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pages atomic.Int32
			c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				p := int(pages.Add(1))
				next := tt.next(p, r.Host)
				fmt.Fprintf(w, `{"value":[{"id":"fs%d","status":"READY"}],"@nextLink":%q}`, p, next)
			}))
			n := 0
			var gotErr error
			for fs, err := range c.FileSets(context.Background(), FileSetQuery{Bucket: "b"}) {
				if err != nil {
					gotErr = err
					break
				}
				n++
				if fs.ID != fmt.Sprintf("fs%d", n) {
					t.Fatalf("item %d has id %s", n, fs.ID)
				}
			}
			if n != tt.wantItems {
				t.Errorf("items = %d, want %d", n, tt.wantItems)
			}
			if !errors.Is(gotErr, tt.wantErr) {
				t.Errorf("err = %v, want %v", gotErr, tt.wantErr)
			}
		})
	}
}

func TestGetRetries(t *testing.T) {
	tests := []struct {
		name      string
		responses []func(w http.ResponseWriter)
		wantErr   error // nil: success
		wantCalls int
		wantWaits []time.Duration // minimum of each wait
	}{
		{"429 with Retry-After honoured then success", []func(http.ResponseWriter){
			func(w http.ResponseWriter) { w.Header().Set("Retry-After", "3"); w.WriteHeader(429) },
			ok,
		}, nil, 2, []time.Duration{3 * time.Second}},
		{"503 twice then success", []func(http.ResponseWriter){status(503), status(502), ok}, nil, 3, []time.Duration{0, 0}},
		{"gives up after max attempts", []func(http.ResponseWriter){status(500), status(500), status(500), status(500), ok}, errAPI, 4, []time.Duration{0, 0, 0}},
		{"400 is not retried", []func(http.ResponseWriter){status(400), ok}, errAPI, 1, nil},
		{"401 token expired is typed, not retried", []func(http.ResponseWriter){func(w http.ResponseWriter) {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":{"id":"abc","code":"401","message":"token expired","status":"Unauthorized"}}`)
		}, ok}, ErrTokenExpired, 1, nil},
		{"Retry-After beyond the cap is returned to the caller", []func(http.ResponseWriter){
			func(w http.ResponseWriter) { w.Header().Set("Retry-After", "3600"); w.WriteHeader(429) }, ok,
		}, ErrRateLimited, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			var waits []time.Duration
			c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(calls.Add(1)) - 1
				tt.responses[i](w)
			}), recordSleep(&waits))
			_, err := c.File(context.Background(), "f1")
			if tt.wantErr == nil && err != nil {
				t.Fatalf("err = %v", err)
			}
			if tt.wantErr == errAPI {
				var ae *APIError
				if !errors.As(err, &ae) {
					t.Fatalf("err = %v, want *APIError", err)
				}
			} else if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if int(calls.Load()) != tt.wantCalls {
				t.Errorf("calls = %d, want %d", calls.Load(), tt.wantCalls)
			}
			if len(waits) != len(tt.wantWaits) {
				t.Fatalf("waits = %v, want %d", waits, len(tt.wantWaits))
			}
			for i, w := range tt.wantWaits {
				if waits[i] < w {
					t.Errorf("wait %d = %s, want ≥ %s", i, waits[i], w)
				}
			}
		})
	}
}

var errAPI = errors.New("want *APIError")

func ok(w http.ResponseWriter) { fmt.Fprint(w, `{"id":"f1","filename":"a.gz","fileSizeInBytes":3}`) }
func status(code int) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) { w.WriteHeader(code) }
}

func TestRetryStopsAtDeadline(t *testing.T) {
	var calls atomic.Int32
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(429)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.File(ctx, "f1")
	var rl *RateLimitError
	if !errors.As(err, &rl) || rl.RetryAfter != 30*time.Second {
		t.Fatalf("err = %v, want RateLimitError with RetryAfter 30s", err)
	}
	if calls.Load() != 1 || time.Since(start) > time.Second {
		t.Fatalf("waited past the deadline: calls=%d", calls.Load())
	}
}

func TestContextCancellation(t *testing.T) {
	block := make(chan struct{})
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer close(block)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	_, err := c.StreamURL(ctx, "f1")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestMalformedJSONNamesEndpoint(t *testing.T) {
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"value":[{"id":`)
	}))
	for _, err := range c.FileSets(context.Background(), FileSetQuery{Bucket: "b"}) {
		var de *DecodeError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), "list file-sets") {
			t.Fatalf("err = %v, want DecodeError naming list file-sets", err)
		}
		return
	}
	t.Fatal("no error yielded")
}

func TestBadInput(t *testing.T) {
	c, _ := NewClient()
	ctx := context.Background()
	if _, err := c.File(ctx, "a/b"); err == nil {
		t.Error("File accepted an id with a slash")
	}
	if _, err := c.StreamURL(ctx, ""); err == nil {
		t.Error("StreamURL accepted an empty id")
	}
	for _, err := range c.FileSets(ctx, FileSetQuery{Bucket: "b", PageSize: 101}) {
		if err == nil || !strings.Contains(err.Error(), "pageSize") {
			t.Errorf("pageSize 101: err = %v", err)
		}
	}
	for _, err := range c.FileSets(ctx, FileSetQuery{}) {
		if err == nil || !strings.Contains(err.Error(), "bucket") {
			t.Errorf("no bucket: err = %v", err)
		}
	}
	if _, err := NewClient(WithBaseURL("ftp://x")); err == nil {
		t.Error("NewClient accepted ftp://")
	}
	if _, err := c.PasswordGrant(ctx, PasswordGrant{Username: "u"}); err == nil || !strings.Contains(err.Error(), "password") {
		t.Errorf("password grant without password: %v", err)
	}
}

func TestFileNameFromURL(t *testing.T) {
	tests := []struct{ url, want string }{
		{"https://b.s3.amazonaws.com/x/y/RFT-ESG-Sources-2021-01-17-part07.jsonl.gz?X-Amz-Signature=s", "RFT-ESG-Sources-2021-01-17-part07.jsonl.gz"},
		{"https://h/p/Tick%20History%2010%3A30%3A00.csv.gz?q=1", "Tick History 10_30_00.csv.gz"},
		{"https://h/p/a:b.txt", "a_b.txt"},
	}
	for _, tt := range tests {
		got, err := FileNameFromURL(tt.url)
		if err != nil || got != tt.want {
			t.Errorf("FileNameFromURL(%q) = %q, %v; want %q", tt.url, got, err, tt.want)
		}
	}
	for _, bad := range []string{"https://h/", "https://h/p/..%2F..%2Fetc%2Fpasswd", "https://h/p/a%5Cb", "https://h/p/%2E%2E"} {
		if name, err := FileNameFromURL(bad); err == nil {
			t.Errorf("FileNameFromURL(%q) = %q, want an error", bad, name)
		}
	}
}

func TestRedactURL(t *testing.T) {
	got := RedactURL("https://b.s3.amazonaws.com/p/f.gz?X-Amz-Security-Token=SECRET&X-Amz-Signature=SIG")
	if strings.Contains(got, "SECRET") || strings.Contains(got, "SIG") || got != "https://b.s3.amazonaws.com/p/f.gz" {
		t.Fatalf("RedactURL = %q", got)
	}
}
