package main

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/cfsync/cfsync/internal/state"
)

// fakeState is a hand-written StateStore, tokenring.Reporter and
// QueueCredsStore (all three, as the real table is) with the semantics of
// the real table: ClaimGeneration, PutAuthState and
// ClaimQueueCredsGeneration are atomic conditional writes. Hooks inject
// errors (nil: proceed).
type fakeState struct {
	now      func() time.Time
	ClaimErr func(next int64, slotID string) error

	mu      sync.Mutex
	ring    state.RingState
	auth    state.AuthState
	reports map[int64]state.TokenReport
	claims  []string // slot of every successful claim, in order
	queue   state.QueueCredsState
}

var _ StateStore = (*fakeState)(nil)

func newFakeState(now func() time.Time) *fakeState {
	return &fakeState{now: now, ring: state.RingState{Slots: map[string]state.SlotWrite{}}, reports: map[int64]state.TokenReport{}}
}

func (f *fakeState) GetRingState(context.Context) (*state.RingState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.ring
	st.Slots = maps.Clone(f.ring.Slots)
	return &st, nil
}

func (f *fakeState) ClaimGeneration(_ context.Context, prev *state.RingState, next int64, slotID string, at time.Time) (*state.RingState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ClaimErr != nil {
		if err := f.ClaimErr(next, slotID); err != nil {
			return nil, err
		}
	}
	if next <= prev.Generation {
		return nil, fmt.Errorf("claim generation %d: not above %d", next, prev.Generation)
	}
	if f.ring.Generation != prev.Generation {
		return nil, fmt.Errorf("claim generation %d: %w", next, state.ErrConflict)
	}
	st := state.RingState{Generation: next, Slots: maps.Clone(prev.Slots), UpdatedAt: f.now()}
	st.Slots[slotID] = state.SlotWrite{Generation: next, WrittenAt: at.UTC()}
	f.ring = st
	f.claims = append(f.claims, slotID)
	out := st
	out.Slots = maps.Clone(st.Slots)
	return &out, nil
}

func (f *fakeState) ReportInvalidToken(_ context.Context, gen int64, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	r, ok := f.reports[gen]
	if !ok {
		r = state.TokenReport{Generation: gen, FirstAt: now}
	}
	r.LastAt, r.Reason = now, reason
	r.Reports++
	f.reports[gen] = r
	return nil
}

func (f *fakeState) GetTokenReport(_ context.Context, gen int64) (*state.TokenReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.reports[gen]
	if !ok {
		return nil, fmt.Errorf("get token report %d: %w", gen, state.ErrNotFound)
	}
	return &r, nil
}

func (f *fakeState) MarkReportChecked(_ context.Context, gen int64, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.reports[gen]
	if !ok {
		return fmt.Errorf("mark token report %d checked: %w", gen, state.ErrNotFound)
	}
	r.CheckedAt = at
	f.reports[gen] = r
	return nil
}

func (f *fakeState) GetAuthState(context.Context) (*state.AuthState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.auth
	st.Requests = append([]int64(nil), f.auth.Requests...)
	return &st, nil
}

func (f *fakeState) PutAuthState(_ context.Context, st *state.AuthState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.auth.Version != st.Version {
		return fmt.Errorf("put auth state: %w", state.ErrConflict)
	}
	next := *st
	next.Version++
	next.UpdatedAt = f.now()
	next.Requests = append([]int64(nil), st.Requests...)
	f.auth = next
	st.Version, st.UpdatedAt = next.Version, next.UpdatedAt
	return nil
}

func (f *fakeState) GetQueueCredsState(context.Context) (*state.QueueCredsState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.queue
	return &st, nil
}

func (f *fakeState) ClaimQueueCredsGeneration(_ context.Context, prev, next int64, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.queue.Generation != prev {
		return state.ErrConflict
	}
	f.queue.Generation, f.queue.WrittenAt = next, at
	return nil
}

// dump renders every stored item (for the no-secret scan).
func (f *fakeState) dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprintf("%+v %+v %+v %+v", f.ring, f.auth, f.reports, f.queue)
}
