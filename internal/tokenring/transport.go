package tokenring

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/cfsync/cfsync/pkg/rdp"
)

// maxErrorBody bounds how much of a 401 answer is read to explain it.
const maxErrorBody = 64 << 10

// Transport is the http.RoundTripper of Reader.HTTPClient. It adds the
// ring's newest token to every request and handles a 401 itself, so that no
// caller can forget to (docs/design.md#readers):
//
//   - A GET or HEAD refused with 401 is sent once more when the ring (read
//     again, unless another request already moved on) holds a newer
//     generation.
//   - When RDP refuses that one too, or the ring has nothing newer, the
//     refused generation is reported to the refresher (RING /
//     REPORT#<generation>) and the request fails with an error wrapping
//     both the gateway's *rdp.APIError (rdp.ErrUnauthorized) and
//     ErrTokenInvalid.
//   - Other methods are never sent twice: a 401 with nothing newer in the
//     ring is reported as above; with a newer generation the 401 answer is
//     returned as is, and the caller's next request uses the new token.
type Transport struct {
	reader *Reader
	base   http.RoundTripper
}

var _ http.RoundTripper = (*Transport)(nil)

// RoundTrip implements http.RoundTripper. It does not modify req.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	s, err := t.reader.slot(ctx, false)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := t.send(req, s, req.Body)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	next, newer, err := t.newer(ctx, s.Generation)
	if err != nil {
		return nil, fmt.Errorf("after %w on generation %d: %w", apiError(req, resp), s.Generation, err)
	}
	if !newer {
		return nil, t.refused(req, resp, s.Generation)
	}
	body, ok := replayBody(req)
	if !ok {
		return resp, nil // never re-send a non-idempotent request
	}
	drain(resp)
	resp, err = t.send(req, next, body)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	return nil, t.refused(req, resp, next.Generation)
}

// send sends a copy of req with s's token and the given body.
func (t *Transport) send(req *http.Request, s Slot, body io.ReadCloser) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Body = body
	s.OAuth2(0).SetAuthHeader(r)
	return t.base.RoundTrip(r)
}

// newer returns a generation newer than used: the one another request
// already moved on to, or else the ring's newest after a re-read.
func (t *Transport) newer(ctx context.Context, used int64) (Slot, bool, error) {
	if t.reader.Generation() <= used {
		fresh, err := t.reader.slot(ctx, true)
		if err != nil {
			return Slot{}, false, err
		}
		if fresh.Generation <= used {
			return fresh, false, nil
		}
	}
	// The slot itself, not Generation: another request may drop the cache
	// at any moment.
	s, err := t.reader.slot(ctx, false)
	if err != nil {
		return Slot{}, false, err
	}
	return s, s.Generation > used, nil
}

// refused reports gen as refused and returns the typed error for the 401
// answer resp, which it consumes.
func (t *Transport) refused(req *http.Request, resp *http.Response, gen int64) error {
	return t.reader.report(req.Context(), gen, apiError(req, resp))
}

// apiError reads and closes an error answer and returns it as the rdp
// client would (its endpoint: method and path, never the query).
func apiError(req *http.Request, resp *http.Response) *rdp.APIError {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return rdp.ParseAPIError(req.Method+" "+req.URL.Path, resp.StatusCode, b)
}

// idempotent reports whether req may be sent twice (RFC 9110 §9.2.2; only
// the methods the file store is read with).
func idempotent(req *http.Request) bool {
	return req.Method == "" || req.Method == http.MethodGet || req.Method == http.MethodHead
}

// replayBody returns a fresh copy of req's body for a second send, or false
// when req must not or cannot be sent again.
func replayBody(req *http.Request) (io.ReadCloser, bool) {
	if !idempotent(req) {
		return nil, false
	}
	if req.Body == nil || req.Body == http.NoBody {
		return req.Body, true
	}
	if req.GetBody == nil {
		return nil, false
	}
	b, err := req.GetBody()
	return b, err == nil
}

// drain reads a little of a discarded answer so that its connection can be
// reused, and closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
