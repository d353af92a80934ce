package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cfsync/cfsync/internal/landing"
)

// serialProxy forwards the downloaders' DynamoDB and S3 requests to moto and
// runs the DynamoDB requests and the package index's requests one at a
// time: moto's conditional writes are not atomic across threads (DynamoDB's
// and S3's are), so without it two downloaders could both "win" one
// condition in moto. The requests still come from two downloader
// environments at once; only moto's side is serialized.
//
// It also counts the S3 writes per key that succeeded or may have
// (PutObject and CompleteMultipartUpload answered 2xx, or left by their
// client before moto answered), so a test can show each key was written
// once. A Complete sent again for the same upload (the first one cut by
// the invocation's deadline: docs/design.md#completing-a-multipart-upload)
// is the same write, so writes are told apart by upload id.
type serialProxy struct {
	mu     sync.Mutex
	target atomic.Pointer[url.URL]
	srv    *httptest.Server

	wmu    sync.Mutex
	writes map[string]map[string]bool // object path (/bucket/key) -> its writes (a PUT's sequence number or an upload id)
	puts   int
}

func newSerialProxy(t *testing.T) *serialProxy {
	p := &serialProxy{writes: map[string]map[string]bool{}}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(p.target.Load()) }}
	// A request whose client gave up (e.g. an invocation's deadline during a
	// slow CompleteMultipartUpload) may still have been carried out by moto:
	// its outcome is unknown, and it counts as a write.
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		if sw, ok := w.(*statusWriter); ok && r.Context().Err() != nil {
			sw.unknown = true
		}
		w.WriteHeader(http.StatusBadGateway)
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.target.Load() == nil {
			http.Error(w, "proxy: no target yet", http.StatusServiceUnavailable)
			return
		}
		if strings.HasPrefix(r.Header.Get("X-Amz-Target"), "DynamoDB_") || strings.HasSuffix(r.URL.Path, "/"+landing.IndexName) {
			p.mu.Lock()
			defer p.mu.Unlock()
		}
		sw := &statusWriter{ResponseWriter: w}
		rp.ServeHTTP(sw, r)
		if isObjectWrite(r) && (sw.status/100 == 2 || sw.unknown) {
			p.recordWrite(r)
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// isObjectWrite: a PutObject (PUT without uploadId, not a copy) or a
// CompleteMultipartUpload (POST with uploadId), path-style as cfsync sends them.
func isObjectWrite(r *http.Request) bool {
	if r.Header.Get("X-Amz-Target") != "" {
		return false
	}
	q := r.URL.Query()
	switch r.Method {
	case http.MethodPut:
		return !q.Has("uploadId") && !q.Has("partNumber") && r.Header.Get("X-Amz-Copy-Source") == "" && strings.Count(r.URL.Path, "/") >= 2
	case http.MethodPost:
		return q.Has("uploadId")
	}
	return false
}

// recordWrite notes an object write: each PutObject is a write of its own,
// Completes of one upload are one write.
func (p *serialProxy) recordWrite(r *http.Request) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	id := "upload " + r.URL.Query().Get("uploadId")
	if r.Method == http.MethodPut {
		p.puts++
		id = fmt.Sprintf("put %d", p.puts)
	}
	if p.writes[r.URL.Path] == nil {
		p.writes[r.URL.Path] = map[string]bool{}
	}
	p.writes[r.URL.Path][id] = true
}

// writesPerKey returns the writes (successful or of unknown outcome) by
// object path.
func (p *serialProxy) writesPerKey() map[string]int {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	out := make(map[string]int, len(p.writes))
	for k, v := range p.writes {
		out[k] = len(v)
	}
	return out
}

type statusWriter struct {
	http.ResponseWriter
	status  int
	unknown bool // the client left before moto answered
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 { // not 100 Continue (the SDK's Expect for large bodies)
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (p *serialProxy) point(t *testing.T, endpoint string) {
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p.target.Store(u)
}
