package rdptest

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// streamURL asks /stream for a file's presigned URL.
func (e *env) streamURL(fileID, at string) string {
	e.t.Helper()
	r := e.get("/file-store/v1/files/"+fileID+"/stream?doNotRedirect=true", at)
	if r.status != 200 {
		e.t.Fatalf("stream: %d %s", r.status, r.body)
	}
	u, _ := r.json(e.t)["url"].(string)
	if u == "" {
		e.t.Fatalf("no url: %s", r.body)
	}
	return u
}

// s3 sends a request to a presigned URL with optional headers (pairs).
func (e *env) s3(method, u string, headers ...string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return e.do(req)
}

func s3Code(r resp) string {
	_, rest, _ := strings.Cut(string(r.body), "<Code>")
	code, _, _ := strings.Cut(rest, "</Code>")
	return code
}

func fullContent(f File) []byte {
	b := make([]byte, f.Size)
	if _, err := io.ReadFull(f.Content(), b); err != nil {
		panic(err)
	}
	return b
}

func TestStream(t *testing.T) {
	e, at := newTokenEnv(t, Options{URLExpiry: 10 * time.Minute})
	fs := e.s.AddFileSet(FileSetSpec{Bucket: DefaultBucket, PackageID: DefaultPackageID, Name: "s",
		Files: []FileSpec{{Name: "ESG Scores 2025-01-06T09:00:00.000Z.jsonl.gz", Size: 10}}})
	f := fs.Files[0]
	raw := e.streamURL(f.ID, at)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if "http://"+u.Host != e.s.S3URL() || e.s.S3URL() == e.s.URL() {
		t.Fatalf("URL host %s, want the S3 host %s (not the API host)", u.Host, e.s.S3URL())
	}
	esc := u.EscapedPath()
	last := esc[strings.LastIndex(esc, "/")+1:]
	if last != "ESG%20Scores%202025-01-06T09%3A00%3A00.000Z.jsonl.gz" {
		t.Fatalf("last segment %q", last)
	}
	if dec, _ := url.PathUnescape(last); dec != f.Name {
		t.Fatalf("decoded %q", dec)
	}
	q := u.Query()
	for _, k := range []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Security-Token", "X-Amz-Signature"} {
		if q.Get(k) == "" {
			t.Errorf("missing %s", k)
		}
	}
	if q.Get("X-Amz-Expires") != "600" || q.Get("X-Amz-Date") != e.clock.Now().Format(amzDateFmt) {
		t.Errorf("expires %s date %s", q.Get("X-Amz-Expires"), q.Get("X-Amz-Date"))
	}
	// Without doNotRedirect: a 302 to a presigned URL.
	r := e.get("/file-store/v1/files/"+f.ID+"/stream", at)
	if r.status != 302 || !strings.HasPrefix(r.header.Get("Location"), e.s.S3URL()+"/") {
		t.Fatalf("redirect: %d %q", r.status, r.header.Get("Location"))
	}
	if got := e.s3("GET", r.header.Get("Location")); got.status != 200 || !bytes.Equal(got.body, fullContent(f)) {
		t.Fatalf("redirect target: %d", got.status)
	}
	if c := e.s.Counters(); c.StreamURLs != 2 || c.Requests[EPStream] != 2 {
		t.Fatalf("counters %+v", c)
	}
	if r := e.get("/file-store/v1/files/"+f.ID+"/stream?doNotRedirect=true", ""); r.status != 401 {
		t.Fatalf("stream without token: %d", r.status)
	}
}

func TestS3Ranges(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	fs := e.s.AddFileSet(FileSetSpec{Bucket: DefaultBucket, PackageID: DefaultPackageID, Name: "r",
		Files: []FileSpec{{Name: "f.bin", Size: 1000}, {Name: "empty.bin", Size: 0}}})
	f, empty := fs.Files[0], fs.Files[1]
	full := fullContent(f)
	u := e.streamURL(f.ID, at)
	sum := md5.Sum(full)
	etag := `"` + hex.EncodeToString(sum[:]) + `"`
	tests := []struct {
		name, rng    string
		wantStatus   int
		start, end   int // inclusive, for 200/206
		contentRange string
	}{
		{"no range", "", 200, 0, 999, ""},
		{"a-b", "bytes=10-19", 206, 10, 19, "bytes 10-19/1000"},
		{"a-b unaligned", "bytes=3-12", 206, 3, 12, "bytes 3-12/1000"},
		{"a-", "bytes=990-", 206, 990, 999, "bytes 990-999/1000"},
		{"end past size", "bytes=900-5000", 206, 900, 999, "bytes 900-999/1000"},
		{"suffix", "bytes=-5", 206, 995, 999, "bytes 995-999/1000"},
		{"whole as range", "bytes=0-999", 206, 0, 999, "bytes 0-999/1000"},
		{"last byte", "bytes=999-999", 206, 999, 999, "bytes 999-999/1000"},
		{"start at size", "bytes=1000-", 416, 0, 0, "bytes */1000"},
		{"start past size", "bytes=2000-3000", 416, 0, 0, "bytes */1000"},
		{"multiple ranges are ignored", "bytes=0-1,5-6", 200, 0, 999, ""},
		{"bad syntax is ignored", "bytes=x-y", 200, 0, 999, ""},
		{"reversed is ignored", "bytes=9-3", 200, 0, 999, ""},
		{"other unit is ignored", "items=0-1", 200, 0, 999, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{"GET", "HEAD"} {
				var h []string
				if tc.rng != "" {
					h = []string{"Range", tc.rng}
				}
				r := e.with(t).s3(method, u, h...)
				if r.status != tc.wantStatus {
					t.Fatalf("%s: status %d, want %d: %s", method, r.status, tc.wantStatus, r.body)
				}
				if got := r.header.Get("Content-Range"); got != tc.contentRange {
					t.Fatalf("%s: Content-Range %q, want %q", method, got, tc.contentRange)
				}
				if tc.wantStatus == 416 {
					if method == "GET" && s3Code(r) != "InvalidRange" {
						t.Fatalf("416 body %s", r.body)
					}
					continue
				}
				want := full[tc.start : tc.end+1]
				if cl := r.header.Get("Content-Length"); cl != strconv.Itoa(len(want)) {
					t.Fatalf("%s: Content-Length %s, want %d", method, cl, len(want))
				}
				if r.header.Get("ETag") != etag || r.header.Get("Accept-Ranges") != "bytes" || r.header.Get("Last-Modified") == "" {
					t.Fatalf("%s: headers %v", method, r.header)
				}
				if method == "GET" && !bytes.Equal(r.body, want) {
					t.Fatalf("body differs from Content[%d:%d]", tc.start, tc.end+1)
				}
				if method == "HEAD" && len(r.body) != 0 {
					t.Fatal("HEAD with a body")
				}
			}
		})
	}
	// An empty file: 200 with no body; any range is unsatisfiable.
	eu := e.streamURL(empty.ID, at)
	if r := e.s3("GET", eu); r.status != 200 || len(r.body) != 0 {
		t.Fatalf("empty file: %d %d bytes", r.status, len(r.body))
	}
	if r := e.s3("GET", eu, "Range", "bytes=0-"); r.status != 416 {
		t.Fatalf("range on empty file: %d", r.status)
	}
	// Conditional requests.
	if r := e.s3("GET", u, "If-Match", `"nope"`); r.status != 412 {
		t.Fatalf("If-Match mismatch: %d", r.status)
	}
	if r := e.s3("GET", u, "If-Match", etag, "Range", "bytes=0-0"); r.status != 206 {
		t.Fatalf("If-Match match: %d", r.status)
	}
	if r := e.s3("GET", u, "If-Range", `"nope"`, "Range", "bytes=0-0"); r.status != 200 {
		t.Fatalf("If-Range mismatch: %d", r.status)
	}
	c := e.s.Counters()
	if c.RangeRequests != 7*2+1 || c.AuthHeaderOnS3 != 0 || c.BytesServed == 0 {
		t.Fatalf("counters %+v", c)
	}
}

func TestS3Validation(t *testing.T) {
	e, at := newTokenEnv(t, Options{URLExpiry: 15 * time.Minute})
	f := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 100)[0].Files[0]
	u := e.streamURL(f.ID, at)
	tamper := func(key, value string) string {
		pu, _ := url.Parse(u)
		q := pu.Query()
		if value == "" {
			q.Del(key)
		} else {
			q.Set(key, value)
		}
		pu.RawQuery = q.Encode()
		return pu.String()
	}
	other := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 100)[0].Files[0]
	otherURL, _ := url.Parse(e.streamURL(other.ID, at))
	swapped, _ := url.Parse(u)
	swapped.RawPath, swapped.Path = otherURL.RawPath, otherURL.Path
	tests := []struct {
		name       string
		url        string
		headers    []string
		wantStatus int
		wantCode   string
	}{
		{"valid", u, nil, 200, ""},
		{"authorization header", u, []string{"Authorization", "Bearer " + at}, 400, "InvalidArgument"},
		{"bad signature", tamper("X-Amz-Signature", strings.Repeat("0", 64)), nil, 403, "SignatureDoesNotMatch"},
		{"longer expiry", tamper("X-Amz-Expires", "604800"), nil, 403, "SignatureDoesNotMatch"},
		{"no signature", tamper("X-Amz-Signature", ""), nil, 403, "AccessDenied"},
		{"path of another file", swapped.String(), nil, 403, "SignatureDoesNotMatch"},
		{"no such path", e.s.S3URL() + "/x", nil, 403, "AccessDenied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.with(t).s3("GET", tc.url, tc.headers...)
			if r.status != tc.wantStatus || s3Code(r) != tc.wantCode {
				t.Fatalf("got %d %q, want %d %q: %s", r.status, s3Code(r), tc.wantStatus, tc.wantCode, r.body)
			}
		})
	}
	if c := e.s.Counters(); c.AuthHeaderOnS3 != 1 || c.S3BadSignature != 5 {
		t.Fatalf("counters %+v", c)
	}
	// The signature covers the exact bytes: a re-encoded path or query fails it, as on S3.
	reencoded := map[string]string{
		"':' decoded in the path":   strings.Replace(u, "%3A", ":", 1),
		"query re-encoded (sorted)": tamper("X-Amz-Date", url.Values(must(url.ParseQuery(must(url.Parse(u)).RawQuery))).Get("X-Amz-Date")),
		"'=' decoded in the token":  strings.Replace(u, "%3D", "=", 1),
	}
	for name, v := range reencoded {
		if v == u {
			t.Fatalf("%s: the URL has nothing to re-encode", name)
		}
		if r := e.s3("GET", v); r.status != 403 || s3Code(r) != "SignatureDoesNotMatch" {
			t.Fatalf("%s: %d %s", name, r.status, r.body)
		}
	}
	// Expiry follows the simulator clock.
	e.clock.Advance(15*time.Minute - time.Second)
	if r := e.s3("GET", u, "Range", "bytes=0-0"); r.status != 206 {
		t.Fatalf("just before expiry: %d", r.status)
	}
	e.clock.Advance(time.Second)
	r := e.s3("GET", u)
	if r.status != 403 || s3Code(r) != "AccessDenied" || !strings.Contains(string(r.body), "<Message>Request has expired</Message>") ||
		!strings.Contains(string(r.body), "<X-Amz-Expires>900</X-Amz-Expires>") {
		t.Fatalf("expired: %d %s", r.status, r.body)
	}
	if e.s.Counters().S3Expired != 1 {
		t.Fatal("S3Expired not counted")
	}
	// A fresh URL works again; a deleted file's URL answers 404 NoSuchKey.
	at, _ = e.s.IssueTokens(DefaultUser, DefaultAppKey)
	u = e.streamURL(f.ID, at)
	e.s.DeleteFile(f.ID)
	if r := e.s3("GET", u); r.status != 404 || s3Code(r) != "NoSuchKey" {
		t.Fatalf("deleted: %d %s", r.status, r.body)
	}
	if r := e.s3("PUT", u); r.status != 405 {
		t.Fatalf("PUT: %d", r.status)
	}
}

func TestLargeFileCostsNoMemory(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	const size = 10 << 30
	f := e.s.AddFileSet(FileSetSpec{Bucket: DefaultBucket, PackageID: DefaultPackageID, Name: "big",
		Files: []FileSpec{{Name: "big.bin", Size: size}}}).Files[0]
	if f.MD5 != "" {
		t.Fatal("a 10 GiB file must not expose an md5")
	}
	u := e.streamURL(f.ID, at)
	r := e.s3("GET", u, "Range", "bytes=10737418200-")
	if r.status != 206 || r.header.Get("Content-Range") != "bytes 10737418200-10737418239/10737418240" {
		t.Fatalf("tail range: %d %v", r.status, r.header)
	}
	want := make([]byte, 40)
	ContentAt(f.ID, want, 10737418200)
	if !bytes.Equal(r.body, want) {
		t.Fatal("tail bytes differ")
	}
	h := e.s3("HEAD", u)
	// Over ETagMaxSize (1 GiB) no ETag: a verifiable multipart ETag would read all 10 GiB.
	if h.header.Get("Content-Length") != "10737418240" || h.header.Get("ETag") != "" {
		t.Fatalf("HEAD %v", h.header)
	}
}

func TestBandwidthPerConn(t *testing.T) {
	if testing.Short() {
		t.Skip("takes ~0.25 s")
	}
	e, at := newTokenEnv(t, Options{BandwidthPerConn: 256 << 10})
	f := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 64<<10)[0].Files[0]
	u := e.streamURL(f.ID, at)
	start := time.Now()
	r := e.s3("GET", u)
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("64 KiB at 256 KiB/s took %v, want >= 250ms", took)
	}
	if !bytes.Equal(r.body, fullContent(f)) {
		t.Fatal("throttled body differs")
	}
}

func TestConcurrentDownloads(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	files := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 4, 2, 300<<10)
	errs := make(chan error, 16)
	for _, fs := range files {
		for _, f := range fs.Files {
			u := e.streamURL(f.ID, at)
			want := fullContent(f)
			go func() {
				for _, rng := range [][2]int{{0, 100<<10 - 1}, {100 << 10, 300<<10 - 1}} {
					req, _ := http.NewRequest("GET", u, nil)
					req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", rng[0], rng[1]))
					r, err := e.send(req)
					if err == nil && !bytes.Equal(r.body, want[rng[0]:rng[1]+1]) {
						err = io.ErrUnexpectedEOF
					}
					if err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	e.s.WaitIdle(2 * time.Second)
	if c := e.s.Counters(); c.RangeRequests != 16 || c.BytesServed != 8*300<<10 || c.ActiveDownloads != 0 || c.MaxActiveDownloads < 1 {
		t.Fatalf("counters %+v", c)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
