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

// RangeResponse is an open byte range of a presigned object.
type RangeResponse struct {
	Body      io.ReadCloser // exactly Length bytes if the server keeps its word; verify
	Offset    int64         // first byte
	Length    int64         // bytes in Body (Content-Length)
	TotalSize int64         // the whole object's size (from Content-Range), -1 if unknown
	ETag      string
}

// ErrSourceChanged matches a 412 from the presigned host to GetRangeMatch:
// the object no longer has the ETag the caller pinned (it was replaced).
var ErrSourceChanged = errors.New("rdp: source object changed (If-Match failed)")

// GetRange opens bytes [offset, offset+length) of a presigned URL (length < 0:
// to the end). It sends no Authorization header and is not retried: the
// caller retries the range. Errors never contain the URL.
func (c *Client) GetRange(ctx context.Context, presignedURL string, offset, length int64) (*RangeResponse, error) {
	return c.GetRangeMatch(ctx, presignedURL, offset, length, "")
}

// GetRangeMatch is GetRange with an If-Match header when ifMatch is not
// empty (S3 answers 412 when the object's ETag differs: the error then
// matches ErrSourceChanged). Presigned URLs sign only the host header, so
// the extra header does not affect the signature.
func (c *Client) GetRangeMatch(ctx context.Context, presignedURL string, offset, length int64, ifMatch string) (*RangeResponse, error) {
	if offset < 0 {
		return nil, errors.New("get range: negative offset")
	}
	u, err := url.Parse(presignedURL)
	if err != nil || !u.IsAbs() {
		return nil, errors.New("get range: invalid presigned url")
	}
	host := u.Scheme + "://" + u.Host
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, presignedURL, nil)
	if err != nil {
		return nil, fmt.Errorf("get range from %s: %w", host, scrubURLError(err))
	}
	rng := "bytes=" + strconv.FormatInt(offset, 10) + "-"
	if length >= 0 {
		if length == 0 {
			return nil, errors.New("get range: zero length")
		}
		rng += strconv.FormatInt(offset+length-1, 10)
	}
	req.Header.Set("Range", rng)
	req.Header.Set("User-Agent", c.userAgent)
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	req.Header.Del("Authorization")
	resp, err := c.download.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("get range from %s: %w", host, unwrapURLError(err))
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, _, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			resp.Body.Close()
			return nil, fmt.Errorf("get range from %s: bad Content-Range %q for offset %d", host, resp.Header.Get("Content-Range"), offset)
		}
		return &RangeResponse{Body: resp.Body, Offset: offset, Length: resp.ContentLength, TotalSize: total, ETag: resp.Header.Get("ETag")}, nil
	case http.StatusOK:
		// The server ignored Range: only acceptable from offset 0.
		if offset != 0 {
			resp.Body.Close()
			return nil, fmt.Errorf("get range from %s: server ignored Range", host)
		}
		n := resp.ContentLength
		body := resp.Body
		if length >= 0 && (n < 0 || n > length) {
			body = readCloser{io.LimitReader(resp.Body, length), resp.Body}
			n = length
		}
		return &RangeResponse{Body: body, Offset: 0, Length: n, TotalSize: resp.ContentLength, ETag: resp.Header.Get("ETag")}, nil
	default:
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var s3 struct {
			Code    string `xml:"Code"`
			Message string `xml:"Message"`
		}
		_ = xml.Unmarshal(b, &s3)
		pe := &PresignedError{Host: host, StatusCode: resp.StatusCode, Code: s3.Code, Message: s3.Message}
		if resp.StatusCode == http.StatusPreconditionFailed {
			return nil, fmt.Errorf("%w: %w", ErrSourceChanged, pe)
		}
		return nil, pe
	}
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
