package rdptest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

const s3Region = "us-east-1"

// presign builds the presigned URL of a file, signed at now.
func (s *Server) presign(f *fileRec, now time.Time) string {
	segs := []string{strings.ToLower(f.set.bucket), f.set.packageID, f.id, f.name}
	path := canonicalPath(segs)
	q := []queryParam{
		{"X-Amz-Algorithm", "AWS4-HMAC-SHA256"},
		{"X-Amz-Credential", "ASIA" + strings.ToUpper(randomHex(8)) + "/" + now.Format(amzShortDate) + "/" + s3Region + "/s3/aws4_request"},
		{"X-Amz-Date", now.Format(amzDateFmt)},
		{"X-Amz-Expires", strconv.Itoa(int(s.opts.URLExpiry / time.Second))},
		{"X-Amz-SignedHeaders", "host"},
		{"X-Amz-Security-Token", "IQoJb3JpZ2luX2Vj" + randomHex(40)},
	}
	sig := s.signature(path, q)
	var b strings.Builder
	b.WriteString(s.s3URL + path + "?")
	for _, p := range q {
		b.WriteString(s3Escape(p.k) + "=" + s3Escape(p.v) + "&")
	}
	b.WriteString("X-Amz-Signature=" + sig)
	return b.String()
}

type queryParam struct{ k, v string }

func canonicalPath(segs []string) string {
	var b strings.Builder
	for _, seg := range segs {
		b.WriteString("/" + s3Escape(seg))
	}
	return b.String()
}

// signature is an HMAC over the canonical path and the sorted, encoded query (without the
// signature itself).
func (s *Server) signature(path string, q []queryParam) string {
	sorted := append([]queryParam(nil), q...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].k < sorted[j].k })
	mac := hmac.New(sha256.New, s.signKey)
	mac.Write([]byte(path + "\n"))
	for _, p := range sorted {
		mac.Write([]byte(s3Escape(p.k) + "=" + s3Escape(p.v) + "&"))
	}
	return hex.EncodeToString(mac.Sum(nil))
}

type s3Error struct {
	XMLName    xml.Name `xml:"Error"`
	Code       string   `xml:"Code"`
	Message    string   `xml:"Message"`
	XAmzExpire string   `xml:"X-Amz-Expires,omitempty"`
	Expires    string   `xml:"Expires,omitempty"`
	ServerTime string   `xml:"ServerTime,omitempty"`
	Key        string   `xml:"Key,omitempty"`
	RequestID  string   `xml:"RequestId"`
	HostID     string   `xml:"HostId"`
}

func writeS3Error(w http.ResponseWriter, r *http.Request, status int, e s3Error) {
	e.RequestID = strings.ToUpper(randomHex(8))
	e.HostID = randomHex(24)
	b, err := xml.Marshal(e)
	if err != nil {
		panic(err)
	}
	body := append([]byte(xml.Header), b...)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-amz-request-id", e.RequestID)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// s3Target is a parsed, validated presigned request.
type s3Target struct {
	segs []string // bucket, packageId, fileId, file name (decoded)
}

func parseS3Request(r *http.Request) (s3Target, bool) {
	var t s3Target
	raw := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	for _, seg := range strings.Split(raw, "/") {
		dec, err := url.PathUnescape(seg)
		if err != nil {
			return t, false
		}
		t.segs = append(t.segs, dec)
	}
	return t, len(t.segs) == 4
}

func (s *Server) serveS3(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counters.S3Requests++
	switch r.Method {
	case http.MethodGet:
		s.counters.Requests[EPS3Get]++
	case http.MethodHead:
		s.counters.Requests[EPS3Head]++
	default:
		s.counters.Requests[EPOther]++
	}
	s.mu.Unlock()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeS3Error(w, r, http.StatusMethodNotAllowed, s3Error{Code: "MethodNotAllowed", Message: "The specified method is not allowed against this resource."})
		return
	}
	if r.Header.Get("Authorization") != "" {
		s.mu.Lock()
		s.counters.AuthHeaderOnS3++
		s.mu.Unlock()
		writeS3Error(w, r, http.StatusBadRequest, s3Error{Code: "InvalidArgument",
			Message: "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified"})
		return
	}
	now := s.now()
	q := r.URL.Query()
	var params []queryParam
	for k, vs := range q {
		if k == "X-Amz-Signature" {
			continue
		}
		for _, v := range vs {
			params = append(params, queryParam{k, v})
		}
	}
	target, pathOK := parseS3Request(r)
	required := []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"}
	for _, k := range required {
		if q.Get(k) == "" {
			s.s3Denied(w, r, s3Error{Code: "AccessDenied", Message: "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."})
			return
		}
	}
	date, derr := time.Parse(amzDateFmt, q.Get("X-Amz-Date"))
	secs, eerr := strconv.Atoi(q.Get("X-Amz-Expires"))
	want := s.signature(canonicalPath(target.segs), params)
	if !pathOK || derr != nil || eerr != nil || !hmac.Equal([]byte(want), []byte(q.Get("X-Amz-Signature"))) {
		s.s3Denied(w, r, s3Error{Code: "SignatureDoesNotMatch", Message: "The request signature we calculated does not match the signature you provided. Check your key and signing method."})
		return
	}
	expiresAt := date.Add(time.Duration(secs) * time.Second)
	fileID := target.segs[2]
	fault := s.takeFault(HostS3, r.URL.Path, fileID)
	if !now.Before(expiresAt) || (fault != nil && fault.Kind == FaultExpiredURL) {
		s.mu.Lock()
		s.counters.S3Expired++
		s.mu.Unlock()
		writeS3Error(w, r, http.StatusForbidden, s3Error{Code: "AccessDenied", Message: "Request has expired",
			XAmzExpire: strconv.Itoa(secs), Expires: expiresAt.UTC().Format(time.RFC3339), ServerTime: now.Format(time.RFC3339)})
		return
	}
	if fault != nil {
		switch fault.Kind {
		case FaultUnauthorized:
			writeS3Error(w, r, http.StatusForbidden, s3Error{Code: "AccessDenied", Message: "Access Denied"})
			return
		case FaultTooManyRequests:
			w.Header().Set("Retry-After", retryAfterSeconds(fault.retryAfter()))
			writeS3Error(w, r, http.StatusTooManyRequests, s3Error{Code: "SlowDown", Message: "Please reduce your request rate."})
			return
		case FaultServerError:
			writeS3Error(w, r, http.StatusInternalServerError, s3Error{Code: "InternalError", Message: "We encountered an internal error. Please try again."})
			return
		case FaultUnavailable:
			writeS3Error(w, r, http.StatusServiceUnavailable, s3Error{Code: "SlowDown", Message: "Please reduce your request rate."})
			return
		case FaultReset:
			resetConn(w)
			return
		}
	}
	s.mu.Lock()
	f := s.fileByID[fileID]
	found := f != nil && !f.deleted && strings.EqualFold(f.set.bucket, target.segs[0]) && f.set.packageID == target.segs[1] && f.name == target.segs[3]
	var modified time.Time
	if found {
		modified = f.set.modified
	}
	s.mu.Unlock()
	if !found {
		writeS3Error(w, r, http.StatusNotFound, s3Error{Code: "NoSuchKey", Message: "The specified key does not exist.", Key: strings.Join(target.segs[1:], "/")})
		return
	}
	s.serveObject(w, r, f, modified, fault)
}

func (s *Server) s3Denied(w http.ResponseWriter, r *http.Request, e s3Error) {
	s.mu.Lock()
	s.counters.S3BadSignature++
	s.mu.Unlock()
	writeS3Error(w, r, http.StatusForbidden, e)
}

// etag is the object's ETag: the md5 when the file is small enough to expose one (like a
// single-part upload), else a multipart-style "<hash>-<parts>".
func (s *Server) etag(f *fileRec) string {
	if s.opts.MD5MaxSize >= 0 && f.size <= s.opts.MD5MaxSize {
		return `"` + f.trueMD5() + `"`
	}
	sum := sha256.Sum256([]byte("etag/" + f.id))
	parts := (f.size + (64<<20 - 1)) / (64 << 20)
	return fmt.Sprintf(`"%s-%d"`, hex.EncodeToString(sum[:16]), parts)
}

// parseRange interprets a Range header like S3: ok=false means serve the whole object (no,
// invalid or multiple ranges); unsatisfiable means 416.
func parseRange(h string, size int64) (start, end int64, ok, unsatisfiable bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if h == "" || !found || strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	if a == "" { // suffix: last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, false, false
		}
		if n == 0 || size == 0 {
			return 0, 0, false, true
		}
		n = min(n, size)
		return size - n, size - 1, true, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false, false
	}
	end = size - 1
	if b != "" {
		end, err = strconv.ParseInt(b, 10, 64)
		if err != nil || end < start {
			return 0, 0, false, false
		}
		end = min(end, size-1)
	}
	if start >= size {
		return 0, 0, false, true
	}
	return start, end, true, false
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

func (s *Server) serveObject(w http.ResponseWriter, r *http.Request, f *fileRec, modified time.Time, fault *Fault) {
	etag := s.etag(f)
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	h.Set("ETag", etag)
	h.Set("Last-Modified", modified.UTC().Format(http.TimeFormat))
	h.Set("x-amz-request-id", strings.ToUpper(randomHex(8)))
	h.Set("Server", "AmazonS3")
	if im := r.Header.Get("If-Match"); im != "" && im != "*" && im != etag {
		writeS3Error(w, r, http.StatusPreconditionFailed, s3Error{Code: "PreconditionFailed", Message: "At least one of the pre-conditions you specified did not hold"})
		return
	}
	start, end, ranged, unsat := parseRange(r.Header.Get("Range"), f.size)
	if ir := r.Header.Get("If-Range"); ranged && ir != "" && ir != etag {
		ranged = false
	}
	if unsat {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", f.size))
		writeS3Error(w, r, http.StatusRequestedRangeNotSatisfiable, s3Error{Code: "InvalidRange", Message: "The requested range is not satisfiable"})
		return
	}
	status := http.StatusOK
	if ranged {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, f.size))
		s.mu.Lock()
		s.counters.RangeRequests++
		s.mu.Unlock()
	} else {
		start, end = 0, f.size-1
	}
	n := end - start + 1
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	s.mu.Lock()
	s.counters.ActiveDownloads++
	s.counters.MaxActiveDownloads = max(s.counters.MaxActiveDownloads, s.counters.ActiveDownloads)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.counters.ActiveDownloads--
		s.mu.Unlock()
	}()
	limit := n
	if fault != nil && (fault.Kind == FaultTruncate || fault.Kind == FaultStall) {
		limit = fault.sendFirst(n)
	}
	if err := s.writeContent(w, r, contentSeed(f.id), start, limit); err != nil {
		return
	}
	if limit < n {
		_ = http.NewResponseController(w).Flush()
		if fault.Kind == FaultStall {
			s.stallThenAbort(r, fault.StallFor)
		}
		panic(http.ErrAbortHandler)
	}
}

// writeContent writes n bytes of content from offset off, throttled to BandwidthPerConn.
func (s *Server) writeContent(w http.ResponseWriter, r *http.Request, seed uint64, off, n int64) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	bw := s.opts.BandwidthPerConn
	chunk := int64(len(buf))
	if bw > 0 {
		chunk = max(512, min(chunk, bw/20))
	}
	begin := time.Now()
	var sent int64
	for sent < n {
		m := min(chunk, n-sent)
		fillContent(seed, buf[:m], off+sent)
		k, err := w.Write(buf[:m])
		sent += int64(k)
		s.bytesServed.Add(int64(k))
		if err != nil {
			return err
		}
		if bw > 0 {
			due := time.Duration(float64(sent) / float64(bw) * float64(time.Second))
			if wait := due - time.Since(begin); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-r.Context().Done():
					t.Stop()
					return r.Context().Err()
				case <-s.closing:
					t.Stop()
					return http.ErrServerClosed
				}
			}
		}
	}
	return nil
}
