package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"golang.org/x/oauth2"

	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/credentials"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// rdpFlags are the flags of every command that calls RDP.
type rdpFlags struct {
	baseURL        string
	credFile       string
	credSecret     string
	tokenRing      bool
	tokenSecretIDs string
	takeExclusive  bool
}

func (f *rdpFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.baseURL, "base-url", "", "RDP API host `URL` (default $RDP_BASE_URL, else "+rdp.DefaultBaseURL+")")
	fs.StringVar(&f.credFile, "credentials", "", "read RDP credentials from this JSON `FILE` (credentials-secret format)")
	fs.StringVar(&f.credSecret, "credentials-secret", "", "read RDP credentials from this Secrets Manager secret `ID` (the deployed credentials secret)")
	fs.BoolVar(&f.tokenRing, "token-ring", false, "use a current token from the deployed token ring (no sign-on)")
	fs.StringVar(&f.tokenSecretIDs, "token-secret-ids", "", "comma-separated token ring slot `IDS` for --token-ring (default $TOKEN_SECRET_IDS)")
	fs.BoolVar(&f.takeExclusive, "take-exclusive", false, "v1 only: sign on with takeExclusiveSignOnControl=true, ENDING any other session of the account (e.g. the deployed token-refresher's)")
}

// sourced are RDP credentials (parsed by internal/credentials) and where
// they came from, for messages. String never reveals a secret.
type sourced struct {
	credentials.Credentials
	source string
}

func (c sourced) String() string { return fmt.Sprintf("credentials{%s from %s}", c.Kind, c.source) }

// GoString never reveals a secret.
func (c sourced) GoString() string { return c.String() }

// parseSourced parses the credentials-secret JSON read from source.
func parseSourced(data []byte, source string) (sourced, error) {
	c, err := credentials.Parse(data)
	if err != nil {
		return sourced{}, fmt.Errorf("credentials in %s: %w", source, err)
	}
	return sourced{c, source}, nil
}

// tokenInfo describes the token a command works with; never the token itself.
type tokenInfo struct {
	Source          string    `json:"source"`
	Grant           string    `json:"grant"` // password, client_credentials, token-ring
	TokenType       string    `json:"tokenType,omitempty"`
	Scope           string    `json:"scope,omitempty"`
	IssuedAt        time.Time `json:"issuedAt,omitzero"`
	ExpiresAt       time.Time `json:"expiresAt"`
	HasRefreshToken bool      `json:"hasRefreshToken"`
	Generation      int64     `json:"generation,omitempty"` // token ring only
}

// rdpSession is an authenticated rdp.Client plus what is needed to end it.
type rdpSession struct {
	client *rdp.Client
	info   tokenInfo
	// end ends a v1 session the CLI opened (revoke), nil otherwise.
	end func(ctx context.Context) error
}

// Close ends a session the CLI opened, so that it does not hold the
// account's session quota. Problems are warnings.
func (s *rdpSession) Close(a *app) {
	if s == nil || s.end == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.end(ctx); err != nil {
		fmt.Fprintf(a.stderr, "cfsync: warning: could not end the RDP session (it expires by itself): %v\n", err)
	}
}

func (a *app) baseURL(f *rdpFlags) string {
	if f.baseURL != "" {
		return f.baseURL
	}
	if v := strings.TrimSpace(a.env("RDP_BASE_URL")); v != "" {
		return v
	}
	return rdp.DefaultBaseURL
}

func (a *app) rdpClient(f *rdpFlags, extra ...rdp.Option) (*rdp.Client, error) {
	opts := []rdp.Option{
		rdp.WithBaseURL(a.baseURL(f)),
		rdp.WithAuthHTTPClient(a.httpClient),
		rdp.WithClock(a.now),
		rdp.WithUserAgent("cfsync-cli"),
	}
	opts = append(opts, extra...)
	opts = append(opts, a.rdpOptions...)
	c, err := rdp.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("RDP base URL %q: %w", a.baseURL(f), err)
	}
	return c, nil
}

// withSession signs on as f says, runs body with the session and ends it
// (the session a password grant opened is revoked).
func (a *app) withSession(ctx context.Context, f *rdpFlags, body func(*rdpSession) error) error {
	s, err := a.signOn(ctx, f)
	if err != nil {
		return err
	}
	defer s.Close(a)
	return body(s)
}

// signOn resolves the credentials (flags, else the environment) and returns
// an authenticated session. The caller must Close it.
func (a *app) signOn(ctx context.Context, f *rdpFlags) (*rdpSession, error) {
	n := 0
	for _, set := range []bool{f.credFile != "", f.credSecret != "", f.tokenRing} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, usagef("use at most one of --credentials, --credentials-secret and --token-ring")
	}
	if f.takeExclusive && f.tokenRing {
		return nil, usagef("--take-exclusive signs on: it cannot be combined with --token-ring")
	}
	auth, err := a.rdpClient(f)
	if err != nil {
		return nil, err
	}
	if f.tokenRing {
		return a.ringSession(ctx, f, auth)
	}
	var c sourced
	switch {
	case f.credFile != "":
		data, err := os.ReadFile(f.credFile)
		if err != nil {
			return nil, fmt.Errorf("read credentials: %w", err)
		}
		if c, err = parseSourced(data, f.credFile); err != nil {
			return nil, err
		}
	case f.credSecret != "":
		if c, err = a.credentialsFromSecret(ctx, f.credSecret); err != nil {
			return nil, err
		}
	default:
		env, ok, err := credentials.FromEnv(a.env)
		if err != nil {
			return nil, usagef("credentials in the environment: %v", err)
		}
		c = sourced{env, "the environment"}
		if !ok {
			return nil, usagef("no RDP credentials: set RDP_USERNAME, RDP_PASSWORD and RDP_CLIENT_ID (v1) or RDP_CLIENT_ID and RDP_CLIENT_SECRET (v2), or use --credentials FILE, --credentials-secret ID or --token-ring")
		}
	}
	if f.takeExclusive && c.Kind != credentials.Password {
		return nil, usagef("--take-exclusive applies to v1 password credentials only")
	}
	switch c.Kind {
	case credentials.Password:
		return a.passwordSession(ctx, f, auth, c)
	case credentials.ServiceAccount:
		return a.serviceSession(ctx, f, auth, c)
	default:
		return nil, fmt.Errorf("credentials in %s hold a refresh token: the CLI does not use it, because a refresh grant rotates it and the deployed token-refresher would lose its session; use --token-ring for the deployed stack", c.source)
	}
}

func (a *app) credentialsFromSecret(ctx context.Context, id string) (sourced, error) {
	cfg, err := a.aws(ctx)
	if err != nil {
		return sourced{}, err
	}
	out, err := secretsmanager.NewFromConfig(cfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		return sourced{}, fmt.Errorf("read credentials secret %s: %w", id, err)
	}
	if out.SecretString == nil {
		return sourced{}, fmt.Errorf("read credentials secret %s: no string value", id)
	}
	return parseSourced([]byte(*out.SecretString), "secret "+id)
}

// sessionQuotaHelp explains "Session quota is reached.".
const sessionQuotaHelp = `RDP answered "Session quota is reached.": the account already has a session — most
likely the deployed token-refresher's. The CLI signs on without takeExclusiveSignOnControl so
that it never ends that session. Either:
  - use --token-ring to borrow the deployed stack's current token (no sign-on at all), or
  - pass --take-exclusive to end the other session; the token-refresher then has to sign on
    again (its readers see 401s until it does).`

func (a *app) passwordSession(ctx context.Context, f *rdpFlags, auth *rdp.Client, c sourced) (*rdpSession, error) {
	if f.takeExclusive {
		fmt.Fprintln(a.stderr, "cfsync: warning: --take-exclusive ends any other session of this account, including the deployed token-refresher's")
	}
	tok, err := auth.PasswordGrant(ctx, rdp.PasswordGrant{
		Username: c.Username, Password: c.Password, ClientID: c.ClientID, Scope: c.Scope,
		TakeExclusiveSignOnControl: f.takeExclusive,
	})
	if err != nil {
		return nil, explainAuthError(err)
	}
	src := &cliTokenSource{ctx: ctx, now: a.now, cur: tok, margin: tokenMargin}
	src.renew = func(ctx context.Context, cur *rdp.Token) (*rdp.Token, error) {
		if cur == nil || cur.RefreshToken == "" {
			return nil, errors.New("the RDP session expired")
		}
		t, err := auth.RefreshGrant(ctx, c.ClientID, cur.RefreshToken)
		if err != nil {
			return nil, explainAuthError(err)
		}
		return t, nil
	}
	s, err := a.sessionWith(f, src, tokenInfoOf(tok, "password grant with "+c.source, "password"))
	if err != nil {
		return nil, err
	}
	s.end = func(ctx context.Context) error {
		t := src.current()
		rt := t.RefreshToken
		if rt == "" {
			rt = t.AccessToken
		}
		return auth.Revoke(ctx, c.ClientID, rt)
	}
	return s, nil
}

func (a *app) serviceSession(ctx context.Context, f *rdpFlags, auth *rdp.Client, c sourced) (*rdpSession, error) {
	tok, err := auth.ClientCredentialsGrant(ctx, c.ClientID, c.ClientSecret, c.Scope)
	if err != nil {
		return nil, explainAuthError(err)
	}
	src := &cliTokenSource{ctx: ctx, now: a.now, cur: tok, margin: tokenMargin}
	src.renew = func(ctx context.Context, _ *rdp.Token) (*rdp.Token, error) {
		t, err := auth.ClientCredentialsGrant(ctx, c.ClientID, c.ClientSecret, c.Scope)
		if err != nil {
			return nil, explainAuthError(err)
		}
		return t, nil
	}
	return a.sessionWith(f, src, tokenInfoOf(tok, "client credentials grant with "+c.source, "client_credentials"))
}

// tokenSkew is how early a ring token counts as expired (TOKEN_SKEW, with
// config.Reader's default; 0s: not early at all).
func (a *app) tokenSkew() (time.Duration, error) {
	var r config.Reader
	err := config.LoadFrom(func(k string) (string, bool) { v := a.env(k); return v, v != "" }, &r)
	if err != nil {
		return 0, usagef("%v", err)
	}
	return r.TokenSkew, nil
}

func (a *app) ringSession(ctx context.Context, f *rdpFlags, _ *rdp.Client) (*rdpSession, error) {
	ids := splitList(f.tokenSecretIDs)
	if len(ids) == 0 {
		ids = splitList(a.env("TOKEN_SECRET_IDS"))
	}
	if len(ids) == 0 {
		return nil, usagef("--token-ring needs the ring's slot ids: set TOKEN_SECRET_IDS or --token-secret-ids")
	}
	skew, err := a.tokenSkew()
	if err != nil {
		return nil, err
	}
	cfg, err := a.aws(ctx)
	if err != nil {
		return nil, err
	}
	// No state table: the CLI never files token-invalid reports.
	reader := tokenring.NewReader(secretsmanager.NewFromConfig(cfg), nil, ids, tokenring.ReaderOptions{Skew: skew, Now: a.now})
	tok, err := reader.TokenContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("read a token from the token ring (%d slots; is the token-refresher running?): %w", len(ids), err)
	}
	if skew < 0 {
		skew = 0
	}
	typ := tok.TokenType
	if typ == "" {
		typ = "Bearer"
	}
	info := tokenInfo{Source: fmt.Sprintf("token ring (%d slots), no sign-on", len(ids)), Grant: "token-ring", TokenType: typ,
		ExpiresAt: tok.Expiry.Add(skew).UTC(), Generation: reader.Generation()}
	c, err := a.rdpClient(f, rdp.WithHTTPClient(reader.HTTPClient(a.httpClient)))
	if err != nil {
		return nil, err
	}
	return &rdpSession{client: c, info: info}, nil
}

func (a *app) sessionWith(f *rdpFlags, src *cliTokenSource, info tokenInfo) (*rdpSession, error) {
	hc := *a.httpClient
	hc.Transport = &oauth2.Transport{Source: src, Base: a.httpClient.Transport}
	c, err := a.rdpClient(f, rdp.WithHTTPClient(&hc))
	if err != nil {
		return nil, err
	}
	return &rdpSession{client: c, info: info}, nil
}

func tokenInfoOf(t *rdp.Token, source, grant string) tokenInfo {
	typ := t.TokenType
	if typ == "" {
		typ = "Bearer"
	}
	return tokenInfo{Source: source, Grant: grant, TokenType: typ, Scope: t.Scope, IssuedAt: t.IssuedAt.UTC(),
		ExpiresAt: t.Expiry.UTC(), HasRefreshToken: t.RefreshToken != ""}
}

// explainAuthError adds what an operator should do to RDP's auth errors.
func explainAuthError(err error) error {
	switch {
	case errors.Is(err, rdp.ErrSessionQuota):
		return fmt.Errorf("%w\n%s", err, sessionQuotaHelp)
	case errors.Is(err, rdp.ErrUnauthorizedClient):
		return fmt.Errorf("%w (check the client_id / app key, or the v2 client secret)", err)
	case errors.Is(err, rdp.ErrInvalidCredentials):
		return fmt.Errorf("%w (check the username and password; do not retry with the same ones: repeated failures can block the account)", err)
	case errors.Is(err, rdp.ErrInvalidGrant):
		return fmt.Errorf("%w (the refresh token is no longer valid: sign on again)", err)
	case errors.Is(err, rdp.ErrRateLimited):
		return fmt.Errorf("%w: RDP limits sign-ons per account and blocks accounts that exceed them; wait before trying again", err)
	}
	return err
}

// cliTokenSource is an oauth2.TokenSource that judges expiry by the app's
// clock and renews with renew (a refresh grant, a new client-credentials
// grant, or a ring re-read).
type cliTokenSource struct {
	ctx   context.Context
	now   func() time.Time
	renew func(ctx context.Context, cur *rdp.Token) (*rdp.Token, error)
	// margin renews a token this long before it expires.
	margin time.Duration

	mu  sync.Mutex
	cur *rdp.Token
}

// tokenMargin renews a token this long before it expires.
const tokenMargin = 30 * time.Second

func (s *cliTokenSource) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || !s.cur.Valid(s.now(), s.margin) {
		t, err := s.renew(s.ctx, s.cur)
		if err != nil {
			return nil, fmt.Errorf("renew RDP token: %w", err)
		}
		s.cur = t
	}
	t := s.cur.OAuth2()
	t.Expiry = time.Time{} // validity is judged here, by the app's clock
	return t, nil
}

func (s *cliTokenSource) current() rdp.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return rdp.Token{}
	}
	return *s.cur
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

var _ oauth2.TokenSource = (*cliTokenSource)(nil)
var _ http.RoundTripper = (*oauth2.Transport)(nil)
