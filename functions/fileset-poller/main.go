// Command fileset-poller is the cfsync Lambda that lists the READY file-sets
// of the subscribed CFS packages and queues every new file for download
// exactly once (docs/design.md#fileset-poller). main only wires configuration →
// clients → New → lambda.Start; the logic lives in handler.go and poll.go.
package main

import (
	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/lambdamain"
)

const functionName = "fileset-poller"

func main() { lambdamain.Main(functionName, newHandler) }

// newHandler wires clients → New.
func newHandler(env *lambdamain.Env, cfg *config.Poller) (*Handler, error) {
	client, err := env.TokenRDPClient(cfg.Reader)
	if err != nil {
		return nil, err
	}
	return New(Deps{
		Files:    client,
		State:    env.Table,
		FileSets: env.Table,
		Queue:    env.DownloadQueue(cfg.Worker),
		Logger:   env.Log,
		Metrics:  env.Metrics,
	}, Settings{cfg.PollerKnobs})
}
