package pipeline

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
)

// TestWaitFor: WaitFor returns the first snapshot done accepts, the
// context's error with the last snapshot when done never does, and a failed
// read at once (not the context's end).
func TestWaitFor(t *testing.T) {
	m := testenv.Moto(t)
	ctx := context.Background()
	cfg := AWSConfig(m.Endpoint)
	db, client := dynamodb.NewFromConfig(cfg), sqs.NewFromConfig(cfg)
	testenv.StateTable(t, db, "progress")
	q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("progress")})
	if err != nil {
		t.Fatal(err)
	}
	p := &Pipeline{SQS: client, Res: Resources{QueueURL: *q.QueueUrl, DLQURL: *q.QueueUrl}}
	tests := []struct {
		name    string
		table   string
		done    func(calls int) bool
		wantErr error // nil: done's snapshot; context.DeadlineExceeded; errAny: a read error
		calls   int   // done calls at least
	}{
		{name: "done on the third snapshot", table: "progress", done: func(n int) bool { return n == 3 }, calls: 3},
		{name: "never done", table: "progress", done: func(int) bool { return false }, wantErr: context.DeadlineExceeded, calls: 2},
		{name: "read fails", table: "missing", done: func(int) bool { return true }, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.State = state.New(db, tt.table)
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			calls := 0
			pr, err := p.WaitFor(wctx, 100*time.Millisecond, func(pr Progress) bool { calls++; return tt.done(calls) })
			switch {
			case tt.wantErr == errAny && (err == nil || wctx.Err() != nil):
				t.Errorf("WaitFor = %v (context: %v), want the read error before the context ends", err, wctx.Err())
			case tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Errorf("WaitFor = %v, want %v", err, tt.wantErr)
			case calls < tt.calls || tt.wantErr == nil && calls != tt.calls:
				t.Errorf("done called %d times, want %d", calls, tt.calls)
			case tt.wantErr != errAny && pr.At.IsZero():
				t.Error("WaitFor returned no snapshot")
			}
		})
	}
}

var errAny = errors.New("any error")
