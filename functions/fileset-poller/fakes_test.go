package main

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// fakeFiles is an in-memory file store. Func fields change its behaviour.
type fakeFiles struct {
	mu       sync.Mutex
	sets     map[string][]rdp.FileSet // by lower(bucket)/packageId, in listing order
	packages map[string][]rdp.Package // by lower(bucket)
	queries  []rdp.FileSetQuery
	pages    int

	// IgnoreStatus lists file-sets of every status (an API ignoring the filter).
	IgnoreStatus bool

	// PageErr, when set, is asked before each page (0-based); an error ends the listing.
	PageErr func(q rdp.FileSetQuery, page int) error
	// Repeat, when set, repeats the previous page's last item at the top of page n.
	Repeat func(page int) bool
	// PackagesErr, when set, fails the /packages listing.
	PackagesErr func(bucket string) error
}

func newFakeFiles() *fakeFiles {
	return &fakeFiles{sets: map[string][]rdp.FileSet{}, packages: map[string][]rdp.Package{}}
}

func (f *fakeFiles) add(fs ...rdp.FileSet) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range fs {
		k := strings.ToLower(s.BucketName) + "/" + s.PackageID
		f.sets[k] = append(f.sets[k], s)
		b := strings.ToLower(s.BucketName)
		if !slices.ContainsFunc(f.packages[b], func(p rdp.Package) bool { return p.PackageID == s.PackageID }) {
			f.packages[b] = append(f.packages[b], rdp.Package{PackageID: s.PackageID, BucketNames: []string{s.BucketName}})
		}
	}
}

func (f *fakeFiles) lastQuery() rdp.FileSetQuery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries[len(f.queries)-1]
}

func (f *fakeFiles) FileSetsWithPages(ctx context.Context, q rdp.FileSetQuery, onPage func()) iter.Seq2[rdp.FileSet, error] {
	return func(yield func(rdp.FileSet, error) bool) {
		f.mu.Lock()
		f.queries = append(f.queries, q)
		var match []rdp.FileSet
		for _, s := range f.sets[strings.ToLower(q.Bucket)+"/"+q.PackageID] {
			if q.Status != "" && s.Status != q.Status && !f.IgnoreStatus {
				continue
			}
			if !q.ModifiedSince.IsZero() && s.Modified.Before(q.ModifiedSince) {
				continue
			}
			match = append(match, s)
		}
		f.mu.Unlock()
		size := q.PageSize
		if size == 0 {
			size = 25
		}
		for page := 0; page == 0 || page*size < len(match); page++ {
			if f.PageErr != nil {
				if err := f.PageErr(q, page); err != nil {
					yield(rdp.FileSet{}, err)
					return
				}
			}
			f.mu.Lock()
			f.pages++
			f.mu.Unlock()
			if onPage != nil {
				onPage()
			}
			items := match[page*size : min((page+1)*size, len(match))]
			if page > 0 && f.Repeat != nil && f.Repeat(page) {
				items = append([]rdp.FileSet{match[page*size-1]}, items...)
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
		}
	}
}

func (f *fakeFiles) Packages(ctx context.Context, bucket string) iter.Seq2[rdp.Package, error] {
	return func(yield func(rdp.Package, error) bool) {
		if f.PackagesErr != nil {
			if err := f.PackagesErr(bucket); err != nil {
				yield(rdp.Package{}, err)
				return
			}
		}
		f.mu.Lock()
		pkgs := slices.Clone(f.packages[strings.ToLower(bucket)])
		f.mu.Unlock()
		for _, p := range pkgs {
			if !yield(p, nil) {
				return
			}
		}
	}
}

func (f *fakeFiles) Files(ctx context.Context, fileSetID string) iter.Seq2[rdp.File, error] {
	return func(yield func(rdp.File, error) bool) {
		yield(rdp.File{}, fmt.Errorf("fake: Files(%s) not expected", fileSetID))
	}
}

// fakeGuard runs op once; Err, when set, replaces op's outcome.
type fakeGuard struct {
	calls int
	Err   func(opErr error) error
}

func (g *fakeGuard) Do(ctx context.Context, op func(ctx context.Context) error) error {
	g.calls++
	err := op(ctx)
	if g.Err != nil {
		return g.Err(err)
	}
	return err
}

// fakeState is an in-memory state table with failure hooks.
type fakeState struct {
	mu         sync.Mutex
	files      map[string]state.FileItem
	watermarks map[string]state.Watermark
	batchGets  int
	now        func() time.Time

	ClaimErr      func(id string) error
	MarkQueuedErr func(id string) error
}

func newFakeState(now func() time.Time) *fakeState {
	return &fakeState{files: map[string]state.FileItem{}, watermarks: map[string]state.Watermark{}, now: now}
}

func (s *fakeState) BatchGetFiles(ctx context.Context, ids []string) (map[string]*state.FileItem, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]*state.FileItem{}
	for _, id := range ids {
		if it, ok := s.files[id]; ok {
			out[id] = &it
		}
	}
	calls := (len(ids) + 99) / 100
	s.batchGets += calls
	return out, calls, nil
}

func (s *fakeState) ClaimFile(ctx context.Context, it state.FileItem) error {
	if s.ClaimErr != nil {
		if err := s.ClaimErr(it.FileID); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.files[it.FileID]; ok {
		return fmt.Errorf("claim file %s: %w", it.FileID, state.ErrConflict)
	}
	it.Status = state.StatusClaimed
	it.CreatedAt, it.UpdatedAt = s.now(), s.now()
	s.files[it.FileID] = it
	return nil
}

func (s *fakeState) GetFile(ctx context.Context, id string) (*state.FileItem, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.files[id]
	if !ok {
		return nil, state.ErrNotFound
	}
	return &it, nil
}

func (s *fakeState) MarkQueued(ctx context.Context, id string) error {
	if s.MarkQueuedErr != nil {
		if err := s.MarkQueuedErr(id); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.files[id]
	if ok && it.Status == state.StatusClaimed {
		it.Status = state.StatusQueued
		s.files[id] = it
	}
	return nil
}

func (s *fakeState) GetWatermark(ctx context.Context, bucket, pkg string) (*state.Watermark, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.watermarks[state.SubscriptionPK(bucket, pkg)]
	if !ok {
		w = state.Watermark{Bucket: bucket, PackageID: pkg}
	}
	return &w, nil
}

func (s *fakeState) PutWatermark(ctx context.Context, w state.Watermark) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watermarks[state.SubscriptionPK(w.Bucket, w.PackageID)] = w
	return nil
}

func (s *fakeState) status(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files[id].Status
}

func (s *fakeState) setStatus(id, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it := s.files[id]
	it.FileID, it.Status = id, status
	s.files[id] = it
}

func (s *fakeState) watermark(bucket, pkg string) state.Watermark {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watermarks[state.SubscriptionPK(bucket, pkg)]
}

// fakeSender records messages; Fail, when set, fails the messages it selects.
type fakeSender struct {
	mu   sync.Mutex
	sent []queue.Message
	Fail func(m queue.Message) bool
}

func (s *fakeSender) SendBatch(ctx context.Context, msgs []queue.Message) (queue.SendResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r queue.SendResult
	for _, m := range msgs {
		if s.Fail != nil && s.Fail(m) {
			r.Failed = append(r.Failed, m)
			continue
		}
		r.Sent = append(r.Sent, m)
		s.sent = append(s.sent, m)
	}
	r.Calls = (len(msgs) + 9) / 10
	return r, nil
}

// counts returns how many times each file id was sent.
func (s *fakeSender) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := map[string]int{}
	for _, m := range s.sent {
		c[m.FileID]++
	}
	return c
}

func (s *fakeSender) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = nil
}

// ids returns the sorted keys of a count map.
func ids(c map[string]int) []string { return slices.Sorted(maps.Keys(c)) }
