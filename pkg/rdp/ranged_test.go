package rdp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestGetRangeMatch: the If-Match header is sent only when asked for, and a
// 412 matches ErrSourceChanged (not ErrURLExpired); ETag and the Content-Range
// total are exposed.
func TestGetRangeMatch(t *testing.T) {
	const etag = `"0123456789abcdef0123456789abcdef"`
	var gotIfMatch []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotIfMatch = append(gotIfMatch, r.Header.Get("If-Match"))
		if im := r.Header.Get("If-Match"); im != "" && im != etag {
			w.WriteHeader(http.StatusPreconditionFailed)
			_, _ = io.WriteString(w, "<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>")
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Range", "bytes 0-1/10")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, "ab")
	}))
	defer srv.Close()
	c, err := NewClient(WithBaseURL(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rr, err := c.GetRange(ctx, srv.URL+"/o?X-Amz-Signature=s", 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	rr.Body.Close()
	if rr.ETag != etag || rr.TotalSize != 10 {
		t.Errorf("etag %q total %d, want %q 10", rr.ETag, rr.TotalSize, etag)
	}
	rr, err = c.GetRangeMatch(ctx, srv.URL+"/o", 0, 2, etag)
	if err != nil {
		t.Fatal(err)
	}
	rr.Body.Close()
	_, err = c.GetRangeMatch(ctx, srv.URL+"/o", 0, 2, `"other"`)
	if !errors.Is(err, ErrSourceChanged) || errors.Is(err, ErrURLExpired) {
		t.Fatalf("412: %v, want ErrSourceChanged only", err)
	}
	var pe *PresignedError
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("412 error %v does not carry the PresignedError", err)
	}
	if gotIfMatch[0] != "" || gotIfMatch[1] != etag || gotIfMatch[2] != `"other"` {
		t.Errorf("If-Match sent %q", gotIfMatch)
	}
}
