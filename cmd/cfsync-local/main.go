// Command cfsync-local runs the whole cfsync pipeline on this machine
// (`make demo`): the RDP simulator (in-process) or the real RDP, moto_server
// for AWS with the resources of template.yaml, and the three functions built
// and run as Lambda bootstraps, the refresher and the poller on a compressed
// schedule and the downloader fed from the SQS queue. It shows the files
// landing, verifies them and prints a summary. See docs/local.md#make-demo.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

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
	o, target, code, ok := parseArgs(args, stderr, getenv)
	if !ok {
		return code
	}
	out := &liveWriter{w: stdout, tty: isTerminal(os.Stdout) && stdout == io.Writer(os.Stdout) && !o.verbose, plainEvery: o.plainEvery}
	if out.tty {
		out.width = termWidth(os.Stdout)
	}
	cfg := pipeline.Config{StackName: "cfsync-local", BinDir: o.binDir, Env: map[string][]string{}}
	var sim *rdptest.Server
	var expected []rdptest.File
	if target != nil {
		configureReal(&cfg, &o, target, stdout)
	} else {
		var err error
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
	code = d.watchAndSummarise(out, events)
	d.shutdown()
	return code
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
