package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cfsync/cfsync/internal/credentials"
	"github.com/cfsync/cfsync/internal/pipeline"
)

// defaultTimeout is -timeout's default.
const defaultTimeout = 5 * time.Minute

type options struct {
	keep         bool
	out          string
	sets         int
	timeout      time.Duration
	refreshEvery time.Duration
	pollEvery    time.Duration
	tokenTTL     time.Duration
	bandwidth    int64
	faults       bool
	verbose      bool
	logDir       string
	binDir       string
	plainEvery   time.Duration
	injected     int // faults injected (-faults)
	notify       bool
	publish      int
	publishEvery time.Duration
	readEvery    time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("cfsync-local", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.keep, "keep", false, "keep everything running after the files landed, until Ctrl-C (to browse moto's S3)")
	fs.StringVar(&o.out, "out", "", "copy the landed files into this directory (e.g. ./downloads)")
	fs.IntVar(&o.sets, "sets", 20, "simulator: READY file-sets to create (2 files each)")
	fs.DurationVar(&o.timeout, "timeout", defaultTimeout, "give up when the files have not all landed after this long (0: no limit; -notifications adds the publications' time)")
	fs.DurationVar(&o.refreshEvery, "refresh-every", 0, "token-refresher schedule (default 5s with the simulator, 1m with the real RDP)")
	fs.DurationVar(&o.pollEvery, "poll-every", 0, "fileset-poller schedule (default 10s with the simulator, 1m with the real RDP)")
	fs.DurationVar(&o.tokenTTL, "token-ttl", 60*time.Second, "simulator: access token lifetime (the refresher's margins are derived from it)")
	fs.Int64Var(&o.bandwidth, "bandwidth", 1<<20, "simulator: bytes/s per download connection (0: unlimited)")
	fs.BoolVar(&o.faults, "faults", false, "simulator: inject one fault of every class the simulator knows while the files move")
	fs.BoolVar(&o.verbose, "v", false, "also print the functions' log lines (JSON) to stderr")
	fs.StringVar(&o.logDir, "logs", "", "directory for the functions' logs (default: a new temporary directory)")
	fs.StringVar(&o.binDir, "bin", "", "directory for the built bootstraps (default: a temporary directory)")
	fs.DurationVar(&o.plainEvery, "status-every", 5*time.Second, "interval of the status lines when stdout is not a terminal")
	fs.BoolVar(&o.notify, "notifications", false, "simulator: push notifications: run the notification-reader and publish new file-sets while the demo runs, showing each one's publish → landed latency")
	fs.IntVar(&o.publish, "publish", 6, "-notifications: file-sets to publish once the seeded ones have landed")
	fs.DurationVar(&o.publishEvery, "publish-every", 25*time.Second, "-notifications: interval between publications")
	fs.DurationVar(&o.readEvery, "read-every", time.Minute, "-notifications: notification-reader schedule (the template's rate(1 minute); another value also scales its timeout, waits and margin)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.sets < 1 {
		return o, errors.New("-sets must be at least 1")
	}
	if o.notify && (o.publish < 1 || o.publishEvery <= 0 || o.readEvery < 3*time.Second) {
		return o, errors.New("-notifications needs -publish ≥ 1, -publish-every > 0 and -read-every ≥ 3s")
	}
	if o.tokenTTL < 30*time.Second {
		return o, errors.New("-token-ttl must be at least 30s (the refresh margin, a third of it, must cover the readers' skew, a sixth, plus the 5 s schedule)")
	}
	return o, nil
}

// parseArgs reads the flags and the environment (a run against the real
// RDP, see realRDP); ok is false when the run stops here, with code its exit
// code (0 after -h, 2 for bad arguments, which it prints).
func parseArgs(args []string, stderr io.Writer, getenv func(string) string) (o options, target *realTarget, code int, ok bool) {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return o, nil, 0, false
	}
	if err == nil {
		target, err = realRDP(getenv)
	}
	if err == nil && target != nil && o.notify {
		err = errors.New("-notifications runs with the simulator only (unset RDP_* and SUBSCRIPTIONS)")
	}
	if err != nil {
		fmt.Fprintln(stderr, "cfsync-local:", err)
		return o, nil, 2, false
	}
	return o, target, 0, true
}

// realTarget is a run against the real RDP.
type realTarget struct {
	baseURL string
	subs    []string
	creds   string // the credentials secret's JSON
	kind    string // which grant
}

// realRDP is the configuration for a run against the real RDP, from the
// environment: RDP_BASE_URL, SUBSCRIPTIONS and v1 (RDP_USERNAME,
// RDP_PASSWORD, RDP_CLIENT_ID) or v2 (RDP_CLIENT_ID, RDP_CLIENT_SECRET)
// credentials. It is nil when none of them is set (a simulator run).
func realRDP(getenv func(string) string) (*realTarget, error) {
	t := &realTarget{baseURL: strings.TrimSpace(getenv("RDP_BASE_URL"))}
	for _, s := range strings.Split(getenv("SUBSCRIPTIONS"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			t.subs = append(t.subs, s)
		}
	}
	creds, ok, err := credentials.FromEnv(getenv)
	switch {
	case err != nil:
		return nil, fmt.Errorf("real RDP: %w", err)
	case !ok && t.baseURL == "" && len(t.subs) == 0:
		return nil, nil
	case !ok:
		return nil, errors.New("real RDP: set RDP_USERNAME, RDP_PASSWORD and RDP_CLIENT_ID (v1) or RDP_CLIENT_ID and RDP_CLIENT_SECRET (v2)")
	case len(t.subs) == 0:
		return nil, errors.New("real RDP: set SUBSCRIPTIONS (bucket/packageId or bucket/*, comma-separated)")
	case t.baseURL == "":
		return nil, errors.New("real RDP: set RDP_BASE_URL (e.g. https://api.refinitiv.com)")
	}
	// The local refresher stands in for a deployed one: like the credentials
	// secret's default, it takes exclusive sign-on control (FromEnv's default
	// is off, for the CLI's one-off sign-ons).
	creds.TakeExclusive = true
	b, err := creds.SecretJSON()
	if err != nil {
		return nil, fmt.Errorf("real RDP: %w", err)
	}
	t.creds, t.kind = string(b), string(creds.Kind)
	return t, nil
}

// configureReal points cfg at the real RDP; the schedules default to a
// minute and there is no time limit unless one was given.
func configureReal(cfg *pipeline.Config, o *options, t *realTarget, stdout io.Writer) {
	if o.refreshEvery == 0 {
		o.refreshEvery = time.Minute
	}
	if o.pollEvery == 0 {
		o.pollEvery = time.Minute
	}
	fmt.Fprintf(stdout, "cfsync-local: REAL RDP at %s (%s), subscriptions %s\n", t.baseURL, t.kind, strings.Join(t.subs, ","))
	fmt.Fprintln(stdout, "  the token-refresher signs in with your credentials (default auth budget: 20 requests per 5 minutes)")
	cfg.Credentials = t.creds
	cfg.Params = pipeline.StackParams(t.baseURL, t.subs...)
	if o.timeout == defaultTimeout {
		o.timeout = 0 // real files take as long as they take
	}
}

// configureLocal sets what every local run shares: the schedules, and
// failed messages back after 60 s instead of the queue's 30 minutes, the
// downloader's timeout cut to 50 s to stay below that.
func configureLocal(cfg *pipeline.Config, o options) {
	cfg.RefreshEvery, cfg.PollEvery = o.refreshEvery, o.pollEvery
	cfg.VisibilityTimeout = 60 * time.Second
	cfg.Timeouts = map[string]time.Duration{pipeline.Downloader: 50 * time.Second}
	cfg.Env[pipeline.Downloader] = []string{"DEADLINE_MARGIN=10s", "RANGE_READ_TIMEOUT=5s", "RETRY_MAX_DELAY=2s"}
}
