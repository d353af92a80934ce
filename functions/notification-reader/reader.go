package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/cfsync/cfsync/internal/lambdaerr"
	"github.com/cfsync/cfsync/internal/notify"
)

// reader is one invocation's receive loop.
type reader struct {
	h        *Handler
	log      *slog.Logger
	q        QueueAPI
	key      []byte
	endpoint string
	res      *Result
	failed   []error
}

// loop long-polls until the deadline (or MaxRun) leaves no room for another
// receive plus its processing.
func (r *reader) loop(ctx context.Context, gen int64) error {
	h := r.h
	stop := r.stopAt(ctx)
	for first := true; first || h.now().Before(stop); first = false {
		wait := h.Wait
		if left := stop.Sub(h.now()); left < wait {
			wait = max(left, 0)
		}
		out, err := r.q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(r.endpoint),
			MaxNumberOfMessages: 10,
			WaitTimeSeconds:     int32(wait / time.Second),
			VisibilityTimeout:   int32(h.Visibility / time.Second),
		})
		r.res.Receives++
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return r.receiveFailed(ctx, gen, err)
		}
		for _, m := range out.Messages {
			r.handle(ctx, m)
		}
	}
	if len(r.failed) > 0 {
		err := fmt.Errorf("%d notification(s) kept in the queue for another attempt: %w", r.res.Kept, errors.Join(r.failed...))
		if r.res.Kept < r.res.Messages {
			return lambdaerr.Partial(err) // the others were handled
		}
		return err
	}
	return nil
}

// stopAt is when the last receive must have ended: DeadlineMargin before
// the invocation's deadline, or MaxRun from now if sooner. Without either,
// the run is one receive.
func (r *reader) stopAt(ctx context.Context) time.Time {
	h := r.h
	now := h.now()
	var stop time.Time
	if dl, ok := ctx.Deadline(); ok {
		stop = now.Add(time.Until(dl) - h.DeadlineMargin)
	}
	if h.MaxRun > 0 {
		if s := now.Add(h.MaxRun); stop.IsZero() || s.Before(stop) {
			stop = s
		}
	}
	if stop.IsZero() {
		stop = now
	}
	return stop
}

// credentialErrorCodes are the AWS error codes of rejected temporary
// credentials (query and JSON protocol spellings).
var credentialErrorCodes = map[string]bool{
	"ExpiredToken": true, "ExpiredTokenException": true, "InvalidClientTokenId": true,
	"UnrecognizedClientException": true, "InvalidAccessKeyId": true, "InvalidSecurity": true,
	"AccessDenied": true, "AccessDeniedException": true,
}

// IsCredentialError reports whether AWS refused the queue credentials.
func IsCredentialError(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && credentialErrorCodes[ae.ErrorCode()]
}

// receiveFailed handles a failed receive. Rejected credentials are reported
// to the refresher (like a reader's 401) and the run ends without error:
// the messages stay in the queue and the next run uses the new credentials.
func (r *reader) receiveFailed(ctx context.Context, gen int64, err error) error {
	if !IsCredentialError(err) {
		return fmt.Errorf("receive notifications: %w", err)
	}
	var ae smithy.APIError
	errors.As(err, &ae)
	r.res.Outcome = OutcomeCredsRejected
	r.h.Metrics.Add("QueueCredentialsRejected", 1)
	r.log.Warn("AWS rejected the queue credentials: reported to the token-refresher; messages stay in the queue",
		"credentials_generation", gen, "code", ae.ErrorCode())
	if rerr := r.h.Reports.ReportQueueCredentials(ctx, gen, "receive: "+ae.ErrorCode()); rerr != nil {
		return fmt.Errorf("queue credentials rejected (%s) and the report failed: %w", ae.ErrorCode(), rerr)
	}
	return nil
}

// handle processes one message: rejected ones (undecryptable, unparsable)
// are reported by id and deleted; a failed hand-off leaves the message for
// redelivery; everything else is deleted once handed off.
func (r *reader) handle(ctx context.Context, m sqstypes.Message) {
	r.res.Messages++
	id := aws.ToString(m.MessageId)
	n, err := r.open(aws.ToString(m.Body))
	if err != nil {
		r.res.Rejected++
		reason := "undecryptable"
		if errors.Is(err, notify.ErrMalformed) {
			reason = "malformed"
		}
		r.log.Error("notification rejected and deleted (the poller's reconciliation covers its file-set)",
			"message_id", id, "reason", reason, "error", err.Error())
		r.delete(ctx, m)
		return
	}
	log := r.log.With("message_id", id, "ecp_message_id", n.MessageID, "file_set_id", n.FileSet.ID)
	if !n.FileSet.Ready() {
		r.res.Ignored++
		log.Info("notification ignored: file-set not READY", "status", n.FileSet.Status)
		r.delete(ctx, m)
		return
	}
	files, err := r.files(ctx, n.FileSet)
	var hr notify.HandoffResult
	if err == nil {
		hr, err = r.h.Handoff.Enqueue(ctx, n.FileSet, files)
	}
	r.res.Claimed += hr.Claimed
	r.res.Queued += hr.Queued
	if errors.Is(err, notify.ErrMalformed) { // a field no download message can carry: never retried
		r.res.Rejected++
		log.Error("notification rejected and deleted (the poller's reconciliation covers its file-set)", "reason", "malformed", "error", err.Error())
		r.delete(ctx, m)
		return
	}
	if err != nil {
		r.res.Kept++
		r.failed = append(r.failed, err)
		log.Error("notification kept for another attempt", "error", err.Error())
		return
	}
	r.res.FileSets++
	r.observeLatency(n)
	log.Info("notification handed off", "files", len(files), "claimed", hr.Claimed, "resent", hr.Resent,
		"known", hr.Known, "queued", hr.Queued)
	r.delete(ctx, m)
}

func (r *reader) open(body string) (notify.Notification, error) {
	plain, err := notify.Decrypt(r.key, body)
	if err != nil {
		return notify.Notification{}, err
	}
	return notify.Parse(plain)
}

// files returns the notification's files, or lists them when the
// notification names fewer than numFiles.
func (r *reader) files(ctx context.Context, fs notify.FileSet) ([]notify.File, error) {
	if len(fs.Files) >= fs.NumFiles || r.h.Files == nil {
		return fs.Files, nil
	}
	var files []notify.File
	for f, err := range r.h.Files.Files(ctx, fs.ID) {
		if err != nil {
			return nil, fmt.Errorf("list files of file-set %s: %w", fs.ID, err)
		}
		files = append(files, notify.File{ID: f.ID, FileName: f.FileName, Size: f.Size})
	}
	return files, nil
}

func (r *reader) observeLatency(n notify.Notification) {
	if !n.CurrentAt.IsZero() {
		if d := r.h.now().Sub(n.CurrentAt); d >= 0 {
			r.h.Metrics.Put("NotificationDelay", "Seconds", d.Seconds())
		}
	}
}

// delete removes a handled message. A failed delete only means the message
// comes back (duplicates are harmless).
func (r *reader) delete(ctx context.Context, m sqstypes.Message) {
	_, err := r.q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(r.endpoint), ReceiptHandle: m.ReceiptHandle})
	if err != nil {
		r.log.Warn("delete notification failed: it will be delivered again (harmless)", "message_id", aws.ToString(m.MessageId),
			"error", strings.TrimSpace(err.Error()))
	}
}
