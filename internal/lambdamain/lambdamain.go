// Package lambdamain is the start-up every cfsync function's main shares:
// configuration → logger → AWS configuration → shared clients, then
// lambda.Start. Each main keeps only what is its own.
package lambdamain

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cfsync/cfsync/internal/awsconf"
	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/logx"
	"github.com/cfsync/cfsync/internal/metrics"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// Config is a function's config struct: it embeds config.Common.
type Config interface{ Shared() *config.Common }

// Main is a function's main: it loads the function's configuration C from
// the environment, sets up the Env (Setup, with tune), builds the handler
// with build and passes it to lambda.Start. A start-up error is logged
// (JSON, to stdout) and the process exits 1.
func Main[C any, PC interface {
	*C
	Config
}, H lambda.Handler](function string, build func(*Env, *C) (H, error), tune ...func(*aws.Config)) {
	h, err := NewHandler[C, PC](context.Background(), function, build, tune...)
	if err != nil {
		logx.New(os.Stdout, 0, function).Error("start-up failed", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(h)
}

// NewHandler is Main without lambda.Start: the configuration, Env and handler.
func NewHandler[C any, PC interface {
	*C
	Config
}, H lambda.Handler](ctx context.Context, function string, build func(*Env, *C) (H, error), tune ...func(*aws.Config)) (H, error) {
	var cfg C
	env, err := Setup(ctx, function, PC(&cfg), tune...)
	if err != nil {
		var zero H
		return zero, err
	}
	return build(env, &cfg)
}

// Env is what every function's wiring starts from.
type Env struct {
	Function string
	Common   config.Common
	AWS      aws.Config
	Log      *slog.Logger
	Metrics  *metrics.Recorder
	Secrets  *secretsmanager.Client
	Table    *state.Table
}

// Setup loads cfg (a pointer to the function's config struct) from the
// environment, then the logger, the AWS configuration (adjusted by each tune
// before any client is made), the Secrets Manager client and the state table.
func Setup(ctx context.Context, function string, cfg Config, tune ...func(*aws.Config)) (*Env, error) {
	if err := config.Load(cfg); err != nil {
		return nil, err
	}
	common := cfg.Shared()
	level, err := logx.ParseLevel(common.LogLevel)
	if err != nil {
		return nil, err
	}
	awsCfg, err := awsconf.Load(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range tune {
		t(&awsCfg)
	}
	rec := metrics.New(os.Stdout, function)
	rec.SetStack(common.StateTable) // FilesFailed: one metric per stack (docs/cost.md)
	return &Env{
		Function: function,
		Common:   *common,
		AWS:      awsCfg,
		Log:      logx.New(os.Stdout, level, function),
		Metrics:  rec,
		Secrets:  secretsmanager.NewFromConfig(awsCfg),
		Table:    state.New(dynamodb.NewFromConfig(awsCfg), common.StateTable),
	}, nil
}

// UserAgentPrefix starts the User-Agent of every function's RDP client:
// UserAgent(fn) is "cfsync-<fn>" (the simulator records it per request).
const UserAgentPrefix = "cfsync-"

// UserAgent is the User-Agent of function fn's RDP client.
func UserAgent(fn string) string { return UserAgentPrefix + fn }

// RDPClient returns an RDP client of the configured base URL with the
// function's user agent and opts.
func (e *Env) RDPClient(opts ...rdp.Option) (*rdp.Client, error) {
	all := append([]rdp.Option{rdp.WithBaseURL(e.Common.RDPBaseURL), rdp.WithUserAgent(UserAgent(e.Function))}, opts...)
	client, err := rdp.NewClient(all...)
	if err != nil {
		return nil, fmt.Errorf("config: RDP_BASE_URL: %w", err)
	}
	return client, nil
}

// TokenRDPClient returns an RDP client whose API requests carry a token from
// the ring (the reader's transport re-reads the ring and retries once on a
// 401; docs/design.md#the-token-ring), with a 60-second request timeout.
func (e *Env) TokenRDPClient(r config.Reader, opts ...rdp.Option) (*rdp.Client, error) {
	reader := tokenring.NewReader(e.Secrets, e.Table, e.Common.TokenSecretIDs,
		tokenring.ReaderOptions{Skew: r.TokenSkew})
	hc := reader.HTTPClient(&http.Client{Timeout: 60 * time.Second})
	return e.RDPClient(append([]rdp.Option{rdp.WithHTTPClient(hc)}, opts...)...)
}
