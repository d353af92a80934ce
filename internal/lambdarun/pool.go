package lambdarun

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Pool is a fixed set of Runners of one function, for concurrent
// invocations: Invoke takes an idle Runner, waiting while all are busy.
// The Runners share one log (Logs, Options.LogWriter).
type Pool struct {
	runners   []*Runner
	idle      chan *Runner
	logs      *logSink
	closing   chan struct{}
	closeOnce sync.Once
}

// StartPool starts size Runners concurrently (see [Start]; ctx bounds the
// Pool's life). If any fails to start, the others are closed.
func StartPool(ctx context.Context, opts Options, size int) (*Pool, error) {
	if size < 1 {
		return nil, fmt.Errorf("start pool: size %d < 1", size)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("start pool: %w", err)
	}
	p := &Pool{
		runners: make([]*Runner, size),
		idle:    make(chan *Runner, size),
		logs:    newLogSink(opts.LogWriter),
		closing: make(chan struct{}),
	}
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i := range size {
		wg.Go(func() { p.runners[i], errs[i] = start(ctx, opts, p.logs) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		p.Close()
		return nil, fmt.Errorf("start pool: %w", err)
	}
	for _, r := range p.runners {
		p.idle <- r
	}
	return p, nil
}

// Invoke runs one invocation on an idle Runner (see [Runner.Invoke]).
func (p *Pool) Invoke(ctx context.Context, payload []byte) (Result, error) {
	var r *Runner
	select {
	case r = <-p.idle:
	case <-ctx.Done():
		return Result{}, fmt.Errorf("invoke: %w", ctx.Err())
	case <-p.closing:
		return Result{}, fmt.Errorf("invoke: %w", ErrClosed)
	}
	defer func() { p.idle <- r }()
	return r.Invoke(ctx, payload)
}

// Runners returns the Pool's Runners (for PID, ColdStart).
func (p *Pool) Runners() []*Runner { return slices.Clone(p.runners) }

// Logs returns every Runner's log lines in arrival order.
func (p *Pool) Logs() []string { return p.logs.snapshot() }

// Close closes every Runner. It always returns nil.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		close(p.closing)
		for _, r := range p.runners {
			if r != nil {
				r.Close()
			}
		}
	})
	return nil
}
