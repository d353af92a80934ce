// Package claimtest has small in-memory stand-ins for the state table and
// the download queue, for tests of code built on internal/claim.
package claimtest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
)

// Store is an in-memory state table of FILE items whose conditional claim is
// atomic, as DynamoDB's is. Set the error fields to inject faults.
type Store struct {
	mu       sync.Mutex
	items    map[string]state.FileItem
	ClaimErr error            // every ClaimFile fails with it
	GetErr   error            // every GetFile fails with it
	MarkErr  map[string]error // MarkQueued of these ids fails
	// ClaimDelay is slept inside ClaimFile, so concurrent claims overlap.
	ClaimDelay time.Duration
	inFlight   atomic.Int32
	maxSeen    atomic.Int32
}

// NewStore returns a store holding a file in each given status (id → status).
func NewStore(pre map[string]string) *Store {
	s := &Store{items: map[string]state.FileItem{}}
	for id, st := range pre {
		s.items[id] = state.FileItem{FileID: id, Status: st}
	}
	return s
}

// ClaimFile creates it as CLAIMED unless the file exists (state.ErrConflict).
func (s *Store) ClaimFile(_ context.Context, it state.FileItem) error {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for m := s.maxSeen.Load(); n > m && !s.maxSeen.CompareAndSwap(m, n); m = s.maxSeen.Load() {
	}
	time.Sleep(s.ClaimDelay)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ClaimErr != nil {
		return s.ClaimErr
	}
	if _, ok := s.items[it.FileID]; ok {
		return fmt.Errorf("claim file %s: %w", it.FileID, state.ErrConflict)
	}
	it.Status = state.StatusClaimed
	s.items[it.FileID] = it
	return nil
}

// GetFile returns a copy of the file's item, or state.ErrNotFound.
func (s *Store) GetFile(_ context.Context, id string) (*state.FileItem, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.GetErr != nil {
		return nil, s.GetErr
	}
	it, ok := s.items[id]
	if !ok {
		return nil, fmt.Errorf("get file %s: %w", id, state.ErrNotFound)
	}
	return &it, nil
}

// MarkQueued moves a CLAIMED file to QUEUED; other files are left alone.
func (s *Store) MarkQueued(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.MarkErr[id]; err != nil {
		return err
	}
	if it, ok := s.items[id]; ok && it.Status == state.StatusClaimed {
		it.Status = state.StatusQueued
		s.items[id] = it
	}
	return nil
}

// Status is the file's status ("" when unknown).
func (s *Store) Status(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.items[id].Status
}

// MaxConcurrentClaims is the most ClaimFile calls that were in flight at once.
func (s *Store) MaxConcurrentClaims() int { return int(s.maxSeen.Load()) }

// Sender records the messages it takes. Fail, when set, selects the
// messages it refuses (SQS's per-entry failures); Err is returned after the
// batch.
type Sender struct {
	mu   sync.Mutex
	sent []queue.Message
	Fail func(m queue.Message) bool
	Err  error
}

// SendBatch sends msgs, as queue.Sender does (10 a call).
func (q *Sender) SendBatch(_ context.Context, msgs []queue.Message) (queue.SendResult, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var r queue.SendResult
	for _, m := range msgs {
		if q.Fail != nil && q.Fail(m) {
			r.Failed = append(r.Failed, m)
			continue
		}
		r.Sent = append(r.Sent, m)
		q.sent = append(q.sent, m)
	}
	r.Calls = (len(msgs) + 9) / 10
	return r, q.Err
}

// Sent returns the messages taken so far.
func (q *Sender) Sent() []queue.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]queue.Message(nil), q.sent...)
}

// Counts returns how many times each file id was sent.
func (q *Sender) Counts() map[string]int {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := map[string]int{}
	for _, m := range q.sent {
		c[m.FileID]++
	}
	return c
}

// Reset forgets the messages taken so far.
func (q *Sender) Reset() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sent = nil
}

// FailAll is a Sender.Fail that refuses every message.
func FailAll(queue.Message) bool { return true }

// FailFiles is a Sender.Fail that refuses the messages of the given files.
func FailFiles(ids ...string) func(queue.Message) bool {
	return func(m queue.Message) bool { return slices.Contains(ids, m.FileID) }
}
