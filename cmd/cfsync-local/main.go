// Command cfsync-local runs the whole cfsync pipeline on this machine
// (`make demo`): the RDP simulator (in-process) or the real RDP, moto_server
// for AWS with the resources of template.yaml, and the three functions built
// and run as Lambda bootstraps, the refresher and the poller on a compressed
// schedule and the downloader fed from the SQS queue. It shows the files
// landing, verifies them and prints a summary. See docs/local.md#make-demo.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cfsync/cfsync/internal/credentials"
	"github.com/cfsync/cfsync/internal/lambdamain"
	"github.com/cfsync/cfsync/internal/lambdarun"
	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// A second Ctrl-C while shutting down exits at once; the bootstraps and
	// moto_server die with this process (parent-death signal).
	go func() {
		<-ctx.Done()
		stop()
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		<-again
		fmt.Fprintln(os.Stderr, "\ncfsync-local: interrupted again, exiting now")
		os.Exit(130)
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

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

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
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

type logFiles struct {
	dir   string
	mu    sync.Mutex
	files []*os.File
}

func (l *logFiles) writer(verbose bool, stderr io.Writer) func(string) io.Writer {
	return func(fn string) io.Writer {
		l.mu.Lock()
		defer l.mu.Unlock()
		f, err := os.Create(filepath.Join(l.dir, fn+".log"))
		if err != nil {
			return io.Discard
		}
		l.files = append(l.files, f)
		if verbose {
			return io.MultiWriter(f, prefixWriter{w: stderr, prefix: fn + ": "})
		}
		return f
	}
}

func (l *logFiles) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.files {
		_ = f.Close()
	}
}

// prefixWriter writes each (whole-line) write with a prefix.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "cfsync-local:", err)
		return 2
	}
	target, err := realRDP(getenv)
	if err != nil {
		fmt.Fprintln(stderr, "cfsync-local:", err)
		return 2
	}
	out := &liveWriter{w: stdout, tty: isTerminal(os.Stdout) && stdout == io.Writer(os.Stdout) && !o.verbose, plainEvery: o.plainEvery}
	if out.tty {
		out.width = termWidth(os.Stdout)
	}
	cfg := pipeline.Config{StackName: "cfsync-local", BinDir: o.binDir, Env: map[string][]string{}}
	var sim *rdptest.Server
	var expected []rdptest.File
	if target != nil {
		if o.notify {
			fmt.Fprintln(stderr, "cfsync-local: -notifications runs with the simulator only (unset RDP_* and SUBSCRIPTIONS)")
			return 2
		}
		configureReal(&cfg, &o, target, stdout)
	} else {
		if sim, expected, err = configureSim(&cfg, &o, stdout); err != nil {
			fmt.Fprintln(stderr, "cfsync-local:", err)
			return 1
		}
		defer sim.Close()
	}
	configureLocal(&cfg, o)
	var pub *publisher
	if o.notify {
		notes := configureNotifications(&cfg, &o, sim)
		defer notes.Close()
		pub = &publisher{sim: sim, n: o.publish, every: o.publishEvery}
	}
	logs, err := openLogs(o.logDir)
	if err != nil {
		fmt.Fprintln(stderr, "cfsync-local:", err)
		return 1
	}
	defer logs.close()
	cfg.LogWriter = logs.writer(o.verbose, stderr)
	events := make(chan string, 256)
	cfg.OnInvoke = reportFailures(ctx, events)

	d := &demo{ctx: ctx, o: o, stdout: stdout, stderr: stderr, sim: sim, expected: expected, pub: pub}
	if code, ok := d.start(cfg, logs.dir); !ok {
		return code
	}
	defer d.shutdown()
	code := d.watchAndSummarise(out, events)
	d.shutdown()
	return code
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
	cfg.Params = map[string]string{"RdpBaseUrl": t.baseURL, "Subscriptions": strings.Join(t.subs, ",")}
	if o.timeout == defaultTimeout {
		o.timeout = 0 // real files take as long as they take
	}
}

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
	user, password, appKey := "demo-user@example.com", "demo-"+randomHex(12), randomHex(20)
	sim.AddUser(user, password, appKey)
	b, _ := json.Marshal(map[string]string{"username": user, "password": password, "client_id": appKey})
	cfg.Credentials = string(b)
	expected := pipeline.SeedDemo(sim, o.sets)
	subs := pipeline.DemoSubscriptions()
	cfg.Params = map[string]string{"RdpBaseUrl": sim.URL(), "Subscriptions": strings.Join(subs, ",")}
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

// configureLocal sets what every local run shares: the schedules, and
// failed messages back after 60 s instead of the queue's 30 minutes, the
// downloader's timeout cut to 50 s to stay below that.
func configureLocal(cfg *pipeline.Config, o options) {
	cfg.RefreshEvery, cfg.PollEvery = o.refreshEvery, o.pollEvery
	cfg.VisibilityTimeout = 60 * time.Second
	cfg.Timeouts = map[string]time.Duration{pipeline.Downloader: 50 * time.Second}
	cfg.Env[pipeline.Downloader] = []string{"DEADLINE_MARGIN=10s", "RANGE_READ_TIMEOUT=5s", "RETRY_MAX_DELAY=2s"}
}

// openLogs creates dir (default: a new temporary directory) for the
// functions' log files.
func openLogs(dir string) (*logFiles, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "cfsync-local-logs-")
		if err != nil {
			return nil, err
		}
		return &logFiles{dir: d}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &logFiles{dir: dir}, nil
}

// reportFailures sends a line for every failed invocation to events
// (dropped when events is full).
func reportFailures(ctx context.Context, events chan<- string) func(string, lambdarun.Result, error) {
	return func(fn string, res lambdarun.Result, err error) {
		var msg string
		switch {
		case err != nil && ctx.Err() == nil:
			msg = fmt.Sprintf("%s: invocation not completed: %v", fn, err)
		case res.Err != nil:
			msg = fmt.Sprintf("%s: invocation failed: %s", fn, truncate(res.Err.Error(), 200))
		default:
			return
		}
		select {
		case events <- msg:
		default:
		}
	}
}

// demo is one running local pipeline.
type demo struct {
	ctx            context.Context
	o              options
	stdout, stderr io.Writer
	sim            *rdptest.Server
	expected       []rdptest.File
	pub            *publisher // -notifications
	p              *pipeline.Pipeline
	stopped        bool
}

// start starts the pipeline and prints what runs where; !ok means it did
// not start and code is the exit code.
func (d *demo) start(cfg pipeline.Config, logDir string) (code int, ok bool) {
	fmt.Fprintf(d.stdout, "cfsync-local: starting moto_server, building the functions (%s), deploying template.yaml into moto's CloudFormation…\n", strings.Join(pipeline.Deployed(cfg.Params), ", "))
	t0 := time.Now()
	p, err := pipeline.Start(d.ctx, cfg)
	if err != nil {
		if d.ctx.Err() != nil {
			fmt.Fprintln(d.stderr, "cfsync-local: interrupted during start-up; everything started is stopped")
			return 130, false
		}
		fmt.Fprintln(d.stderr, "cfsync-local:", err)
		return 1, false
	}
	d.p = p
	fmt.Fprintf(d.stdout, "cfsync-local: up in %.1fs: moto_server %s (pid %d), stack %s, functions as bootstraps under the Lambda Runtime Interface Emulator\n",
		time.Since(t0).Seconds(), p.Endpoint, p.Moto.PID, p.Stack.StackName)
	fmt.Fprintf(d.stdout, "  schedules: token-refresher every %s, fileset-poller every %s; downloader: SQS event source, batch %d, concurrency %d\n",
		d.o.refreshEvery, d.o.pollEvery, p.Config.BatchSize, p.Config.DownloaderConcurrency)
	if d.pub != nil {
		fmt.Fprintf(d.stdout, "  notification-reader every %s (timeout %s); %d file-sets will be published in %s, one every %s, once the seeded ones have landed\n",
			d.o.readEvery, p.FunctionOptions(pipeline.Reader).Timeout, d.o.publish, notifyPackage.Bucket+"/"+notifyPackage.ID, d.o.publishEvery)
	}
	fmt.Fprintf(d.stdout, "  function logs: %s/{%s}.log\n", logDir, strings.Join(p.Deployed(), ","))
	if d.o.faults && d.sim != nil {
		fs := demoFaults()
		d.sim.Inject(fs...)
		d.o.injected = len(fs)
		fmt.Fprintf(d.stdout, "  injected %d faults (every class: 401, 429, 500, 503, reset, truncate, stall, expired URL, repeated page item)\n", len(fs))
	}
	return 0, true
}

func (d *demo) shutdown() {
	if d.stopped {
		return
	}
	d.stopped = true
	pids := d.p.PIDs()
	d.p.Close()
	fmt.Fprintf(d.stdout, "cfsync-local: stopped (moto_server and %d function processes ended: pids %v)\n", len(pids)-1, pids)
}

// watchAndSummarise shows progress until done, interrupted or timed out,
// prints the summary, copies the files (-out), waits (-keep) and returns
// the exit code.
func (d *demo) watchAndSummarise(out *liveWriter, events <-chan string) int {
	ctx, o := d.ctx, d.o
	runCtx := ctx
	if o.timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	res := watch(runCtx, d.p, d.sim, d.expected, d.pub, out, events)
	if d.pub != nil {
		d.expected = append(d.expected, d.pub.files()...)
	}
	out.endLive()
	interrupted := ctx.Err() != nil
	timedOut := !interrupted && runCtx.Err() != nil
	if interrupted || timedOut {
		d.p.StopLoops() // a still summary: nothing moves while it is printed
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	code := summary(sctx, d.stdout, d.p, d.sim, d.expected, d.pub, res, o)
	switch {
	case interrupted:
		fmt.Fprintln(d.stdout, "cfsync-local: interrupted")
		if code == 0 && !res.complete {
			code = 130
		}
	case timedOut:
		fmt.Fprintf(d.stdout, "cfsync-local: gave up after %s\n", o.timeout)
		code = 1
	}
	return d.copyAndKeep(sctx, code)
}

// copyAndKeep copies the files (-out) and keeps everything up until Ctrl-C
// (-keep).
func (d *demo) copyAndKeep(ctx context.Context, code int) int {
	if d.o.out != "" && d.ctx.Err() == nil {
		n, err := d.p.CopyTo(ctx, d.o.out)
		if err != nil {
			fmt.Fprintln(d.stderr, "cfsync-local:", err)
			code = 1
		} else {
			fmt.Fprintf(d.stdout, "cfsync-local: copied %d files to %s\n", n, d.o.out)
		}
	}
	if d.o.keep && d.ctx.Err() == nil {
		fmt.Fprintln(d.stdout, "cfsync-local: -keep: everything keeps running (the schedules too); Ctrl-C to stop")
		<-d.ctx.Done()
		if code == 130 {
			code = 0
		}
	}
	return code
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func countSets(files []rdptest.File) int {
	sets := map[string]bool{}
	for _, f := range files {
		sets[f.FileSetID] = true
	}
	return len(sets)
}

// watchResult is what the live loop saw.
type watchResult struct {
	last       pipeline.Progress
	firstPoll  time.Time // when the first file item appeared
	complete   bool      // every expected file DONE or FAILED, the queue drained
	elapsed    time.Duration
	transferAt time.Duration // from the first file item to the last DONE
}

// watch shows progress until every expected file is DONE or FAILED and the
// queue is drained (simulator), with -notifications also every file-set
// published and landed, or until ctx ends.
func watch(ctx context.Context, p *pipeline.Pipeline, sim *rdptest.Server, expected []rdptest.File, pub *publisher, out *liveWriter, events <-chan string) watchResult {
	var res watchResult
	start := p.Started
	total := len(expected)
	if pub != nil {
		total += pipeline.PublishFiles * pub.n
	}
	seenAuth := 0
	started := false
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		pr, err := p.Progress(ctx)
		if err == nil {
			res.last = pr
			if pr.Files > 0 && res.firstPoll.IsZero() {
				res.firstPoll = time.Now()
			}
		}
		for drained := false; !drained; {
			select {
			case ev := <-events:
				out.event("  %s", ev)
			default:
				drained = true
			}
		}
		auth := printAuth(sim, &seenAuth, out)
		published := true
		if pub != nil && err == nil {
			for _, l := range pub.step(pr, pr.Done()+pr.Failed() >= len(expected)) {
				out.event("%s", l)
			}
			published = pub.done()
		}
		res.elapsed = time.Since(start)
		xfer := time.Duration(0)
		if !res.firstPoll.IsZero() {
			end := time.Now()
			if total > 0 && pr.Done() == total && !pr.LastDone.IsZero() {
				end = pr.LastDone
			}
			xfer = end.Sub(res.firstPoll)
			res.transferAt = xfer
		}
		if err == nil {
			res.complete = total > 0 && published && pr.Done()+pr.Failed() >= total && pr.Queued == 0 && pr.InFlight == 0
			out.status(progressLine(pr, total, res.elapsed, xfer, auth), res.complete || !started)
			started = true
			if res.complete {
				return res
			}
		}
		select {
		case <-ctx.Done():
			return res
		case <-tick.C:
		}
	}
}

// printAuth prints the simulator's /auth requests since *seen and returns
// how many there were in all (-1 with the real RDP).
func printAuth(sim *rdptest.Server, seen *int, out *liveWriter) int {
	if sim == nil {
		return -1
	}
	log := sim.AuthLog()
	for _, r := range log[*seen:] {
		status := fmt.Sprint(r.Status)
		if r.Error != "" {
			status += " " + r.Error
		}
		out.event("  RDP auth: %s grant → %s (%s)", grantName(r.Grant), status, strings.TrimPrefix(r.UserAgent, lambdamain.UserAgentPrefix))
	}
	*seen = len(log)
	return len(log)
}

func grantName(g string) string {
	if g == "" {
		return "unknown"
	}
	return g
}

// summary prints the summary table and where the files are; it returns the
// exit code (0: every expected file landed and verified, and no /auth
// request came from another function than the token-refresher).
func summary(ctx context.Context, w io.Writer, p *pipeline.Pipeline, sim *rdptest.Server, expected []rdptest.File, pub *publisher, res watchResult, o options) int {
	pr, err := p.Progress(ctx)
	if err != nil {
		pr = res.last
	}
	code := 0
	fmt.Fprintln(w)
	if sim != nil {
		code = verifySummary(ctx, w, p, expected, landed(pr, expected), res)
	}
	rows := [][2]string{
		{"files", fmt.Sprintf("%d landed, %d failed, %d not finished (state table: %d items)", pr.Done(), pr.Failed(), pr.Files-pr.Done()-pr.Failed(), pr.Files)},
		{"bytes", humanBytes(pr.BytesDone)},
		{"throughput", fmt.Sprintf("%s (first file queued → last file landed: %.1fs)", rate(pr.BytesDone, res.transferAt), res.transferAt.Seconds())},
	}
	if pub != nil {
		rows = append(rows, pub.summaryRow(o))
	}
	if sim != nil {
		simRows, others := simSummaryRows(sim, o)
		rows = append(rows, simRows...)
		if len(others) > 0 {
			code = 1
		}
	} else {
		rows = append(rows, [2]string{"RDP auth calls", "see the token-refresher log (real RDP)"})
	}
	ev := pr.Events
	sched := fmt.Sprintf("token-refresher %d runs (%d failed), fileset-poller %d runs (%d failed)", pr.Refresh.Runs, pr.Refresh.Errors, pr.Poll.Runs, pr.Poll.Errors)
	if pub != nil {
		sched += fmt.Sprintf(", notification-reader %d runs (%d failed)", pr.Read.Runs, pr.Read.Errors)
	}
	rows = append(rows,
		[2]string{"schedules", sched},
		[2]string{"downloader", fmt.Sprintf("%d invocations, %d messages, %d deleted", ev.Invocations, ev.Messages, ev.Deleted)},
		[2]string{"retries", fmt.Sprintf("%d redeliveries, %d messages failed (%d whole batches)", ev.Redelivered, ev.ItemFailures, ev.BatchFailures)},
		[2]string{"DLQ", fmt.Sprintf("%d messages", pr.DLQ)},
	)
	for _, r := range rows {
		fmt.Fprintf(w, "  %-16s %s\n", r[0], r[1])
	}
	if len(expected) > 0 {
		fmt.Fprintln(w)
		packageTable(w, packageRows(pr, expected))
	}
	if pr.Failed() > 0 || pr.DLQ > 0 || (len(expected) > 0 && pr.Done() != len(expected)) {
		code = 1
	}
	fmt.Fprintf(w, "\nThe files are in s3://%s/%s (moto_server at %s). While cfsync-local runs (-keep keeps it up until Ctrl-C):\n", p.Res.Bucket, p.Res.Prefix, p.Endpoint)
	fmt.Fprintf(w, "  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \\\n    aws --endpoint-url %s s3 ls --recursive s3://%s/%s\n", p.Endpoint, p.Res.Bucket, p.Res.Prefix)
	if o.out == "" {
		fmt.Fprintln(w, "  (-out ./downloads copies them to disk)")
	}
	return code
}

// verifySummary verifies the expected files (those landed so far, when the
// run did not finish) and prints the outcome; it returns the exit code.
func verifySummary(ctx context.Context, w io.Writer, p *pipeline.Pipeline, expected, landed []rdptest.File, res watchResult) int {
	check := expected
	if !res.complete {
		check = landed
		fmt.Fprintf(w, "not finished: %d of %d files had landed\n", len(check), len(expected))
	}
	rep, err := p.Verify(ctx, check)
	switch {
	case err != nil:
		fmt.Fprintf(w, "verification failed to run: %v\n", err)
		return 1
	case rep.OK() && res.complete:
		fmt.Fprintf(w, "%d of %d files landed in %s and verified: byte-identical (MD5 of the whole object), right key and cfs-* metadata, state DONE; nothing else in the bucket\n",
			rep.Verified, rep.Files, clock(res.elapsed))
	case rep.OK():
		fmt.Fprintf(w, "the %d landed files verified: byte-identical, right key and metadata, state DONE\n", rep.Verified)
	default:
		fmt.Fprintf(w, "%d of %d files verified; %d problems:\n", rep.Verified, rep.Files, len(rep.Problems))
		for i, prob := range rep.Problems {
			if i == 20 {
				fmt.Fprintf(w, "  … and %d more\n", len(rep.Problems)-20)
				break
			}
			fmt.Fprintln(w, "  "+prob)
		}
		return 1
	}
	return 0
}

// simSummaryRows are the simulator's rows: /auth calls by grant and by
// caller, API calls, faults; others are the /auth callers other than the
// token-refresher (there must be none).
func simSummaryRows(sim *rdptest.Server, o options) (rows [][2]string, others []string) {
	log := sim.AuthLog()
	ok, failed := authByGrant(log)
	callers, others := authCallers(log)
	who := "all by the token-refresher"
	if len(others) > 0 {
		who = "NOT ONLY BY THE TOKEN-REFRESHER"
	}
	rows = append(rows,
		[2]string{"RDP auth calls", formatGrants(ok, failed) + " (" + who + "; budget 20 per 5 min)"},
		[2]string{"auth callers", callers})
	c := sim.Counters()
	rows = append(rows, [2]string{"RDP API calls", fmt.Sprintf("file-sets %d, stream URLs %d, presigned GETs %d (%d ranged), %s served",
		c.Requests[rdptest.EPFileSets], c.StreamURLs, c.S3Requests, c.RangeRequests, humanBytes(c.BytesServed))})
	if c.FaultsFired > 0 {
		rows = append(rows, [2]string{"faults fired", fmt.Sprintf("%d (of %d injected; a fault fires when a request matches it)", c.FaultsFired, o.injected)})
	}
	if o.notify {
		nc := sim.NotificationCounters()
		rows = append(rows, [2]string{"notification API", fmt.Sprintf("%d subscription, %d notifications delivered, %d queue credentials handed out, %d rejected by the gate",
			nc.Subscriptions, nc.Published, nc.CloudCredentials, nc.CredentialsDenied)})
	}
	return rows, others
}

// landed returns the expected files whose state is DONE in pr.
func landed(pr pipeline.Progress, expected []rdptest.File) []rdptest.File {
	var out []rdptest.File
	for _, f := range expected {
		if _, done := pr.DoneAt[f.ID]; done {
			out = append(out, f)
		}
	}
	return out
}

// packageRows counts the expected files by package, and those DONE in pr.
func packageRows(pr pipeline.Progress, expected []rdptest.File) []packageRow {
	byPkg := map[string]*packageRow{}
	for _, f := range expected {
		name := f.Bucket + "/" + f.PackageID
		r := byPkg[name]
		if r == nil {
			r = &packageRow{name: name}
			byPkg[name] = r
		}
		r.want++
		if _, done := pr.DoneAt[f.ID]; done {
			r.landed++
			r.bytes += f.Size
		}
	}
	var rows []packageRow
	for _, r := range byPkg {
		rows = append(rows, *r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
	return rows
}
