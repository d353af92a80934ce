package rdptest

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cfsync/cfsync/internal/randid"
)

const s3Region = "us-east-1"

// presignLocked builds the presigned URL of a file, signed at now, in RDP's shape:
//
//	<S3URL>/<packageName>/YYYY/MM/DD/<name, %-encoded>?x-request-Id=…&X-Amz-Security-Token=…
//	&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=…&X-Amz-SignedHeaders=host&X-Amz-Expires=21600
//	&X-Amz-Credential=…&X-Amz-Signature=…
//
// RDP's host is https://<bucket>.s3.amazonaws.com; the simulator's is S3URL (a loopback
// address tests can reach), with the same path and query. The signature covers the exact
// bytes of the path and of the query before "&X-Amz-Signature=": a client that decodes and
// re-encodes either gets 403 SignatureDoesNotMatch, as from S3. tokenEnd, if not zero, ends the
// URL's session token then (else SessionTokenTTL after now, or never).
func (s *Server) presignLocked(f *fileRec, now, tokenEnd time.Time) string {
	token := base64.StdEncoding.EncodeToString(append([]byte("IQoJb3JpZ2luX2Vj"), randomBytes(60)...))
	switch {
	case !tokenEnd.IsZero():
	case s.opts.SessionTokenTTL > 0:
		tokenEnd = now.Add(s.opts.SessionTokenTTL)
	default:
		tokenEnd = now.Add(s.opts.URLExpiry + 24*time.Hour)
	}
	s.sessionTokens[token] = tokenEnd
	q := []queryParam{
		{"x-request-Id", randid.UUID()},
		{"X-Amz-Security-Token", token},
		{"X-Amz-Algorithm", "AWS4-HMAC-SHA256"},
		{"X-Amz-Date", now.Format(amzDateFmt)},
		{"X-Amz-SignedHeaders", "host"},
		{"X-Amz-Expires", strconv.Itoa(int(s.opts.URLExpiry / time.Second))},
		{"X-Amz-Credential", "ASIA" + strings.ToUpper(randid.Hex(8)) + "/" + now.Format(amzShortDate) + "/" + s3Region + "/s3/aws4_request"},
	}
	var b strings.Builder
	for i, p := range q {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(s3Escape(p.k) + "=" + s3Escape(p.v))
	}
	path := s.objectPathLocked(f)
	query := b.String()
	return s.s3URL + path + "?" + query + "&X-Amz-Signature=" + s.signature(path, query)
}

// objectPathLocked is the file's object path (assigned once): /<packageName>/YYYY/MM/DD/<name>,
// the date being the file-set's creation date. Should another file already own that key, the
// file-set id is added as a segment before the name (RDP's keys are unique; tests' names may
// not be).
func (s *Server) objectPathLocked(f *fileRec) string {
	if f.objectPath != "" {
		return f.objectPath
	}
	pkg := f.set.packageID
	if p := s.pkgByID[pkg]; p != nil && p.name != "" {
		pkg = p.name
	}
	segs := []string{pkg}
	segs = append(segs, strings.Split(f.set.created.Format("2006/01/02"), "/")...)
	key := strings.Join(append(segs, f.name), "/")
	if other := s.objects[key]; other != nil && other != f {
		segs = append(segs, f.set.id)
		key = strings.Join(append(segs, f.name), "/")
	}
	s.objects[key] = f
	f.objectPath = canonicalPath(append(segs, f.name))
	return f.objectPath
}

type queryParam struct{ k, v string }

func canonicalPath(segs []string) string {
	var b strings.Builder
	for _, seg := range segs {
		b.WriteString("/" + s3Escape(seg))
	}
	return b.String()
}

// signature is an HMAC over the exact bytes of the path and of the query without the signature.
func (s *Server) signature(rawPath, rawQuery string) string {
	mac := hmac.New(sha256.New, s.signKey)
	mac.Write([]byte(rawPath + "\n" + rawQuery))
	return hex.EncodeToString(mac.Sum(nil))
}

// ExpireSessionTokens ends the session token of every presigned URL handed out so far: the
// presigned host answers them 400 ExpiredToken, as S3 does when the temporary credentials a URL
// was signed with end before its X-Amz-Expires.
func (s *Server) ExpireSessionTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	end := s.now().Add(-time.Second)
	for t := range s.sessionTokens {
		s.sessionTokens[t] = end
	}
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
	e.RequestID = strings.ToUpper(randid.Hex(8))
	e.HostID = randid.Hex(24)
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

// presignedRequest is a presigned request split into its raw parts.
type presignedRequest struct {
	rawPath, rawQuery, signature string // rawQuery: the query as sent, without X-Amz-Signature
	q                            url.Values
}

// splitPresigned takes the request target apart without decoding anything that is signed.
func splitPresigned(r *http.Request) presignedRequest {
	target := r.RequestURI
	if i := strings.Index(target, "://"); i >= 0 { // absolute-form
		target = target[i+3:]
		if j := strings.IndexByte(target, '/'); j >= 0 {
			target = target[j:]
		}
	}
	var p presignedRequest
	var query string
	p.rawPath, query, _ = strings.Cut(target, "?")
	var rest []string
	for _, kv := range strings.Split(query, "&") {
		if sig, ok := strings.CutPrefix(kv, "X-Amz-Signature="); ok && p.signature == "" {
			p.signature = sig
			continue
		}
		rest = append(rest, kv)
	}
	p.rawQuery = strings.Join(rest, "&")
	p.q, _ = url.ParseQuery(p.rawQuery)
	return p
}

// objectKey decodes the raw path into the object key ("" if it does not decode).
func objectKey(rawPath string) string {
	var segs []string
	for _, seg := range strings.Split(strings.TrimPrefix(rawPath, "/"), "/") {
		dec, err := url.PathUnescape(seg)
		if err != nil {
			return ""
		}
		segs = append(segs, dec)
	}
	return strings.Join(segs, "/")
}

func (s *Server) countS3(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counters.S3Requests++
	switch r.Method {
	case http.MethodGet:
		s.counters.Requests[EPS3Get]++
	case http.MethodHead:
		s.counters.Requests[EPS3Head]++
	default:
		s.counters.Requests[EPOther]++
	}
}

func (s *Server) serveS3(w http.ResponseWriter, r *http.Request) {
	s.countS3(r)
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
	p := splitPresigned(r)
	for _, k := range []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders"} {
		if p.q.Get(k) == "" || p.signature == "" {
			s.s3Denied(w, r, s3Error{Code: "AccessDenied", Message: "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."})
			return
		}
	}
	date, derr := time.Parse(amzDateFmt, p.q.Get("X-Amz-Date"))
	secs, eerr := strconv.Atoi(p.q.Get("X-Amz-Expires"))
	if derr != nil || eerr != nil || !hmac.Equal([]byte(s.signature(p.rawPath, p.rawQuery)), []byte(p.signature)) {
		s.s3Denied(w, r, s3Error{Code: "SignatureDoesNotMatch", Message: "The request signature we calculated does not match the signature you provided. Check your key and signing method."})
		return
	}
	s.serveSigned(w, r, p, date.Add(time.Duration(secs)*time.Second), secs)
}

// serveSigned serves a request whose signature holds: expiry, session token, faults, object.
func (s *Server) serveSigned(w http.ResponseWriter, r *http.Request, p presignedRequest, expiresAt time.Time, secs int) {
	now := s.now()
	key := objectKey(p.rawPath)
	s.mu.Lock()
	f := s.objects[key]
	tokenEnd, known := s.sessionTokens[p.q.Get("X-Amz-Security-Token")]
	s.mu.Unlock()
	fileID := ""
	if f != nil {
		fileID = f.id
	}
	fault := s.takeFault(HostS3, r.URL.Path, fileID)
	if !now.Before(expiresAt) || (fault != nil && fault.Kind == FaultExpiredURL) {
		s.mu.Lock()
		s.counters.S3Expired++
		s.mu.Unlock()
		writeS3Error(w, r, http.StatusForbidden, s3Error{Code: "AccessDenied", Message: "Request has expired",
			XAmzExpire: strconv.Itoa(secs), Expires: expiresAt.UTC().Format(time.RFC3339), ServerTime: now.Format(time.RFC3339)})
		return
	}
	if !known || !now.Before(tokenEnd) || (fault != nil && fault.Kind == FaultExpiredToken) {
		s.mu.Lock()
		s.counters.S3ExpiredTokens++
		s.mu.Unlock()
		writeS3Error(w, r, http.StatusBadRequest, s3Error{Code: "ExpiredToken", Message: "The provided token has expired."})
		return
	}
	if fault != nil && s.s3Fault(w, r, fault) {
		return
	}
	s.mu.Lock()
	found := f != nil && !f.deleted
	var modified time.Time
	if found {
		modified = f.set.modified
	}
	s.mu.Unlock()
	if !found {
		writeS3Error(w, r, http.StatusNotFound, s3Error{Code: "NoSuchKey", Message: "The specified key does not exist.", Key: key})
		return
	}
	s.serveObject(w, r, f, modified, fault)
}

// s3Fault answers an injected fault that replaces the response; it reports whether it did.
func (s *Server) s3Fault(w http.ResponseWriter, r *http.Request, fault *Fault) bool {
	switch fault.Kind {
	case FaultUnauthorized:
		writeS3Error(w, r, http.StatusForbidden, s3Error{Code: "AccessDenied", Message: "Access Denied"})
	case FaultTooManyRequests:
		w.Header().Set("Retry-After", retryAfterSeconds(fault.retryAfter()))
		status := http.StatusServiceUnavailable
		if s.opts.S3Throttle429 {
			status = http.StatusTooManyRequests
		}
		writeS3Error(w, r, status, s3Error{Code: "SlowDown", Message: "Please reduce your request rate."})
	case FaultServerError:
		writeS3Error(w, r, http.StatusInternalServerError, s3Error{Code: "InternalError", Message: "We encountered an internal error. Please try again."})
	case FaultUnavailable:
		writeS3Error(w, r, http.StatusServiceUnavailable, s3Error{Code: "SlowDown", Message: "Please reduce your request rate."})
	case FaultReset:
		resetConn(w)
	default:
		return false
	}
	return true
}

func (s *Server) s3Denied(w http.ResponseWriter, r *http.Request, e s3Error) {
	s.mu.Lock()
	s.counters.S3BadSignature++
	s.mu.Unlock()
	writeS3Error(w, r, http.StatusForbidden, e)
}

// singlePartMax is the largest object whose ETag is its plain MD5 (a single-part upload);
// larger objects are multipart uploads in MultipartPartSize parts.
const singlePartMax = 256 << 20

// MultipartPartSize is the part size of the simulated multipart uploads: the ETag of an object
// over 256 MiB is hex(md5(md5(part 1) ‖ … ‖ md5(part N)))-N, as S3 computes it.
const MultipartPartSize = 8 << 20

// etag is the object's ETag: the plain md5 up to singlePartMax, else S3's multipart ETag up to
// Options.ETagMaxSize, else none (computing it would read the whole object).
func (s *Server) etag(f *fileRec) string {
	switch {
	case s.opts.NoETag:
		return ""
	case f.size <= singlePartMax:
		return `"` + f.trueMD5() + `"`
	case f.size <= s.opts.ETagMaxSize:
		f.etagOnce.Do(func() { f.multipartETag = MultipartETag(f.id, f.size, MultipartPartSize) })
		return `"` + f.multipartETag + `"`
	}
	return ""
}

// MultipartETag is S3's ETag of a file's content uploaded in parts of partSize:
// hex(md5 of the concatenated binary md5s of the parts) + "-" + the number of parts.
func MultipartETag(fileID string, size, partSize int64) string {
	all := md5.New()
	part := md5.New()
	r := Content(fileID, size)
	n := 0
	for off := int64(0); off < size; off += partSize {
		part.Reset()
		if _, err := io.CopyN(part, r, min(partSize, size-off)); err != nil {
			panic(err)
		}
		all.Write(part.Sum(nil))
		n++
	}
	return fmt.Sprintf("%s-%d", hex.EncodeToString(all.Sum(nil)), n)
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
	if etag != "" {
		h.Set("ETag", etag)
	}
	h.Set("Last-Modified", modified.UTC().Format(http.TimeFormat))
	h.Set("x-amz-request-id", strings.ToUpper(randid.Hex(8)))
	h.Set("Server", "AmazonS3")
	if im := r.Header.Get("If-Match"); im != "" && (etag == "" || (im != "*" && im != etag)) {
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
