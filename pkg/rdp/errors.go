package rdp

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sentinels of the file store's answers (docs/rdp.md#file-store), matched
// with errors.Is by *APIError; ErrNotFound also by *PresignedError.
var (
	// ErrUnauthorized matches any 401 (the gateway's body:
	// {"error":{"id":"…","code":"401","message":"…","status":"Unauthorized"}}).
	ErrUnauthorized = errors.New("rdp: unauthorized")
	// ErrTokenExpired matches a 401 whose message says the token expired
	// ("token expired"; no public body is verified: ErrUnauthorized matches every 401).
	ErrTokenExpired = errors.New("rdp: token expired")
	// ErrForbidden matches a 403 from the file store (missing entitlement:
	// {"status":403,"message":"Access denied: Insufficient claims to access this resource"}).
	ErrForbidden = errors.New("rdp: forbidden")
	// ErrNotFound matches 404 and 410 from the file store (code
	// EDS.CFS.NoBucketFound, NoFilesetFound or NoFileFound: the file is gone)
	// and a 404 from the download host.
	ErrNotFound = errors.New("rdp: not found")
)

// APIError is a non-2xx answer from the RDP API gateway. It keeps every
// detail of the three shapes RDP is known to answer with:
//
//	{"error":{"id":"…","code":"401","message":"token expired","status":"Unauthorized"}}
//	{"error":{"id":"…","code":"EDS.CFS.NoFilesetFound","status":404,"message":"No resource found for: …"}}
//	{"status":403,"message":"Access denied: Insufficient claims to access this resource"}
//
// Status is the body's "status" as text whether it was a string
// ("Unauthorized") or a number ("404"); StatusCode is the HTTP status.
type APIError struct {
	Endpoint   string // operation, e.g. "list file-sets"
	StatusCode int
	Code       string // e.g. "401", "EDS.CFS.NoBucketFound"
	Message    string
	Status     string // "Unauthorized", "404", …
	ID         string // gateway request id (quote it to LSEG support)
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	s := fmt.Sprintf("%s: %d %s", e.Endpoint, e.StatusCode, msg)
	if e.Code != "" && e.Code != strconv.Itoa(e.StatusCode) {
		s += " [" + e.Code + "]"
	}
	if e.ID != "" {
		s += " (id " + e.ID + ")"
	}
	return s
}

// Is matches ErrUnauthorized (401), ErrTokenExpired (401 "…expired…"),
// ErrForbidden (403) and ErrNotFound (404, 410).
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrTokenExpired:
		return e.StatusCode == http.StatusUnauthorized && strings.Contains(strings.ToLower(e.Message), "expired")
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound || e.StatusCode == http.StatusGone
	}
	return false
}

// Temporary reports whether retrying the same request may succeed (5xx).
func (e *APIError) Temporary() bool { return e.StatusCode >= 500 }

// Sentinels of /auth/oauth2 answers {"error":"…","error_description":"…"}
// (docs/rdp.md#authentication), matched with errors.Is by *AuthError.
var (
	// ErrInvalidGrant matches an OAuth invalid_grant (a dead refresh token:
	// sign on with the password grant again).
	ErrInvalidGrant = errors.New("rdp: invalid grant")
	// ErrInvalidCredentials matches a rejected username or password (400
	// access_denied "Invalid username or password."). Retrying gets the
	// account blocked: back off and raise an alarm instead.
	ErrInvalidCredentials = errors.New("rdp: invalid username or password")
	// ErrSessionQuota matches 400 access_denied "Session quota is reached."
	// (the account already has a session; see TakeExclusiveSignOnControl).
	ErrSessionQuota = errors.New("rdp: session quota is reached")
	// ErrUnauthorizedClient matches invalid_client / unauthorized_client (bad
	// app key or secret: 401 invalid_client "Invalid Application Credential.").
	ErrUnauthorizedClient = errors.New("rdp: unauthorized client")
)

// AuthError is an OAuth error from /auth/oauth2/*:
// {"error":"invalid_grant","error_description":"…"}.
type AuthError struct {
	Endpoint    string
	StatusCode  int
	Code        string // error: invalid_grant, access_denied, invalid_client, …
	Description string // error_description
}

func (e *AuthError) Error() string {
	s := fmt.Sprintf("%s: %d %s", e.Endpoint, e.StatusCode, e.Code)
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// Is matches ErrInvalidGrant (invalid_grant: a dead refresh token),
// ErrInvalidCredentials (access_denied "Invalid username or password."),
// ErrSessionQuota and ErrUnauthorizedClient.
func (e *AuthError) Is(target error) bool {
	switch target {
	case ErrInvalidGrant:
		return e.Code == "invalid_grant"
	case ErrInvalidCredentials:
		return e.Code == "access_denied" && isBadPassword(e.Description)
	case ErrSessionQuota:
		return strings.Contains(strings.ToLower(e.Description), "session quota")
	case ErrUnauthorizedClient:
		return e.Code == "invalid_client" || e.Code == "unauthorized_client"
	}
	return false
}

// isBadPassword recognises RDP's wrong-username-or-password description
// ("Invalid username or password.") and close variants of it.
func isBadPassword(desc string) bool {
	d := strings.ToLower(desc)
	return strings.Contains(d, "username or password") || strings.Contains(d, "invalid password") ||
		strings.Contains(d, "invalid username")
}

// ErrRateLimited matches a 429 from any RDP endpoint (*RateLimitError).
var ErrRateLimited = errors.New("rdp: rate limited")

// RateLimitError is a 429. RetryAfter is the server's Retry-After (0 if absent).
type RateLimitError struct {
	Endpoint   string
	RetryAfter time.Duration
	Message    string
}

func (e *RateLimitError) Error() string {
	s := e.Endpoint + ": 429 too many requests"
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return s
}

// Is matches ErrRateLimited.
func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// DecodeError is a response body that is not the JSON the endpoint promises.
type DecodeError struct {
	Endpoint string
	Err      error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("%s: malformed response: %v", e.Endpoint, e.Err)
}
func (e *DecodeError) Unwrap() error { return e.Err }

// Sentinels of the presigned download host's answers (S3; docs/rdp.md#presigned-urls-s3),
// matched with errors.Is by *PresignedError.
var (
	// ErrURLExpired matches a presigned URL the download host no longer
	// accepts: 403, or 400 ExpiredToken / TokenRefreshRequired / InvalidToken
	// (its session token ended before X-Amz-Expires). Ask /stream again.
	ErrURLExpired = errors.New("rdp: presigned URL expired or denied")
	// ErrSourceChanged matches a 412 PreconditionFailed from the download
	// host: the object no longer has the ETag given to GetRangeIfMatch.
	// Start the file again (its earlier bytes belong to another version).
	ErrSourceChanged = errors.New("rdp: source object changed (ETag mismatch)")
)

// PresignedError is a non-2xx answer from the presigned download host. It
// never contains the URL (the URL carries credentials), only its host.
type PresignedError struct {
	Host       string
	StatusCode int
	Code       string // S3 error code, e.g. AccessDenied
	Message    string
}

func (e *PresignedError) Error() string {
	s := fmt.Sprintf("download from %s: %d", e.Host, e.StatusCode)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is matches ErrURLExpired (403; 400 ExpiredToken, TokenRefreshRequired or
// InvalidToken), ErrNotFound (404) and ErrSourceChanged (412).
func (e *PresignedError) Is(target error) bool {
	switch target {
	case ErrURLExpired:
		return e.StatusCode == http.StatusForbidden ||
			(e.StatusCode == http.StatusBadRequest && expiredTokenCodes[e.Code])
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrSourceChanged:
		return e.StatusCode == http.StatusPreconditionFailed
	}
	return false
}

// expiredTokenCodes are the S3 error codes of a 400 whose cause is the
// presigned URL's temporary credentials, not the request.
var expiredTokenCodes = map[string]bool{"ExpiredToken": true, "TokenRefreshRequired": true, "InvalidToken": true}

// Throttled reports a 503 SlowDown (or a 429) from the download host: retry
// the same URL later, more slowly.
func (e *PresignedError) Throttled() bool {
	return e.StatusCode == http.StatusTooManyRequests || (e.StatusCode == http.StatusServiceUnavailable)
}

// Temporary reports whether the same request may succeed later (5xx,
// including 503 SlowDown, and 429).
func (e *PresignedError) Temporary() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests
}
