package rdptest

import (
	"encoding/base64"
	"net/http"
	"sort"
	"strings"
	"time"
)

// File-set listing in RDP's order: ascending file-set id, @nextLink a path relative to the API
// host whose skipToken is unpadded base64 of "filesetId=<last id>" (docs/rdp.md#file-set-paging).

const skipPrefix = "filesetId="

// encodeSetCursor is base64 without padding, as in LSEG's published @nextLink examples
// (skipToken=ZmlsZXNldElkPTQwMjAt… decodes to "filesetId=4020-…").
func encodeSetCursor(lastID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(skipPrefix + lastID))
}

func decodeSetCursor(tok string) (string, bool) {
	if tok == "" {
		return "", true
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(tok, "="))
	if err != nil {
		return "", false
	}
	id, ok := strings.CutPrefix(string(b), skipPrefix)
	return id, ok && id != ""
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
			q := r.URL.Query()
			q.Set("skipToken", encodeSetCursor(p.lastID))
			p.next = r.URL.Path + "?" + q.Encode()
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
			p.next = nextLink(r, last)
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
		"id": newUUID(), "code": code, "status": http.StatusNotFound, "message": "No resource found for: " + what,
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
