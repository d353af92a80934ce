package rdp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Auth endpoints.
const (
	TokenPathV1  = "/auth/oauth2/v1/token"
	RevokePathV1 = "/auth/oauth2/v1/revoke"
	TokenPathV2  = "/auth/oauth2/v2/token"
)

// DefaultScope is the scope RDP expects for these APIs.
const DefaultScope = "trapi"

// Token is an issued RDP token with its absolute expiry.
type Token struct {
	AccessToken  string
	RefreshToken string // empty for v2 client_credentials tokens
	TokenType    string
	Scope        string
	IssuedAt     time.Time
	Expiry       time.Time // IssuedAt + expires_in
}

// ExpiresIn is the token's lifetime as issued.
func (t *Token) ExpiresIn() time.Duration { return t.Expiry.Sub(t.IssuedAt) }

// Valid reports whether the token is usable at now, treating it as expired skew early.
func (t *Token) Valid(now time.Time, skew time.Duration) bool {
	return t != nil && t.AccessToken != "" && now.Add(skew).Before(t.Expiry)
}

// OAuth2 converts the token for use with golang.org/x/oauth2.
func (t *Token) OAuth2() *oauth2.Token {
	typ := t.TokenType
	if typ == "" {
		typ = "Bearer"
	}
	return &oauth2.Token{AccessToken: t.AccessToken, TokenType: typ, RefreshToken: t.RefreshToken, Expiry: t.Expiry}
}

// String never reveals the token.
func (t *Token) String() string {
	return fmt.Sprintf("rdp.Token{type=%s scope=%q expiry=%s refresh=%t}", t.TokenType, t.Scope, t.Expiry.Format(time.RFC3339), t.RefreshToken != "")
}

// GoString never reveals the token (fmt %#v).
func (t *Token) GoString() string { return t.String() }

// PasswordGrant holds the inputs of a v1 password grant.
type PasswordGrant struct {
	Username string
	Password string
	ClientID string // the app key
	Scope    string // default "trapi"
	// TakeExclusiveSignOnControl ends any other session of the account
	// instead of failing with "Session quota is reached.".
	TakeExclusiveSignOnControl bool
}

// tokenResponse is the JSON of /token. expires_in is a string ("600") in
// production; numbers are accepted too.
type tokenResponse struct {
	AccessToken  string      `json:"access_token"`
	RefreshToken string      `json:"refresh_token"`
	ExpiresIn    flexSeconds `json:"expires_in"`
	Scope        string      `json:"scope"`
	TokenType    string      `json:"token_type"`
}

// flexSeconds accepts 600, 600.0 and "600".
type flexSeconds int64

func (f *flexSeconds) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" {
		return fmt.Errorf("expires_in is null")
	}
	if strings.HasPrefix(s, `"`) {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return fmt.Errorf("expires_in: %w", err)
		}
		s = strings.TrimSpace(str)
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || !(n >= 0 && n <= 1e9) { // also rejects NaN
		return fmt.Errorf("expires_in: not a number of seconds: %q", s)
	}
	*f = flexSeconds(n)
	return nil
}

// DecodeToken parses a /token answer. Exported for fuzzing and tools.
func DecodeToken(body []byte, issuedAt time.Time) (*Token, error) {
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return nil, err
	}
	if tr.AccessToken == "" {
		return nil, fmt.Errorf("access_token missing")
	}
	if tr.ExpiresIn <= 0 {
		return nil, fmt.Errorf("expires_in missing or zero")
	}
	return &Token{
		AccessToken:  tr.AccessToken,
		RefreshToken: tr.RefreshToken,
		TokenType:    tr.TokenType,
		Scope:        tr.Scope,
		IssuedAt:     issuedAt,
		Expiry:       issuedAt.Add(time.Duration(tr.ExpiresIn) * time.Second),
	}, nil
}

// PasswordGrant signs in with a v1 machine/user account.
func (c *Client) PasswordGrant(ctx context.Context, g PasswordGrant) (*Token, error) {
	if g.Username == "" || g.Password == "" || g.ClientID == "" {
		return nil, fmt.Errorf("password grant: username, password and client_id are required")
	}
	scope := g.Scope
	if scope == "" {
		scope = DefaultScope
	}
	form := url.Values{
		"grant_type": {"password"},
		"username":   {g.Username},
		"password":   {g.Password},
		"client_id":  {g.ClientID},
		"scope":      {scope},
	}
	form.Set("takeExclusiveSignOnControl", strconv.FormatBool(g.TakeExclusiveSignOnControl))
	return c.token(ctx, "password grant", TokenPathV1, form)
}

// RefreshGrant exchanges a v1 refresh token for new tokens (the refresh
// token rotates: keep the new one).
func (c *Client) RefreshGrant(ctx context.Context, clientID, refreshToken string) (*Token, error) {
	if clientID == "" || refreshToken == "" {
		return nil, fmt.Errorf("refresh grant: client_id and refresh_token are required")
	}
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refreshToken},
		"client_id":     {clientID},
	}
	return c.token(ctx, "refresh grant", TokenPathV1, form)
}

// ClientCredentialsGrant signs in with a v2 service account. The token has
// no refresh token: ask again before it expires.
func (c *Client) ClientCredentialsGrant(ctx context.Context, clientID, clientSecret, scope string) (*Token, error) {
	if clientID == "" || clientSecret == "" {
		return nil, fmt.Errorf("client credentials grant: client_id and client_secret are required")
	}
	if scope == "" {
		scope = DefaultScope
	}
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {clientID},
		"client_secret": {clientSecret},
		"scope":         {scope},
	}
	return c.token(ctx, "client credentials grant", TokenPathV2, form)
}

// Revoke ends the session of token (an access or refresh token) at RDP.
func (c *Client) Revoke(ctx context.Context, clientID, token string) error {
	if clientID == "" || token == "" {
		return fmt.Errorf("revoke: client_id and token are required")
	}
	resp, err := c.postForm(ctx, RevokePathV1, url.Values{"token": {token}}, clientID)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return c.authError("revoke", resp, body)
}

func (c *Client) token(ctx context.Context, op, path string, form url.Values) (*Token, error) {
	issued := c.now()
	resp, err := c.postForm(ctx, path, form, "")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: read body: %w", op, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, c.authError(op, resp, body)
	}
	t, err := DecodeToken(body, issued)
	if err != nil {
		return nil, &DecodeError{Endpoint: op + " (POST " + path + ")", Err: err}
	}
	return t, nil
}

func (c *Client) postForm(ctx context.Context, path string, form url.Values, basicUser string) (*http.Response, error) {
	u := c.base.ResolveReference(&url.URL{Path: path})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewBufferString(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if basicUser != "" {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(basicUser+":")))
	}
	resp, err := c.authHTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, scrubURLError(err)
	}
	return resp, nil
}

// authError turns an /auth answer into *RateLimitError, *AuthError or *APIError.
func (c *Client) authError(op string, resp *http.Response, body []byte) error {
	if resp.StatusCode == http.StatusTooManyRequests {
		return &RateLimitError{Endpoint: op, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), c.now())}
	}
	var oe struct {
		Error       json.RawMessage `json:"error"`
		Description string          `json:"error_description"`
	}
	if json.Unmarshal(body, &oe) == nil {
		var code string
		if json.Unmarshal(oe.Error, &code) == nil && code != "" {
			return &AuthError{Endpoint: op, StatusCode: resp.StatusCode, Code: code, Description: oe.Description}
		}
	}
	return ParseAPIError(op, resp.StatusCode, body)
}
