package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// configureSim starts the RDP simulator with the demo's files and a demo
// user, and points cfg at it with compressed token timing.
func configureSim(cfg *pipeline.Config, o *options, stdout io.Writer) (*rdptest.Server, []rdptest.File, error) {
	if o.refreshEvery == 0 {
		o.refreshEvery = 5 * time.Second
	}
	if o.pollEvery == 0 {
		o.pollEvery = 10 * time.Second
		if o.notify {
			o.pollEvery = 15 * time.Minute // the template's PollSchedule: the reconciler
		}
	}
	sim, err := rdptest.Start(rdptest.Options{
		AccessTokenTTL: o.tokenTTL, URLExpiry: 2 * time.Minute, BandwidthPerConn: o.bandwidth,
	})
	if err != nil {
		return nil, nil, err
	}
	cfg.Credentials = pipeline.AddSimUser(sim, "demo-user@example.com").Secret
	expected := pipeline.SeedDemo(sim, o.sets)
	subs := pipeline.DemoSubscriptions()
	cfg.Params = pipeline.StackParams(sim.URL(), subs...)
	// Compressed token timing (docs/local.md#compressed-timing): refresh when a third of the
	// token's life is left, readers skip a token a sixth early, a ring slot
	// may be rewritten 10 s after its last write (3 slots, a refresh every
	// two thirds of a token life: each slot is written every 2 token lives).
	// The failure backoff is compressed like the schedule (1 minute → 5 s).
	cfg.Env[pipeline.Refresher] = []string{
		"TOKEN_REFRESH_MARGIN=" + (o.tokenTTL / 3).String(),
		"SECRET_MIN_WRITE_INTERVAL=10s",
		"AUTH_BACKOFF_BASE=5s", "AUTH_BACKOFF_MAX=2m30s",
	}
	cfg.CommonEnv = []string{"TOKEN_SKEW=" + (o.tokenTTL / 6).String()}
	var total int64
	for _, f := range expected {
		total += f.Size
	}
	fmt.Fprintf(stdout, "cfsync-local: RDP simulator at %s: %d files (%s) in %d READY file-sets of %d subscribed packages, plus a PENDING file-set and an unsubscribed package\n",
		sim.URL(), len(expected), humanBytes(total), countSets(expected), len(subs))
	fmt.Fprintf(stdout, "  SUBSCRIPTIONS=%s\n", strings.Join(subs, ","))
	return sim, expected, nil
}

// demoFaults is one fault of every class the simulator knows, spread over
// the API and the presigned host (see docs/local.md#output).
func demoFaults() []rdptest.Fault {
	fs := []rdptest.Fault{
		{Kind: rdptest.FaultUnauthorized, Host: rdptest.HostAPI, PathPrefix: "/file-store/v1/file-sets"},
		{Kind: rdptest.FaultTooManyRequests, Host: rdptest.HostAPI, PathPrefix: "/file-store/v1/files/", RetryAfter: time.Second},
		{Kind: rdptest.FaultServerError, Host: rdptest.HostAPI, PathPrefix: "/file-store/v1/files/"},
		{Kind: rdptest.FaultUnavailable, Host: rdptest.HostAPI, PathPrefix: "/file-store/v1/file-sets"},
		{Kind: rdptest.FaultReset, Host: rdptest.HostS3},
		{Kind: rdptest.FaultTruncate, Host: rdptest.HostS3},
		{Kind: rdptest.FaultStall, Host: rdptest.HostS3, StallFor: 3 * time.Second},
		{Kind: rdptest.FaultExpiredURL, Host: rdptest.HostS3},
		{Kind: rdptest.FaultExpiredURL, Host: rdptest.HostAPI},
		{Kind: rdptest.FaultRepeatItem},
		{Kind: rdptest.FaultTooManyRequests, Host: rdptest.HostS3},
		{Kind: rdptest.FaultServerError, Host: rdptest.HostS3},
	}
	return fs
}

func countSets(files []rdptest.File) int {
	sets := map[string]bool{}
	for _, f := range files {
		sets[f.FileSetID] = true
	}
	return len(sets)
}
