package pipeline

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cfsync/cfsync/internal/lambdarun"
)

// Schedule plays EventBridge Scheduler for one function: it invokes it with
// Payload every Every, starting at once. A tick that comes while the
// previous invocation is still running is skipped (the refresher's reserved
// concurrency of 1 throttles such an invocation in AWS; the poller's runs
// would overlap, which the local harness avoids to keep one process per function).
type Schedule struct {
	Name     string
	Every    time.Duration
	Payload  []byte
	Function Invoker
	// OnResult, when set, is called after every invocation.
	OnResult func(name string, res lambdarun.Result, err error)
	// After, when set, delays the first invocation until that schedule's
	// first invocation has finished (the poller waits for the refresher's
	// first token, as a deployed stack would after its first minute).
	After *Schedule

	firstOnce sync.Once
	first     chan struct{} // closed after the first invocation finished
	initOnce  sync.Once

	paused  atomic.Bool
	runs    atomic.Int64
	errors  atomic.Int64
	skipped atomic.Int64
	last    atomic.Pointer[time.Time]
}

// ScheduleStats counts a schedule's invocations.
type ScheduleStats struct {
	Runs, Errors, Skipped int64
	Last                  time.Time // when the last invocation finished
}

// Stats returns the counters so far.
func (s *Schedule) Stats() ScheduleStats {
	st := ScheduleStats{Runs: s.runs.Load(), Errors: s.errors.Load(), Skipped: s.skipped.Load()}
	if t := s.last.Load(); t != nil {
		st.Last = *t
	}
	return st
}

// Pause stops the schedule (an invocation in progress finishes); Resume restarts it.
func (s *Schedule) Pause() { s.paused.Store(true) }

// Resume undoes Pause.
func (s *Schedule) Resume() { s.paused.Store(false) }

// Paused reports whether the schedule is paused.
func (s *Schedule) Paused() bool { return s.paused.Load() }

func (s *Schedule) firstDone() chan struct{} {
	s.initOnce.Do(func() { s.first = make(chan struct{}) })
	return s.first
}

// Run invokes the function on schedule until ctx is done.
func (s *Schedule) Run(ctx context.Context) {
	if s.After != nil {
		select {
		case <-s.After.firstDone():
		case <-ctx.Done():
			return
		}
	}
	first := s.firstDone()
	payload := s.Payload
	if payload == nil {
		payload = []byte("{}")
	}
	busy := make(chan struct{}, 1)
	fire := func() {
		if s.paused.Load() || ctx.Err() != nil {
			return
		}
		select {
		case busy <- struct{}{}:
		default:
			s.skipped.Add(1)
			return
		}
		go func() {
			defer func() { <-busy }()
			res, err := s.Function.Invoke(ctx, payload)
			defer s.firstOnce.Do(func() { close(first) })
			if ctx.Err() != nil {
				return
			}
			s.runs.Add(1)
			if err != nil || res.Err != nil {
				s.errors.Add(1)
			}
			now := time.Now()
			s.last.Store(&now)
			if s.OnResult != nil {
				s.OnResult(s.Name, res, err)
			}
		}()
	}
	every := s.Every
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	fire()
	for {
		select {
		case <-ctx.Done():
			// Wait for the invocation in progress (it ends with ctx).
			busy <- struct{}{}
			return
		case <-t.C:
			fire()
		}
	}
}
