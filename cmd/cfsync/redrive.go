package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cfsync/cfsync/internal/queue"
)

// redriveSQS is the part of SQS redrive uses.
type redriveSQS interface {
	queue.SQS
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
}

var _ redriveSQS = (*sqs.Client)(nil)

// redriveVisibility hides the received DLQ messages for the run, so that a
// message is seen once; the ones left in the DLQ are made visible again at the end.
const redriveVisibility = 120 // seconds

func redriveCommand() *command {
	return &command{
		name:    "redrive",
		args:    "[--dlq-url URL] [--queue-url URL] [--dry-run] [flags]",
		summary: "Move DLQ messages back to the download queue (validated; deleted only once re-sent).",
		details: `Each message is received from the DLQ, validated as a download-queue message, sent to the
download queue and only then deleted from the DLQ. Messages that do not validate are reported
and left in the DLQ, as are messages whose send failed; both are made visible again at the
end. With --dry-run nothing is sent or deleted. Exit code 3 when bad messages were left.`,
		examples: []string{
			"DLQ_URL=https://sqs.eu-west-1.amazonaws.com/123456789012/cfsync-dlq DOWNLOAD_QUEUE_URL=… cfsync redrive --dry-run",
			"cfsync redrive --dlq-url https://sqs…/cfsync-dlq --queue-url https://sqs…/cfsync-downloads",
			"cfsync redrive --max 10",
		},
		noArgs: true,
		setup: func(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
			dlq := a.envString(fs, "dlq-url", "DLQ_URL", "dead-letter queue `URL`")
			dest := a.envString(fs, "queue-url", "DOWNLOAD_QUEUE_URL", "download queue `URL`")
			dry := fs.Bool("dry-run", false, "list the messages; send and delete nothing")
			maxN := fs.Int("max", 0, "handle at most `N` messages (0: all)")
			wait := fs.Duration("wait", time.Second, "long-poll each receive for up to `DURATION` (0-20s)")
			return func(ctx context.Context, args []string) error {
				r := &redriver{a: a, dest: dest.value(), dryRun: *dry, max: *maxN, wait: *wait}
				var err error
				if r.dlq, err = dlq.required(); err != nil {
					return err
				}
				if _, err := dest.required(); err != nil && !r.dryRun {
					return err
				}
				if r.dest == r.dlq {
					return usagef("--queue-url and --dlq-url are the same queue")
				}
				if *maxN < 0 || *wait < 0 || *wait > 20*time.Second {
					return usagef("--max must not be negative and --wait must be within 0-20s")
				}
				cfg, err := a.aws(ctx)
				if err != nil {
					return err
				}
				r.sqs = sqs.NewFromConfig(cfg)
				return r.run(ctx)
			}
		},
	}
}

type redriver struct {
	a         *app
	sqs       redriveSQS
	dlq, dest string
	dryRun    bool
	max       int
	wait      time.Duration
}

// redriveRow is one DLQ message and what happened to it.
type redriveRow struct {
	messageID string
	receives  string
	msg       queue.Message
	kind      rowKind
	result    string
}

type rowKind int

const (
	rowMoved  rowKind = iota // sent and deleted (or would be, with --dry-run)
	rowBad                   // did not validate: left in the DLQ
	rowFailed                // send or delete failed
)

// Row results.
const (
	rrMoved      = "moved"
	rrWouldMove  = "would move"
	rrBad        = "bad, left in DLQ: "
	rrSendFailed = "send failed, left in DLQ"
	rrDeleteFail = "sent, but not deleted from DLQ: "
)

func (r *redriver) run(ctx context.Context) error {
	rows, runErr := r.drain(ctx)
	moved, bad, failed, err := r.printRows(rows)
	if err != nil {
		return err
	}
	verb := "moved"
	if r.dryRun {
		verb = "would move"
	}
	fmt.Fprintf(r.a.stdout, "%s %d message(s) to the download queue; %d bad message(s) left in the DLQ", verb, moved, bad)
	if failed > 0 {
		fmt.Fprintf(r.a.stdout, "; %d not moved (errors)", failed)
	}
	fmt.Fprintln(r.a.stdout)
	switch {
	case runErr != nil:
		return runErr
	case failed > 0:
		return fmt.Errorf("%d message(s) could not be moved", failed)
	case bad > 0:
		return &checkFailed{fmt.Sprintf("%d bad message(s) left in the DLQ", bad)}
	}
	return nil
}

// drain receives and handles DLQ messages until the DLQ is empty (or only
// messages already handled come back) or --max is reached, then makes the
// messages left in the DLQ visible again right away.
func (r *redriver) drain(ctx context.Context) ([]redriveRow, error) {
	seen := map[string]bool{}
	// leave: receipt handles (newest per message) of messages to make visible again.
	leave := map[string]string{}
	var rows []redriveRow
	var runErr error
	handled := 0
	for r.max == 0 || handled < r.max {
		n := int32(10)
		if r.max > 0 {
			n = int32(min(10, r.max-handled))
		}
		out, err := r.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(r.dlq),
			MaxNumberOfMessages:         n,
			WaitTimeSeconds:             int32(r.wait / time.Second),
			VisibilityTimeout:           redriveVisibility,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
		})
		if err != nil {
			runErr = fmt.Errorf("receive from DLQ: %w", err)
			break
		}
		fresh := freshMessages(out.Messages, seen, leave)
		if len(fresh) == 0 {
			break // empty, or only messages already handled in this run
		}
		handled += len(fresh)
		batchRows, err := r.handle(ctx, fresh, leave)
		rows = append(rows, batchRows...)
		if err != nil {
			runErr = err
			break
		}
	}
	if err := r.release(leave); err != nil && runErr == nil {
		runErr = err
	}
	return rows, runErr
}

// freshMessages are the messages not seen before in this run; for one seen
// and left in the DLQ, leave gets its newest receipt handle.
func freshMessages(msgs []types.Message, seen map[string]bool, leave map[string]string) []types.Message {
	var fresh []types.Message
	for _, m := range msgs {
		id := aws.ToString(m.MessageId)
		if seen[id] {
			if _, ok := leave[id]; ok {
				leave[id] = aws.ToString(m.ReceiptHandle)
			}
			continue
		}
		seen[id] = true
		fresh = append(fresh, m)
	}
	return fresh
}

// printRows prints the result table (problems first) and counts the rows.
func (r *redriver) printRows(rows []redriveRow) (moved, bad, failed int, err error) {
	if len(rows) == 0 {
		return 0, 0, 0, nil
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].kind != rows[j].kind {
			return rows[i].kind > rows[j].kind // problems first
		}
		if rows[i].msg.FileID != rows[j].msg.FileID {
			return rows[i].msg.FileID < rows[j].msg.FileID
		}
		return rows[i].result < rows[j].result
	})
	t := newTable(r.a.stdout, "MESSAGE ID", "FILE ID", "FILE-SET", "BUCKET/PACKAGE", "RECEIVES", "RESULT")
	for _, row := range rows {
		bp := ""
		if row.msg.Bucket != "" || row.msg.PackageID != "" {
			bp = row.msg.Bucket + "/" + row.msg.PackageID
		}
		t.row(row.messageID, row.msg.FileID, nameOr(row.msg.FileSetName, row.msg.FileSetID), bp, row.receives, truncate(row.result, 120))
		switch row.kind {
		case rowMoved:
			moved++
		case rowBad:
			bad++
		default:
			failed++
		}
	}
	return moved, bad, failed, t.flush()
}

// handle validates, sends and deletes one received batch.
func (r *redriver) handle(ctx context.Context, msgs []types.Message, leave map[string]string) ([]redriveRow, error) {
	var rows []redriveRow
	var valid []queue.Message
	// handles maps a message (by content) to the receipt handles and row
	// indexes of its copies: SendResult reports messages, not ids.
	type ref struct {
		handle string
		row    int
		id     string
	}
	handles := map[queue.Message][]ref{}
	for _, m := range msgs {
		id := aws.ToString(m.MessageId)
		row := redriveRow{messageID: id, receives: m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]}
		qm, err := queue.Decode(aws.ToString(m.Body))
		if err != nil {
			// Show what can be read of it (best effort) to help find the file.
			_ = json.Unmarshal([]byte(aws.ToString(m.Body)), &row.msg)
			row.kind, row.result = rowBad, rrBad+err.Error()
			leave[id] = aws.ToString(m.ReceiptHandle)
			rows = append(rows, row)
			continue
		}
		row.msg = qm
		if r.dryRun {
			row.result = rrWouldMove
			leave[id] = aws.ToString(m.ReceiptHandle)
			rows = append(rows, row)
			continue
		}
		valid = append(valid, qm)
		handles[qm] = append(handles[qm], ref{handle: aws.ToString(m.ReceiptHandle), row: len(rows), id: id})
		rows = append(rows, row)
	}
	if len(valid) == 0 {
		return rows, nil
	}
	sender := &queue.Sender{SQS: r.sqs, QueueURL: r.dest}
	res, sendErr := sender.SendBatch(ctx, valid)
	var toDelete []ref
	for _, m := range res.Sent {
		refs := handles[m]
		if len(refs) == 0 {
			continue
		}
		toDelete = append(toDelete, refs[0])
		handles[m] = refs[1:]
	}
	for _, refs := range handles { // not sent
		for _, rf := range refs {
			rows[rf.row].kind, rows[rf.row].result = rowFailed, rrSendFailed
			leave[rf.id] = rf.handle
		}
	}
	for start := 0; start < len(toDelete); start += 10 {
		chunk := toDelete[start:min(start+10, len(toDelete))]
		entries := make([]types.DeleteMessageBatchRequestEntry, len(chunk))
		for i, rf := range chunk {
			entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(rf.handle)}
			rows[rf.row].result = rrMoved
		}
		out, err := r.sqs.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(r.dlq), Entries: entries})
		if err != nil {
			for _, rf := range chunk {
				rows[rf.row].kind, rows[rf.row].result = rowFailed, rrDeleteFail+err.Error()
			}
			continue
		}
		for _, f := range out.Failed {
			if i, err := strconv.Atoi(aws.ToString(f.Id)); err == nil && i >= 0 && i < len(chunk) {
				rf := chunk[i]
				rows[rf.row].kind, rows[rf.row].result = rowFailed, rrDeleteFail+aws.ToString(f.Code)
			}
		}
	}
	if sendErr != nil {
		return rows, fmt.Errorf("send to the download queue: %w", sendErr)
	}
	return rows, nil
}

// release makes the messages left in the DLQ visible again.
func (r *redriver) release(leave map[string]string) error {
	ids := slices.Sorted(maps.Keys(leave))
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for start := 0; start < len(ids); start += 10 {
		chunk := ids[start:min(start+10, len(ids))]
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(chunk))
		for i, id := range chunk {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(leave[id]), VisibilityTimeout: 0}
		}
		if _, err := r.sqs.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(r.dlq), Entries: entries}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("make the messages left in the DLQ visible again (they reappear after %ds anyway): %w", redriveVisibility, err)
	}
	return nil
}
