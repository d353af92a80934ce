package queue

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		body    string
		wantErr string
	}{
		{`{"fileId":"f","fileSetId":"s","fileSetName":"n","bucket":"b","packageId":"p"}`, ""},
		{`{"fileId":"f","fileSetId":"s","bucket":"b","packageId":"p","extra":1}`, ""},
		{`not json`, "not a JSON object"},
		{`{"fileId":7,"fileSetId":"s","bucket":"b","packageId":"p"}`, `"fileId"`},
		{`{"fileSetId":"s","bucket":"b","packageId":"p"}`, `"fileId" is required`},
		{`{"fileId":"f","fileSetId":"s","bucket":"b"}`, `"packageId" is required`},
		{`{"fileId":"f","fileSetId":"s","bucket":"../x","packageId":"p"}`, `"bucket"`},
		{`{"fileId":"f/../g","fileSetId":"s","bucket":"b","packageId":"p"}`, `"fileId"`},
		{`{"fileId":"f","fileSetId":"s","bucket":"b","packageId":"p"} {}`, "trailing"},
		{`{"fileId":"f","fileSetId":"s","bucket":"b","packageId":"p","seq":3,"deferrals":2,"md5":"x"}`, ""},
		{`{"fileId":"f","fileSetId":"s","bucket":"b","packageId":"p","seq":-1}`, `"seq"`},
		{`{"fileId":"f","fileSetId":"s","bucket":"b","packageId":"p","size":-1}`, `"size" is negative`},
		{`{"fileId":"f","fileSetId":"s","bucket":"b","packageId":"p","deferrals":"x"}`, `"deferrals"`},
	}
	for _, tt := range tests {
		m, err := Decode(tt.body)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("Decode(%s) = %v", tt.body, err)
			} else if back, _ := Decode(m.Encode()); back != m {
				t.Errorf("round trip of %s changed it", tt.body)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Decode(%s) = %v, want error containing %s", tt.body, err, tt.wantErr)
		}
	}
}

type fakeSQS struct {
	send func(in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error)
}

// SendMessageBatch lists every entry the test did not mark failed as
// successful, as SQS does, unless the test answered Successful itself.
func (f *fakeSQS) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	out, err := f.send(in)
	if err != nil || out.Successful != nil {
		return out, err
	}
	failed := map[string]bool{}
	for _, e := range out.Failed {
		failed[aws.ToString(e.Id)] = true
	}
	for _, e := range in.Entries {
		if !failed[aws.ToString(e.Id)] {
			out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{Id: e.Id})
		}
	}
	return out, nil
}

func msgs(n int) []Message {
	var out []Message
	for i := range n {
		out = append(out, Message{FileID: "f" + string(rune('a'+i)), FileSetID: "s", Bucket: "b", PackageID: "p"})
	}
	return out
}

// answerThenRetry answers the first call with first and every later one with
// success, checking that the retry carries wantRetry entries.
func answerThenRetry(t *testing.T, first *sqs.SendMessageBatchOutput, wantRetry int) func(int, *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
	return func(call int, in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
		if call == 1 {
			return first, nil
		}
		if len(in.Entries) != wantRetry {
			t.Errorf("retry sent %d entries, want %d", len(in.Entries), wantRetry)
		}
		return &sqs.SendMessageBatchOutput{}, nil
	}
}

func TestSendBatch(t *testing.T) {
	tests := []struct {
		name       string
		n          int
		send       func(call int, in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error)
		wantSent   int
		wantFailed int
		wantCalls  int
	}{
		{"25 messages in 3 calls", 25, func(int, *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
			return &sqs.SendMessageBatchOutput{}, nil
		}, 25, 0, 3},
		{"partial failure retried", 10, answerThenRetry(t, &sqs.SendMessageBatchOutput{Failed: []types.BatchResultErrorEntry{{Id: aws.String("3")}, {Id: aws.String("7")}}}, 2),
			10, 0, 2},
		{"an entry in neither list is not counted as sent", 3, answerThenRetry(t, &sqs.SendMessageBatchOutput{Successful: []types.SendMessageBatchResultEntry{{Id: aws.String("0")}, {Id: aws.String("2")}}}, 1),
			3, 0, 2},
		{"persistent error reported, not lost", 12, func(call int, in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
			if len(in.Entries) == 2 {
				return nil, errors.New("boom")
			}
			return &sqs.SendMessageBatchOutput{}, nil
		}, 10, 2, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			call := 0
			s := &Sender{QueueURL: "q", SQS: &fakeSQS{send: func(in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
				call++
				if len(in.Entries) > 10 {
					t.Fatalf("%d entries in one call", len(in.Entries))
				}
				return tt.send(call, in)
			}}}
			res, err := s.SendBatch(context.Background(), msgs(tt.n))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Sent) != tt.wantSent || len(res.Failed) != tt.wantFailed || res.Calls != tt.wantCalls {
				t.Fatalf("sent=%d failed=%d calls=%d, want %d %d %d", len(res.Sent), len(res.Failed), res.Calls, tt.wantSent, tt.wantFailed, tt.wantCalls)
			}
			seen := map[string]bool{}
			for _, m := range append(res.Sent, res.Failed...) {
				if seen[m.FileID] {
					t.Fatalf("%s reported twice", m.FileID)
				}
				seen[m.FileID] = true
			}
		})
	}
}

// TestSendDelay: Delay becomes the entry's DelaySeconds, capped at SQS's
// 15 minutes, and is not part of the body.
func TestSendDelay(t *testing.T) {
	var got []types.SendMessageBatchRequestEntry
	s := &Sender{QueueURL: "q", SQS: &fakeSQS{send: func(in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
		got = append(got, in.Entries...)
		return &sqs.SendMessageBatchOutput{}, nil
	}}}
	ms := msgs(3)
	ms[1].Delay = 90 * time.Second
	ms[2].Delay = time.Hour
	if _, err := s.SendBatch(context.Background(), ms); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int32{0, 90, 900} {
		if got[i].DelaySeconds != want {
			t.Errorf("entry %d: DelaySeconds %d, want %d", i, got[i].DelaySeconds, want)
		}
		if strings.Contains(aws.ToString(got[i].MessageBody), "elay") {
			t.Errorf("entry %d: the delay leaked into the body %s", i, aws.ToString(got[i].MessageBody))
		}
	}
}
