// Command downloader is cfsync's downloader Lambda: one SQS message per CFS
// file; each file is streamed with HTTP range requests from its presigned
// URL into an S3 multipart upload (see handler.go; docs/design.md#downloader).
// main only wires configuration → clients → Handler → lambda.Start.
package main

import (
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
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfsync/cfsync/internal/awsconf"
	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/lambdamain"
	"github.com/cfsync/cfsync/internal/landing"
	"github.com/cfsync/cfsync/pkg/rdp"
)

const function = "downloader"

var _ lambda.Handler = (*Handler)(nil)

func main() { lambdamain.Main(function, newHandler, s3Retryer) }

// newHandler wires clients → New.
func newHandler(env *lambdamain.Env, cfg *config.Downloader) (*Handler, error) {
	setMemoryLimit(env.Log)
	client, err := env.TokenRDPClient(cfg.Reader, withDownloadTransport(cfg.DownloaderKnobs))
	if err != nil {
		return nil, err
	}
	s3c := s3.NewFromConfig(env.AWS, awsconf.S3Options()...)
	lander, err := landing.New(env.Table, s3c, eventbridge.NewFromConfig(env.AWS), landing.Config{DestBucket: cfg.DestBucket, DestPrefix: cfg.DestPrefix})
	if err != nil {
		return nil, err
	}
	settings := Settings{DownloaderKnobs: cfg.DownloaderKnobs}
	settings.MemoryMB, _ = strconv.Atoi(os.Getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")) // unset: not checked
	return New(Deps{
		S3:      s3c,
		RDP:     client,
		State:   env.Table,
		Sender:  env.DownloadQueue(cfg.Worker),
		Landing: lander,
		Log:     env.Log,
		Metrics: env.Metrics,
	}, settings)
}

// s3Retryer: S3 5xx/SlowDown and throttling are retried by the SDK with
// jittered backoff, without a client-side retry quota (a long download must
// not run out).
func s3Retryer(awsCfg *aws.Config) {
	awsCfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 8
			o.MaxBackoff = 20 * time.Second
			o.RateLimiter = ratelimit.None
		})
	}
}

// withDownloadTransport gives the RDP client the presigned host's transport:
// one connection per range in flight, and no overall timeout (stalls are
// caught per range).
func withDownloadTransport(cfg config.DownloaderKnobs) rdp.Option {
	conns := max(cfg.ParallelRanges, 1) * 2
	return rdp.WithDownloadHTTPClient(&http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          conns,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       60 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.RangeReadTimeout,
		ForceAttemptHTTP2:     false,
		ReadBufferSize:        256 << 10,
	}})
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
