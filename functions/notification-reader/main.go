// Command notification-reader is the cfsync Lambda that turns CFS file-store
// notifications into downloads (docs/design.md#notifications). Scheduled
// every minute, it long-polls the subscription's SQS queue (in LSEG's AWS
// account, reached with the temporary credentials the token-refresher keeps
// in a secret), decrypts each message and hands each READY file-set's files
// to the poller's claim-then-queue path. main only wires.
package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cfsync/cfsync/internal/awsconf"
	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/logx"
	"github.com/cfsync/cfsync/internal/metrics"
	"github.com/cfsync/cfsync/internal/notify"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
)

const functionName = "notification-reader"

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
	var cfg config.NotificationReader
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
	sm := secretsmanager.NewFromConfig(awsCfg)
	table := state.New(dynamodb.NewFromConfig(awsCfg), cfg.StateTable)
	tokens := tokenring.NewReader(sm, table, cfg.TokenSecretIDs, tokenring.ReaderOptions{Skew: tokenring.ConfiguredSkew(cfg.TokenSkew)})
	client, err := rdp.NewClient(rdp.WithBaseURL(cfg.RDPBaseURL),
		rdp.WithHTTPClient(tokens.HTTPClient(&http.Client{Timeout: 60 * time.Second})), rdp.WithUserAgent("cfsync-"+functionName))
	if err != nil {
		return nil, fmt.Errorf("config: RDP_BASE_URL: %w", err)
	}
	return New(Deps{
		Secrets:  sm,
		NewQueue: queueFactory(awsCfg, cfg.QueueEndpointURL),
		Handoff: &notify.Handoff{State: table, TTLMargin: cfg.FileTTLMargin,
			Queue: &queue.Sender{SQS: sqs.NewFromConfig(awsCfg), QueueURL: cfg.DownloadQueueURL}},
		Reports: table,
		Files:   client,
		Log:     logx.New(os.Stdout, level, functionName),
		Metrics: metrics.New(os.Stdout, functionName),
	}, Settings{
		SubscriptionSecretID: cfg.SubscriptionSecretID,
		CredentialsSecretID:  cfg.CredentialsSecretID,
		Wait:                 cfg.Wait,
		DeadlineMargin:       cfg.DeadlineMargin,
		Visibility:           cfg.Visibility,
	})
}

// queueFactory makes SQS clients of LSEG's queue with its temporary
// credentials, in the queue's region (us-east-1 unless its URL says otherwise).
func queueFactory(base aws.Config, endpointOverride string) QueueFactory {
	return func(creds aws.Credentials, endpoint string) QueueAPI {
		return sqs.NewFromConfig(base, func(o *sqs.Options) {
			o.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil })
			o.Region = QueueRegion(endpoint)
			if endpointOverride != "" {
				o.BaseEndpoint = aws.String(endpointOverride)
			}
		})
	}
}

// QueueRegion returns the region of an SQS queue URL
// (https://sqs.<region>.amazonaws.com/<account>/<name>), us-east-1 by default
// (the region of LSEG's queues in its FileNoti sample).
func QueueRegion(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err == nil {
		parts := strings.Split(u.Hostname(), ".")
		if len(parts) >= 4 && parts[0] == "sqs" && strings.HasSuffix(u.Hostname(), ".amazonaws.com") {
			return parts[1]
		}
	}
	return "us-east-1"
}
