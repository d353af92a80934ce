// Command fileset-poller is the cfsync Lambda that lists the READY file-sets
// of the subscribed CFS packages and queues every new file for download
// exactly once (see docs/design.md#fileset-poller). main only wires configuration, clients
// and the Handler; the logic lives in handler.go and poll.go.
package main

import (
	"context"
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
	boot := logx.New(os.Stdout, 0, functionName)
	var cfg config.Poller
	if err := config.Load(&cfg); err != nil {
		boot.Error("start-up failed", "error", err.Error())
		os.Exit(1)
	}
	level, err := logx.ParseLevel(cfg.LogLevel)
	if err != nil {
		boot.Error("start-up failed", "error", err.Error())
		os.Exit(1)
	}
	logger := logx.New(os.Stdout, level, functionName)

	ctx := context.Background()
	awsCfg, err := awsconf.Load(ctx)
	if err != nil {
		logger.Error("start-up failed", "error", err.Error())
		os.Exit(1)
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
		logger.Error("start-up failed", "error", "config: RDP_BASE_URL: "+err.Error())
		os.Exit(1)
	}
	h := &Handler{
		Files:         client,
		Tokens:        reader,
		State:         table,
		FileSets:      table,
		Queue:         &queue.Sender{SQS: sqs.NewFromConfig(awsCfg), QueueURL: cfg.DownloadQueueURL},
		Logger:        logger,
		Metrics:       metrics.New(os.Stdout, functionName),
		Subscriptions: cfg.Subscriptions,
		Overlap:       cfg.PollOverlap,
		FullEvery:     cfg.FullReconcileEvery,
		ExpiryWarning: cfg.ExpiryWarning,
		TTLMargin:     cfg.FileTTLMargin,
		PageSize:      cfg.PollPageSize,
		StuckAfter:    cfg.StuckAfter,
		SweepLimit:    cfg.SweepLimit,
	}
	lambda.Start(h)
}
