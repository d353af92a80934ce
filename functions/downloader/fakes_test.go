package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/cfsync/cfsync/internal/backoff"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// ---- S3 ----

type fakeObject struct {
	data []byte
	meta map[string]string
	etag string
}

type fakePart struct {
	data []byte
	etag string
	crc  string
}

type fakeUpload struct {
	key   string
	meta  map[string]string
	parts map[int32]fakePart
}

// fakeS3 is an in-memory S3 bucket with multipart uploads.
type fakeS3 struct {
	mu      sync.Mutex
	bucket  string
	objects map[string]*fakeObject
	uploads map[string]*fakeUpload
	seq     int
	calls   map[string]int
	// Hooks: a non-nil error is returned instead of doing the call.
	UploadPartErr func(n int32) error
	PutObjectErr  func() error
	AbortErr      func() error
	ListPartsErr  func() error
	// CompleteErr: CompleteMultipartUpload answers this error without
	// completing (it may block until ctx ends: a Complete cut by the deadline).
	CompleteErr func(ctx context.Context, in *s3.CompleteMultipartUploadInput) error
	// LoseComplete: CompleteMultipartUpload completes, then answers this
	// error (a response lost; the SDK's retry then gets NoSuchUpload).
	LoseComplete error
	// BeforeWrite runs before PutObject / CompleteMultipartUpload (races).
	BeforeWrite func()
}

func newFakeS3(bucket string) *fakeS3 {
	return &fakeS3{bucket: bucket, objects: map[string]*fakeObject{}, uploads: map[string]*fakeUpload{}, calls: map[string]int{}}
}

type apiErr struct{ code string }

func (e *apiErr) Error() string                 { return "api error " + e.code }
func (e *apiErr) ErrorCode() string             { return e.code }
func (e *apiErr) ErrorMessage() string          { return e.code }
func (e *apiErr) ErrorFault() smithy.ErrorFault { return smithy.FaultUnknown }
func (s *fakeS3) count(op string)               { s.mu.Lock(); s.calls[op]++; s.mu.Unlock() }

// call counts a call of op and runs the test's fault hook for it.
func (s *fakeS3) call(op string, hook func() error) error {
	s.count(op)
	return injected(hook)
}

// upload is the open multipart upload id (s.mu held), or NoSuchUpload.
func (s *fakeS3) upload(id *string) (*fakeUpload, error) {
	u, ok := s.uploads[aws.ToString(id)]
	if !ok {
		return nil, &types.NoSuchUpload{}
	}
	return u, nil
}
func (s *fakeS3) Calls(op string) int { s.mu.Lock(); defer s.mu.Unlock(); return s.calls[op] }
func (s *fakeS3) checkBucket(b *string) error {
	if aws.ToString(b) != s.bucket {
		return &apiErr{"NoSuchBucket"}
	}
	return nil
}

// etagOf is S3's ETag of an object put whole: its MD5, quoted.
func etagOf(b []byte) string { s := md5.Sum(b); return `"` + hex.EncodeToString(s[:]) + `"` }

// multipartETag is S3's ETag of an object uploaded in parts: the MD5 of the
// parts' binary MD5s, quoted, with "-<number of parts>" (verify.go's
// etagCheck relies on it for one part).
func multipartETag(parts ...[]byte) string {
	var sums []byte
	for _, p := range parts {
		s := md5.Sum(p)
		sums = append(sums, s[:]...)
	}
	return fmt.Sprintf(`"%x-%d"`, md5.Sum(sums), len(parts))
}

func (s *fakeS3) HeadObject(ctx context.Context, in *s3.HeadObjectInput, _ ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	s.count("HeadObject")
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[aws.ToString(in.Key)]
	if !ok {
		return nil, &types.NotFound{}
	}
	return &s3.HeadObjectOutput{ContentLength: aws.Int64(int64(len(o.data))), Metadata: maps.Clone(o.meta), ETag: aws.String(o.etag)}, nil
}

func readBody(r io.Reader, n *int64) ([]byte, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if n != nil && int64(len(b)) != *n {
		return nil, fmt.Errorf("body %d bytes, content-length %d", len(b), *n)
	}
	return b, nil
}

func (s *fakeS3) PutObject(ctx context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	s.count("PutObject")
	if err := s.checkBucket(in.Bucket); err != nil {
		return nil, err
	}
	if err := injected(s.PutObjectErr); err != nil {
		return nil, err
	}
	b, err := readBody(in.Body, in.ContentLength)
	if err != nil {
		return nil, err
	}
	if c := aws.ToString(in.ChecksumCRC32C); c != checksumCRC32C(b) {
		return nil, &apiErr{"BadDigest"}
	}
	if s.BeforeWrite != nil {
		s.BeforeWrite()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, exists := s.objects[aws.ToString(in.Key)]; exists && aws.ToString(in.IfNoneMatch) == "*" {
		return nil, &apiErr{"PreconditionFailed"}
	}
	o := &fakeObject{data: b, meta: maps.Clone(in.Metadata), etag: etagOf(b)}
	s.objects[aws.ToString(in.Key)] = o
	return &s3.PutObjectOutput{ETag: aws.String(o.etag)}, nil
}

func (s *fakeS3) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, _ ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	s.count("CreateMultipartUpload")
	if err := s.checkBucket(in.Bucket); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	id := "upload-" + strconv.Itoa(s.seq)
	s.uploads[id] = &fakeUpload{key: aws.ToString(in.Key), meta: maps.Clone(in.Metadata), parts: map[int32]fakePart{}}
	return &s3.CreateMultipartUploadOutput{UploadId: aws.String(id)}, nil
}

func (s *fakeS3) UploadPart(ctx context.Context, in *s3.UploadPartInput, _ ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	s.count("UploadPart")
	n := aws.ToInt32(in.PartNumber)
	if s.UploadPartErr != nil {
		if err := s.UploadPartErr(n); err != nil {
			return nil, err
		}
	}
	b, err := readBody(in.Body, in.ContentLength)
	if err != nil {
		return nil, err
	}
	crc := checksumCRC32C(b)
	if aws.ToString(in.ChecksumCRC32C) != crc {
		return nil, &apiErr{"BadDigest"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.upload(in.UploadId)
	if err != nil || u.key != aws.ToString(in.Key) {
		return nil, &types.NoSuchUpload{}
	}
	p := fakePart{data: b, etag: etagOf(b), crc: crc}
	u.parts[n] = p
	return &s3.UploadPartOutput{ETag: aws.String(p.etag), ChecksumCRC32C: aws.String(crc)}, nil
}

func (s *fakeS3) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, _ ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	s.count("CompleteMultipartUpload")
	if s.CompleteErr != nil {
		if err := s.CompleteErr(ctx, in); err != nil {
			return nil, err
		}
	}
	if s.BeforeWrite != nil {
		s.BeforeWrite()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := aws.ToString(in.UploadId)
	if _, exists := s.objects[s.uploadKey(id)]; exists && aws.ToString(in.IfNoneMatch) == "*" {
		return nil, &apiErr{"PreconditionFailed"}
	}
	u, err := s.upload(in.UploadId)
	if err != nil {
		return nil, err
	}
	var data []byte
	var parts [][]byte
	prev := int32(0)
	for i, cp := range in.MultipartUpload.Parts {
		n := aws.ToInt32(cp.PartNumber)
		p, ok := u.parts[n]
		if !ok || n <= prev || p.etag != aws.ToString(cp.ETag) || p.crc != aws.ToString(cp.ChecksumCRC32C) {
			return nil, &apiErr{"InvalidPart"}
		}
		if i < len(in.MultipartUpload.Parts)-1 && int64(len(p.data)) < minPartSize {
			return nil, &apiErr{"EntityTooSmall"}
		}
		prev = n
		data = append(data, p.data...)
		parts = append(parts, p.data)
	}
	o := &fakeObject{data: data, meta: u.meta, etag: multipartETag(parts...)}
	s.objects[u.key] = o
	delete(s.uploads, id)
	if s.LoseComplete != nil {
		return nil, s.LoseComplete
	}
	return &s3.CompleteMultipartUploadOutput{ETag: aws.String(o.etag)}, nil
}

func (s *fakeS3) uploadKey(id string) string {
	if u, ok := s.uploads[id]; ok {
		return u.key
	}
	return ""
}

func (s *fakeS3) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, _ ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	if err := s.call("AbortMultipartUpload", s.AbortErr); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.upload(in.UploadId); err != nil {
		return nil, err
	}
	delete(s.uploads, aws.ToString(in.UploadId))
	return &s3.AbortMultipartUploadOutput{}, nil
}

func (s *fakeS3) ListParts(ctx context.Context, in *s3.ListPartsInput, _ ...func(*s3.Options)) (*s3.ListPartsOutput, error) {
	if err := s.call("ListParts", s.ListPartsErr); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.upload(in.UploadId)
	if err != nil {
		return nil, err
	}
	nums := slices.Sorted(maps.Keys(u.parts))
	out := &s3.ListPartsOutput{}
	for _, n := range nums {
		p := u.parts[n]
		out.Parts = append(out.Parts, types.Part{PartNumber: aws.Int32(n), ETag: aws.String(p.etag), Size: aws.Int64(int64(len(p.data))), ChecksumCRC32C: aws.String(p.crc)})
	}
	return out, nil
}

func (s *fakeS3) object(key string) *fakeObject {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.objects[key]
}

func (s *fakeS3) openUploads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.uploads)
}

// ---- RDP ----

type fakeFile struct {
	name string
	size int64
	md5  string // the md5 the message carries ("" none, as RDP gives none)
	etag string // the source object's ETag: the plain MD5 or a multipart "…-N" one
	// content is the id whose rdptest content the object holds ("": the
	// file id); replace changes it, as a source object replaced at RDP.
	content string
}

// replace makes file id's source another object (new content and ETag).
func (r *fakeRDP) replace(id, content string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.files[id]
	f.content = content
	f.etag = `"` + rdptest.ContentMD5(content, f.size) + `"`
	r.files[id] = f
}

// rangeFault lets a test fail or alter one range attempt. Returning
// (nil, nil) serves the range normally.
type rangeFault func(ctx context.Context, off, n int64, attempt int) (*rdp.RangeResponse, error)

// fakeRDP serves files whose content is rdptest.Content(id, size).
type fakeRDP struct {
	mu         sync.Mutex
	files      map[string]fakeFile
	streamURLs int
	attempts   map[int64]int // per offset
	ranges     int
	inFlight   atomic.Int32
	maxFlight  atomic.Int32
	Fault      rangeFault
	StreamErr  func(id string, call int) error
	ifMatch    []string // If-Match of every range request
	Delay      func(off int64) time.Duration
	urlVersion int
}

// listing is the test's fakeRDP: msgFor takes a file's size (and md5) from
// it, as the poller takes them from /files?filesetId=.
var listing *fakeRDP

func newFakeRDP() *fakeRDP {
	r := &fakeRDP{files: map[string]fakeFile{}, attempts: map[int64]int{}}
	listing = r
	return r
}

// add serves a file; plainETag: its ETag is its MD5 (a single-part source
// object), else a multipart ETag that verifies nothing.
func (r *fakeRDP) add(id, name string, size int64, plainETag bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := fakeFile{name: name, size: size, etag: fmt.Sprintf(`"%032x-3"`, len(id)*1000+int(size%1000))}
	if plainETag {
		f.etag = `"` + rdptest.ContentMD5(id, size) + `"`
	}
	r.files[id] = f
}

// listed returns what the listing says of a file (ok false: not listed).
func (r *fakeRDP) listed(id string) (fakeFile, bool) {
	if r == nil {
		return fakeFile{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.files[id]
	return f, ok
}

func (r *fakeRDP) StreamURL(ctx context.Context, id string) (string, error) {
	r.mu.Lock()
	r.streamURLs++
	call := r.streamURLs
	r.urlVersion++
	v := r.urlVersion
	f, ok := r.files[id]
	r.mu.Unlock()
	if r.StreamErr != nil {
		if err := r.StreamErr(id, call); err != nil {
			return "", err
		}
	}
	if !ok {
		return "", &rdp.APIError{Endpoint: "get stream url", StatusCode: 404}
	}
	return fmt.Sprintf("https://presigned.example/bucket/pkg/%s/%s?X-Amz-Security-Token=SECRET%d&X-Amz-Signature=sig%d", id, url.PathEscape(f.name), v, v), nil
}

func fileIDFromURL(u string) string {
	p, _ := url.Parse(u)
	segs := strings.Split(strings.Trim(p.Path, "/"), "/")
	return segs[2]
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (r *fakeRDP) GetRangeIfMatch(ctx context.Context, u string, off, n int64, ifMatch string) (*rdp.RangeResponse, error) {
	id := fileIDFromURL(u)
	r.mu.Lock()
	f := r.files[id]
	r.attempts[off]++
	attempt := r.attempts[off]
	r.ranges++
	r.ifMatch = append(r.ifMatch, ifMatch)
	r.mu.Unlock()
	cur := r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	for {
		m := r.maxFlight.Load()
		if cur <= m || r.maxFlight.CompareAndSwap(m, cur) {
			break
		}
	}
	if r.Delay != nil {
		if err := backoff.Sleep(ctx, r.Delay(off)); err != nil {
			return nil, err
		}
	}
	if r.Fault != nil {
		if rr, err := r.Fault(ctx, off, n, attempt); rr != nil || err != nil {
			return rr, err
		}
	}
	if ifMatch != "" && ifMatch != f.etag {
		return nil, fmt.Errorf("%w: %w", rdp.ErrSourceChanged, &rdp.PresignedError{Host: "h", StatusCode: 412, Code: "PreconditionFailed"})
	}
	if off >= f.size {
		return nil, &rdp.PresignedError{Host: "h", StatusCode: 416, Code: "InvalidRange"}
	}
	if off+n > f.size {
		n = f.size - off
	}
	buf := make([]byte, n)
	if f.content != "" {
		id = f.content
	}
	rdptest.ContentAt(id, buf, off)
	return &rdp.RangeResponse{Body: io.NopCloser(&ctxReader{ctx, bytes.NewReader(buf)}), Offset: off, Length: n, TotalSize: f.size, ETag: f.etag}, nil
}

func (r *fakeRDP) Ranges() int { r.mu.Lock(); defer r.mu.Unlock(); return r.ranges }
func (r *fakeRDP) StreamURLs() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.streamURLs
}

// Fault bodies.

// truncatedBody yields half the range, then an unexpected EOF.
func truncatedBody(id string, off, n, size int64) *rdp.RangeResponse {
	buf := make([]byte, n/2)
	rdptest.ContentAt(id, buf, off)
	return &rdp.RangeResponse{Body: io.NopCloser(io.MultiReader(bytes.NewReader(buf), errReader{io.ErrUnexpectedEOF})), Offset: off, Length: n, TotalSize: size}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// stallBody blocks until its request's context ends.
type stallBody struct{ ctx context.Context }

func (s stallBody) Read([]byte) (int, error) { <-s.ctx.Done(); return 0, s.ctx.Err() }
func (s stallBody) Close() error             { return nil }

func resetErr() error {
	return &net.OpError{Op: "read", Net: "tcp", Err: &netSyscallErr{syscall.ECONNRESET}}
}

type netSyscallErr struct{ errno syscall.Errno }

func (e *netSyscallErr) Error() string { return "read: " + e.errno.Error() }
func (e *netSyscallErr) Unwrap() error { return e.errno }

// ---- tokens ----

// tokenRefused is the error of a file-store call whose 401 the token
// ring's transport could not cure (after its re-read, retry and report).
func tokenRefused() error {
	return fmt.Errorf("get stream url: token generation 1: %w: %w",
		&rdp.APIError{Endpoint: "GET /file-store/v1/files/f1/stream", StatusCode: 401, Message: "token expired"}, tokenring.ErrTokenInvalid)
}

// ---- state ----

type fakeState struct {
	mu      sync.Mutex
	now     func() time.Time
	files   map[string]*state.FileItem
	uploads map[string]*state.Upload
	chunks  map[string]map[int][]state.Part // fileID → chunk → parts
	saves   int
	SaveErr func() error
	// LoadPartsErr and MarkDoneErr fail those calls (DynamoDB throttling).
	LoadPartsErr func() error
	MarkDoneErr  func() error
	ends         int // EndUpload calls
}

func newFakeState() *fakeState {
	return &fakeState{now: time.Now, files: map[string]*state.FileItem{}, uploads: map[string]*state.Upload{}, chunks: map[string]map[int][]state.Part{}}
}

func (s *fakeState) GetFile(ctx context.Context, id string) (*state.FileItem, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[id]
	if !ok {
		return nil, state.ErrNotFound
	}
	c := *f
	return &c, nil
}

// fileOrNew is file id's item, a new one if the table has none (s.mu held).
func (s *fakeState) fileOrNew(id string) *state.FileItem {
	f, ok := s.files[id]
	if !ok {
		f = &state.FileItem{FileID: id}
		s.files[id] = f
	}
	return f
}

func (s *fakeState) BeginDownload(ctx context.Context, it state.FileItem) (*state.FileItem, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[it.FileID]
	if ok && f.Status == state.StatusDone {
		return nil, state.ErrConflict
	}
	var old *state.FileItem // the item as it was (nil: new), as state.Table returns it
	if ok {
		c := *f
		old = &c
	} else {
		f = &it
		s.files[it.FileID] = f
	}
	f.Status = state.StatusDownloading
	f.Attempts++
	f.Reason = ""
	return old, nil
}

func (s *fakeState) MarkDone(ctx context.Context, id string, size int64, key, etag string) error {
	if err := injected(s.MarkDoneErr); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fileOrNew(id)
	f.Status, f.Size, f.Key, f.ETag, f.Reason = state.StatusDone, size, key, etag, ""
	return nil
}

func (s *fakeState) MarkFailed(ctx context.Context, id, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fileOrNew(id)
	if f.Status != state.StatusDone {
		f.Status, f.Reason = state.StatusFailed, reason
	}
	return nil
}

// MarkRetrying records the reason of a transient failure on a DOWNLOADING file.
func (s *fakeState) MarkRetrying(ctx context.Context, id, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.files[id]; ok && f.Status == state.StatusDownloading {
		f.Reason = reason
	}
	return nil
}

func (s *fakeState) AcquireUpload(ctx context.Context, id, owner string, until time.Time) (*state.Upload, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.uploads[id]
	if ok && u.Owner != "" && u.Owner != owner && u.LeaseUntilMs >= s.now().UnixMilli() {
		return nil, state.ErrLeaseHeld
	}
	if !ok {
		u = &state.Upload{FileID: id}
		s.uploads[id] = u
	}
	u.Owner, u.LeaseUntilMs = owner, until.UnixMilli()
	u.Invocations++
	c := *u
	return &c, nil
}

func (s *fakeState) LoadParts(ctx context.Context, u *state.Upload) ([]state.Part, error) {
	if err := injected(s.LoadPartsErr); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []state.Part
	for _, c := range s.chunks[u.FileID] {
		parts = append(parts, c...)
	}
	sort.Slice(parts, func(a, b int) bool { return parts[a].Number < parts[b].Number })
	if len(parts) != u.PartsDone {
		return nil, fmt.Errorf("found %d parts, checkpoint says %d: %w", len(parts), u.PartsDone, state.ErrPartsMissing)
	}
	return parts, nil
}

func (s *fakeState) SaveUpload(ctx context.Context, u *state.Upload, parts []state.Part, dirty []int, owner string) error {
	if err := injected(s.SaveErr); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.uploads[u.FileID]
	if !ok || cur.Owner != owner {
		return state.ErrLeaseHeld
	}
	byChunk := map[int][]state.Part{}
	for _, p := range parts {
		byChunk[state.ChunkOf(p.Number)] = append(byChunk[state.ChunkOf(p.Number)], p)
	}
	if s.chunks[u.FileID] == nil {
		s.chunks[u.FileID] = map[int][]state.Part{}
	}
	for _, c := range dirty {
		s.chunks[u.FileID][c] = byChunk[c]
	}
	c := *u
	if parts != nil {
		c.PartsDone = len(parts)
	}
	c.MD5State = slices.Clone(u.MD5State)
	s.uploads[u.FileID] = &c
	u.PartsDone = c.PartsDone
	s.saves++
	return nil
}

func (s *fakeState) ReleaseUpload(ctx context.Context, id, owner string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.uploads[id]; ok && u.Owner == owner {
		u.Owner, u.LeaseUntilMs = "", 0
	}
	return nil
}

func (s *fakeState) DeleteUpload(ctx context.Context, id, owner string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.uploads[id]; ok && u.Owner != owner {
		return state.ErrLeaseHeld
	}
	delete(s.uploads, id)
	delete(s.chunks, id)
	return nil
}

func (s *fakeState) BumpSeq(ctx context.Context, id string, seq int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.uploads[id]
	if !ok {
		u = &state.Upload{FileID: id}
		s.uploads[id] = u
	}
	if seq > u.Seq {
		u.Seq, u.SeqAtMs = seq, s.now().UnixMilli()
	}
	return nil
}

func (s *fakeState) file(id string) state.FileItem {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.files[id]; ok {
		return *f
	}
	return state.FileItem{}
}

func (s *fakeState) upload(id string) *state.Upload {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.uploads[id]; ok {
		c := *u
		return &c
	}
	return nil
}

// ---- sender ----

type fakeSender struct {
	mu   sync.Mutex
	sent []queue.Message
	Err  error
	// Hang: SendBatch waits for its context to end (SQS not answering).
	Hang bool
}

func (s *fakeSender) SendBatch(ctx context.Context, msgs []queue.Message) (queue.SendResult, error) {
	if s.Hang {
		<-ctx.Done()
		return queue.SendResult{Failed: msgs, Calls: 1}, ctx.Err()
	}
	if err := ctx.Err(); err != nil { // as the SDK: no request on an ended context
		return queue.SendResult{Failed: msgs}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Err != nil {
		return queue.SendResult{Failed: msgs, Calls: 1}, nil
	}
	s.sent = append(s.sent, msgs...)
	return queue.SendResult{Sent: msgs, Calls: 1}, nil
}

func (s *fakeSender) messages() []queue.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent)
}

// injected runs a test's fault hook: nil (no hook) or the error it returns.
func injected(hook func() error) error {
	if hook == nil {
		return nil
	}
	return hook()
}

func (s *fakeState) EndUpload(ctx context.Context, id, owner string, chunks bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ends++
	if u, ok := s.uploads[id]; ok && u.Owner != owner {
		return state.ErrLeaseHeld
	}
	delete(s.uploads, id)
	if chunks {
		delete(s.chunks, id)
	}
	return nil
}
