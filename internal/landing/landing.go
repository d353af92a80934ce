// Package landing tells downstream consumers when a whole CFS file-set has
// landed: once the last of its files is DONE, it writes the file-set's
// manifest next to the files, adds the file-set to its package's index and
// puts one "FileSet Landed" event on EventBridge (see docs/design.md#downstream).
//
// Exactly once, as far as DynamoDB's conditional writes reach: the file-set's
// state item (internal/state, filesets.go) holds its file ids and, in a
// string set, the ids of the files that landed. Every invocation that lands
// a file adds it and sees the set as it is after its own add, so at least one
// of them sees it complete; those race for a lease on the landing step (a
// conditional write) and only the winner publishes, then marks the step
// published. A winner that fails releases the lease and fails its message,
// whose redelivery (the file is DONE) comes back here; one that crashes
// holds the lease until it expires, before the redelivery arrives. The
// manifest and the index are idempotent; the event is at least once: a crash
// (or a lost lease) between PutEvents and the published mark sends it again.
//
// The library never logs.
package landing

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfsync/cfsync/internal/backoff"
	"github.com/cfsync/cfsync/internal/state"
)

// State is the part of the state table the landing step uses.
type State interface {
	GetFile(ctx context.Context, fileID string) (*state.FileItem, error)
	BatchGetFiles(ctx context.Context, ids []string) (map[string]*state.FileItem, int, error)
	AddLanded(ctx context.Context, fileSetID, fileID string) (*state.FileSetItem, error)
	ClaimLanding(ctx context.Context, fileSetID, owner string, until time.Time) error
	MarkPublished(ctx context.Context, fileSetID, owner string) error
	ReleaseLanding(ctx context.Context, fileSetID, owner string) error
}

var _ State = (*state.Table)(nil)

// S3 reads and writes the manifest and the index.
type S3 interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

var _ S3 = (*s3.Client)(nil)

// Events puts the "FileSet Landed" event.
type Events interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, opts ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

var _ Events = (*eventbridge.Client)(nil)

// Defaults.
const (
	// DefaultEventBus is the bus the events go to.
	DefaultEventBus = "default"
	// DefaultLease bounds how long a crashed publisher blocks the landing
	// step; it stays well below the download queue's visibility timeout so
	// that the redelivery finds it expired.
	DefaultLease = 2 * time.Minute
)

// Config configures a Lander.
type Config struct {
	DestBucket string
	DestPrefix string
	EventBus   string        // default DefaultEventBus
	Lease      time.Duration // default DefaultLease
}

// Lander runs the landing step. It is safe for concurrent use.
type Lander struct {
	state  State
	s3     S3
	events Events
	cfg    Config
	// now and sleep are replaced by tests.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// New returns a Lander.
func New(st State, s3c S3, ev Events, cfg Config) (*Lander, error) {
	if st == nil || s3c == nil || ev == nil {
		return nil, errors.New("landing: state, S3 and events clients are required")
	}
	if cfg.DestBucket == "" {
		return nil, errors.New("landing: config: DestBucket is required")
	}
	if cfg.EventBus == "" {
		cfg.EventBus = DefaultEventBus
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	return &Lander{state: st, s3: s3c, events: ev, cfg: cfg, now: time.Now, sleep: backoff.Sleep}, nil
}

// Outcome is what FileLanded did.
type Outcome string

// Outcomes.
const (
	NotDone        Outcome = "not-done"         // the file is not DONE: nothing to do
	UnknownFileSet Outcome = "unknown-file-set" // no file-set item (recorded before this feature, or never)
	Incomplete     Outcome = "incomplete"       // other files of the file-set have yet to land
	InProgress     Outcome = "in-progress"      // another invocation holds the landing step
	AlreadyDone    Outcome = "already-published"
	Published      Outcome = "published" // this call wrote the manifest, the index and the event
)

// FileLanded is called after a file's message succeeded (landed now, or
// found DONE on a redelivery): if the file is DONE and completes its
// file-set, it publishes the file-set's landing. An error means the
// landing step must be retried (fail the message).
func (l *Lander) FileLanded(ctx context.Context, fileID string) (Outcome, error) {
	fi, err := l.state.GetFile(ctx, fileID)
	if errors.Is(err, state.ErrNotFound) {
		return NotDone, nil
	}
	if err != nil {
		return "", fmt.Errorf("file landed: %w", err)
	}
	if fi.Status != state.StatusDone {
		return NotDone, nil
	}
	return l.FileDone(ctx, fileID, fi.FileSetID)
}

// FileDone is FileLanded for a caller that knows the file is DONE and the
// file-set its state item names (the downloader, which has just marked it
// DONE or read it DONE): it does not read the file's state again.
func (l *Lander) FileDone(ctx context.Context, fileID, fileSetID string) (Outcome, error) {
	fs, err := l.state.AddLanded(ctx, fileSetID, fileID)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return UnknownFileSet, nil
	case err != nil:
		return "", fmt.Errorf("file landed: %w", err)
	case fs.PublishedAt != nil:
		return AlreadyDone, nil
	case !fs.Complete():
		return Incomplete, nil
	}
	owner := newOwner()
	err = l.state.ClaimLanding(ctx, fs.FileSetID, owner, l.now().Add(l.cfg.Lease))
	if errors.Is(err, state.ErrConflict) {
		return InProgress, nil
	}
	if err != nil {
		return "", fmt.Errorf("file landed: %w", err)
	}
	if err := l.publish(ctx, fs); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if rerr := l.state.ReleaseLanding(rctx, fs.FileSetID, owner); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return "", fmt.Errorf("land file-set %s: %w", fs.FileSetID, err)
	}
	// A lost lease (ErrConflict) means another invocation may publish again:
	// the event is at least once.
	if err := l.state.MarkPublished(ctx, fs.FileSetID, owner); err != nil && !errors.Is(err, state.ErrConflict) {
		return "", fmt.Errorf("land file-set %s: %w", fs.FileSetID, err)
	}
	return Published, nil
}

// publish writes the manifest, updates the index and puts the event.
func (l *Lander) publish(ctx context.Context, fs *state.FileSetItem) error {
	files, _, err := l.state.BatchGetFiles(ctx, fs.FileIDs)
	if err != nil {
		return err
	}
	m, err := buildManifest(fs, files, l.cfg.DestBucket, l.cfg.DestPrefix)
	if err != nil {
		return err
	}
	if err := l.putManifest(ctx, m); err != nil {
		return err
	}
	if err := l.addToIndex(ctx, m); err != nil {
		return err
	}
	return l.putEvent(ctx, m)
}

func newOwner() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
