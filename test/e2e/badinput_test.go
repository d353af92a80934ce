package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// TestBadInput (docs/design.md#bad-input-is-named): a malformed event gets an error naming the
// problem and the function's process keeps serving the next invocation;
// poison messages, a file that disappeared (404) and a file whose content
// does not match its md5 end in the DLQ, the files with state FAILED and a
// reason, while a good file next to them lands.
func TestBadInput(t *testing.T) {
	var good, wrongMD5, gone rdptest.File
	e := newEnv(t, envOptions{
		sim:  rdptest.Options{MD5: true}, // the listing's md5 is what shows corrupt.jsonl.gz is corrupt
		subs: []string{"bulk-ESG/" + pkgESG},
		seed: func(sim *rdptest.Server) {
			sim.AddPackage("bulk-ESG", pkgESG, "Bulk-ESG-Global-Scores")
			fs := sim.AddFileSet(rdptest.FileSetSpec{Bucket: "bulk-ESG", PackageID: pkgESG, Name: "Bad-Input",
				Files: []rdptest.FileSpec{
					{Name: "good.jsonl.gz", Size: 20 << 10},
					{Name: "corrupt.jsonl.gz", Size: 30 << 10, MD5: "00000000000000000000000000000000"},
					{Name: "gone.jsonl.gz", Size: 10 << 10},
				}})
			good, wrongMD5, gone = fs.Files[0], fs.Files[1], fs.Files[2]
		},
		noEvents:     true,
		downloaderTO: 4 * time.Second,
		visibility:   5 * time.Second,
		extraEnv:     map[string][]string{pipeline.Downloader: {"DEADLINE_MARGIN=1s", "RANGE_ATTEMPTS=2"}},
	})
	e.waitToken()

	tests := []struct {
		fn, event string
		want      []string // the error names one of these (case-insensitive)
	}{
		{pipeline.Refresher, `not json`, []string{"json"}},
		{pipeline.Refresher, `{"action":"dance"}`, []string{`"action"`}},
		{pipeline.Refresher, `{"action":7}`, []string{`"action"`}},
		{pipeline.Refresher, `{"action":"refresh","force":"yes"}`, []string{`"force"`}},
		{pipeline.Poller, `not json`, []string{"json"}},
		{pipeline.Poller, `[1,2]`, []string{"object"}},
		{pipeline.Poller, `{"full":"yes"}`, []string{`"full"`}},
		{pipeline.Poller, `{"subscriptions":"bulk-ESG/x"}`, []string{`"subscriptions"`}},
		{pipeline.Downloader, `not json`, []string{"json"}},
		{pipeline.Downloader, `{"Records":"x"}`, []string{"records"}},
	}
	valid := map[string]string{pipeline.Refresher: `{}`, pipeline.Poller: `{"subscriptions":["bulk-ESG/` + pkgESG + `"]}`, pipeline.Downloader: `{"Records":[]}`}
	for _, tt := range tests {
		t.Run(tt.fn+" "+tt.event, func(t *testing.T) {
			before := e.pids(tt.fn)
			res := e.invoke(tt.fn, tt.event)
			if res.Err == nil {
				t.Fatalf("accepted: %s", res.Payload)
			}
			msg := strings.ToLower(res.Err.Message)
			if !slices.ContainsFunc(tt.want, func(w string) bool { return strings.Contains(msg, strings.ToLower(w)) }) {
				t.Errorf("error %q names none of %q", res.Err.Message, tt.want)
			}
			after := e.pids(tt.fn)
			if !kept(before, after) {
				t.Errorf("process replaced after a bad event: pids %v -> %v", before, after)
			}
			if res := e.invoke(tt.fn, valid[tt.fn]); res.Err != nil {
				t.Errorf("next invocation (%s) failed: %s", valid[tt.fn], res.Payload)
			}
			// A process the bad event started (init is lazy) lives on too.
			if next := e.pids(tt.fn); !kept(after, next) {
				t.Errorf("process replaced after the invocation following a bad event: pids %v -> %v", after, next)
			}
		})
	}

	t.Run("poison records fail alone", func(t *testing.T) {
		ev := events.SQSEvent{Records: []events.SQSMessage{
			{MessageId: "m-notjson", ReceiptHandle: "rh1", Body: "not json", Attributes: map[string]string{"ApproximateReceiveCount": "1"}},
			{MessageId: "m-nofileid", ReceiptHandle: "rh2", Body: `{"fileSetId":"s","bucket":"bulk-ESG","packageId":"p"}`, Attributes: map[string]string{"ApproximateReceiveCount": "1"}},
		}}
		raw, _ := json.Marshal(ev)
		n := len(e.p.Logs(pipeline.Downloader))
		res := e.invoke(pipeline.Downloader, string(raw))
		if res.Err != nil {
			t.Fatalf("a batch of poison messages failed the invocation: %s", res.Payload)
		}
		var resp events.SQSEventResponse
		if err := json.Unmarshal(res.Payload, &resp); err != nil {
			t.Fatalf("response %s: %v", res.Payload, err)
		}
		var ids []string
		for _, f := range resp.BatchItemFailures {
			ids = append(ids, f.ItemIdentifier)
		}
		if !slices.Equal(ids, []string{"m-notjson", "m-nofileid"}) {
			t.Errorf("batch item failures %v, want both messages", ids)
		}
		if logs := strings.Join(e.p.Logs(pipeline.Downloader)[n:], "\n"); !strings.Contains(logs, "fileId") {
			t.Errorf("the downloader's log does not name the missing field fileId:\n%s", logs)
		}
	})

	t.Run("poison and permanent failures end in the DLQ", func(t *testing.T) {
		ctx := context.Background()
		if res := e.invoke(pipeline.Poller, `{}`); res.Err != nil {
			t.Fatalf("poll: %s", res.Payload)
		}
		e.sim.DeleteFile(gone.ID) // queued, then gone from RDP (404)
		for _, body := range []string{"not json", `{"fileId":"","fileSetId":"s","bucket":"bulk-ESG","packageId":"p"}`} {
			if _, err := e.p.SQS.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &e.p.Res.QueueURL, MessageBody: aws.String(body)}); err != nil {
				t.Fatal(err)
			}
		}
		es := e.p.NewEventSource()
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = es.Run(runCtx); close(done) }()
		defer func() { cancel(); <-done }()

		e.waitProgress("4 messages in the DLQ", 2*time.Minute, func(pr pipeline.Progress) bool {
			return pr.DLQ == 4 && pr.Queued == 0 && pr.InFlight == 0
		})
		e.verify([]rdptest.File{good})
		for _, f := range []rdptest.File{wrongMD5, gone} {
			it, err := e.p.State.GetFile(ctx, f.ID)
			if err != nil {
				t.Fatal(err)
			}
			if it.Status != state.StatusFailed || it.Reason == "" {
				t.Errorf("%s: state %s reason %q, want FAILED with a reason", f.Name, it.Status, it.Reason)
			}
			if _, err := e.p.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &e.p.Res.Bucket, Key: aws.String(pipeline.ExpectedKey(e.p.Res.Prefix, f))}); err == nil {
				t.Errorf("%s: an object exists for a file that failed", f.Name)
			}
		}
		if st := es.Stats(); st.Redelivered == 0 {
			t.Errorf("no redeliveries before the DLQ: %+v", st)
		}
	})
}

// kept reports whether every process running in before (pid ≠ 0, per
// execution environment) is still the one running in after.
func kept(before, after []int) bool {
	if len(before) != len(after) {
		return false
	}
	for i, pid := range before {
		if pid != 0 && after[i] != pid {
			return false
		}
	}
	return true
}
