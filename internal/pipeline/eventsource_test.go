package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cfsync/cfsync/internal/lambdarun"
	"github.com/cfsync/cfsync/internal/testenv"
)

// fakeFunction is a hand-written Invoker.
type fakeFunction struct {
	invoke func(ctx context.Context, payload []byte) (lambdarun.Result, error)
}

func (f *fakeFunction) Invoke(ctx context.Context, payload []byte) (lambdarun.Result, error) {
	return f.invoke(ctx, payload)
}

func TestFailedItems(t *testing.T) {
	batch := map[string]bool{"a": true, "b": true}
	tests := []struct {
		name    string
		payload string
		failed  []string
		all     bool
	}{
		{"empty", ``, nil, false},
		{"null", `null`, nil, false},
		{"empty object", `{}`, nil, false},
		{"empty list", `{"batchItemFailures":[]}`, nil, false},
		{"null list", `{"batchItemFailures":null}`, nil, false},
		{"one failure", `{"batchItemFailures":[{"itemIdentifier":"b"}]}`, []string{"b"}, false},
		{"both", `{"batchItemFailures":[{"itemIdentifier":"a"},{"itemIdentifier":"b"}]}`, []string{"a", "b"}, false},
		{"unknown id", `{"batchItemFailures":[{"itemIdentifier":"zzz"}]}`, nil, true},
		{"empty id", `{"batchItemFailures":[{"itemIdentifier":""}]}`, nil, true},
		{"null id", `{"batchItemFailures":[{"itemIdentifier":null}]}`, nil, true},
		{"bad key name", `{"batchItemFailures":[{"itemId":"a"}]}`, nil, true},
		{"not json", `oops`, nil, true},
		{"wrong type", `{"batchItemFailures":"a"}`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			failed, all, reason := FailedItems([]byte(tt.payload), batch)
			if all != tt.all {
				t.Fatalf("all = %v (%s), want %v", all, reason, tt.all)
			}
			if all && reason == "" {
				t.Errorf("whole-batch failure without a reason")
			}
			if len(failed) != len(tt.failed) {
				t.Fatalf("failed = %v, want %v", failed, tt.failed)
			}
			for _, id := range tt.failed {
				if !failed[id] {
					t.Errorf("%s not reported failed", id)
				}
			}
		})
	}
}

func TestSQSEventFor(t *testing.T) {
	msgs := []types.Message{{
		MessageId: aws.String("m1"), ReceiptHandle: aws.String("rh1"), Body: aws.String(`{"fileId":"f"}`),
		MD5OfBody:  aws.String("md5"),
		Attributes: map[string]string{"ApproximateReceiveCount": "3", "SentTimestamp": "1"},
		MessageAttributes: map[string]types.MessageAttributeValue{
			"k": {DataType: aws.String("String"), StringValue: aws.String("v")},
		},
	}}
	ev := SQSEventFor(msgs, "arn:aws:sqs:us-east-1:123456789012:q", "us-east-1")
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var back events.SQSEvent
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Records) != 1 {
		t.Fatalf("records = %d", len(back.Records))
	}
	r := back.Records[0]
	checks := map[string][2]string{
		"messageId":               {r.MessageId, "m1"},
		"receiptHandle":           {r.ReceiptHandle, "rh1"},
		"body":                    {r.Body, `{"fileId":"f"}`},
		"md5OfBody":               {r.Md5OfBody, "md5"},
		"ApproximateReceiveCount": {r.Attributes["ApproximateReceiveCount"], "3"},
		"eventSource":             {r.EventSource, "aws:sqs"},
		"eventSourceARN":          {r.EventSourceARN, "arn:aws:sqs:us-east-1:123456789012:q"},
		"awsRegion":               {r.AWSRegion, "us-east-1"},
		"messageAttributes":       {aws.ToString(r.MessageAttributes["k"].StringValue), "v"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
}

// TestEventSource runs the event source against a real moto queue with a
// redrive policy: successes are deleted, item failures and failed batches
// are redelivered after the visibility timeout with a higher
// ApproximateReceiveCount, and a message that always fails ends in the DLQ.
func TestEventSource(t *testing.T) {
	m := testenv.Moto(t)
	ctx := context.Background()
	client := sqs.NewFromConfig(AWSConfig(m.Endpoint))

	tests := []struct {
		name string
		// outcome decides a message's fate by body and receive count:
		// "ok", "fail" (batch item failure) or "error" (the whole invocation fails).
		outcome func(body string, receive int) string
		bodies  []string
		wantDLQ int
	}{
		{
			name:    "all succeed",
			outcome: func(string, int) string { return "ok" },
			bodies:  []string{"a", "b", "c"},
		},
		{
			name: "item failure redelivered once",
			outcome: func(body string, receive int) string {
				if body == "b" && receive == 1 {
					return "fail"
				}
				return "ok"
			},
			bodies: []string{"a", "b", "c"},
		},
		{
			name: "function error fails the batch",
			outcome: func(body string, receive int) string {
				if receive == 1 {
					return "error"
				}
				return "ok"
			},
			bodies: []string{"a", "b"},
		},
		{
			name: "poison message goes to the DLQ",
			outcome: func(body string, receive int) string {
				if body == "poison" {
					return "fail"
				}
				return "ok"
			},
			bodies:  []string{"a", "poison"},
			wantDLQ: 1,
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dlq, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("dlq-%d", i))})
			if err != nil {
				t.Fatal(err)
			}
			dlqARN := "arn:aws:sqs:us-east-1:123456789012:" + fmt.Sprintf("dlq-%d", i)
			q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{
				QueueName: aws.String(fmt.Sprintf("q-%d", i)),
				Attributes: map[string]string{
					"VisibilityTimeout": "1800",
					"RedrivePolicy":     fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"3"}`, dlqARN),
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range tt.bodies {
				if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(b)}); err != nil {
					t.Fatal(err)
				}
			}
			var mu sync.Mutex
			succeeded := map[string]int{}
			fn := &fakeFunction{invoke: func(ctx context.Context, payload []byte) (lambdarun.Result, error) {
				var ev events.SQSEvent
				if err := json.Unmarshal(payload, &ev); err != nil {
					return lambdarun.Result{}, err
				}
				var resp events.SQSEventResponse
				mu.Lock()
				defer mu.Unlock()
				outcomes := make([]string, len(ev.Records))
				for i, r := range ev.Records {
					n, _ := strconv.Atoi(r.Attributes["ApproximateReceiveCount"])
					if r.ReceiptHandle == "" || n < 1 {
						t.Errorf("record without receipt handle or receive count: %+v", r)
					}
					outcomes[i] = tt.outcome(r.Body, n)
					if outcomes[i] == "error" {
						return lambdarun.Result{Err: &lambdarun.FunctionError{Type: "Runtime.ExitError", Message: "boom"}}, nil
					}
				}
				for i, r := range ev.Records {
					if outcomes[i] == "fail" {
						resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
					} else {
						succeeded[r.Body]++
					}
				}
				out, _ := json.Marshal(resp)
				return lambdarun.Result{Payload: out}, nil
			}}
			es := &EventSource{
				SQS: client, QueueURL: aws.ToString(q.QueueUrl), QueueARN: "arn", Region: Region, Function: fn,
				BatchSize: 10, Concurrency: 2, VisibilityTimeout: time.Second, WaitTime: time.Second,
			}
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { _ = es.Run(runCtx); close(done) }()
			defer func() { cancel(); <-done }()
			var vis, inflight, dlqN int
			if !testenv.WaitUntil(30*time.Second, 200*time.Millisecond, func() bool {
				var err error
				if vis, inflight, err = queueDepth(ctx, client, aws.ToString(q.QueueUrl)); err != nil {
					t.Fatal(err)
				}
				if dlqN, _, err = queueDepth(ctx, client, aws.ToString(dlq.QueueUrl)); err != nil {
					t.Fatal(err)
				}
				return vis == 0 && inflight == 0 && dlqN == tt.wantDLQ
			}) {
				t.Fatalf("queue not drained: visible %d, in flight %d, dlq %d (want %d); stats %+v", vis, inflight, dlqN, tt.wantDLQ, es.Stats())
			}
			mu.Lock()
			defer mu.Unlock()
			for _, b := range tt.bodies {
				want := 1
				if b == "poison" {
					want = 0
				}
				if succeeded[b] != want {
					t.Errorf("message %q succeeded %d times, want %d", b, succeeded[b], want)
				}
			}
			st := es.Stats()
			if st.Deleted != int64(len(tt.bodies)-tt.wantDLQ) {
				t.Errorf("deleted %d, want %d (stats %+v)", st.Deleted, len(tt.bodies)-tt.wantDLQ, st)
			}
		})
	}
}
