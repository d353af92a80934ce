// Command downloader is cfsync's downloader Lambda: one SQS message per CFS
// file; each file is streamed with HTTP range requests from its presigned
// URL into an S3 multipart upload (see handler.go; docs/design.md#downloader).
// main only wires configuration → clients → Handler → lambda.Start.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cfsync/cfsync/internal/awsconf"
	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/landing"
	"github.com/cfsync/cfsync/internal/logx"
	"github.com/cfsync/cfsync/internal/metrics"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
)

const function = "downloader"

var _ lambda.Handler = (*Handler)(nil)

func main() {
	h, err := newHandler(context.Background())
	if err != nil {
		logx.New(os.Stdout, 0, function).Error("start-up failed", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(h) // h.Invoke: see HandleEvent
}

// newHandler wires configuration → clients → New.
func newHandler(ctx context.Context) (*Handler, error) {
	var cfg config.Downloader
	if err := config.Load(&cfg); err != nil {
		return nil, err
	}
	level, err := logx.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, err
	}
	log := logx.New(os.Stdout, level, function)
	setMemoryLimit(log)
	awsCfg, err := awsconf.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws configuration: %w", err)
	}
	// S3 5xx/SlowDown and throttling: the SDK retries with jittered backoff,
	// without a client-side retry quota (a long download must not run out).
	awsCfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 8
			o.MaxBackoff = 20 * time.Second
			o.RateLimiter = ratelimit.None
		})
	}
	table := state.New(dynamodb.NewFromConfig(awsCfg), cfg.StateTable)
	reader := tokenring.NewReader(secretsmanager.NewFromConfig(awsCfg), table, cfg.TokenSecretIDs, tokenring.ReaderOptions{Skew: tokenring.ConfiguredSkew(cfg.TokenSkew)})
	client, err := rdp.NewClient(
		rdp.WithBaseURL(cfg.RDPBaseURL),
		rdp.WithHTTPClient(reader.HTTPClient(&http.Client{Timeout: 60 * time.Second})),
		rdp.WithDownloadHTTPClient(&http.Client{Transport: downloadTransport(cfg)}),
		rdp.WithUserAgent("cfsync-"+function),
	)
	if err != nil {
		return nil, fmt.Errorf("config: RDP_BASE_URL: %w", err)
	}
	s3c := s3.NewFromConfig(awsCfg, awsconf.S3Options()...)
	lander, err := landing.New(table, s3c, eventbridge.NewFromConfig(awsCfg), landing.Config{DestBucket: cfg.DestBucket, DestPrefix: cfg.DestPrefix})
	if err != nil {
		return nil, err
	}
	settings := SettingsFrom(cfg)
	settings.MemoryMB, _ = strconv.Atoi(os.Getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")) // unset: not checked
	return New(Deps{
		S3:      s3c,
		RDP:     client,
		State:   table,
		Sender:  &queue.Sender{SQS: sqs.NewFromConfig(awsCfg), QueueURL: cfg.DownloadQueueURL},
		Landing: lander,
		Log:     log,
		Metrics: metrics.New(os.Stdout, function),
	}, settings)
}

// downloadTransport is the presigned host's transport: one connection per
// range in flight, and no overall timeout (stalls are caught per range).
func downloadTransport(cfg config.Downloader) *http.Transport {
	conns := max(cfg.ParallelRanges, 1) * 2
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          conns,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       60 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.RangeReadTimeout,
		ForceAttemptHTTP2:     false,
		ReadBufferSize:        256 << 10,
	}
}

// setMemoryLimit gives the Go runtime a soft memory limit of 85% of the
// function's memory (unless GOMEMLIMIT is set), so that dropped buffers are
// collected before the process nears the Lambda limit.
func setMemoryLimit(log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	mb, err := strconv.Atoi(os.Getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"))
	if err != nil || mb <= 0 {
		return
	}
	limit := int64(mb) << 20 * 85 / 100
	debug.SetMemoryLimit(limit)
	log.Debug("memory limit set", "bytes", limit)
}
