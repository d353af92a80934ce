package rdptest

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cfsync/cfsync/internal/randid"
)

// Listings: page sizes, skipTokens and filters, and the file-set listing in RDP's order:
// ascending file-set id, @nextLink a path relative to the API host whose skipToken is unpadded
// base64 of "filesetId=<last id>" (docs/rdp.md#file-set-paging).

// Cursor prefixes: the file-set listing's (RDP's), and the package and file listings' (the
// simulator's own: their form is not published).
const (
	skipPrefix = "filesetId="
	seqPrefix  = "seq:"
)

// encodeCursor is a skipToken: base64 without padding of prefix+value, as in LSEG's published
// @nextLink examples (skipToken=ZmlsZXNldElkPTQwMjAt… decodes to "filesetId=4020-…").
func encodeCursor(prefix, value string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(prefix + value))
}

// decodeCursor is the value of a non-empty skipToken made by encodeCursor with prefix (padding
// tolerated); ok is false for anything else.
func decodeCursor(tok, prefix string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(tok, "="))
	if err != nil {
		return "", false
	}
	v, ok := strings.CutPrefix(string(b), prefix)
	return v, ok && v != ""
}

func encodeSetCursor(lastID string) string { return encodeCursor(skipPrefix, lastID) }

func decodeSetCursor(tok string) (string, bool) {
	if tok == "" {
		return "", true
	}
	return decodeCursor(tok, skipPrefix)
}

// pageParams reads a listing's pageSize and skipToken and checks its
// required parameter (none when ""): msg names the first problem, in that order.
func pageParams(q url.Values, required string) (size, after int, msg string) {
	size, msg = pageSizeOf(q)
	if msg == "" && required != "" && q.Get(required) == "" {
		msg = required + " is required"
	}
	after, ok := decodeSkip(q.Get("skipToken"))
	if msg == "" && !ok {
		msg = "invalid skipToken"
	}
	return size, after, msg
}

func pageSizeOf(q url.Values) (int, string) {
	v := q.Get("pageSize")
	if v == "" {
		return defaultPage, ""
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, "pageSize must be a positive integer"
	}
	if n > maxPageSize {
		return 0, fmt.Sprintf("pageSize must be at most %d", maxPageSize)
	}
	return n, ""
}

// encodeSkip and decodeSkip are the skipToken of the package and file
// listings: a cursor on the creation sequence number.
func encodeSkip(seq int) string { return encodeCursor(seqPrefix, strconv.Itoa(seq)) }

func decodeSkip(tok string) (int, bool) {
	if tok == "" {
		return 0, true
	}
	v, ok := decodeCursor(tok, seqPrefix)
	n, err := strconv.Atoi(v)
	return n, ok && err == nil
}

// nextLink is the request's path and query with skipToken replaced by tok.
func nextLink(r *http.Request, tok string) string {
	q := r.URL.Query()
	q.Set("skipToken", tok)
	return r.URL.Path + "?" + q.Encode()
}

type setFilter struct {
	bucket, packageID, status string
	modifiedSince             time.Time
	createdSince              time.Time
	attrs                     []Attribute
	now                       time.Time
	hideExpired               bool // drop file-sets past availableTo at now
}

func parseSetFilter(q url.Values) (setFilter, string) {
	f := setFilter{
		bucket:    strings.ToLower(q.Get("bucket")),
		packageID: q.Get("packageId"),
		status:    q.Get("status"),
	}
	if f.bucket == "" {
		return f, "bucket is required"
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"modifiedSince", &f.modifiedSince}, {"createdSince", &f.createdSince}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, p.name + " must be an RFC 3339 date-time"
			}
			*p.dst = t
		}
	}
	for _, v := range q["attributes"] {
		for _, pair := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' }) {
			name, value, ok := strings.Cut(pair, ":")
			if !ok || name == "" {
				return f, "attributes must be name:value"
			}
			f.attrs = append(f.attrs, Attribute{Name: name, Value: value})
		}
	}
	return f, ""
}

func (f setFilter) match(fs *fileSet) bool {
	if fs.deleted || strings.ToLower(fs.bucket) != f.bucket || (f.hideExpired && fs.expiredAt(f.now)) {
		return false
	}
	if f.packageID != "" && fs.packageID != f.packageID {
		return false
	}
	if f.status != "" && !strings.EqualFold(fs.status, f.status) {
		return false
	}
	if !f.modifiedSince.IsZero() && fs.modified.Before(f.modifiedSince) {
		return false
	}
	if !f.createdSince.IsZero() && fs.created.Before(f.createdSince) {
		return false
	}
	for _, want := range f.attrs {
		found := false
		for _, a := range fs.attrs {
			found = found || (a.Name == want.Name && a.Value == want.Value)
		}
		if !found {
			return false
		}
	}
	return true
}

// behindCursor is a file-set PublishBehindCursor will publish.
type behindCursor struct {
	atPage int // publish once pagesServed reaches this
	spec   FileSetSpec
	done   chan FileSet
}

// PublishBehindCursor publishes spec right after the afterPage-th /file-sets page served from
// now on (1: the next page), with an id that sorts before that page's last file-set id (unless
// spec.ID is set): a client that goes on paging that listing never sees it, as happens with RDP
// when a file-set is published while a client pages. The file-set, once published, is sent on
// the returned channel (buffered: nobody has to read it).
func (s *Server) PublishBehindCursor(afterPage int, spec FileSetSpec) <-chan FileSet {
	if afterPage < 1 {
		afterPage = 1
	}
	done := make(chan FileSet, 1)
	s.mu.Lock()
	s.behind = append(s.behind, behindCursor{atPage: s.pagesServed + afterPage, spec: spec, done: done})
	s.mu.Unlock()
	return done
}

// pageServedLocked counts a /file-sets page and publishes the file-sets due behind its cursor.
// It returns them for publication on their channels once s.mu is released.
func (s *Server) pageServedLocked(lastID string) []func() {
	s.pagesServed++
	var due []func()
	kept := s.behind[:0]
	for _, b := range s.behind {
		if b.atPage > s.pagesServed {
			kept = append(kept, b)
			continue
		}
		spec := b.spec
		if spec.ID == "" {
			spec.ID = s.idBeforeLocked(lastID)
		}
		fs := s.addFileSetLocked(spec)
		done := b.done
		due = append(due, func() { done <- s.publicFileSet(fs) })
	}
	s.behind = kept
	return due
}

// idBeforeLocked returns an unused CFS-looking id that sorts before id ("" : any unused id).
func (s *Server) idBeforeLocked(id string) string {
	for n := 1; n < 256; n++ {
		c := GenID("behind", s.seq*256+n)
		if _, dup := s.setByID[c]; !dup && (id == "" || c < id) {
			return c
		}
	}
	// The largest id of the same shape below id: decrement its last non-zero hex digit.
	b := []byte(id)
	for i := len(b) - 1; i >= 0; i-- {
		switch {
		case b[i] == '-':
			continue
		case b[i] == '0':
			b[i] = 'f'
			continue
		case b[i] == 'a':
			b[i] = '9'
		default:
			b[i]--
		}
		return string(b)
	}
	panic("rdptest: no file-set id sorts before " + id)
}

func (s *Server) handleFileSets(w http.ResponseWriter, r *http.Request) {
	if !s.fileStoreAuth(w, r) {
		return
	}
	q := r.URL.Query()
	size, msg := pageSizeOf(q)
	var filter setFilter
	if msg == "" {
		filter, msg = parseSetFilter(q)
	}
	if msg != "" {
		gatewayError(w, http.StatusBadRequest, msg)
		return
	}
	filter.now, filter.hideExpired = s.now(), !s.opts.ListExpired
	s.mu.Lock()
	if s.claimMissingLocked(filter.bucket) {
		s.mu.Unlock()
		missingClaim(w)
		return
	}
	if _, known := s.buckets[filter.bucket]; !known && !s.opts.EmptyForUnknown {
		s.mu.Unlock()
		cfsNotFound(w, "EDS.CFS.NoBucketFound", q.Get("bucket"))
		return
	}
	var p setPage
	var ok bool
	if s.opts.CreationOrder {
		p, ok = s.pageBySeqLocked(r, filter, size)
	} else {
		p, ok = s.pageByIDLocked(r, filter, size)
	}
	var due []func()
	if ok {
		due = s.pageServedLocked(p.lastID)
	}
	s.mu.Unlock()
	for _, f := range due {
		f()
	}
	if !ok {
		gatewayError(w, http.StatusBadRequest, "invalid skipToken")
		return
	}
	body := map[string]any{"value": nonNil(p.items)}
	if p.next != "" {
		body["@nextLink"] = p.next
	}
	writeJSON(w, http.StatusOK, body)
}

// setPage is one page of /file-sets.
type setPage struct {
	items  []map[string]any
	lastID string // id of the page's last file-set
	next   string // @nextLink, "" on the last page
}

// pageByIDLocked is RDP's listing: ascending id after the skipToken's id.
func (s *Server) pageByIDLocked(r *http.Request, filter setFilter, size int) (setPage, bool) {
	after, ok := decodeSetCursor(r.URL.Query().Get("skipToken"))
	if !ok {
		return setPage{}, false
	}
	var p setPage
	// Fault: repeat the previous page's last item at the top of this page.
	if after != "" && s.takeFaultLocked(HostAPI, FaultRepeatItem, r.URL.Path, "") != nil {
		if fs := s.setByID[after]; fs != nil {
			p.items = append(p.items, fileSetJSON(fs))
		}
	}
	start := s.firstSetAfterLocked(after)
	n := 0
	for _, fs := range s.setsByID[start:] {
		if !filter.match(fs) {
			continue
		}
		if n == size {
			p.next = nextLink(r, encodeSetCursor(p.lastID))
			break
		}
		p.items = append(p.items, fileSetJSON(fs))
		n++
		p.lastID = fs.id
	}
	return p, true
}

// pageBySeqLocked is the simulator's old listing (Options.CreationOrder): creation order after
// a "seq:N" cursor.
func (s *Server) pageBySeqLocked(r *http.Request, filter setFilter, size int) (setPage, bool) {
	after, ok := decodeSkip(r.URL.Query().Get("skipToken"))
	if !ok {
		return setPage{}, false
	}
	var p setPage
	if after > 0 && s.takeFaultLocked(HostAPI, FaultRepeatItem, r.URL.Path, "") != nil {
		if i := sort.Search(len(s.sets), func(i int) bool { return s.sets[i].seq >= after }); i < len(s.sets) && s.sets[i].seq == after {
			p.items = append(p.items, fileSetJSON(s.sets[i]))
		}
	}
	start := sort.Search(len(s.sets), func(i int) bool { return s.sets[i].seq > after })
	n, last := 0, 0
	for _, fs := range s.sets[start:] {
		if !filter.match(fs) {
			continue
		}
		if n == size {
			p.next = nextLink(r, encodeSkip(last))
			break
		}
		p.items = append(p.items, fileSetJSON(fs))
		n++
		last, p.lastID = fs.seq, fs.id
	}
	return p, true
}

// ---- RDP's error bodies ----

// cfsNotFound writes the file store's 404: {"error":{"id","code","status":404,"message"}} with
// status a number (unlike the gateway's 401 body).
func cfsNotFound(w http.ResponseWriter, code, what string) {
	writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{
		"id": randid.UUID(), "code": code, "status": http.StatusNotFound, "message": "No resource found for: " + what,
	}})
}

// missingClaim writes the flat 403 of a missing entitlement.
func missingClaim(w http.ResponseWriter) {
	writeJSON(w, http.StatusForbidden, map[string]any{
		"status": http.StatusForbidden, "message": "Access denied: Insufficient claims to access this resource",
	})
}

// writeDenied writes the answer for a setDeniedLocked reason.
func (s *Server) writeDenied(w http.ResponseWriter, reason, code, what string) {
	if reason == "claim" {
		missingClaim(w)
		return
	}
	cfsNotFound(w, code, what)
}

// setDeniedLocked says why a file-set's files cannot be listed or downloaded: "claim" (its
// bucket's claim was removed), "gone" (unknown, deleted or past availableTo) or "" (they can).
// With EmptyForUnknown an unknown or deleted file-set is not an error.
func (s *Server) setDeniedLocked(fs *fileSet) string {
	switch {
	case fs == nil || fs.deleted:
		if s.opts.EmptyForUnknown {
			return ""
		}
		return "gone"
	case s.claimMissingLocked(strings.ToLower(fs.bucket)):
		return "claim"
	case !s.opts.ListExpired && fs.expiredAt(s.now()):
		return "gone"
	}
	return ""
}

// RemoveClaim takes away the account's entitlement to a bucket ("" : to the whole file store):
// every file-store call about it answers 403 {"status":403,"message":"Access denied:
// Insufficient claims to access this resource"}.
func (s *Server) RemoveClaim(bucket string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claimless[strings.ToLower(bucket)] = true
}

// RestoreClaim undoes RemoveClaim.
func (s *Server) RestoreClaim(bucket string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.claimless, strings.ToLower(bucket))
}

func (s *Server) claimMissingLocked(bucket string) bool {
	return s.claimless[""] || (bucket != "" && s.claimless[bucket])
}

// expiredAt reports whether a file-set is past its availableTo at now.
func (fs *fileSet) expiredAt(now time.Time) bool { return !now.Before(fs.to) }

// firstSetAfterLocked is the index in s.setsByID (ascending id, the listing
// order) of the first file-set whose id sorts after id.
func (s *Server) firstSetAfterLocked(id string) int {
	return sort.Search(len(s.setsByID), func(i int) bool { return s.setsByID[i].id > id })
}
