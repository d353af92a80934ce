package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cfsync/cfsync/internal/claim/claimtest"
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
	// AfterPage, when set, runs after page n (0-based, per listing call) was
	// built and before it is returned (e.g. to publish a file-set mid-listing).
	AfterPage func(page int)
	// FilesOf overrides the /files listing of a file-set (by id); by default
	// it lists the file-set's embedded ids as "<id>.csv" of 100+len(id) bytes.
	FilesOf map[string][]rdp.File
	// FilesErr, when set, fails the /files listing of a file-set.
	FilesErr   func(fileSetID string) error
	filesCalls int
	froms      []string
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

// matching returns the file-sets q selects, in ascending id order (as RDP
// lists them), evaluated now: a file-set added while a client pages is seen
// by the pages fetched after it was added, if its id is past the cursor.
func (f *fakeFiles) matching(q rdp.FileSetQuery) []rdp.FileSet {
	f.mu.Lock()
	defer f.mu.Unlock()
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
	slices.SortStableFunc(match, func(a, b rdp.FileSet) int { return strings.Compare(a.ID, b.ID) })
	return match
}

// skipLink is the fake's @nextLink: RDP's shape, a relative path with an
// opaque skipToken (base64 of "filesetId=<last id>").
func skipLink(lastID string) string {
	return rdp.FileSetsPath + "?skipToken=" + base64.RawURLEncoding.EncodeToString([]byte("filesetId="+lastID))
}

func lastOf(link string) (string, error) {
	_, tok, ok := strings.Cut(link, "skipToken=")
	if !ok {
		return "", fmt.Errorf("fake: bad cursor %q", link)
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || !strings.HasPrefix(string(raw), "filesetId=") {
		return "", &rdp.APIError{Endpoint: "list file-sets", StatusCode: 400, Message: "invalid skipToken"}
	}
	return strings.TrimPrefix(string(raw), "filesetId="), nil
}

func (f *fakeFiles) FileSetPages(ctx context.Context, q rdp.FileSetQuery, from string) iter.Seq2[rdp.Page[rdp.FileSet], error] {
	return func(yield func(rdp.Page[rdp.FileSet], error) bool) {
		f.mu.Lock()
		f.queries = append(f.queries, q)
		f.froms = append(f.froms, from)
		f.mu.Unlock()
		size := q.PageSize
		if size == 0 {
			size = 25
		}
		last := ""
		if from != "" {
			var err error
			if last, err = lastOf(from); err != nil {
				yield(rdp.Page[rdp.FileSet]{}, err)
				return
			}
		}
		for page := 0; ; page++ {
			if f.PageErr != nil {
				if err := f.PageErr(q, page); err != nil {
					yield(rdp.Page[rdp.FileSet]{}, err)
					return
				}
			}
			var items []rdp.FileSet
			all := f.matching(q)
			for _, s := range all {
				after := s.ID > last || (from == "" && page == 0) // the first page starts at the first item
				if after && len(items) < size {
					items = append(items, s)
				}
				if page > 0 && s.ID == last && f.Repeat != nil && f.Repeat(page) {
					items = append([]rdp.FileSet{s}, items...)
				}
			}
			f.mu.Lock()
			f.pages++
			f.mu.Unlock()
			pg := rdp.Page[rdp.FileSet]{Items: items}
			if len(items) > 0 {
				last = items[len(items)-1].ID
				if all[len(all)-1].ID > last {
					pg.NextLink = skipLink(last)
				}
			}
			if f.AfterPage != nil {
				f.AfterPage(page)
			}
			if !yield(pg, nil) || pg.NextLink == "" {
				return
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
		f.mu.Lock()
		f.filesCalls++
		files, ok := f.FilesOf[fileSetID]
		if !ok {
			for _, sets := range f.sets {
				for _, s := range sets {
					if s.ID != fileSetID {
						continue
					}
					for _, id := range s.Files {
						files = append(files, rdp.File{ID: id, FileName: id + ".csv", FileSetID: s.ID, Size: int64(100 + len(id))})
					}
				}
			}
		}
		f.mu.Unlock()
		if f.FilesErr != nil {
			if err := f.FilesErr(fileSetID); err != nil {
				yield(rdp.File{}, err)
				return
			}
		}
		for _, fl := range files {
			if !yield(fl, nil) {
				return
			}
		}
	}
}

// fakeState is an in-memory state table with failure hooks.
type fakeState struct {
	mu         sync.Mutex
	files      map[string]state.FileItem
	watermarks map[string]state.Watermark
	uploads    map[string]state.Upload
	passSaves  int
	// markNonFinal counts MarkNonFinal calls.
	markNonFinal int
	batchGets    int
	now          func() time.Time

	ClaimErr      func(id string) error
	MarkQueuedErr func(id string) error
	// IndexLag: files a query with a time bound does not see yet (the index
	// is eventually consistent, or MarkNonFinal indexed them meanwhile).
	IndexLag map[string]bool
}

func newFakeState(now func() time.Time) *fakeState {
	return &fakeState{files: map[string]state.FileItem{}, watermarks: map[string]state.Watermark{}, uploads: map[string]state.Upload{}, now: now}
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
	it.Status, it.NonFinal = state.StatusClaimed, state.NonFinalValue
	it.CreatedAt, it.UpdatedAt = s.now(), s.now()
	s.files[it.FileID] = it
	return nil
}

func (s *fakeState) GetFile(ctx context.Context, id string) (*state.FileItem, error) {
	return getItem(s, s.files, id, state.ErrNotFound)
}

// getItem returns a copy of m[id] (m one of s's tables), or notFound.
func getItem[T any](s *fakeState, m map[string]T, id string, notFound error) (*T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := m[id]
	if !ok {
		return nil, notFound
	}
	return &v, nil
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
		it.Status, it.UpdatedAt = state.StatusQueued, s.now()
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

// PutWatermark as the table does it: Modified never moves back (zero keeps
// it), LastFullAt kept when zero, and the pass in progress ends.
func (s *fakeState) PutWatermark(ctx context.Context, w state.Watermark) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := state.SubscriptionPK(w.Bucket, w.PackageID)
	old := s.watermarks[k]
	if w.Modified.Before(old.Modified) {
		w.Modified = old.Modified
	}
	if w.LastFullAt.IsZero() {
		w.LastFullAt = old.LastFullAt
	}
	w.Pass = nil
	s.watermarks[k] = w
	return nil
}

func (s *fakeState) MarkFailed(ctx context.Context, id, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.files[id]
	if ok && it.Status == state.StatusDone {
		return nil
	}
	it.FileID, it.Status, it.Reason, it.UpdatedAt, it.NonFinal = id, state.StatusFailed, reason, s.now(), ""
	s.files[id] = it
	return nil
}

func (s *fakeState) SavePass(ctx context.Context, bucket, pkg string, p state.Pass) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := state.SubscriptionPK(bucket, pkg)
	w, ok := s.watermarks[k]
	if !ok {
		w = state.Watermark{Bucket: bucket, PackageID: pkg}
	}
	w.Pass = &p
	s.watermarks[k] = w
	s.passSaves++
	return nil
}

// QueryNonFinal: the files in the sparse index (nonFinal set), least
// recently updated first.
func (s *fakeState) QueryNonFinal(ctx context.Context, before time.Time, limit int, fn func(*state.FileItem) error) error {
	s.mu.Lock()
	var out []state.FileItem
	for _, it := range s.files {
		if it.NonFinal == "" || (!before.IsZero() && s.IndexLag[it.FileID]) {
			continue
		}
		if before.IsZero() || it.UpdatedAt.Before(before) {
			out = append(out, it)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b state.FileItem) int { return a.UpdatedAt.Compare(b.UpdatedAt) })
	for i := range out {
		if limit > 0 && i >= limit {
			break
		}
		if err := fn(&out[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s *fakeState) RequeueFile(ctx context.Context, id string, seen time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.files[id]
	if !ok || it.NonFinal == "" || !it.UpdatedAt.Equal(seen) {
		return fmt.Errorf("requeue file %s: %w", id, state.ErrConflict)
	}
	it.Status, it.UpdatedAt = state.StatusClaimed, s.now()
	it.Resends++
	s.files[id] = it
	return nil
}

func (s *fakeState) GetUpload(ctx context.Context, id string) (*state.Upload, error) {
	return getItem(s, s.uploads, id, fmt.Errorf("get upload checkpoint %s: %w", id, state.ErrNotFound))
}

func (s *fakeState) MarkNonFinal(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.markNonFinal++
	it, ok := s.files[id]
	if ok && it.Status != state.StatusDone && it.Status != state.StatusFailed {
		it.NonFinal = state.NonFinalValue
		s.files[id] = it
	}
	return nil
}

// put stores an item as is (tests arrange stale states with it).
func (s *fakeState) put(it state.FileItem) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[it.FileID] = it
}

func (s *fakeState) file(id string) state.FileItem {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files[id]
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
	it.FileID, it.Status, it.UpdatedAt = id, status, s.now()
	it.NonFinal = state.NonFinalValue
	if status == state.StatusDone || status == state.StatusFailed {
		it.NonFinal = ""
	}
	s.files[id] = it
}

func (s *fakeState) watermark(bucket, pkg string) state.Watermark {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watermarks[state.SubscriptionPK(bucket, pkg)]
}

// fakeSender records messages; Fail, when set, fails the messages it selects.
type fakeSender = claimtest.Sender

// ids returns the sorted keys of a count map.
func ids(c map[string]int) []string { return slices.Sorted(maps.Keys(c)) }
