// Command notification-reader is the cfsync Lambda that turns CFS file-store
// notifications into downloads (docs/design.md#notifications). Scheduled
// every minute, it long-polls the subscription's SQS queue (in LSEG's AWS
// account, reached with the temporary credentials the token-refresher keeps
// in a secret), decrypts each message and hands each READY file-set's files
// to the poller's claim-then-queue path. main only wires.
package main

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/lambdamain"
	"github.com/cfsync/cfsync/internal/notify"
)

const functionName = "notification-reader"

func main() { lambdamain.Main(functionName, newHandler) }

// newHandler wires clients → New.
func newHandler(env *lambdamain.Env, cfg *config.NotificationReader) (*Handler, error) {
	client, err := env.TokenRDPClient(cfg.Reader)
	if err != nil {
		return nil, err
	}
	return New(Deps{
		Secrets:  env.Secrets,
		NewQueue: queueFactory(env.AWS, cfg.QueueEndpointURL),
		Handoff: &notify.Handoff{State: env.Table, TTLMargin: cfg.FileTTLMargin,
			Queue: env.DownloadQueue(cfg.Worker)},
		Reports: env.Table,
		Files:   client,
		Log:     env.Log,
		Metrics: env.Metrics,
	}, Settings{ReaderKnobs: cfg.ReaderKnobs})
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
