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
)

// Auth endpoints.
const (
	TokenPathV1  = "/auth/oauth2/v1/token"
	RevokePathV1 = "/auth/oauth2/v1/revoke"
	TokenPathV2  = "/auth/oauth2/v2/token"
)

// DefaultScope is the scope RDP expects for these APIs.
const DefaultScope = "trapi"

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
