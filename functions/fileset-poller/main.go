// Command fileset-poller is the cfsync Lambda that lists the READY file-sets
// of the subscribed CFS packages and queues every new file for download
// exactly once (docs/design.md#fileset-poller). main only wires configuration →
// clients → New → lambda.Start; the logic lives in handler.go and poll.go.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cfsync/cfsync/internal/awsconf"
	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/logx"
	"github.com/cfsync/cfsync/internal/metrics"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
)

const functionName = "fileset-poller"

func main() {
	h, err := newHandler(context.Background())
	if err != nil {
		logx.New(os.Stdout, 0, functionName).Error("start-up failed", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(h)
}

// newHandler wires configuration → clients → New.
func newHandler(ctx context.Context) (*Handler, error) {
	var cfg config.Poller
	if err := config.Load(&cfg); err != nil {
		return nil, err
	}
	level, err := logx.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, err
	}
	awsCfg, err := awsconf.Load(ctx)
	if err != nil {
		return nil, err
	}
	table := state.New(dynamodb.NewFromConfig(awsCfg), cfg.StateTable)
	reader := tokenring.NewReader(secretsmanager.NewFromConfig(awsCfg), table, cfg.TokenSecretIDs,
		tokenring.ReaderOptions{Skew: tokenring.ConfiguredSkew(cfg.TokenSkew)})
	client, err := rdp.NewClient(
		rdp.WithBaseURL(cfg.RDPBaseURL),
		rdp.WithHTTPClient(reader.HTTPClient(&http.Client{Timeout: 60 * time.Second})),
		rdp.WithUserAgent("cfsync-"+functionName),
	)
	if err != nil {
		return nil, fmt.Errorf("config: RDP_BASE_URL: %w", err)
	}
	return New(Deps{
		Files:    client,
		State:    table,
		FileSets: table,
		Queue:    &queue.Sender{SQS: sqs.NewFromConfig(awsCfg), QueueURL: cfg.DownloadQueueURL},
		Logger:   logx.New(os.Stdout, level, functionName),
		Metrics:  metrics.New(os.Stdout, functionName),
	}, Settings{
		Subscriptions: cfg.Subscriptions,
		Overlap:       cfg.PollOverlap,
		FullEvery:     cfg.FullReconcileEvery,
		ExpiryWarning: cfg.ExpiryWarning,
		TTLMargin:     cfg.FileTTLMargin,
		PageSize:      cfg.PollPageSize,
		StuckAfter:    cfg.StuckAfter,
		SweepLimit:    cfg.SweepLimit,
	})
}
