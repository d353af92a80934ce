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
// Errors are typed: [*APIError] (gateway and file-store errors such as 401
// "token expired", 404 EDS.CFS.NoFilesetFound, 403 "Insufficient claims"),
// [*AuthError] (OAuth errors: a wrong password, invalid_grant, "Session quota
// is reached.", …), [*RateLimitError] (429 with RetryAfter), [*DecodeError]
// (malformed JSON, naming the endpoint) and [*PresignedError] (the download
// host). Match them with errors.As, or the sentinels with errors.Is:
// [ErrTokenExpired], [ErrUnauthorized], [ErrForbidden], [ErrNotFound],
// [ErrInvalidCredentials], [ErrInvalidGrant], [ErrSessionQuota],
// [ErrURLExpired] (403 or 400 ExpiredToken from S3: ask /stream again) and
// [ErrSourceChanged] (412 to [Client.GetRangeIfMatch]).
//
// Which RDP behaviours the package relies on, and the public sources that show
// them, are listed in docs/rdp.md.
package rdp
