package rdptest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cfsync/cfsync/internal/randid"
)

// Attribute is a file-set attribute.
type Attribute struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// FileSpec describes a file to create.
type FileSpec struct {
	ID    string // optional; generated (deterministically) when empty
	Name  string // required; may contain ':' and spaces, like LSEG's names (not '/')
	Size  int64
	MD5   string // optional: the md5 the API reports instead of the real one (e.g. a wrong one)
	NoMD5 bool   // report no md5 even if the file is small enough
}

// FileSetSpec describes a file-set to create. Zero times default to Now; AvailableTo defaults
// to Created + 30 days; Status defaults to READY.
type FileSetSpec struct {
	ID            string // optional; generated (deterministically) when empty
	Bucket        string // required
	PackageID     string // required; the package is created if unknown
	Name          string // required
	Status        string // "READY" (default) or "PENDING"
	Files         []FileSpec
	Attributes    []Attribute
	Created       time.Time
	Modified      time.Time
	AvailableFrom time.Time
	AvailableTo   time.Time
}

// FileSet is a file-set as created.
type FileSet struct {
	ID, Name, Bucket, PackageID, Status string
	Attributes                          []Attribute
	Files                               []File
	Created, Modified                   time.Time
	AvailableFrom, AvailableTo          time.Time
}

// File is one simulated file.
type File struct {
	ID          string
	FileSetID   string
	FileSetName string
	Bucket      string // the file-set's bucketName as the API returns it
	PackageID   string
	Name        string // the decoded file name (the presigned URL's last path segment, decoded)
	Size        int64
	MD5         string // hex md5 the API exposes for the file ("" if none)
}

// DestName is the name cfsync stores the file under: Name with ':' replaced by '_'.
func (f File) DestName() string { return strings.ReplaceAll(f.Name, ":", "_") }

// Content is the file's deterministic content.
func (f File) Content() *ContentReader { return Content(f.ID, f.Size) }

type pkgRec struct {
	id, name string
	buckets  []string
	created  time.Time
}

type fileSet struct {
	seq                                 int
	id, name, bucket, packageID, status string
	attrs                               []Attribute
	files                               []*fileRec
	created, modified, from, to         time.Time
	deleted                             bool
}

type fileRec struct {
	seq         int
	id, name    string
	size        int64
	set         *fileSet
	created     time.Time
	md5Override string
	noMD5       bool
	objectPath  string // presigned path, assigned on first /stream (guarded by Server.mu)
	deleted     bool   // guarded by Server.mu

	md5Once sync.Once
	md5     string

	etagOnce      sync.Once
	multipartETag string
}

// trueMD5 computes (once) the md5 of the content. Call without holding Server.mu.
func (f *fileRec) trueMD5() string {
	f.md5Once.Do(func() { f.md5 = ContentMD5(f.id, f.size) })
	return f.md5
}

// exposedMD5 is the md5 the API reports ("" for none). Call without holding Server.mu.
func (s *Server) exposedMD5(f *fileRec) string {
	switch {
	case f.noMD5:
		return ""
	case f.md5Override != "":
		return f.md5Override
	case s.opts.MD5MaxSize < 0 || f.size > s.opts.MD5MaxSize:
		return ""
	}
	return f.trueMD5()
}

// GenID makes a deterministic CFS-looking id (4-4-8-4-12 hex digits) for the n-th object of a
// kind, e.g. a package id for AddPackage.
func GenID(kind string, n int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("rdptest/%s/%d", kind, n)))
	h := hex.EncodeToString(sum[:16])
	return h[0:4] + "-" + h[4:8] + "-" + h[8:16] + "-" + h[16:20] + "-" + h[20:32]
}

// AddPackage registers a package in a bucket. Adding the same package to another bucket lists
// it under both.
func (s *Server) AddPackage(bucket, packageID, packageName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addPackageLocked(bucket, packageID, packageName)
}

func (s *Server) addPackageLocked(bucket, packageID, packageName string) *pkgRec {
	canon, ok := s.buckets[strings.ToLower(bucket)]
	if !ok {
		canon = bucket
		s.buckets[strings.ToLower(bucket)] = bucket
	}
	p := s.pkgByID[packageID]
	if p == nil {
		p = &pkgRec{id: packageID, name: packageName, created: s.now()}
		if p.name == "" {
			p.name = packageID
		}
		s.pkgByID[packageID] = p
		s.packages = append(s.packages, p)
	}
	for _, b := range p.buckets {
		if b == canon {
			return p
		}
	}
	p.buckets = append(p.buckets, canon)
	return p
}

// AddFileSet creates a file-set and its files. It panics on an invalid spec (missing bucket,
// package, name or file name, duplicate id, a '/' in a file name).
func (s *Server) AddFileSet(spec FileSetSpec) FileSet {
	s.mu.Lock()
	fs := s.addFileSetLocked(spec)
	s.mu.Unlock()
	return s.publicFileSet(fs)
}

// AddFileSets creates n READY file-sets in bucket/packageID, each with filesPer files of the
// given size, with unique names in LSEG's style (containing ':' and spaces).
func (s *Server) AddFileSets(bucket, packageID string, n, filesPer int, size int64) []FileSet {
	s.mu.Lock()
	recs := make([]*fileSet, 0, n)
	for i := 0; i < n; i++ {
		s.seq++
		k := s.seq
		ts := s.now().Format("2006-01-02T15:04:05.000Z")
		spec := FileSetSpec{
			Bucket: bucket, PackageID: packageID,
			Name:       fmt.Sprintf("%s-Delta-%s-%06d", packageID, ts[:10], k),
			Attributes: []Attribute{{Name: "ContentKey", Value: fmt.Sprintf("%d", k%7)}},
		}
		for j := 0; j < filesPer; j++ {
			spec.Files = append(spec.Files, FileSpec{
				Name: fmt.Sprintf("%s-Delta %06d part %d %s.jsonl.gz", packageID, k, j+1, ts),
				Size: size,
			})
		}
		recs = append(recs, s.addFileSetLocked(spec))
	}
	s.mu.Unlock()
	return publish(recs, s.publicFileSet)
}

func (s *Server) addFileSetLocked(spec FileSetSpec) *fileSet {
	if spec.Bucket == "" || spec.PackageID == "" || spec.Name == "" {
		panic("rdptest: FileSetSpec needs Bucket, PackageID and Name")
	}
	s.addPackageLocked(spec.Bucket, spec.PackageID, "")
	now := s.now()
	s.seq++
	fs := &fileSet{
		seq: s.seq, id: spec.ID, name: spec.Name, bucket: s.buckets[strings.ToLower(spec.Bucket)],
		packageID: spec.PackageID, status: spec.Status, attrs: append([]Attribute(nil), spec.Attributes...),
		created: spec.Created.UTC(), modified: spec.Modified.UTC(), from: spec.AvailableFrom.UTC(), to: spec.AvailableTo.UTC(),
	}
	if fs.id == "" {
		fs.id = GenID("fileset", fs.seq)
	}
	if _, dup := s.setByID[fs.id]; dup {
		panic("rdptest: duplicate file-set id " + fs.id)
	}
	if fs.status == "" {
		fs.status = "READY"
	}
	if spec.Created.IsZero() {
		fs.created = now
	}
	if spec.Modified.IsZero() {
		fs.modified = fs.created
	}
	if spec.AvailableFrom.IsZero() {
		fs.from = fs.created
	}
	if spec.AvailableTo.IsZero() {
		fs.to = fs.created.Add(30 * 24 * time.Hour)
	}
	for _, f := range spec.Files {
		if f.Name == "" || strings.Contains(f.Name, "/") {
			panic("rdptest: invalid file name " + strconv.Quote(f.Name))
		}
		if f.Size < 0 {
			panic("rdptest: negative file size")
		}
		s.seq++
		fr := &fileRec{
			seq: s.seq, id: f.ID, name: f.Name, size: f.Size, set: fs, created: fs.created,
			md5Override: f.MD5, noMD5: f.NoMD5,
		}
		if fr.id == "" {
			fr.id = GenID("file", fr.seq)
		}
		if _, dup := s.fileByID[fr.id]; dup {
			panic("rdptest: duplicate file id " + fr.id)
		}
		s.fileByID[fr.id] = fr
		fs.files = append(fs.files, fr)
	}
	s.sets = append(s.sets, fs)
	s.setByID[fs.id] = fs
	s.setsByID = slices.Insert(s.setsByID, s.firstSetAfterLocked(fs.id), fs)
	s.notifyLocked(fs) // push notification when READY (notifications.go)
	return fs
}

func (s *Server) publicFileSet(fs *fileSet) FileSet {
	s.mu.Lock()
	out := FileSet{
		ID: fs.id, Name: fs.name, Bucket: fs.bucket, PackageID: fs.packageID, Status: fs.status,
		Attributes: append([]Attribute(nil), fs.attrs...), Created: fs.created, Modified: fs.modified,
		AvailableFrom: fs.from, AvailableTo: fs.to,
	}
	files := append([]*fileRec(nil), fs.files...)
	s.mu.Unlock()
	for _, f := range files {
		out.Files = append(out.Files, s.publicFile(f))
	}
	return out
}

func (s *Server) publicFile(f *fileRec) File {
	return File{
		ID: f.id, FileSetID: f.set.id, FileSetName: f.set.name, Bucket: f.set.bucket,
		PackageID: f.set.packageID, Name: f.name, Size: f.size, MD5: s.exposedMD5(f),
	}
}

func (s *Server) mustSet(id string) *fileSet {
	fs := s.setByID[id]
	if fs == nil {
		panic("rdptest: unknown file-set " + id)
	}
	return fs
}

// TouchFileSet sets a file-set's modified time to Now.
func (s *Server) TouchFileSet(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustSet(id).modified = s.now()
}

// SetFileSetStatus changes a file-set's status (e.g. PENDING -> READY) and its modified time.
func (s *Server) SetFileSetStatus(id, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fs := s.mustSet(id)
	fs.status = status
	fs.modified = s.now()
	s.notifyLocked(fs)
}

// DeleteFileSet removes a file-set and its files: the API stops listing them, /files/{id} and
// /stream answer 404, and presigned URLs already handed out answer 404 NoSuchKey.
func (s *Server) DeleteFileSet(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fs := s.mustSet(id)
	fs.deleted = true
	for _, f := range fs.files {
		f.deleted = true
	}
}

// DeleteFile removes one file (as DeleteFileSet does for a whole set).
func (s *Server) DeleteFile(fileID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fileByID[fileID]
	if f == nil {
		panic("rdptest: unknown file " + fileID)
	}
	f.deleted = true
}

// FileSets returns every file-set not deleted (any status), in creation order.
func (s *Server) FileSets() []FileSet {
	s.mu.Lock()
	recs := s.liveSetsLocked(false)
	s.mu.Unlock()
	return publish(recs, s.publicFileSet)
}

// GroundTruth returns every (not deleted) file of every READY file-set, in creation order:
// what a correct sync must have landed. It computes the md5 of files that expose one (once).
func (s *Server) GroundTruth() []File {
	s.mu.Lock()
	var recs []*fileRec
	for _, fs := range s.liveSetsLocked(true) {
		for _, f := range fs.files {
			if !f.deleted {
				recs = append(recs, f)
			}
		}
	}
	s.mu.Unlock()
	return publish(recs, s.publicFile)
}

// liveSetsLocked returns the file-sets not deleted (only the READY ones
// with readyOnly), in creation order. s.mu is held.
func (s *Server) liveSetsLocked(readyOnly bool) []*fileSet {
	var recs []*fileSet
	for _, fs := range s.sets {
		if !fs.deleted && (!readyOnly || fs.status == "READY") {
			recs = append(recs, fs)
		}
	}
	return recs
}

// publish returns the public view of each record (called without s.mu:
// the public* methods take it themselves).
func publish[R, T any](recs []R, public func(R) T) []T {
	out := make([]T, 0, len(recs))
	for _, r := range recs {
		out = append(out, public(r))
	}
	return out
}

// LookupFile returns a file by id (deleted files included).
func (s *Server) LookupFile(fileID string) (File, bool) {
	s.mu.Lock()
	f := s.fileByID[fileID]
	s.mu.Unlock()
	if f == nil {
		return File{}, false
	}
	return s.publicFile(f), true
}

// ---- HTTP ----

// gatewayError writes the API gateway's error shape.
func gatewayError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{
		"id": randid.UUID(), "code": strconv.Itoa(status), "message": msg, "status": strings.ReplaceAll(http.StatusText(status), " ", ""),
	}})
}

// fileStoreAuth checks the bearer token; on failure it writes the 401 and returns false.
func (s *Server) fileStoreAuth(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	msg := s.bearerLocked(r, s.now())
	if msg != "" {
		s.counters.FileStore401s++
	}
	s.mu.Unlock()
	if msg != "" {
		gatewayError(w, http.StatusUnauthorized, msg)
		return false
	}
	return true
}

func fmtTime(t time.Time) string { return t.UTC().Format(jsonTimeFmt) }

func (s *Server) handlePackages(w http.ResponseWriter, r *http.Request) {
	if !s.fileStoreAuth(w, r) {
		return
	}
	q := r.URL.Query()
	size, after, msg := pageParams(q, "")
	if msg != "" {
		gatewayError(w, http.StatusBadRequest, msg)
		return
	}
	bucket := strings.ToLower(q.Get("bucketName"))
	s.mu.Lock()
	if s.claimMissingLocked(bucket) {
		s.mu.Unlock()
		missingClaim(w)
		return
	}
	if _, known := s.buckets[bucket]; bucket != "" && !known && !s.opts.EmptyForUnknown {
		s.mu.Unlock()
		cfsNotFound(w, "EDS.CFS.NoBucketFound", q.Get("bucketName"))
		return
	}
	var items []map[string]any
	last, more := 0, false
	for i, p := range s.packages {
		if i+1 <= after {
			continue
		}
		match := bucket == ""
		for _, b := range p.buckets {
			match = match || strings.ToLower(b) == bucket
		}
		if !match {
			continue
		}
		if len(items) == size {
			more = true
			break
		}
		items = append(items, map[string]any{
			"packageId": p.id, "packageName": p.name, "bucketNames": append([]string(nil), p.buckets...),
			"packageType": "bulk", "contactEmail": "support@example.com",
			"created": fmtTime(p.created), "modified": fmtTime(p.created),
		})
		last = i + 1
	}
	s.mu.Unlock()
	body := map[string]any{"value": nonNil(items)}
	if more {
		body["@nextLink"] = nextLink(r, encodeSkip(last))
	}
	writeJSON(w, http.StatusOK, body)
}

func nonNil(v []map[string]any) []map[string]any {
	if v == nil {
		return []map[string]any{}
	}
	return v
}

func fileSetJSON(fs *fileSet) map[string]any {
	ids := make([]string, 0, len(fs.files))
	for _, f := range fs.files {
		if !f.deleted {
			ids = append(ids, f.id)
		}
	}
	attrs := fs.attrs
	if attrs == nil {
		attrs = []Attribute{}
	}
	return map[string]any{
		"id": fs.id, "name": fs.name, "bucketName": fs.bucket, "packageId": fs.packageID,
		"attributes": append([]Attribute(nil), attrs...), "files": ids, "numFiles": len(ids),
		"availableFrom": fmtTime(fs.from), "availableTo": fmtTime(fs.to), "status": fs.status,
		"created": fmtTime(fs.created), "modified": fmtTime(fs.modified),
	}
}

type fileView struct {
	rec      *fileRec
	setID    string
	modified time.Time
}

func (s *Server) fileJSON(v fileView) map[string]any {
	m := map[string]any{
		"id": v.rec.id, "filename": v.rec.name, "filesetId": v.setID, "fileSizeInBytes": v.rec.size,
		"created": fmtTime(v.rec.created), "modified": fmtTime(v.modified),
	}
	if md5 := s.exposedMD5(v.rec); md5 != "" {
		m["md5"] = md5
	}
	return m
}

func (s *Server) handleFiles(w http.ResponseWriter, r *http.Request) {
	if !s.fileStoreAuth(w, r) {
		return
	}
	q := r.URL.Query()
	setID := q.Get("filesetId")
	size, after, msg := pageParams(q, "filesetId")
	if msg != "" {
		gatewayError(w, http.StatusBadRequest, msg)
		return
	}
	s.mu.Lock()
	fs := s.setByID[setID]
	if msg := s.setDeniedLocked(fs); msg != "" {
		s.mu.Unlock()
		s.writeDenied(w, msg, "EDS.CFS.NoFilesetFound", setID)
		return
	}
	var views []fileView
	last, more := 0, false
	if fs != nil && !fs.deleted {
		for _, f := range fs.files {
			if f.seq <= after || f.deleted {
				continue
			}
			if len(views) == size {
				more = true
				break
			}
			views = append(views, fileView{rec: f, setID: fs.id, modified: fs.modified})
			last = f.seq
		}
	}
	s.mu.Unlock()
	items := make([]map[string]any, 0, len(views))
	for _, v := range views {
		items = append(items, s.fileJSON(v))
	}
	body := map[string]any{"value": items}
	if more {
		body["@nextLink"] = nextLink(r, encodeSkip(last))
	}
	writeJSON(w, http.StatusOK, body)
}

// liveFile looks up a file that can be downloaded; when it cannot, msg says why: "claim" or
// "gone" (unknown, deleted, or past its file-set's availableTo).
func (s *Server) liveFile(id string) (v fileView, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fileByID[id]
	if f == nil || f.deleted {
		return fileView{}, "gone"
	}
	if msg := s.setDeniedLocked(f.set); msg != "" {
		return fileView{}, msg
	}
	return fileView{rec: f, setID: f.set.id, modified: f.set.modified}, ""
}

// authorizedFile returns the live file a /files/{id} request names; when
// the request is not authorized or the file is not live it answers the
// request itself and ok is false.
func (s *Server) authorizedFile(w http.ResponseWriter, r *http.Request) (v fileView, ok bool) {
	if !s.fileStoreAuth(w, r) {
		return fileView{}, false
	}
	id := r.PathValue("id")
	v, msg := s.liveFile(id)
	if msg != "" {
		s.writeDenied(w, msg, "EDS.CFS.NoFileFound", id)
		return fileView{}, false
	}
	return v, true
}

// handleFile serves GET /files/{id}, only with Options.FileEndpoint.
func (s *Server) handleFile(w http.ResponseWriter, r *http.Request) {
	v, ok := s.authorizedFile(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.fileJSON(v))
}

func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	v, ok := s.authorizedFile(w, r)
	if !ok {
		return
	}
	signAt, tokenEnd := s.now(), time.Time{}
	s.mu.Lock()
	if s.takeFaultLocked(HostAPI, FaultExpiredURL, r.URL.Path, "") != nil {
		signAt = signAt.Add(-s.opts.URLExpiry - time.Second)
	}
	if s.takeFaultLocked(HostAPI, FaultExpiredToken, r.URL.Path, "") != nil {
		tokenEnd = signAt.Add(-time.Second)
	}
	s.counters.StreamURLs++
	u := s.presignLocked(v.rec, signAt, tokenEnd)
	s.mu.Unlock()
	if strings.EqualFold(r.URL.Query().Get("doNotRedirect"), "true") {
		writeJSON(w, http.StatusOK, map[string]string{"url": u})
		return
	}
	w.Header().Set("Location", u)
	w.WriteHeader(http.StatusFound)
}
