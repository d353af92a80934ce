package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/metrics"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/internal/tokenring/ringtest"
	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeRDP is a hand-written AuthAPI: each func field may be replaced; the
// defaults issue tokens on the fake clock.
type fakeRDP struct {
	clk      *rdptest.Clock
	ttl      time.Duration
	mu       sync.Mutex
	n        int
	calls    []string
	Password func(g rdp.PasswordGrant) (*rdp.Token, error)
	Refresh  func(clientID, rt string) (*rdp.Token, error)
	Client   func(id, secret, scope string) (*rdp.Token, error)
	RevokeFn func(clientID, tok string) error
	lastRT   string          // refresh token passed to the last refresh grant
	ctx      context.Context // context of the last call
	lastPW   rdp.PasswordGrant
	revoked  string
	// CloudErr fails the cloud-credentials requests; cloudCalls holds the
	// access token each was asked with.
	CloudErr   error
	cloudCalls []string
}

func (f *fakeRDP) issue(refresh bool) *rdp.Token {
	f.n++
	now := f.clk.Now()
	t := &rdp.Token{AccessToken: fmt.Sprintf("AT-secret-%d", f.n), TokenType: "Bearer", Scope: "trapi", IssuedAt: now, Expiry: now.Add(f.ttl)}
	if refresh {
		t.RefreshToken = fmt.Sprintf("RT-secret-%d", f.n)
	}
	return t
}

// enter locks f and records a call of kind with its context; the caller
// defers the returned unlock.
func (f *fakeRDP) enter(ctx context.Context, kind string) (unlock func()) {
	f.mu.Lock()
	f.ctx = ctx
	f.calls = append(f.calls, kind)
	return f.mu.Unlock
}

func (f *fakeRDP) PasswordGrant(ctx context.Context, g rdp.PasswordGrant) (*rdp.Token, error) {
	defer f.enter(ctx, grantPassword)()
	if f.lastPW = g; f.Password != nil {
		return f.Password(g)
	}
	return f.issue(true), nil
}

func (f *fakeRDP) RefreshGrant(ctx context.Context, clientID, rt string) (*rdp.Token, error) {
	defer f.enter(ctx, grantRefresh)()
	if f.lastRT = rt; f.Refresh != nil {
		return f.Refresh(clientID, rt)
	}
	return f.issue(true), nil
}

func (f *fakeRDP) ClientCredentialsGrant(ctx context.Context, id, secret, scope string) (*rdp.Token, error) {
	defer f.enter(ctx, grantClient)()
	if f.Client != nil {
		return f.Client(id, secret, scope)
	}
	return f.issue(false), nil
}

func (f *fakeRDP) Revoke(ctx context.Context, clientID, tok string) error {
	defer f.enter(ctx, grantRevoke)()
	if f.revoked = tok; f.RevokeFn != nil {
		return f.RevokeFn(clientID, tok)
	}
	return nil
}

func (f *fakeRDP) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// CloudCredentialsFor makes fakeRDP the Cloud as well (as the one
// *rdp.Client is in production): credentials of the queue at
// queueEndpoint, asked with access (recorded); CloudErr, when set, fails
// the request.
func (f *fakeRDP) CloudCredentialsFor(_ context.Context, access, endpoint string) (*rdp.CloudCredentials, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cloudCalls = append(f.cloudCalls, access)
	if f.CloudErr != nil {
		return nil, f.CloudErr
	}
	if endpoint != queueEndpoint {
		return nil, &rdp.APIError{Endpoint: "get cloud credentials", StatusCode: 404, Message: "unknown endpoint " + endpoint}
	}
	return &rdp.CloudCredentials{AccessKeyID: "ASIA-QC", SecretKey: "QC-SECRET-KEY", SessionToken: "QC-SESSION-TOKEN"}, nil
}

var (
	_ QueueCredsAPI   = (*fakeRDP)(nil)
	_ QueueCredsStore = (*fakeState)(nil)
)

const (
	credsV1          = `{"username":"user-secret","password":"pw-secret","client_id":"appkey-secret"}`
	credsV1NoExcl    = `{"username":"user-secret","password":"pw-secret","client_id":"appkey-secret","take_exclusive_sign_on_control":false}`
	credsV2          = `{"client_id":"sa-secret","client_secret":"cs-secret"}`
	credsPreIssued   = `{"client_id":"appkey-secret","refresh_token":"RT-portal-secret"}`
	credsSecretID    = "rdp-credentials"
	defaultTokenLife = 10 * time.Minute
)

// fakeProber answers ProbeToken with err (nil: accepted) and records the
// tokens it was asked about.
type fakeProber struct {
	mu     sync.Mutex
	err    error
	probed []string
}

func (f *fakeProber) ProbeToken(_ context.Context, tok string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probed = append(f.probed, tok)
	return f.err
}

func (f *fakeProber) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeProber) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.probed)
}

// errRefused is a probe's answer for a token RDP refuses.
var errRefused = &rdp.APIError{Endpoint: "list packages", StatusCode: 401, Message: "token expired"}

type env struct {
	t     *testing.T
	clk   *rdptest.Clock
	sm    *ringtest.Secrets
	table *fakeState
	rdp   *fakeRDP
	probe *fakeProber
	h     *Handler
	logs  *bytes.Buffer
	emf   *bytes.Buffer
	ids   []string
}

func newEnv(t *testing.T, creds string, slots int) *env {
	t.Helper()
	clk := rdptest.NewClock(t0)
	e := &env{t: t, clk: clk, sm: ringtest.NewSecrets(clk.Now), logs: &bytes.Buffer{}, emf: &bytes.Buffer{}}
	e.table = newFakeState(clk.Now)
	e.rdp = &fakeRDP{clk: clk, ttl: defaultTokenLife}
	e.probe = &fakeProber{err: errRefused} // reported tokens are really refused unless a test says otherwise
	for i := range slots {
		id := fmt.Sprintf("cfsync/token-%d", i)
		e.ids = append(e.ids, id)
		e.sm.Create(id, nil)
	}
	if creds != "" {
		e.sm.Create(credsSecretID, &creds)
	}
	rec := metrics.New(e.emf, "token-refresher")
	var err error
	e.h, err = New(Deps{
		SM: e.sm, Table: e.table, RDP: e.rdp, Probe: e.probe, Now: clk.Now, Metrics: rec,
		Log: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, testSettings(e.ids, nil))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// testSettings are the settings of a refresher deployed with the config's
// defaults, the test's credentials secret and ring ids, changed by mod.
func testSettings(ids []string, mod func(*Options)) Settings {
	c := config.Defaults[config.Refresher]()
	c.CredentialsSecretID, c.TokenSecretIDs = credsSecretID, ids
	o := OptionsFromConfig(c)
	if mod != nil {
		mod(&o)
	}
	return Settings{Opts: o, Queue: QueueCredsOptions{RefreshAfter: c.QueueCredentialsRefresh}}
}

// newSimHandler is a refresher whose RDP is the simulator sim (on clk),
// with in-memory Secrets Manager and state table, a ring of ids and logs
// and metrics written to out.
func newSimHandler(t *testing.T, clk *rdptest.Clock, sim *rdptest.Server, ids []string, out io.Writer, mod func(*Options)) (*Handler, *ringtest.Secrets, *fakeState) {
	t.Helper()
	sm := ringtest.NewSecrets(clk.Now)
	for _, id := range ids {
		sm.Create(id, nil)
	}
	table := newFakeState(clk.Now)
	client, err := rdp.NewClient(rdp.WithBaseURL(sim.URL()), rdp.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Deps{
		SM: sm, Table: table, RDP: client, Now: clk.Now, Probe: &FileStoreProber{BaseURL: sim.URL()},
		Log:     slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: metrics.New(out, "token-refresher"),
	}, testSettings(ids, mod))
	if err != nil {
		t.Fatal(err)
	}
	return h, sm, table
}

// readerLister returns a file-store call (the package listing of bulk-ESG,
// which sim must hold) made with the reader's tokens, without retries.
func readerLister(t *testing.T, sim *rdptest.Server, reader *tokenring.Reader, opts ...rdp.Option) func(context.Context) error {
	t.Helper()
	opts = append([]rdp.Option{rdp.WithBaseURL(sim.URL()), rdp.WithHTTPClient(reader.HTTPClient(nil)), rdp.WithRetryPolicy(rdp.RetryPolicy{MaxAttempts: 1})}, opts...)
	fileStore, err := rdp.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context) error {
		for _, err := range fileStore.Packages(ctx, "bulk-ESG") {
			if err != nil {
				return err
			}
		}
		return nil
	}
}

func (e *env) handle(evt string) (Result, error) {
	e.t.Helper()
	return e.h.Handle(context.Background(), json.RawMessage(evt))
}

func (e *env) mustHandle(evt string) Result {
	e.t.Helper()
	res, err := e.handle(evt)
	if err != nil {
		e.t.Fatalf("Handle(%s): %v", evt, err)
	}
	return res
}

// seed writes a token of generation gen into slot i as the refresher would
// have, written `ago` before now and expiring `left` after now.
func (e *env) seed(i int, gen int64, ago, left time.Duration) tokenring.Slot {
	e.t.Helper()
	now := e.clk.Now()
	s := tokenring.Slot{AccessToken: fmt.Sprintf("AT-seed-%d", gen), RefreshToken: fmt.Sprintf("RT-seed-%d", gen), TokenType: "Bearer",
		IssuedAt: now.Add(-ago), ExpiresAt: now.Add(left), Generation: gen}
	e.clk.Advance(-ago)
	defer e.clk.Advance(ago)
	if err := tokenring.Write(context.Background(), e.sm, e.ids[i], s); err != nil {
		e.t.Fatal(err)
	}
	st, err := e.table.GetRingState(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.table.ClaimGeneration(context.Background(), st, max(gen, st.Generation+1), e.ids[i], now.Add(-ago)); err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) slot(i int) tokenring.Slot {
	e.t.Helper()
	v, ok := e.sm.Value(e.ids[i])
	if !ok {
		return tokenring.Slot{}
	}
	s, err := tokenring.ParseSlot(v)
	if err != nil {
		return tokenring.Slot{}
	}
	return s
}

func (e *env) authState() *state.AuthState {
	e.t.Helper()
	st, err := e.table.GetAuthState(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func (e *env) setAuth(fn func(st *state.AuthState)) {
	e.t.Helper()
	st := e.authState()
	fn(st)
	if err := e.table.PutAuthState(context.Background(), st); err != nil {
		e.t.Fatal(err)
	}
}

// metric returns every value of an EMF metric with the given dimensions.
func (e *env) metric(name string, dims ...string) []float64 {
	e.t.Helper()
	return testenv.Metric(e.t, e.emf.String(), name, dims...)
}

func sum(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s
}

func (e *env) logHas(substr string) bool { return strings.Contains(e.logs.String(), substr) }
