// Package claim is cfsync's one claim-then-queue step, shared by every path
// that finds files to download (the poller's listing and sweep, the
// notification reader): a conditional put claims a file, its message is
// sent, and the sent files are marked QUEUED. Whichever path sees a file
// first claims it; the others find it claimed and send it only while it is
// still CLAIMED (its message may have been lost), so a file is queued once
// whichever path sees it first (docs/design.md#no-loss-duplicates-allowed).
package claim

import (
	"context"
	"errors"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
)

// Marker marks a sent file QUEUED.
type Marker interface {
	MarkQueued(ctx context.Context, fileID string) error
}

// Store is the part of the state table a claim uses.
type Store interface {
	Marker
	ClaimFile(ctx context.Context, it state.FileItem) error
	GetFile(ctx context.Context, fileID string) (*state.FileItem, error)
}

var _ Store = (*state.Table)(nil)

// Sender sends download-queue messages.
type Sender interface {
	SendBatch(ctx context.Context, msgs []queue.Message) (queue.SendResult, error)
}

var _ Sender = (*queue.Sender)(nil)

// Item is the state item a claim of m's file writes. size is the file's
// size when known (0: unknown), ttl its expiry in Unix seconds (0: none).
func Item(m queue.Message, size int64, availableTo time.Time, ttl int64) state.FileItem {
	return state.FileItem{FileID: m.FileID, FileSetID: m.FileSetID, FileSetName: m.FileSetName,
		FileName: m.FileName, Bucket: m.Bucket, PackageID: m.PackageID, Size: size,
		AvailableTo: availableTo, TTL: ttl}
}

// TTL is a file item's expiry in Unix seconds: max(availableTo, now) +
// margin, so a file-set whose availableTo has already passed (a backfill, a
// late notification) never gets items DynamoDB deletes at once, which a full
// reconciliation would then claim and download again. No availableTo: 0 (no
// TTL). The poller and the notification reader both use it.
func TTL(availableTo, now time.Time, margin time.Duration) int64 {
	if availableTo.IsZero() {
		return 0
	}
	if now.After(availableTo) {
		availableTo = now
	}
	return availableTo.Add(margin).Unix()
}

// Result is the claim of one file.
type Result struct {
	Mine   bool   // this call's conditional put created the item
	Status string // the item's status after the claim: CLAIMED when Mine
	Err    error  // the claim, or the read after a lost race, failed
}

// Send reports whether the file's message is to be sent: the file is
// CLAIMED, by this call or by one whose message may not have gone out.
func (r Result) Send() bool { return r.Err == nil && r.Status == state.StatusClaimed }

// One claims it. When another path claimed the file first (a lost race),
// the result carries the status the file has now.
func One(ctx context.Context, st Store, it state.FileItem) Result {
	err := st.ClaimFile(ctx, it)
	if err == nil {
		return Result{Mine: true, Status: state.StatusClaimed}
	}
	if !errors.Is(err, state.ErrConflict) {
		return Result{Err: err}
	}
	cur, err := st.GetFile(ctx, it.FileID)
	if err != nil {
		return Result{Err: err}
	}
	return Result{Status: cur.Status}
}

// Concurrency is the parallel conditional writes (and sends) one caller
// runs: the poller per flush, the notification reader per hand-off.
const Concurrency = 8

// All claims items, at most limit at a time (limit < 1: one at a time), and
// returns their results in the order of items.
func All(ctx context.Context, st Store, items []state.FileItem, limit int) []Result {
	out := make([]Result, len(items))
	var g errgroup.Group
	g.SetLimit(max(limit, 1))
	for i, it := range items {
		g.Go(func() error {
			out[i] = One(ctx, st, it)
			return nil
		})
	}
	_ = g.Wait()
	return out
}

// Sent is what Send did.
type Sent struct {
	queue.SendResult
	// MarkFailed counts sent files not marked QUEUED, MarkErr is the first
	// such error. They stay CLAIMED, which only costs a duplicate message
	// later (the downloader is idempotent).
	MarkFailed int
	MarkErr    error
}

// Send sends msgs and marks the sent QUEUED (at most limit writes at a time).
// Messages SQS did not take are in the result's Failed: their files stay
// CLAIMED and the next poll or sweep sends them. The error is SendBatch's.
func Send(ctx context.Context, st Marker, q Sender, msgs []queue.Message, limit int) (Sent, error) {
	if len(msgs) == 0 {
		return Sent{}, nil
	}
	sr, err := q.SendBatch(ctx, msgs)
	res := Sent{SendResult: sr}
	errs := make([]error, len(sr.Sent))
	var g errgroup.Group
	g.SetLimit(max(limit, 1))
	for i, m := range sr.Sent {
		g.Go(func() error {
			errs[i] = st.MarkQueued(ctx, m.FileID)
			return nil
		})
	}
	_ = g.Wait()
	for _, e := range errs {
		if e != nil {
			res.MarkFailed++
			if res.MarkErr == nil {
				res.MarkErr = e
			}
		}
	}
	return res, err
}
