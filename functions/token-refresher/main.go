// Command token-refresher is the Lambda function that keeps RDP tokens
// fresh in the token ring for every other cfsync function
// (docs/design.md#token-refresher). main only wires dependencies; the logic
// is in handler.go, auth.go and probe.go.
package main

import (
	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/lambdamain"
)

const functionName = "token-refresher"

func main() { lambdamain.Main(functionName, newHandler) }

// newHandler wires clients → New.
func newHandler(env *lambdamain.Env, cfg *config.Refresher) (*Handler, error) {
	client, err := env.RDPClient()
	if err != nil {
		return nil, err
	}
	return New(Deps{
		SM:         env.Secrets,
		Table:      env.Table,
		RDP:        client,
		Probe:      &FileStoreProber{BaseURL: cfg.RDPBaseURL},
		Log:        env.Log,
		Metrics:    env.Metrics,
		Cloud:      client,
		QueueState: env.Table,
	}, Settings{
		Opts: OptionsFromConfig(*cfg),
		Queue: QueueCredsOptions{SubscriptionSecretID: cfg.NotifySubscriptionSecretID, CredentialsSecretID: cfg.NotifyCredentialsSecretID,
			RefreshAfter: cfg.QueueCredentialsRefresh},
	})
}
