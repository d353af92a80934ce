package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfsync/cfsync/internal/backoff"
	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/lambdaerr"
	"github.com/cfsync/cfsync/internal/lambdamain"
	"github.com/cfsync/cfsync/internal/logx"
	"github.com/cfsync/cfsync/internal/metrics"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// S3API is the part of the S3 API the downloader uses. It drives multipart
// uploads itself rather than through the SDK's transfer manager: the
// manager's Uploader reads one io.Reader from start to end and keeps its
// upload id to itself, so it can neither fetch the parts as independent HTTP
// ranges (retrying just the range that failed) nor resume an upload in the
// next invocation from a checkpoint — both of which the downloader needs.
type S3API interface {
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error)
}

var _ S3API = (*s3.Client)(nil)

// RDP is the part of the RDP client the downloader uses: /stream and ranges
// of the presigned URL only (no GET /files/{id}: no public LSEG sample uses
// it; see docs/rdp.md).
type RDP interface {
	StreamURL(ctx context.Context, id string) (string, error)
	GetRangeIfMatch(ctx context.Context, presignedURL string, offset, length int64, ifMatch string) (*rdp.RangeResponse, error)
}

var _ RDP = (*rdp.Client)(nil)

// State is the part of the state table the downloader uses.
type State interface {
	GetFile(ctx context.Context, fileID string) (*state.FileItem, error)
	EndUpload(ctx context.Context, fileID, owner string, chunks bool) error
	BeginDownload(ctx context.Context, it state.FileItem) (*state.FileItem, error)
	MarkDone(ctx context.Context, fileID string, size int64, key, etag string) error
	MarkFailed(ctx context.Context, fileID, reason string) error
	MarkRetrying(ctx context.Context, fileID, reason string) error
	AcquireUpload(ctx context.Context, fileID, owner string, until time.Time) (*state.Upload, error)
	LoadParts(ctx context.Context, u *state.Upload) ([]state.Part, error)
	SaveUpload(ctx context.Context, u *state.Upload, parts []state.Part, dirty []int, owner string) error
	ReleaseUpload(ctx context.Context, fileID, owner string) error
	DeleteUpload(ctx context.Context, fileID, owner string) error
	BumpSeq(ctx context.Context, fileID string, seq int) error
}

var _ State = (*state.Table)(nil)

// Sender enqueues continuation messages.
type Sender interface {
	SendBatch(ctx context.Context, msgs []queue.Message) (queue.SendResult, error)
}

var _ Sender = (*queue.Sender)(nil)

// Settings are the downloader's knobs, config.DownloaderKnobs: a loaded
// config's (tests: config.Defaults[config.Downloader]()'s), and the
// function's memory. New rejects a knob its tags do not allow.
type Settings struct {
	config.DownloaderKnobs
	// MemoryMB is the function's memory (AWS_LAMBDA_FUNCTION_MEMORY_SIZE;
	// 0: unknown, not checked).
	MemoryMB int
}

// memoryOverhead is what the process needs besides the part buffers
// (runtime, SDK clients, HTTP buffers): the memory guard's allowance.
const memoryOverhead = 64 * MiB

// validate runs config.DownloaderKnobs' tag checks and those tags cannot
// express: the retry delays' order and the memory guard.
func (s *Settings) validate() error {
	if err := config.Check(s.DownloaderKnobs); err != nil {
		return err
	}
	if s.RetryMaxDelay < s.RetryBaseDelay {
		return fmt.Errorf("config: RETRY_MAX_DELAY=%s is below RETRY_BASE_DELAY=%s", s.RetryMaxDelay, s.RetryBaseDelay)
	}
	return s.checkMemory()
}

// checkMemory is the start-up memory guard: the part buffers (part size ×
// (PARALLEL_RANGES + 1), see slotPool) plus the overhead must fit the
// function's memory.
func (s *Settings) checkMemory() error {
	if s.MemoryMB <= 0 {
		return nil
	}
	ps, what := s.PartSize, "PART_SIZE"
	if ps == 0 {
		ps, what = defaultPartSize, "PART_SIZE (unset: default)"
	}
	need := ps*int64(s.ParallelRanges+1) + memoryOverhead
	if need > int64(s.MemoryMB)*MiB {
		return fmt.Errorf("config: %s %d MiB × (PARALLEL_RANGES %d + 1) + %d MiB overhead = %d MiB does not fit AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%d: lower PART_SIZE or PARALLEL_RANGES, or give the function more memory",
			what, ps/MiB, s.ParallelRanges, memoryOverhead/MiB, need/MiB, s.MemoryMB)
	}
	return nil
}

// fitsMemory reports whether parts of partSize fit the function's memory
// (part sizes grow past PART_SIZE for files over 10,000 parts).
func (s *Settings) fitsMemory(partSize int64) error {
	if s.MemoryMB <= 0 {
		return nil
	}
	if need := partSize*int64(s.ParallelRanges+1) + memoryOverhead; need > int64(s.MemoryMB)*MiB {
		return fmt.Errorf("part size %d MiB × (PARALLEL_RANGES=%d + 1) + %d MiB overhead does not fit AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%d", partSize/MiB, s.ParallelRanges, memoryOverhead/MiB, s.MemoryMB)
	}
	return nil
}

// Deps are the handler's collaborators.
type Deps struct {
	S3      S3API
	RDP     RDP
	State   State
	Sender  Sender
	Landing Landing           // nil: no file-set landing step
	Log     *slog.Logger      // default: discard
	Metrics *metrics.Recorder // nil: no metrics
	// Sleep replaces the backoff sleep (tests); default a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Handler is the downloader: one SQS batch per Handle call. It is safe for
// concurrent use; its buffers are shared by every message it processes.
type Handler struct {
	s3      S3API
	rdp     RDP
	state   State
	sender  Sender
	landing Landing
	log     *slog.Logger
	metrics *metrics.Recorder
	sleep   func(ctx context.Context, d time.Duration) error
	now     func() time.Time
	cfg     Settings
	slots   *slotPool
}

// New returns a handler.
func New(d Deps, s Settings) (*Handler, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	if d.S3 == nil || d.RDP == nil || d.State == nil || d.Sender == nil {
		return nil, errors.New("downloader: S3, RDP, State and Sender are required")
	}
	h := &Handler{
		s3: d.S3, rdp: d.RDP, state: d.State, sender: d.Sender, landing: d.Landing,
		log: d.Log, metrics: d.Metrics, sleep: d.Sleep, now: d.Now, cfg: s,
		slots: newSlotPool(s.ParallelRanges),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.sleep == nil {
		h.sleep = backoff.Sleep
	}
	if h.now == nil {
		h.now = time.Now
	}
	return h, nil
}

// Handle processes one SQS batch. Each message is one file; up to
// MESSAGE_CONCURRENCY are processed at once. It never returns an error: the
// messages that failed (poison, permanent or transient failures) are listed
// in BatchItemFailures so that only they return to the queue (and, after
// maxReceiveCount, to the DLQ). A transient failure keeps the file's upload
// for the redelivery, except on the last receive (see lastReceive).
func (h *Handler) Handle(ctx context.Context, evt events.SQSEvent) (events.SQSEventResponse, error) {
	log, end := lambdamain.StartInvocation(ctx, h.log, h.metrics)
	defer end()
	type failure struct {
		idx int
		id  string
	}
	var (
		mu       sync.Mutex
		failures []failure
		wg       sync.WaitGroup
		sem      = make(chan struct{}, h.cfg.MessageConcurrency)
	)
	for i, rec := range evt.Records {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := h.handleRecord(ctx, log, rec); err != nil {
				mu.Lock()
				failures = append(failures, failure{i, rec.MessageId})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(failures, func(a, b int) bool { return failures[a].idx < failures[b].idx })
	resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	for _, f := range failures {
		resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: f.id})
	}
	return resp, nil
}

// Invoke implements lambda.Handler: the raw payload goes through HandleEvent
// (see lambdaerr.Invoke).
func (h *Handler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	return lambdaerr.Invoke(ctx, payload, h.HandleEvent)
}

// HandleEvent decodes the raw Lambda event and runs Handle: an event that is
// not JSON, or not shaped like an SQS event, gets an error that says so and
// names the field (docs/design.md#events) instead of the JSON decoder's bare message.
func (h *Handler) HandleEvent(ctx context.Context, raw []byte) (events.SQSEventResponse, error) {
	evt, err := decodeEvent(raw)
	if err != nil {
		logx.WithRequest(ctx, h.log).Error("malformed event", "error", err.Error())
		return events.SQSEventResponse{}, lambdaerr.Malformed(err)
	}
	return h.Handle(ctx, evt)
}

func decodeEvent(raw []byte) (events.SQSEvent, error) {
	var evt events.SQSEvent
	err := json.Unmarshal(raw, &evt)
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return evt, nil
	case errors.As(err, &se):
		return evt, fmt.Errorf("event: not valid JSON (at byte %d): %w", se.Offset, err)
	case errors.As(err, &te) && te.Field == "":
		return evt, fmt.Errorf("event: want a JSON object (an SQS event), got JSON %s", te.Value)
	case errors.As(err, &te):
		return evt, fmt.Errorf("event: field %q: want %s, got JSON %s", te.Field, te.Type, te.Value)
	}
	return evt, fmt.Errorf("event: not valid JSON: %w", err)
}

// handleRecord processes one message; a non-nil error fails the message.
// A panic is turned into a failure of this message only.
func (h *Handler) handleRecord(ctx context.Context, log *slog.Logger, rec events.SQSMessage) (err error) {
	log = log.With("message_id", rec.MessageId)
	final := h.lastReceive(rec)
	var m queue.Message
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic while processing message", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", r)
			if final && m.FileID != "" {
				h.metrics.Add("FilesFailed", 1)
				h.markFailed(ctx, log, m.FileID, fmt.Sprintf("panic: %v", r))
			}
		}
	}()
	m, err = queue.Decode(rec.Body)
	if err != nil {
		log.Error("bad message: it fails and goes to the DLQ after maxReceiveCount", "error", err.Error(), "receive_count", rec.Attributes["ApproximateReceiveCount"])
		h.metrics.Add("PoisonMessages", 1)
		return err
	}
	log = log.With("file_id", m.FileID, "fileset_id", m.FileSetID)
	fd, err := h.processFile(ctx, log, m, final)
	if err != nil {
		return err
	}
	return h.afterFile(ctx, log, m, final, fd)
}

// lastReceive reports whether a failure of this delivery is final: its
// ApproximateReceiveCount has reached MAX_RECEIVE_COUNT (the queue's redrive
// maxReceiveCount), so a failed message goes to the DLQ instead of coming
// back. A record without a usable count (not delivered by the SQS event
// source) has no redelivery to count on and is treated as final too.
func (h *Handler) lastReceive(rec events.SQSMessage) bool {
	n, err := strconv.Atoi(rec.Attributes["ApproximateReceiveCount"])
	if err != nil || n < 1 {
		return true
	}
	return n >= h.cfg.MaxReceiveCount
}

// markFailed records a final failure, even after ctx ended (best effort).
func (h *Handler) markFailed(ctx context.Context, log *slog.Logger, fileID, reason string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.CleanupTimeout)
	defer cancel()
	if err := h.state.MarkFailed(cctx, fileID, reason); err != nil {
		log.Error("mark file failed", "error", err.Error())
	}
}
