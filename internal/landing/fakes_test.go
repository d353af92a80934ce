package landing

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// fakeState is an in-memory state table whose conditional writes are
// atomic, as DynamoDB's are.
type fakeState struct {
	mu    sync.Mutex
	calls int // DynamoDB requests the real table would send
	clock *rdptest.Clock
	files map[string]*state.FileItem
	sets  map[string]*state.FileSetItem
}

var _ State = (*fakeState)(nil)

func newFakeState(c *rdptest.Clock) *fakeState {
	return &fakeState{clock: c, files: map[string]*state.FileItem{}, sets: map[string]*state.FileSetItem{}}
}

// request locks the fake for one DynamoDB request and counts it; defer the
// unlock it returns.
func (f *fakeState) request() (unlock func()) {
	f.mu.Lock()
	f.calls++
	return f.mu.Unlock
}

func (f *fakeState) record(fs state.FileSetItem) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets[fs.FileSetID] = &fs
}

func (f *fakeState) done(fileID, fileSetID, key string, size int64, etag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[fileID] = &state.FileItem{FileID: fileID, FileSetID: fileSetID, Status: state.StatusDone, Key: key, Size: size, ETag: etag, DoneAt: f.clock.Now()}
}

func (f *fakeState) GetFile(_ context.Context, id string) (*state.FileItem, error) {
	defer f.request()()
	it, ok := f.files[id]
	if !ok {
		return nil, state.ErrNotFound
	}
	c := *it
	return &c, nil
}

func (f *fakeState) BatchGetFiles(_ context.Context, ids []string) (map[string]*state.FileItem, int, error) {
	defer f.request()()
	out := map[string]*state.FileItem{}
	for _, id := range ids {
		if it, ok := f.files[id]; ok {
			c := *it
			out[id] = &c
		}
	}
	return out, 1, nil
}

func (f *fakeState) AddLanded(_ context.Context, fsID, fileID string) (*state.FileSetItem, error) {
	defer f.request()()
	fs, ok := f.sets[fsID]
	if !ok {
		return nil, state.ErrNotFound
	}
	if !slices.Contains(fs.Landed, fileID) {
		fs.Landed = append(fs.Landed, fileID)
	}
	c := *fs
	c.Landed = slices.Clone(fs.Landed)
	return &c, nil
}

func (f *fakeState) ClaimLanding(_ context.Context, fsID, owner string, until time.Time) error {
	defer f.request()()
	fs, ok := f.sets[fsID]
	if !ok || fs.PublishedAt != nil || (fs.LandingOwner != "" && fs.LandingLeaseUntil >= f.clock.Now().UnixMilli()) {
		return state.ErrConflict
	}
	fs.LandingOwner, fs.LandingLeaseUntil = owner, until.UnixMilli()
	return nil
}

func (f *fakeState) MarkPublished(_ context.Context, fsID, owner string) error {
	return f.end(fsID, owner, true)
}

func (f *fakeState) ReleaseLanding(_ context.Context, fsID, owner string) error {
	return f.end(fsID, owner, false)
}

func (f *fakeState) end(fsID, owner string, published bool) error {
	defer f.request()()
	fs, ok := f.sets[fsID]
	if !ok || fs.LandingOwner != owner {
		return state.ErrConflict
	}
	fs.LandingOwner, fs.LandingLeaseUntil = "", 0
	if published {
		t := f.clock.Now()
		fs.PublishedAt = &t
	}
	return nil
}

// fakeS3 holds objects and enforces If-Match / If-None-Match on PutObject
// atomically, as S3 does.
type fakeS3 struct {
	mu      sync.Mutex
	objects map[string]fakeObject
	puts    map[string]int
	gets    int
	// getDelay widens the read-modify-write window (races in tests).
	getDelay time.Duration
}

type fakeObject struct {
	body []byte
	etag string
}

var _ S3 = (*fakeS3)(nil)

func newFakeS3() *fakeS3 { return &fakeS3{objects: map[string]fakeObject{}, puts: map[string]int{}} }

func (f *fakeS3) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	f.mu.Lock()
	o, ok := f.objects[aws.ToString(in.Key)]
	f.gets++
	f.mu.Unlock()
	time.Sleep(f.getDelay)
	if !ok {
		return nil, &s3types.NoSuchKey{}
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(o.body)), ETag: aws.String(o.etag)}, nil
}

func (f *fakeS3) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	body, err := io.ReadAll(in.Body)
	if err != nil {
		return nil, err
	}
	key := aws.ToString(in.Key)
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, exists := f.objects[key]
	if in.IfNoneMatch != nil && exists {
		return nil, &smithy.GenericAPIError{Code: "PreconditionFailed", Message: "If-None-Match"}
	}
	if in.IfMatch != nil && (!exists || cur.etag != aws.ToString(in.IfMatch)) {
		return nil, &smithy.GenericAPIError{Code: "PreconditionFailed", Message: "If-Match"}
	}
	etag := fmt.Sprintf(`"%x"`, md5.Sum(body))
	f.objects[key] = fakeObject{body: body, etag: etag}
	f.puts[key]++
	return &s3.PutObjectOutput{ETag: aws.String(etag)}, nil
}

func (f *fakeS3) object(key string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.objects[key]
	return o.body, ok
}

// fakeEvents records the entries put; failNext rejects that many calls.
type fakeEvents struct {
	mu       sync.Mutex
	entries  []ebtypes.PutEventsRequestEntry
	failNext int
}

var _ Events = (*fakeEvents)(nil)

func (f *fakeEvents) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failNext > 0 {
		f.failNext--
		return nil, fmt.Errorf("events unavailable")
	}
	f.entries = append(f.entries, in.Entries...)
	return &eventbridge.PutEventsOutput{}, nil
}

func (f *fakeEvents) all() []ebtypes.PutEventsRequestEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.entries)
}

func putInput(key, ifMatch string) *s3.PutObjectInput {
	return &s3.PutObjectInput{Bucket: aws.String(destBucket), Key: aws.String(key), Body: bytes.NewReader([]byte("{}")), IfMatch: aws.String(ifMatch)}
}
