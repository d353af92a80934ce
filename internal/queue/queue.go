// Package queue is the download queue's message contract (docs/design.md#events) and a
// batch sender shared by the poller, the downloader (continuations) and the
// operator CLI (redrive).
package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Message is the body of a download-queue message.
type Message struct {
	FileID      string `json:"fileId"`
	FileSetID   string `json:"fileSetId"`
	FileSetName string `json:"fileSetName"`
	Bucket      string `json:"bucket"`
	PackageID   string `json:"packageId"`

	// Optional, from the file listing (/file-store/v1/files?filesetId=): the
	// downloader uses them when present, so it needs no GET /files/{id}.
	// Bodies without them stay valid.
	FileName string `json:"fileName,omitempty"`
	Size     *int64 `json:"size,omitempty"`
	// MD5 is the file's md5 (hex or base64) when an API gave one; the
	// downloader then verifies it. No public LSEG sample shows one.
	MD5 string `json:"md5,omitempty"`

	// Set by the downloader on the messages it sends itself (continuations,
	// deferrals, copies of a duplicate delivery). Seq is the number of the
	// file's message chain the message belongs to: a message older than the
	// chain's current one is a superseded copy and is dropped, so copies
	// never multiply. Deferrals counts consecutive deferrals (outages): the
	// delay of the next one grows with it.
	Seq       int `json:"seq,omitempty"`
	Deferrals int `json:"deferrals,omitempty"`

	// Delay postpones the message's delivery (SQS DelaySeconds, at most
	// MaxDelay). Not part of the body.
	Delay time.Duration `json:"-"`
}

// MaxDelay is SQS's largest DelaySeconds (15 minutes).
const MaxDelay = 15 * time.Minute

// Validate checks the required fields, naming the first one missing.
func (m Message) Validate() error {
	for _, f := range []struct{ name, v string }{
		{"fileId", m.FileID}, {"fileSetId", m.FileSetID}, {"bucket", m.Bucket}, {"packageId", m.PackageID},
	} {
		if strings.TrimSpace(f.v) == "" {
			return fmt.Errorf("message: field %q is required", f.name)
		}
	}
	if m.Size != nil && *m.Size < 0 {
		return fmt.Errorf("message: field \"size\" is negative (%d)", *m.Size)
	}
	if m.Seq < 0 || m.Deferrals < 0 {
		return errors.New("message: fields \"seq\" and \"deferrals\" must not be negative")
	}
	if strings.ContainsAny(m.FileID, "/?#") {
		return fmt.Errorf("message: field \"fileId\" has an invalid value")
	}
	for _, f := range []struct{ name, v string }{{"bucket", m.Bucket}, {"packageId", m.PackageID}, {"fileSetId", m.FileSetID}} {
		if strings.Contains(f.v, "/") || f.v == "." || f.v == ".." {
			return fmt.Errorf("message: field %q must not contain '/'", f.name)
		}
	}
	return nil
}

// Decode parses and validates a message body. Errors name the offending field.
func Decode(body string) (Message, error) {
	var m Message
	dec := json.NewDecoder(strings.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Message{}, fmt.Errorf("message: field %q: want %s, got %s", te.Field, te.Type, te.Value)
		}
		return Message{}, fmt.Errorf("message: not a JSON object: %w", err)
	}
	if dec.More() {
		return Message{}, errors.New("message: trailing data after the JSON object")
	}
	if err := m.Validate(); err != nil {
		return Message{}, err
	}
	return m, nil
}

// Encode returns the JSON body of m.
func (m Message) Encode() string {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(m)
	return strings.TrimSpace(b.String())
}

// SQS is the part of the SQS API the sender uses.
type SQS interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

var _ SQS = (*sqs.Client)(nil)

// Sender sends messages to one queue in batches of 10.
type Sender struct {
	SQS      SQS
	QueueURL string
	// Attempts per batch for entries SQS reports as failed (default 3).
	Attempts int
}

// SendResult reports a SendBatch.
type SendResult struct {
	Sent   []Message
	Failed []Message // not sent after every attempt: the caller must keep them claimable
	Calls  int       // SendMessageBatch requests made
}

// SendBatch sends msgs, 10 per request, retrying failed entries. It returns
// what was sent and what was not; err is set only when nothing more could be
// tried (context done). A message is never reported both sent and failed.
func (s *Sender) SendBatch(ctx context.Context, msgs []Message) (SendResult, error) {
	var res SendResult
	attempts := s.Attempts
	if attempts <= 0 {
		attempts = 3
	}
	for start := 0; start < len(msgs); start += 10 {
		pending := msgs[start:min(start+10, len(msgs))]
		for try := 1; len(pending) > 0; try++ {
			if err := ctx.Err(); err != nil {
				res.Failed = append(res.Failed, pending...)
				res.Failed = append(res.Failed, msgs[min(start+10, len(msgs)):]...)
				return res, err
			}
			entries := make([]types.SendMessageBatchRequestEntry, len(pending))
			for i, m := range pending {
				entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(m.Encode())}
				if m.Delay > 0 {
					entries[i].DelaySeconds = int32(min(m.Delay, MaxDelay).Round(time.Second) / time.Second)
				}
			}
			out, err := s.SQS.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &s.QueueURL, Entries: entries})
			res.Calls++
			var retry []Message
			if err != nil {
				retry = pending
			} else {
				// Only an entry SQS lists as successful counts as sent; one
				// it lists as failed, or not at all, is tried again.
				ok := map[int]bool{}
				for _, e := range out.Successful {
					if i, convErr := strconv.Atoi(aws.ToString(e.Id)); convErr == nil {
						ok[i] = true
					}
				}
				for _, f := range out.Failed {
					if i, convErr := strconv.Atoi(aws.ToString(f.Id)); convErr == nil {
						delete(ok, i)
					}
				}
				for i, m := range pending {
					if ok[i] {
						res.Sent = append(res.Sent, m)
					} else {
						retry = append(retry, m)
					}
				}
			}
			if len(retry) > 0 && try >= attempts {
				res.Failed = append(res.Failed, retry...)
				break
			}
			if len(retry) > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(try*try) * 50 * time.Millisecond):
				}
			}
			pending = retry
		}
	}
	return res, nil
}
