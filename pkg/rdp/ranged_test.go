package rdp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// s3Error writes an S3-style XML error.
func s3Error(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<Error><Code>%s</Code><Message>%s message</Message></Error>", code, code)
}

// TestGetRangeSendsURLByteForByte: the presigned path and query reach the
// host exactly as RDP wrote them (a re-encoded URL fails S3's signature).
func TestGetRangeSendsURLByteForByte(t *testing.T) {
	const pathQuery = "/PKG/2026/01/02/a%3Ab|c^d%2Ce.csv.gz?x-request-Id=r1&X-Amz-Expires=21600&X-Amz-Security-Token=Ab%2Fc%3D%3D+x&X-Amz-Signature=0f"
	var got string
	host := testServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.RequestURI
		w.Header().Set("Content-Range", "bytes 0-0/10")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write([]byte("x"))
	}))
	c, err := NewClient()
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.GetRange(context.Background(), host+pathQuery+"#frag", 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if got != pathQuery {
		t.Fatalf("host saw\n%s\nwant\n%s", got, pathQuery)
	}
}

// TestGetRangeAnswers: size and ETag are exposed, and every host error maps
// to what the caller must do.
func TestGetRangeAnswers(t *testing.T) {
	tests := []struct {
		name      string
		handler   func(w http.ResponseWriter, r *http.Request)
		ifMatch   string
		wantTotal int64
		wantETag  string
		is        []error
		isNot     []error
		temporary bool
	}{
		{"206 gives total size and ETag", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"9e107d9d372bb6826bd81d3542a419d6"`)
			w.Header().Set("Content-Range", "bytes 0-3/1234")
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write([]byte("abcd"))
		}, "", 1234, `"9e107d9d372bb6826bd81d3542a419d6"`, nil, nil, false},
		{"If-Match sent, 412 is ErrSourceChanged", func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("If-Match") != `"old"` {
				w.WriteHeader(http.StatusTeapot)
				return
			}
			s3Error(w, http.StatusPreconditionFailed, "PreconditionFailed")
		}, `"old"`, 0, "", []error{ErrSourceChanged}, []error{ErrURLExpired}, false},
		{"403 is ErrURLExpired", func(w http.ResponseWriter, r *http.Request) {
			s3Error(w, http.StatusForbidden, "AccessDenied")
		}, "", 0, "", []error{ErrURLExpired}, nil, false},
		{"400 ExpiredToken is ErrURLExpired", func(w http.ResponseWriter, r *http.Request) {
			s3Error(w, http.StatusBadRequest, "ExpiredToken")
		}, "", 0, "", []error{ErrURLExpired}, []error{ErrNotFound}, false},
		{"400 TokenRefreshRequired is ErrURLExpired", func(w http.ResponseWriter, r *http.Request) {
			s3Error(w, http.StatusBadRequest, "TokenRefreshRequired")
		}, "", 0, "", []error{ErrURLExpired}, nil, false},
		{"400 InvalidToken is ErrURLExpired", func(w http.ResponseWriter, r *http.Request) {
			s3Error(w, http.StatusBadRequest, "InvalidToken")
		}, "", 0, "", []error{ErrURLExpired}, nil, false},
		{"400 InvalidArgument is not", func(w http.ResponseWriter, r *http.Request) {
			s3Error(w, http.StatusBadRequest, "InvalidArgument")
		}, "", 0, "", nil, []error{ErrURLExpired}, false},
		{"503 SlowDown is temporary", func(w http.ResponseWriter, r *http.Request) {
			s3Error(w, http.StatusServiceUnavailable, "SlowDown")
		}, "", 0, "", nil, []error{ErrURLExpired, ErrNotFound}, true},
		{"404 NoSuchKey is ErrNotFound", func(w http.ResponseWriter, r *http.Request) {
			s3Error(w, http.StatusNotFound, "NoSuchKey")
		}, "", 0, "", []error{ErrNotFound}, []error{ErrURLExpired}, false},
	}
	c, err := NewClient()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := testServer(t, http.HandlerFunc(tt.handler))
			const secret = "X-Amz-Security-Token=SECRETTOKEN&X-Amz-Signature=SECRETSIG"
			r, err := c.GetRangeIfMatch(context.Background(), host+"/p/f.csv?"+secret, 0, 4, tt.ifMatch)
			if tt.is == nil && tt.isNot == nil {
				if err != nil {
					t.Fatal(err)
				}
				defer r.Body.Close()
				b, _ := io.ReadAll(r.Body)
				if string(b) != "abcd" || r.TotalSize != tt.wantTotal || r.ETag != tt.wantETag {
					t.Fatalf("body %q total %d etag %q", b, r.TotalSize, r.ETag)
				}
				return
			}
			var pe *PresignedError
			if !errors.As(err, &pe) {
				t.Fatalf("not a *PresignedError: %T %v", err, err)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Fatalf("error leaks the URL: %v", err)
			}
			checkIs(t, err, tt.is, tt.isNot)
			if pe.Temporary() != tt.temporary {
				t.Errorf("Temporary() = %t", pe.Temporary())
			}
		})
	}
}

// TestGetRangeTransportErrorHidesURL: a connection that fails gives an error
// naming the host, never the presigned URL (its query carries credentials).
func TestGetRangeTransportErrorHidesURL(t *testing.T) {
	host := testServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	c, err := NewClient()
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetRange(context.Background(), host+"/p/f.csv?X-Amz-Signature=SECRETSIG", 0, 4)
	if err == nil || strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "f.csv") || !strings.Contains(err.Error(), host) {
		t.Fatalf("err = %v, want one naming %s and not the URL", err, host)
	}
}
