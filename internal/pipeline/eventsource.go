package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cfsync/cfsync/internal/backoff"
	"github.com/cfsync/cfsync/internal/lambdarun"
)

// Invoker runs one invocation of a function (a *lambdarun.Runner or *lambdarun.Pool).
type Invoker interface {
	Invoke(ctx context.Context, payload []byte) (lambdarun.Result, error)
}

var (
	_ Invoker = (*lambdarun.Runner)(nil)
	_ Invoker = (*lambdarun.Pool)(nil)
)

// SQSAPI is the part of SQS the event source uses.
type SQSAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
}

var _ SQSAPI = (*sqs.Client)(nil)

// EventSource plays Lambda's SQS event source mapping with
// ReportBatchItemFailures: each of Concurrency pollers receives up to
// BatchSize messages, invokes the function with an events.SQSEvent built from
// them (receipt handles and attributes such as ApproximateReceiveCount
// included), deletes the messages that succeeded and leaves the failed ones in
// the queue, so SQS redelivers them after the visibility timeout and its
// redrive policy moves them to the dead-letter queue after maxReceiveCount
// receives.
//
// Like Lambda, it treats the whole batch as failed when the invocation fails
// (function error, timeout, crash) or when the response names a message id
// that is empty or not in the batch, or is not valid JSON.
type EventSource struct {
	SQS      SQSAPI
	QueueURL string
	QueueARN string
	Region   string
	Function Invoker
	// BatchSize is the most messages per invocation (1..10; default 10).
	BatchSize int
	// Concurrency is the number of concurrent pollers/invocations (default 1).
	Concurrency int
	// VisibilityTimeout, when positive, is passed with every ReceiveMessage
	// (overriding the queue's own), so a failed message is redelivered
	// after it; keep it above the function's timeout.
	VisibilityTimeout time.Duration
	// WaitTime is the long-poll time of ReceiveMessage (default 1s).
	WaitTime time.Duration
	// OnBatch, when set, is called after each invocation.
	OnBatch func(BatchReport)

	stats  EventSourceStats
	paused atomic.Bool
}

// BatchReport describes one invocation.
type BatchReport struct {
	Messages    int
	Redelivered int // messages whose ApproximateReceiveCount was above 1
	Failed      int // messages left in the queue
	Deleted     int
	Err         error                    // invocation error on the caller's side (ctx, closed runner)
	FuncErr     *lambdarun.FunctionError // the function failed as a whole
	BadResponse string                   // why the response made the batch fail, if it did
	Duration    time.Duration
}

// EventSourceStats are cumulative counters of an EventSource.
type EventSourceStats struct {
	Invocations    atomic.Int64
	Messages       atomic.Int64 // messages handed to the function
	Redelivered    atomic.Int64 // of which redeliveries (ApproximateReceiveCount > 1)
	Deleted        atomic.Int64 // messages deleted after success
	ItemFailures   atomic.Int64 // messages reported in batchItemFailures
	BatchFailures  atomic.Int64 // invocations whose whole batch failed
	ReceiveErrors  atomic.Int64
	DeleteFailures atomic.Int64
	Busy           atomic.Int64 // invocations in progress now
}

// StatsSnapshot is a copy of EventSourceStats.
type StatsSnapshot struct {
	Invocations, Messages, Redelivered, Deleted, ItemFailures, BatchFailures, ReceiveErrors, DeleteFailures, Busy int64
}

// Stats returns the counters so far.
func (e *EventSource) Stats() StatsSnapshot {
	s := &e.stats
	return StatsSnapshot{
		Invocations: s.Invocations.Load(), Messages: s.Messages.Load(), Redelivered: s.Redelivered.Load(),
		Deleted: s.Deleted.Load(), ItemFailures: s.ItemFailures.Load(), BatchFailures: s.BatchFailures.Load(),
		ReceiveErrors: s.ReceiveErrors.Load(), DeleteFailures: s.DeleteFailures.Load(), Busy: s.Busy.Load(),
	}
}

// Pause stops receiving (invocations in progress finish); Resume restarts.
func (e *EventSource) Pause() { e.paused.Store(true) }

// Resume undoes Pause.
func (e *EventSource) Resume() { e.paused.Store(false) }

// waitResumed waits while paused; false when ctx is done.
func (e *EventSource) waitResumed(ctx context.Context) bool {
	for e.paused.Load() && ctx.Err() == nil {
		_ = backoff.Sleep(ctx, 100*time.Millisecond)
	}
	return ctx.Err() == nil
}

// receiveBackoff spaces ReceiveMessage retries after errors (moto restarting).
var receiveBackoff = backoff.Policy{Base: 100 * time.Millisecond, Max: 5 * time.Second}

// Run polls until ctx is done. It returns nil when ctx ends.
func (e *EventSource) Run(ctx context.Context) error {
	if e.SQS == nil || e.QueueURL == "" || e.Function == nil {
		return errors.New("event source: SQS, QueueURL and Function are required")
	}
	n := max(1, e.Concurrency)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { e.poll(ctx) })
	}
	wg.Wait()
	return nil
}

func (e *EventSource) poll(ctx context.Context) {
	failures := 0
	for e.waitResumed(ctx) {
		msgs, err := e.receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			e.stats.ReceiveErrors.Add(1)
			failures++
			_ = backoff.Sleep(ctx, receiveBackoff.Delay(failures))
			continue
		}
		failures = 0
		if len(msgs) == 0 {
			continue
		}
		rep := e.Deliver(ctx, msgs)
		if e.OnBatch != nil {
			e.OnBatch(rep)
		}
	}
}

func (e *EventSource) receive(ctx context.Context) ([]types.Message, error) {
	batch := e.BatchSize
	if batch <= 0 || batch > 10 {
		batch = 10
	}
	wait := e.WaitTime
	if wait <= 0 {
		wait = time.Second
	}
	in := &sqs.ReceiveMessageInput{
		QueueUrl:                    &e.QueueURL,
		MaxNumberOfMessages:         int32(batch),
		WaitTimeSeconds:             int32(max(1, wait.Round(time.Second)/time.Second)),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
	}
	if e.VisibilityTimeout > 0 {
		in.VisibilityTimeout = int32(max(1, (e.VisibilityTimeout+time.Second-1)/time.Second))
	}
	out, err := e.SQS.ReceiveMessage(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("receive messages: %w", err)
	}
	return out.Messages, nil
}

// SQSEventFor builds the event Lambda would send for msgs.
func SQSEventFor(msgs []types.Message, queueARN, region string) events.SQSEvent {
	ev := events.SQSEvent{Records: make([]events.SQSMessage, 0, len(msgs))}
	for _, m := range msgs {
		rec := events.SQSMessage{
			MessageId:              aws.ToString(m.MessageId),
			ReceiptHandle:          aws.ToString(m.ReceiptHandle),
			Body:                   aws.ToString(m.Body),
			Md5OfBody:              aws.ToString(m.MD5OfBody),
			Md5OfMessageAttributes: aws.ToString(m.MD5OfMessageAttributes),
			Attributes:             map[string]string{},
			MessageAttributes:      map[string]events.SQSMessageAttribute{},
			EventSourceARN:         queueARN,
			EventSource:            "aws:sqs",
			AWSRegion:              region,
		}
		for k, v := range m.Attributes {
			rec.Attributes[k] = v
		}
		for k, v := range m.MessageAttributes {
			rec.MessageAttributes[k] = events.SQSMessageAttribute{
				StringValue: v.StringValue, BinaryValue: v.BinaryValue, DataType: aws.ToString(v.DataType),
				StringListValues: v.StringListValues, BinaryListValues: v.BinaryListValues,
			}
		}
		ev.Records = append(ev.Records, rec)
	}
	return ev
}

// FailedItems interprets a function's response to an SQS event the way
// Lambda does with ReportBatchItemFailures: it returns the ids of the messages
// to keep in the queue. all is true when the whole batch counts as failed
// (invalid JSON, an empty item identifier or one not in the batch), with the
// reason.
func FailedItems(payload []byte, batch map[string]bool) (failed map[string]bool, all bool, reason string) {
	failed = map[string]bool{}
	p := bytes.TrimSpace(payload)
	if len(p) == 0 || bytes.Equal(p, []byte("null")) || bytes.Equal(p, []byte("{}")) {
		return failed, false, ""
	}
	var resp struct {
		BatchItemFailures []map[string]json.RawMessage `json:"batchItemFailures"`
	}
	if err := json.Unmarshal(p, &resp); err != nil {
		return nil, true, "response is not an SQSEventResponse: " + err.Error()
	}
	for i, f := range resp.BatchItemFailures {
		raw, ok := f["itemIdentifier"]
		if !ok {
			return nil, true, "batchItemFailures[" + strconv.Itoa(i) + "] has no itemIdentifier"
		}
		var id string
		if err := json.Unmarshal(raw, &id); err != nil || id == "" {
			return nil, true, "batchItemFailures[" + strconv.Itoa(i) + "].itemIdentifier is empty or not a string"
		}
		if !batch[id] {
			return nil, true, "batchItemFailures[" + strconv.Itoa(i) + "].itemIdentifier " + strconv.Quote(id) + " is not in the batch"
		}
		failed[id] = true
	}
	return failed, false, ""
}

// Deliver invokes the function with msgs and settles them: deletes the
// successes, leaves the failures.
func (e *EventSource) Deliver(ctx context.Context, msgs []types.Message) BatchReport {
	start := time.Now()
	rep := BatchReport{Messages: len(msgs)}
	batch := map[string]bool{}
	for _, m := range msgs {
		batch[aws.ToString(m.MessageId)] = true
		if n, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]); n > 1 {
			rep.Redelivered++
		}
	}
	e.stats.Invocations.Add(1)
	e.stats.Messages.Add(int64(len(msgs)))
	e.stats.Redelivered.Add(int64(rep.Redelivered))
	e.stats.Busy.Add(1)
	defer e.stats.Busy.Add(-1)

	payload, err := json.Marshal(SQSEventFor(msgs, e.QueueARN, e.Region))
	if err != nil { // cannot happen: plain strings and maps
		rep.Err = fmt.Errorf("encode SQS event: %w", err)
		return rep
	}
	res, err := e.Function.Invoke(ctx, payload)
	rep.Duration = time.Since(start)
	var failed map[string]bool
	all := false
	switch {
	case err != nil:
		rep.Err, all = err, true
	case res.Err != nil:
		rep.FuncErr, all = res.Err, true
	default:
		failed, all, rep.BadResponse = FailedItems(res.Payload, batch)
	}
	if all {
		rep.Failed = len(msgs)
		e.stats.BatchFailures.Add(1)
		e.stats.ItemFailures.Add(int64(len(msgs)))
		return rep
	}
	rep.Failed = len(failed)
	e.stats.ItemFailures.Add(int64(len(failed)))
	var del []types.DeleteMessageBatchRequestEntry
	for i, m := range msgs {
		if failed[aws.ToString(m.MessageId)] {
			continue
		}
		del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
	}
	if len(del) == 0 {
		return rep
	}
	// Delete even when ctx is done: the function succeeded for these.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	out, err := e.SQS.DeleteMessageBatch(dctx, &sqs.DeleteMessageBatchInput{QueueUrl: &e.QueueURL, Entries: del})
	if err != nil {
		e.stats.DeleteFailures.Add(int64(len(del)))
		return rep
	}
	rep.Deleted = len(out.Successful)
	e.stats.Deleted.Add(int64(len(out.Successful)))
	e.stats.DeleteFailures.Add(int64(len(out.Failed)))
	return rep
}
