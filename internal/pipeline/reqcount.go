package pipeline

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// RequestCounter is an HTTP proxy in front of moto_server that counts every
// AWS request passing through it by caller, service and operation, so tests
// and benchmarks can measure what a file costs in requests (docs/cost.md).
// Point a function at it with AWS_ENDPOINT_URL=URL(caller).
//
// DynamoDB requests are forwarded one at a time across all callers: moto's
// conditional writes are not atomic across threads (DynamoDB's are), so two
// downloaders must not both "win" one condition in moto. Only moto's side
// is serialized; the callers still run at the same time.
type RequestCounter struct {
	target atomic.Pointer[url.URL]
	serial sync.Mutex
	// parallel, when set, lets DynamoDB requests through at once (benchmarks
	// in which no two callers ever write one item).
	parallel atomic.Bool
	// keepHost, when set, forwards the Host header a request was signed
	// for (targets that check signatures, unlike moto: versitygw).
	keepHost atomic.Bool
	mu       sync.Mutex
	counts   map[RequestKey]int
	took     map[RequestKey]time.Duration
	servers  map[string]*http.Server
	urls     map[string]string
}

// RequestKey is one kind of request: who sent it, and the AWS service and
// operation it called (e.g. "downloader", "s3", "PutObject").
type RequestKey struct {
	Caller, Service, Operation string
}

// String is "caller service:Operation".
func (k RequestKey) String() string { return k.Caller + " " + k.Service + ":" + k.Operation }

// NewRequestCounter listens on one loopback port per caller. Requests are
// refused with 503 until Point gives the target.
func NewRequestCounter(callers ...string) (*RequestCounter, error) {
	c := &RequestCounter{counts: map[RequestKey]int{}, took: map[RequestKey]time.Duration{}, servers: map[string]*http.Server{}, urls: map[string]string{}}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(c.target.Load())
		if c.keepHost.Load() {
			r.Out.Host = r.In.Host
		}
	}}
	for _, caller := range callers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("request counter: listen for %s: %w", caller, err)
		}
		srv := &http.Server{Handler: c.handler(caller, rp)}
		c.servers[caller] = srv
		c.urls[caller] = "http://" + ln.Addr().String()
		go func() { _ = srv.Serve(ln) }()
	}
	return c, nil
}

func (c *RequestCounter) handler(caller string, rp http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.target.Load() == nil {
			http.Error(w, "request counter: no target yet", http.StatusServiceUnavailable)
			return
		}
		service, op := ClassifyAWSRequest(r)
		key := RequestKey{caller, service, op}
		c.mu.Lock()
		c.counts[key]++
		c.mu.Unlock()
		if service == "dynamodb" && !c.parallel.Load() {
			c.serial.Lock()
			defer c.serial.Unlock()
		}
		start := time.Now()
		rp.ServeHTTP(w, r)
		c.mu.Lock()
		c.took[key] += time.Since(start)
		c.mu.Unlock()
	})
}

// Point sets the endpoint the requests are forwarded to (moto_server).
func (c *RequestCounter) Point(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("request counter: target %q: %w", endpoint, err)
	}
	c.target.Store(u)
	return nil
}

// SerializeDynamoDB sets whether DynamoDB requests reach the target one at
// a time (the default). Turn it off only where no two callers can race for
// one item's condition.
func (c *RequestCounter) SerializeDynamoDB(on bool) { c.parallel.Store(!on) }

// KeepHost sets whether requests reach the target with the Host header
// they were signed for (off by default: moto checks no signature).
func (c *RequestCounter) KeepHost(on bool) { c.keepHost.Store(on) }

// URL is the endpoint a caller uses ("" for a caller not given to New).
func (c *RequestCounter) URL(caller string) string { return c.urls[caller] }

// Counts returns a copy of the counts so far.
func (c *RequestCounter) Counts() map[RequestKey]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}

// Took returns a copy of the time the target took to answer each kind of
// request so far, summed.
func (c *RequestCounter) Took() map[RequestKey]time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.took)
}

// Reset zeroes the counts and times.
func (c *RequestCounter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.counts)
	clear(c.took)
}

// Close stops the listeners.
func (c *RequestCounter) Close() {
	for _, s := range c.servers {
		_ = s.Close()
	}
}

// ClassifyAWSRequest names the service and operation of an AWS SDK request:
// the service from the SigV4 credential scope, the operation from
// X-Amz-Target (JSON protocols: DynamoDB, SQS, Secrets Manager), the
// Smithy RPC v2 path (/service/S/operation/Op), the query protocol's
// Action, or, for S3, the method, path shape and query.
func ClassifyAWSRequest(r *http.Request) (service, operation string) {
	service = credentialScopeService(r.Header.Get("Authorization"))
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		prefix, op, _ := strings.Cut(t, ".")
		if service == "" {
			service = strings.ToLower(strings.SplitN(prefix, "_", 2)[0])
		}
		return service, op
	}
	if _, rest, ok := strings.Cut(r.URL.Path, "/operation/"); ok && strings.HasPrefix(r.URL.Path, "/service/") {
		return service, rest
	}
	if service == "s3" || service == "" && r.Header.Get("X-Amz-Content-Sha256") != "" {
		return "s3", s3Operation(r)
	}
	return service, queryAction(r)
}

// credentialScopeService is the service of "AWS4-HMAC-SHA256
// Credential=AKID/20260101/us-east-1/s3/aws4_request, …".
func credentialScopeService(auth string) string {
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return ""
	}
	cred, _, _ = strings.Cut(cred, ",")
	parts := strings.Split(cred, "/")
	if len(parts) < 5 {
		return ""
	}
	return parts[3]
}

// queryAction is the Action of a query-protocol request (form body or URL);
// the body is read and put back.
func queryAction(r *http.Request) string {
	if a := r.URL.Query().Get("Action"); a != "" {
		return a
	}
	if r.Body == nil || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return "unknown"
	}
	b, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(b))
	if err != nil {
		return "unknown"
	}
	v, err := url.ParseQuery(string(b))
	if err != nil || v.Get("Action") == "" {
		return "unknown"
	}
	return v.Get("Action")
}

// s3Operation names a path-style S3 request (/bucket or /bucket/key).
func s3Operation(r *http.Request) string {
	q := r.URL.Query()
	if id := q.Get("x-id"); id != "" {
		return id // the SDK names most object operations itself
	}
	object := strings.Contains(strings.TrimPrefix(r.URL.Path, "/"), "/")
	has := func(k string) bool { return q.Has(k) }
	switch r.Method {
	case http.MethodPut:
		switch {
		case has("partNumber") && r.Header.Get("X-Amz-Copy-Source") != "":
			return "UploadPartCopy"
		case has("partNumber"):
			return "UploadPart"
		case r.Header.Get("X-Amz-Copy-Source") != "":
			return "CopyObject"
		case object:
			return "PutObject" + subresource(q)
		}
		return "PutBucket" + subresource(q)
	case http.MethodPost:
		switch {
		case has("uploads"):
			return "CreateMultipartUpload"
		case has("uploadId"):
			return "CompleteMultipartUpload"
		case has("delete"):
			return "DeleteObjects"
		}
	case http.MethodGet:
		switch {
		case has("uploadId"):
			return "ListParts"
		case has("uploads"):
			return "ListMultipartUploads"
		case object:
			return "GetObject" + subresource(q)
		case has("list-type"):
			return "ListObjectsV2"
		}
		return "GetBucket" + subresource(q)
	case http.MethodHead:
		if object {
			return "HeadObject"
		}
		return "HeadBucket"
	case http.MethodDelete:
		switch {
		case has("uploadId"):
			return "AbortMultipartUpload"
		case object:
			return "DeleteObject"
		}
		return "DeleteBucket"
	}
	return r.Method + " " + r.URL.Path
}

// subresource names a query subresource such as ?tagging ("Tagging"), or "".
func subresource(q url.Values) string {
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if q.Get(k) == "" && k != "x-id" && !strings.HasPrefix(k, "X-Amz-") {
			return strings.ToUpper(k[:1]) + k[1:]
		}
	}
	return ""
}
