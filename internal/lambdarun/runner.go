package lambdarun

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cfsync/cfsync/internal/randid"
)

// Runner is one execution environment of a function: one emulator, serial
// invocations. It is safe for concurrent use; concurrent Invoke calls queue.
// Create it with [Start]; Close it when done.
type Runner struct {
	opts Options
	logs *logSink

	sem       chan struct{} // held by the one Invoke in progress
	closing   chan struct{}
	closeOnce sync.Once
	stopCtx   func() bool

	mu        sync.Mutex
	closed    bool
	emu       *emulator
	coldStart time.Duration
}

// Start launches the function's emulator and waits until it accepts
// invocations. The function itself initialises on the first Invoke (as
// on-demand Lambda does); an init failure is that invocation's Result.Err.
// ctx bounds the Runner's life: when it is cancelled, the Runner is closed
// (like exec.CommandContext).
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
	if _, err := r.emulator(); err != nil {
		r.Close()
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { r.Close() })
	r.mu.Lock()
	r.stopCtx = stop
	r.mu.Unlock()
	return r, nil
}

// Name is the function name.
func (r *Runner) Name() string { return r.opts.Name }

// Logs returns a copy of every line the function's processes (and the
// emulator's START/END/REPORT lines) have written so far, in order. When
// Invoke returns, the lines the function wrote before answering are already
// here. (For a Runner in a Pool, this is the Pool's shared log.)
func (r *Runner) Logs() []string { return r.logs.snapshot() }

// ColdStart is the init duration of the most recent function process, as
// the emulator reports it; 0 before the first Invoke.
func (r *Runner) ColdStart() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.coldStart
}

// PID is the running bootstrap's process id, or 0 when none runs (before the
// first Invoke, after a timeout or crash until the next one, after Close, or
// on systems where child processes cannot be listed).
func (r *Runner) PID() int {
	r.mu.Lock()
	e := r.emu
	r.mu.Unlock()
	if e == nil {
		return 0
	}
	for _, pid := range e.functionPIDs() {
		if Alive(pid) {
			return pid
		}
	}
	return 0
}

// Invoke runs one invocation with payload (the event JSON) and waits for its
// result. A function failure is reported in Result.Err with a nil error; the
// error is for the caller's side: ctx done, Runner closed, emulator could not
// be started or did not answer. If ctx ends while the function runs, the
// emulator and function are killed (the next Invoke starts new ones).
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
	id := randid.UUID()
	fail := func(err error) (Result, error) {
		return Result{RequestID: id}, fmt.Errorf("invoke %s (request %s): %w", r.opts.Name, id, err)
	}
	e, err := r.emulator()
	if err != nil {
		return fail(err)
	}
	type answer struct {
		status int
		body   []byte
		err    error
	}
	start := time.Now()
	done := make(chan answer, 1)
	go func() {
		status, body, err := e.invoke(ctx, id, payload, r.opts.Timeout)
		done <- answer{status, body, err}
	}()
	var a answer
	select {
	case a = <-done:
	case <-r.closing:
		return fail(ErrClosed)
	}
	elapsed := time.Since(start)
	if a.err != nil {
		r.retire(e) // a cancelled or hung invocation leaves the emulator busy
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		return fail(fmt.Errorf("%w: %v: %s", errHung, a.err, e.stderr.String()))
	}
	e.logs.flush(e.logw, logReaderDrainWait)
	r.noteColdStart(e)
	res, err := classify(id, a.status, a.body)
	res.Duration = elapsed
	if err != nil {
		return fail(err)
	}
	return res, nil
}

func (r *Runner) noteColdStart(e *emulator) {
	if d := time.Duration(e.initDur.Load()); d > 0 {
		r.mu.Lock()
		r.coldStart = d
		r.mu.Unlock()
	}
}

// spawnAttempts bounds starting an emulator.
const spawnAttempts = 3

// emulator returns the running emulator, starting a new one when there is
// none or it has exited.
func (r *Runner) emulator() (*emulator, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if r.emu != nil {
		select {
		case <-r.emu.exited:
			go r.emu.shutdown()
		default:
			return r.emu, nil
		}
	}
	var e *emulator
	var err error
	// The free ports are chosen before the emulator binds them: another
	// process may take one meanwhile, so a failed start is tried again.
	for range spawnAttempts {
		if e, err = spawn(r.opts, r.logs); err == nil {
			break
		}
	}
	if err != nil {
		r.emu = nil
		return nil, fmt.Errorf("start %s: %w", r.opts.Name, err)
	}
	r.emu, r.coldStart = e, 0
	return e, nil
}

// retire stops e and forgets it.
func (r *Runner) retire(e *emulator) {
	r.mu.Lock()
	if r.emu == e {
		r.emu = nil
	}
	r.mu.Unlock()
	e.shutdown()
}

// Close stops the emulator and kills the function's process tree and waits
// for them; an Invoke in progress returns an error wrapping [ErrClosed].
// It is idempotent and always returns nil.
func (r *Runner) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		stop := r.stopCtx
		e := r.emu
		r.emu = nil
		r.mu.Unlock()
		close(r.closing)
		if stop != nil {
			stop()
		}
		if e != nil {
			e.shutdown()
		}
		r.sem <- struct{}{} // wait for an Invoke in progress to return; never released
	})
	return nil
}
