package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"

	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
)

// sqsAccepts reports whether SQS accepts r in a message body: #x9 | #xA |
// #xD | #x20–#xD7FF | #xE000–#xFFFD | #x10000–#x10FFFF (Amazon SQS
// SendMessage API reference, MessageBody).
func sqsAccepts(r rune) bool {
	switch {
	case r == 0x9 || r == 0xA || r == 0xD:
		return true
	case r >= 0x20 && r <= 0xD7FF:
		return true
	case r >= 0xE000 && r <= 0xFFFD:
		return true
	default:
		return r >= 0x10000 && r <= utf8.MaxRune
	}
}

// sqsRefuses describes the first character of body SQS would refuse, or
// returns "" when SQS accepts the whole body.
func sqsRefuses(body string) string {
	for i, r := range body {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(body[i:]); n == 1 {
				return fmt.Sprintf("invalid UTF-8 at byte %d", i)
			}
		}
		if !sqsAccepts(r) {
			return fmt.Sprintf("%U at byte %d", r, i)
		}
	}
	return ""
}

// failRefused makes each file whose message SQS would refuse a permanent,
// named FAILED of that file alone: the rest of the package (and its
// watermark) moves on. A file already FAILED or DONE is left alone.
func (p *poll) failRefused(ctx context.Context, refused []entry, known map[string]*state.FileItem) error {
	for _, e := range refused {
		if it := known[e.msg.FileID]; it != nil && (it.Status == state.StatusFailed || it.Status == state.StatusDone) {
			continue
		}
		why := sqsRefuses(e.msg.Encode())
		reason := fmt.Sprintf("file name %+q: %s is a character SQS does not accept in a message, so the file cannot be queued", e.msg.FileName, why)
		it := state.FileItem{FileID: e.msg.FileID, FileSetID: e.msg.FileSetID, FileSetName: e.msg.FileSetName,
			Bucket: e.msg.Bucket, PackageID: e.msg.PackageID, Size: e.size, AvailableTo: e.fs.AvailableTo, TTL: p.fileTTL(e.fs)}
		if err := p.h.State.ClaimFile(ctx, it); err != nil && !errors.Is(err, state.ErrConflict) {
			return err
		}
		if err := p.h.State.MarkFailed(ctx, e.msg.FileID, reason); err != nil {
			return err
		}
		p.rejected++
		p.log.Error("file FAILED: its name cannot travel in an SQS message", "file_id", e.msg.FileID,
			"file_set_id", e.msg.FileSetID, "reason", reason)
	}
	return nil
}

// markQueued moves sent files from CLAIMED to QUEUED. A failure only costs a
// duplicate message later (the file stays CLAIMED and is sent again).
func markQueued(ctx context.Context, st StateStore, log *slog.Logger, sent []queue.Message) {
	if len(sent) == 0 {
		return
	}
	errs := make([]error, len(sent))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(writeConcurrency)
	for i, m := range sent {
		g.Go(func() error {
			errs[i] = st.MarkQueued(gctx, m.FileID)
			return nil
		})
	}
	_ = g.Wait()
	failed := 0
	var first error
	for _, err := range errs {
		if err != nil {
			failed++
			first = cmpErr(first, err)
		}
	}
	if failed > 0 {
		log.Warn("sent files not marked QUEUED; the next poll may send them again", "files", failed, "error", first.Error())
	}
}
