package rdp

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAPIErrorShapes: every error body RDP is known to send keeps its code,
// message, id and status, and matches the right sentinels.
func TestAPIErrorShapes(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		want     APIError
		is       []error
		isNot    []error
		inString []string
	}{
		{"gateway 401, status a string", 401,
			`{"error":{"id":"a1","code":"401","message":"token expired","status":"Unauthorized"}}`,
			APIError{StatusCode: 401, Code: "401", Message: "token expired", Status: "Unauthorized", ID: "a1"},
			[]error{ErrUnauthorized, ErrTokenExpired}, []error{ErrNotFound, ErrForbidden}, []string{"token expired", "a1"}},
		{"CFS 404, status a number", 404,
			`{"error":{"id":"b2","code":"EDS.CFS.NoFilesetFound","status":404,"message":"No resource found for: fs1"}}`,
			APIError{StatusCode: 404, Code: "EDS.CFS.NoFilesetFound", Message: "No resource found for: fs1", Status: "404", ID: "b2"},
			[]error{ErrNotFound}, []error{ErrUnauthorized, ErrForbidden}, []string{"EDS.CFS.NoFilesetFound", "No resource found for: fs1", "b2"}},
		{"CFS 404 bucket, numeric code", 404,
			`{"error":{"id":"c3","code":404,"status":404,"message":"No resource found for: bkt"}}`,
			APIError{StatusCode: 404, Code: "404", Message: "No resource found for: bkt", Status: "404", ID: "c3"},
			[]error{ErrNotFound}, nil, []string{"No resource found"}},
		{"flat 403 missing claim", 403,
			`{"status":403,"message":"Access denied: Insufficient claims to access this resource"}`,
			APIError{StatusCode: 403, Message: "Access denied: Insufficient claims to access this resource", Status: "403"},
			[]error{ErrForbidden}, []error{ErrUnauthorized, ErrNotFound, ErrURLExpired}, []string{"Insufficient claims"}},
		{"410 gone", 410, `{}`, APIError{StatusCode: 410}, []error{ErrNotFound}, nil, []string{"Gone"}},
		{"not JSON", 502, `<html>bad gateway</html>`, APIError{StatusCode: 502}, nil, []error{ErrNotFound}, []string{"502"}},
		{"oauth-style body", 400, `{"error":"invalid_request","error_description":"bad"}`,
			APIError{StatusCode: 400, Code: "invalid_request", Message: "bad"}, nil, []error{ErrNotFound}, []string{"bad"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ParseAPIError("op", tt.status, []byte(tt.body))
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("not an *APIError: %T", err)
			}
			tt.want.Endpoint = "op"
			if *ae != tt.want {
				t.Errorf("got %+v\nwant %+v", *ae, tt.want)
			}
			checkIs(t, err, tt.is, tt.isNot)
			for _, s := range tt.inString {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q lacks %q", err.Error(), s)
				}
			}
		})
	}
}

// TestAuthErrorClassification: a wrong password is ErrInvalidCredentials and
// not ErrInvalidGrant (a dead refresh token); the session quota stays its own.
func TestAuthErrorClassification(t *testing.T) {
	tests := []struct {
		name, body string
		is, isNot  []error
	}{
		{"wrong password", `{"error":"access_denied","error_description":"Invalid username or password."}`,
			[]error{ErrInvalidCredentials}, []error{ErrInvalidGrant, ErrSessionQuota}},
		{"dead refresh token", `{"error":"invalid_grant","error_description":"refresh token expired"}`,
			[]error{ErrInvalidGrant}, []error{ErrInvalidCredentials}},
		{"session quota", `{"error":"access_denied","error_description":"Session quota is reached."}`,
			[]error{ErrSessionQuota}, []error{ErrInvalidCredentials, ErrInvalidGrant}},
		{"bad app key", `{"error":"invalid_client","error_description":"Invalid Application Credential."}`,
			[]error{ErrUnauthorizedClient}, []error{ErrInvalidCredentials}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(tt.body))
			}))
			_, err := c.PasswordGrant(context.Background(), PasswordGrant{Username: "u", Password: "p", ClientID: "k"})
			var ae *AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("not an *AuthError: %T %v", err, err)
			}
			checkIs(t, err, tt.is, tt.isNot)
		})
	}
}

// TestRetryDelayIsFullJitter: the wait before a retry is uniform in
// [0, ceiling], so some waits fall below half the ceiling (equal jitter
// never does) and none exceeds it.
func TestRetryDelayIsFullJitter(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 4, BaseDelay: time.Second, MaxDelay: 4 * time.Second}
	for n, ceiling := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 6: 4 * time.Second} {
		low := false
		for range 200 {
			d := p.delay(n)
			if d < 0 || d > ceiling {
				t.Fatalf("delay(%d) = %s outside [0, %s]", n, d, ceiling)
			}
			low = low || d < ceiling/2
		}
		if !low {
			t.Errorf("delay(%d): 200 draws all ≥ %s: not full jitter", n, ceiling/2)
		}
	}
}

// TestOptionErrors: an option that cannot apply its value fails NewClient
// with an error naming it (it is not silently ignored).
func TestOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		opt  Option
		want string
	}{
		{"unparseable base URL", WithBaseURL("http://[::1"), "base URL"},
		{"relative base URL", WithBaseURL("api.refinitiv.com"), "base URL"},
		{"ftp base URL", WithBaseURL("ftp://x"), "base URL"},
		{"nil http client", WithHTTPClient(nil), "http client"},
		{"nil download client", WithDownloadHTTPClient(nil), "download http client"},
		{"zero attempts", WithRetryPolicy(RetryPolicy{}), "MaxAttempts"},
		{"nil clock", WithClock(nil), "clock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewClient(tt.opt)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to name %q", err, tt.want)
			}
		})
	}
	if _, err := NewClient(WithBaseURL("https://api.example.com/")); err != nil {
		t.Fatal(err)
	}
}

// checkIs fails t unless err is every target in is and none in isNot.
func checkIs(t *testing.T, err error, is, isNot []error) {
	t.Helper()
	for _, s := range is {
		if !errors.Is(err, s) {
			t.Errorf("errors.Is(%v) = false for %v", s, err)
		}
	}
	for _, s := range isNot {
		if errors.Is(err, s) {
			t.Errorf("errors.Is(%v) = true for %v", s, err)
		}
	}
}
