// Command token-refresher is the Lambda function that keeps RDP tokens
// fresh in the token ring for every other cfsync function
// (docs/design.md#token-refresher). main only wires dependencies; the logic
// is in handler.go, auth.go and probe.go.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cfsync/cfsync/internal/awsconf"
	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/logx"
	"github.com/cfsync/cfsync/internal/metrics"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

const functionName = "token-refresher"

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
	var cfg config.Refresher
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
	client, err := rdp.NewClient(rdp.WithBaseURL(cfg.RDPBaseURL), rdp.WithUserAgent("cfsync-"+functionName))
	if err != nil {
		return nil, fmt.Errorf("config: RDP_BASE_URL: %w", err)
	}
	if (cfg.NotifySubscriptionSecretID == "") != (cfg.NotifyCredentialsSecretID == "") {
		return nil, errors.New("config: NOTIFY_SUBSCRIPTION_SECRET_ID and NOTIFY_CREDENTIALS_SECRET_ID are set together (notifications on) or not at all")
	}
	table := state.New(dynamodb.NewFromConfig(awsCfg), cfg.StateTable)
	return New(Deps{
		SM:         secretsmanager.NewFromConfig(awsCfg),
		Table:      table,
		RDP:        client,
		Probe:      &FileStoreProber{BaseURL: cfg.RDPBaseURL},
		Log:        logx.New(os.Stdout, level, functionName),
		Metrics:    metrics.New(os.Stdout, functionName),
		Cloud:      client,
		QueueState: table,
	}, Settings{
		Opts: OptionsFromConfig(cfg),
		Queue: QueueCredsOptions{SubscriptionSecretID: cfg.NotifySubscriptionSecretID, CredentialsSecretID: cfg.NotifyCredentialsSecretID,
			RefreshAfter: cfg.QueueCredentialsRefresh},
	})
}
