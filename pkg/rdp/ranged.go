package rdp

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// RangeResponse is an open byte range of a presigned object. The caller
// must close Body.
type RangeResponse struct {
	Body   io.ReadCloser // exactly Length bytes if the server keeps its word; verify
	Offset int64         // first byte
	Length int64         // bytes in Body (Content-Length; -1 if unknown)
	// TotalSize is the whole object's size, from Content-Range "bytes a-b/TOTAL"
	// (or Content-Length when the host ignored Range from offset 0); -1 if the
	// host did not say. A downloader can learn a file's size from its first
	// range instead of asking the file store.
	TotalSize int64
	// ETag is the object's entity tag exactly as the host sent it (quotes
	// included), "" if none. Pass it to GetRangeIfMatch for every later range
	// so that the object cannot change under a download. A plain 32-hex ETag
	// is the object's MD5 on S3 (single-part uploads without SSE-KMS); a
	// "…-N" ETag is a multipart upload's MD5 of part MD5s.
	ETag string
}

// GetRange opens bytes [offset, offset+length) of a presigned URL (length < 0:
// to the end). It is GetRangeIfMatch without a precondition.
func (c *Client) GetRange(ctx context.Context, presignedURL string, offset, length int64) (*RangeResponse, error) {
	return c.GetRangeIfMatch(ctx, presignedURL, offset, length, "")
}

// GetRangeIfMatch opens bytes [offset, offset+length) of a presigned URL
// (length < 0: to the end). A non-empty ifMatch (an ETag from an earlier
// RangeResponse) is sent as If-Match: if the object changed since, the host
// answers 412 and the error matches ErrSourceChanged.
//
// The URL is sent byte-for-byte as given (path and query are never decoded
// and re-encoded: S3 signs the exact bytes). No Authorization header is sent,
// and the call is not retried: the caller retries the range. Errors are a
// *PresignedError for a non-2xx answer (errors.Is ErrURLExpired → ask
// /stream for a new URL; ErrNotFound; ErrSourceChanged; Temporary() for 5xx
// and 503 SlowDown) and never contain the URL, only its host.
func (c *Client) GetRangeIfMatch(ctx context.Context, presignedURL string, offset, length int64, ifMatch string) (*RangeResponse, error) {
	if offset < 0 {
		return nil, errors.New("get range: negative offset")
	}
	if length == 0 {
		return nil, errors.New("get range: zero length")
	}
	u, err := rawURL(presignedURL)
	if err != nil {
		return nil, err
	}
	host := u.Scheme + "://" + u.Host
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, host, nil)
	if err != nil {
		return nil, fmt.Errorf("get range from %s: %w", host, unwrapURLError(err))
	}
	req.URL, req.Host = u, u.Host
	rng := "bytes=" + strconv.FormatInt(offset, 10) + "-"
	if length > 0 {
		rng += strconv.FormatInt(offset+length-1, 10)
	}
	req.Header.Set("Range", rng)
	req.Header.Set("User-Agent", c.userAgent)
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := c.download.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("get range from %s: %w", host, unwrapURLError(err))
	}
	return rangeResponse(resp, host, offset, length)
}

// rawURL parses a presigned URL for sending it exactly as written: the path
// goes in Opaque (net/url would re-escape characters it considers unsafe)
// and the query stays RawQuery.
func rawURL(presignedURL string) (*url.URL, error) {
	u, err := url.Parse(presignedURL)
	if err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, errors.New("get range: invalid presigned url")
	}
	rest := presignedURL[strings.Index(presignedURL, "//")+2:]
	rest, _, _ = strings.Cut(rest, "#")
	rest, _, _ = strings.Cut(rest, "?")
	p := "/"
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		p = rest[i:]
	}
	u.Opaque, u.Fragment, u.RawFragment = p, "", ""
	return u, nil
}

// rangeResponse turns the host's answer into a RangeResponse or a
// *PresignedError, closing the body on error.
func rangeResponse(resp *http.Response, host string, offset, length int64) (*RangeResponse, error) {
	etag := resp.Header.Get("ETag")
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, _, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			resp.Body.Close()
			return nil, fmt.Errorf("get range from %s: bad Content-Range %q for offset %d", host, resp.Header.Get("Content-Range"), offset)
		}
		return &RangeResponse{Body: resp.Body, Offset: offset, Length: resp.ContentLength, TotalSize: total, ETag: etag}, nil
	case http.StatusOK:
		// The server ignored Range: only acceptable from offset 0.
		if offset != 0 {
			resp.Body.Close()
			return nil, fmt.Errorf("get range from %s: server ignored Range", host)
		}
		n := resp.ContentLength
		body := resp.Body
		if length > 0 && (n < 0 || n > length) {
			body = readCloser{io.LimitReader(resp.Body, length), resp.Body}
			n = length
		}
		return &RangeResponse{Body: body, Offset: 0, Length: n, TotalSize: resp.ContentLength, ETag: etag}, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var s3 struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	_ = xml.Unmarshal(b, &s3)
	return nil, &PresignedError{Host: host, StatusCode: resp.StatusCode, Code: s3.Code, Message: s3.Message}
}

// Size learns a presigned object's size with a one-byte range request.
func (c *Client) Size(ctx context.Context, presignedURL string) (int64, error) {
	r, err := c.GetRange(ctx, presignedURL, 0, 1)
	if err != nil {
		return 0, err
	}
	defer r.Body.Close()
	_, _ = io.Copy(io.Discard, r.Body)
	if r.TotalSize < 0 {
		return 0, errors.New("size: server gave no Content-Range total")
	}
	return r.TotalSize, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// parseContentRange parses "bytes a-b/total" (total may be "*": -1).
func parseContentRange(v string) (start, end, total int64, ok bool) {
	v, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(v, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err error
	if start, err = strconv.ParseInt(a, 10, 64); err != nil {
		return 0, 0, 0, false
	}
	if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
		return 0, 0, 0, false
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, 0, false
		}
	}
	return start, end, total, true
}

// unwrapURLError drops a *url.Error's URL, keeping the cause.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
