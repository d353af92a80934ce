// Package rdp is a client for the LSEG / Refinitiv Data Platform (RDP) APIs
// cfsync needs: the OAuth2 auth service (v1 password and refresh grants, v2
// client credentials, revoke) and the Client File Store (packages, file-sets,
// files, stream URLs), plus a ranged reader for the presigned download URLs.
//
// Authentication of file-store calls is injected: pass an *http.Client whose
// transport adds the bearer token (for example an oauth2.Transport around a
// TokenSource) with [WithHTTPClient]. The library never knows where tokens
// live, never logs, and every call takes a context.
//
// Errors are typed: [*APIError] (gateway errors such as 401 "token expired"),
// [*AuthError] (OAuth errors: invalid_grant, "Session quota is reached.", …),
// [*RateLimitError] (429 with RetryAfter), [*DecodeError] (malformed JSON,
// naming the endpoint) and [*PresignedError] (the download host). Match them
// with errors.As, or the sentinels (ErrTokenExpired, ErrInvalidGrant, …) with
// errors.Is.
package rdp
