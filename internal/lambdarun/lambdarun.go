// Package lambdarun runs a built Lambda bootstrap (runtime provided.al2023,
// e.g. a Go binary calling aws-lambda-go's lambda.Start) as a child process
// and serves it the Lambda Runtime API on 127.0.0.1, so end-to-end tests and
// the local demo can invoke real function binaries without AWS or the AWS
// runtime interface emulator.
//
// A [Runner] is one execution environment: invocations are serial, the
// function's timeout is enforced (the process is killed and re-initialised
// for the next invocation, as Lambda does), a crash gives an error result and
// a restart, and the function's stdout/stderr is captured line by line.
// A [Pool] holds several Runners for concurrent invocations.
package lambdarun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxPayload is the largest request or response payload, as for synchronous
// Lambda invocations (6 MB).
const MaxPayload = 6 << 20

// Defaults applied by [Start] to zero [Options] fields.
const (
	DefaultTimeout     = 3 * time.Second  // Lambda's default function timeout
	DefaultInitTimeout = 10 * time.Second // Lambda's init phase limit
	DefaultMemoryMB    = 128
	DefaultRegion      = "us-east-1"
	// AccountID is the account in the invoked function ARN (moto's default account).
	AccountID = "123456789012"
)

// Error types of the failures the runner itself detects (Lambda's names).
const (
	ErrorTypeTimeout  = "Sandbox.Timedout"              // function or init timeout
	ErrorTypeExit     = "Runtime.ExitError"             // the process exited
	ErrorTypeTooLarge = "Function.ResponseSizeTooLarge" // response over MaxPayload
	ErrorTypeUnknown  = "Runtime.Unknown"               // an /error body without a type
)

const (
	errorTypeHeader  = "Lambda-Runtime-Function-Error-Type"
	errorBodyTrailer = "Lambda-Runtime-Function-Error-Body"
	// logReaderDrainWait bounds waiting for a process's output to be read.
	logReaderDrainWait = 2 * time.Second
)

// ErrClosed is returned (wrapped) by Invoke on a closed Runner or Pool.
var ErrClosed = errors.New("lambdarun: closed")

// Options configure one function's execution environment.
type Options struct {
	// Name is AWS_LAMBDA_FUNCTION_NAME; default: the name of Binary's directory
	// (bin/downloader/bootstrap → "downloader").
	Name string
	// Binary is the path of the bootstrap executable (required). It runs with
	// its directory as working directory and LAMBDA_TASK_ROOT.
	Binary string
	// Env holds extra "KEY=value" entries for the function (AWS_ENDPOINT_URL,
	// the function's configuration, credentials). They override the defaults
	// (AWS_REGION, dummy AWS credentials, …) but not AWS_LAMBDA_RUNTIME_API.
	// The parent's environment is NOT inherited, apart from PATH.
	Env []string
	// Timeout is the function timeout (default 3s). Sub-second values are
	// allowed for tests; AWS_LAMBDA_FUNCTION_TIMEOUT is rounded up to seconds.
	Timeout time.Duration
	// InitTimeout bounds the init phase: process start to the first
	// /next call, or an init error (default 10s).
	InitTimeout time.Duration
	// MemoryMB is AWS_LAMBDA_FUNCTION_MEMORY_SIZE (default 128; not enforced).
	MemoryMB int
	// LogWriter, when set, also receives every captured log line (with "\n").
	// Writes are serialised per Runner (per Pool for a Pool).
	LogWriter io.Writer
}

func (o Options) withDefaults() (Options, error) {
	if o.Binary == "" {
		return o, errors.New("options: Binary is required")
	}
	abs, err := filepath.Abs(o.Binary)
	if err != nil {
		return o, fmt.Errorf("options: binary: %w", err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return o, fmt.Errorf("options: binary: %w", err)
	}
	if st.IsDir() {
		return o, fmt.Errorf("options: binary %s is a directory", abs)
	}
	o.Binary = abs
	if o.Name == "" {
		o.Name = filepath.Base(filepath.Dir(abs))
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.InitTimeout <= 0 {
		o.InitTimeout = DefaultInitTimeout
	}
	if o.MemoryMB <= 0 {
		o.MemoryMB = DefaultMemoryMB
	}
	return o, nil
}

func lookupEnv(env []string, key string) (string, bool) {
	val, found := "", false
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			val, found = v, true // last one wins, as in exec.Cmd
		}
	}
	return val, found
}

func (o Options) region() string {
	if v, ok := lookupEnv(o.Env, "AWS_REGION"); ok && v != "" {
		return v
	}
	return DefaultRegion
}

func (o Options) functionARN() string {
	return fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", o.region(), AccountID, o.Name)
}

// environ is the child's environment: Lambda's reserved variables, then the
// caller's Env, then the Runtime API address (which must win).
func (o Options) environ(api string) []string {
	dir := filepath.Dir(o.Binary)
	timeoutS := max(1, int(math.Ceil(o.Timeout.Seconds())))
	region := o.region()
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	env := []string{
		"PATH=" + path,
		"TZ=:UTC",
		"LANG=en_US.UTF-8",
		"AWS_LAMBDA_FUNCTION_NAME=" + o.Name,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=" + strconv.Itoa(o.MemoryMB),
		"AWS_LAMBDA_FUNCTION_TIMEOUT=" + strconv.Itoa(timeoutS),
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_INITIALIZATION_TYPE=on-demand",
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/" + o.Name,
		"AWS_LAMBDA_LOG_STREAM_NAME=" + time.Now().UTC().Format("2006/01/02") + "/[$LATEST]" + randomHex(16),
		"AWS_REGION=" + region,
		"AWS_DEFAULT_REGION=" + region,
		"AWS_ACCESS_KEY_ID=test", // dummy credentials: never the developer's
		"AWS_SECRET_ACCESS_KEY=test",
		"_HANDLER=bootstrap",
		"LAMBDA_TASK_ROOT=" + dir,
		"LAMBDA_RUNTIME_DIR=" + dir,
	}
	env = append(env, o.Env...)
	return append(env, "AWS_LAMBDA_RUNTIME_API="+api)
}

// FunctionError is a failed invocation as Lambda reports it: the function's
// own error (from /error), or one the runner detected (timeout, crash, init).
type FunctionError struct {
	Message    string          `json:"errorMessage"`
	Type       string          `json:"errorType"`
	StackTrace json.RawMessage `json:"stackTrace,omitempty"`
}

func (e *FunctionError) Error() string { return e.Type + ": " + e.Message }

// Result is one invocation's outcome.
type Result struct {
	RequestID string
	// Payload is the function's response; when Err is set it holds the error
	// document Lambda would return ({"errorMessage","errorType"}).
	Payload []byte
	// Err is set when the invocation failed (function error, timeout, crash,
	// init failure, oversized response).
	Err *FunctionError
	// Duration runs from handing the event to the function to its answer
	// (or the timeout/crash); init time is not included.
	Duration time.Duration
}

// InitError is returned by [Start] when the function fails to initialise:
// it exits, posts /runtime/init/error, or does not reach /next in time.
type InitError struct {
	Name string
	Err  *FunctionError
	Logs []string // everything the process wrote
}

func (e *InitError) Error() string {
	msg := fmt.Sprintf("lambdarun: %s: init failed: %s", e.Name, e.Err.Error())
	if n := len(e.Logs); n > 0 {
		tail := e.Logs[max(0, n-5):]
		msg += "; last log lines: " + strings.Join(tail, " | ")
	}
	return msg
}

func (e *InitError) Unwrap() error { return e.Err }

// Runner is one execution environment of a function: one process at a time,
// serial invocations. It is safe for concurrent use; concurrent Invoke calls
// queue. Create it with [Start]; Close it when done.
type Runner struct {
	opts Options
	logs *logSink

	sem       chan struct{} // held by the one Invoke in progress
	closing   chan struct{}
	closeOnce sync.Once
	stopCtx   func() bool

	mu        sync.Mutex
	closed    bool
	env       *environment
	coldStart time.Duration
}

// Start launches the function and waits for it to initialise (its first
// /next call); what it logged meanwhile is in Logs() on return. ctx bounds
// the Runner's life: when it is cancelled, the Runner is closed (like
// exec.CommandContext). An init failure returns an *[InitError].
func Start(ctx context.Context, opts Options) (*Runner, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("start lambda: %w", err)
	}
	return start(ctx, opts, newLogSink(opts.LogWriter))
}

func start(ctx context.Context, opts Options, logs *logSink) (*Runner, error) {
	r := &Runner{
		opts:    opts,
		logs:    logs,
		sem:     make(chan struct{}, 1),
		closing: make(chan struct{}),
	}
	_, ferr, err := r.environment(ctx)
	if err != nil {
		r.Close()
		return nil, err
	}
	if ferr != nil {
		r.Close()
		return nil, &InitError{Name: opts.Name, Err: ferr, Logs: r.Logs()}
	}
	stop := context.AfterFunc(ctx, func() { r.Close() })
	r.mu.Lock()
	r.stopCtx = stop
	r.mu.Unlock()
	return r, nil
}

// Name is the function name.
func (r *Runner) Name() string { return r.opts.Name }

// Logs returns a copy of every line the function's processes have written to
// stdout and stderr so far, in order. When Invoke returns, the lines the
// function wrote before answering are already here. (For a Runner in a Pool,
// this is the Pool's shared log.)
func (r *Runner) Logs() []string { return r.logs.snapshot() }

// ColdStart is the init duration of the most recent process: from process
// start to its first /next call.
func (r *Runner) ColdStart() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.coldStart
}

// PID is the current process's id, or 0 when none is running (after Close,
// or after a timeout/crash until the next Invoke starts a new one).
func (r *Runner) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.env == nil {
		return 0
	}
	select {
	case <-r.env.exited:
		return 0
	default:
		return r.env.pid
	}
}

// Invoke runs one invocation with payload (the event JSON) and waits for its
// result. A function failure is reported in Result.Err with a nil error; the
// error is for the caller's side: ctx done, Runner closed, process could not
// be started. If ctx ends while the function runs, the process is killed (the
// next Invoke starts a new one).
func (r *Runner) Invoke(ctx context.Context, payload []byte) (Result, error) {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return Result{}, fmt.Errorf("invoke %s: %w", r.opts.Name, ctx.Err())
	case <-r.closing:
		return Result{}, fmt.Errorf("invoke %s: %w", r.opts.Name, ErrClosed)
	}
	defer func() { <-r.sem }()
	if len(payload) > MaxPayload {
		return Result{}, fmt.Errorf("invoke %s: request payload of %d bytes exceeds %d", r.opts.Name, len(payload), MaxPayload)
	}
	id := newRequestID()
	fail := func(err error) (Result, error) {
		return Result{RequestID: id}, fmt.Errorf("invoke %s (request %s): %w", r.opts.Name, id, err)
	}
	for attempt := 1; ; attempt++ {
		e, ferr, err := r.environment(ctx)
		if err != nil {
			return fail(err)
		}
		if ferr != nil { // a fresh process failed to initialise
			return failedResult(id, ferr, 0), nil
		}
		inv := newInvocation(id, payload, r.opts.Timeout)
		select {
		case e.work <- inv:
		case <-e.exited:
			// The process died while idle (e.g. exiting after a panic it
			// reported): the event goes to a fresh process, as in Lambda.
			r.retire(e)
			if attempt < 3 {
				continue
			}
			return failedResult(id, exitError(id, e.waitErr), 0), nil
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-r.closing:
			return fail(ErrClosed)
		}
		return r.await(ctx, e, inv)
	}
}

func (r *Runner) await(ctx context.Context, e *environment, inv *invocation) (Result, error) {
	<-inv.dispatched // closed by the /next handler right after it took inv
	timer := time.NewTimer(time.Until(inv.deadline))
	defer timer.Stop()
	done := func(res invResult) (Result, error) {
		if res.err != nil {
			return failedResult(inv.id, res.err, time.Since(inv.start)), nil
		}
		return Result{RequestID: inv.id, Payload: res.payload, Duration: time.Since(inv.start)}, nil
	}
	select {
	case res := <-inv.result:
		e.logs.flush(e.logw, logReaderDrainWait)
		return done(res)
	case <-e.exited:
		r.retire(e) // also drains the process's remaining output
		select {
		case res := <-inv.result: // answered, then exited (panics do this)
			return done(res)
		default:
		}
		return failedResult(inv.id, exitError(inv.id, e.waitErr), time.Since(inv.start)), nil
	case <-timer.C:
		elapsed := time.Since(inv.start)
		r.retire(e)
		return failedResult(inv.id, &FunctionError{
			Type:    ErrorTypeTimeout,
			Message: fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", inv.id, r.opts.Timeout.Seconds()),
		}, elapsed), nil
	case <-ctx.Done():
		r.retire(e)
		return Result{RequestID: inv.id}, fmt.Errorf("invoke %s (request %s): %w", r.opts.Name, inv.id, ctx.Err())
	case <-r.closing:
		return Result{RequestID: inv.id}, fmt.Errorf("invoke %s (request %s): %w", r.opts.Name, inv.id, ErrClosed)
	}
}

func failedResult(id string, fe *FunctionError, d time.Duration) Result {
	doc, _ := json.Marshal(fe)
	return Result{RequestID: id, Payload: doc, Err: fe, Duration: d}
}

func exitError(id string, waitErr error) *FunctionError {
	msg := "Runtime exited without providing a reason"
	if waitErr != nil {
		msg = "Runtime exited with error: " + waitErr.Error()
	}
	if id != "" {
		msg = "RequestId: " + id + " Error: " + msg
	}
	return &FunctionError{Type: ErrorTypeExit, Message: msg}
}

// environment returns the running process, starting (and initialising) a new
// one when there is none. ferr reports an init failure of a new process.
func (r *Runner) environment(ctx context.Context) (e *environment, ferr *FunctionError, err error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, nil, ErrClosed
	}
	e = r.env
	r.mu.Unlock()
	if e != nil {
		select {
		case <-e.exited:
			r.retire(e)
		default:
			return e, nil, nil
		}
	}
	e, err = spawn(r.opts, r.logs)
	if err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", r.opts.Name, err)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		e.shutdown()
		return nil, nil, ErrClosed
	}
	r.env = e
	r.mu.Unlock()

	timer := time.NewTimer(r.opts.InitTimeout)
	defer timer.Stop()
	select {
	case <-e.ready:
		select {
		case fe := <-e.initErr: // posted /init/error, then called /next
			r.retire(e)
			return nil, fe, nil
		default:
		}
		r.mu.Lock()
		r.coldStart = e.initDur
		r.mu.Unlock()
		e.logs.flush(e.logw, logReaderDrainWait) // init logs are in Logs() on return
		return e, nil, nil
	case fe := <-e.initErr:
		r.retire(e)
		return nil, fe, nil
	case <-e.exited:
		r.retire(e)
		select {
		case fe := <-e.initErr:
			return nil, fe, nil
		default:
		}
		return nil, exitError("", e.waitErr), nil
	case <-timer.C:
		r.retire(e)
		return nil, &FunctionError{
			Type:    ErrorTypeTimeout,
			Message: fmt.Sprintf("Init timed out after %.2f seconds", r.opts.InitTimeout.Seconds()),
		}, nil
	case <-ctx.Done():
		r.retire(e)
		return nil, nil, fmt.Errorf("init %s: %w", r.opts.Name, ctx.Err())
	case <-r.closing:
		return nil, nil, ErrClosed
	}
}

// retire kills e (if still running), waits for it and drains its output.
func (r *Runner) retire(e *environment) {
	r.mu.Lock()
	if r.env == e {
		r.env = nil
	}
	r.mu.Unlock()
	e.shutdown()
}

// Close kills the function's process and its process group and waits for
// them; an Invoke in progress returns an error wrapping [ErrClosed].
// It is idempotent and always returns nil.
func (r *Runner) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		stop := r.stopCtx
		r.mu.Unlock()
		close(r.closing)
		if stop != nil {
			stop()
		}
		r.sem <- struct{}{} // wait for an Invoke in progress to return; never released
		r.mu.Lock()
		e := r.env
		r.env = nil
		r.mu.Unlock()
		if e != nil {
			e.shutdown()
		}
	})
	return nil
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

func newTraceID() string {
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", time.Now().Unix(), randomHex(24), randomHex(16))
}
