package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/cfsync/cfsync/internal/lambdamain"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// TokenProber asks RDP whether it still accepts an access token, without
// an /auth request (docs/design.md#the-token-ring: verified reports).
type TokenProber interface {
	// ProbeToken returns nil when RDP accepted the token, an error matching
	// rdp.ErrUnauthorized when RDP refused it (401), and any other error
	// when the answer says neither (network error, 429, 5xx).
	ProbeToken(ctx context.Context, accessToken string) error
}

// FileStoreProber checks a token with one GET /file-store/v1/packages (the
// documented package listing the poller uses too), reading one page only
// and never retrying: any answer but 401 shows that the gateway accepted
// the token.
type FileStoreProber struct {
	BaseURL string
	// Transport is the HTTP transport (nil: http.DefaultTransport).
	Transport http.RoundTripper
	// Timeout bounds the request (0: 10s).
	Timeout time.Duration
}

var _ TokenProber = (*FileStoreProber)(nil)

// ProbeToken implements TokenProber.
func (p *FileStoreProber) ProbeToken(ctx context.Context, accessToken string) error {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	hc := &http.Client{Timeout: timeout, Transport: &oauth2.Transport{
		Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: accessToken, TokenType: "Bearer"}),
		Base:   p.Transport,
	}}
	c, err := rdp.NewClient(rdp.WithBaseURL(p.BaseURL), rdp.WithHTTPClient(hc), rdp.WithUserAgent(lambdamain.UserAgent(functionName)),
		rdp.WithRetryPolicy(rdp.RetryPolicy{MaxAttempts: 1}))
	if err != nil {
		return fmt.Errorf("probe token: %w", err)
	}
	for _, err := range c.Packages(ctx, "") {
		return probeVerdict(err) // the first item or error answers the question
	}
	return nil // an empty listing: accepted
}

// probeVerdict maps a file-store answer to ProbeToken's result.
func probeVerdict(err error) error {
	var api *rdp.APIError
	var de *rdp.DecodeError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rdp.ErrUnauthorized):
		return fmt.Errorf("probe token: refused: %w", err)
	case errors.Is(err, rdp.ErrRateLimited):
		return fmt.Errorf("probe token: inconclusive: %w", err)
	case errors.As(err, &api) && api.StatusCode < 500:
		return nil // 403, 404, …: the token got past the gateway
	case errors.As(err, &de):
		return nil // a 2xx the client could not decode: accepted all the same
	}
	return fmt.Errorf("probe token: inconclusive: %w", err)
}

// Verdicts of a report check (logs, metric dimension "verdict").
const (
	verdictRefused      = "refused"
	verdictAccepted     = "accepted"
	verdictInconclusive = "inconclusive"
)

// checkReported probes the reported token and names the verdict.
func (r *run) checkReported(ctx context.Context) (string, error) {
	if r.h.Probe == nil {
		return verdictInconclusive, errors.New("no token prober configured")
	}
	err := r.h.Probe.ProbeToken(ctx, r.latest.AccessToken)
	return verdict(err), err
}

// verdict names what a probe's answer (ProbeToken's error) says of the token.
func verdict(err error) string {
	switch {
	case err == nil:
		return verdictAccepted
	case errors.Is(err, rdp.ErrUnauthorized):
		return verdictRefused
	}
	return verdictInconclusive
}
