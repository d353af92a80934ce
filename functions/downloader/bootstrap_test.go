package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cfsync/cfsync/internal/lambdarun"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// bootstrapEnv is the environment of the built bootstrap for e.
func (e *dlEnv) bootstrapEnv(extra ...string) []string {
	env := append(e.Moto.AWSEnv(),
		"STATE_TABLE="+testenv.FunctionTable,
		"TOKEN_SECRET_IDS="+strings.Join(itSlots, ","),
		"DOWNLOAD_QUEUE_URL="+e.queue,
		"DEST_BUCKET="+itDest,
		"DEST_PREFIX="+itPrefix,
		"RDP_BASE_URL="+e.Sim.URL(),
		"LOG_LEVEL=debug",
	)
	return append(env, extra...)
}

// TestBootstrap runs the BUILT bootstrap under the Lambda Runtime API
// (internal/lambdarun): a batch with a poison message, a small file and a
// file too long for one 6-second invocation (capped at 2 MiB/s a range); the poison message alone fails,
// the small file lands, the long one is checkpointed and its continuation
// messages (received from SQS and invoked like the event source would)
// complete it.
func TestBootstrap(t *testing.T) {
	e := newDLEnv(t, rdptest.Options{BandwidthPerConn: 2 << 20})
	ctx := context.Background()
	bin, err := lambdarun.BuildFunction(ctx, ".", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, err := lambdarun.Start(ctx, lambdarun.Options{Binary: bin, Timeout: 6 * time.Second, MemoryMB: 256, Env: e.bootstrapEnv(
		// A margin of 1.5 s (¼ of the time left) leaves the checkpoint and the
		// continuation room against a loaded moto_server.
		"PART_SIZE=5242880", "PARALLEL_RANGES=2", "DEADLINE_MARGIN=2s", "RANGE_READ_TIMEOUT=3s", "RETRY_BASE_DELAY=50ms", "CHECKPOINT_INTERVAL=1s",
	)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	small := e.addFile("small one.csv", MiB)
	long := e.addFile("long:one.bin", 30*MiB)
	evt := sqsEvent(itMsg(long), itMsg(small))
	evt.Records = append([]events.SQSMessage{{MessageId: "poison", Body: `{"fileId":`}}, evt.Records...)
	invoke := func(evt events.SQSEvent) events.SQSEventResponse {
		t.Helper()
		payload, _ := json.Marshal(evt)
		res, err := r.Invoke(ctx, payload)
		if err != nil {
			t.Fatal(err)
		}
		if res.Err != nil {
			t.Fatalf("invocation failed: %v\n%s", res.Err, strings.Join(r.Logs(), "\n"))
		}
		var resp events.SQSEventResponse
		if err := json.Unmarshal(res.Payload, &resp); err != nil {
			t.Fatalf("response %s: %v", res.Payload, err)
		}
		return resp
	}
	// A malformed event is an error naming the problem, of errorType
	// MalformedEvent; the process lives on.
	res, err := r.Invoke(ctx, []byte("not json"))
	if err != nil || res.Err == nil || !strings.Contains(res.Err.Message, "not valid JSON") || res.Err.Type != "MalformedEvent" {
		t.Fatalf("malformed event: %v %+v", err, res.Err)
	}
	pid := r.PID() // the process that got the malformed event (init is lazy)
	if pid == 0 {
		t.Fatal("no process after the malformed event")
	}
	resp := invoke(evt)
	if r.PID() != pid {
		t.Error("the process was replaced after a malformed event")
	}
	if got := failedIDs(resp); len(got) != 1 || got[0] != "poison" {
		t.Fatalf("failed messages %v, want only the poison one\n%s", got, strings.Join(r.Logs(), "\n"))
	}
	e.checkLanded(t, small)
	if up, err := e.Table.GetUpload(ctx, long.ID); err != nil || up.PartsDone == 0 {
		t.Fatalf("long file: checkpoint %+v (%v), want progress saved", up, err)
	}
	invocations := 1
	for ; invocations < 6; invocations++ {
		out, err := e.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &e.queue, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			break
		}
		if len(out.Messages) != 1 {
			t.Fatalf("%d continuation messages at once, want 1", len(out.Messages))
		}
		m := out.Messages[0]
		if resp := invoke(events.SQSEvent{Records: []events.SQSMessage{{MessageId: aws.ToString(m.MessageId), Body: aws.ToString(m.Body)}}}); len(resp.BatchItemFailures) != 0 {
			t.Fatalf("continuation failed\n%s", strings.Join(r.Logs(), "\n"))
		}
		if _, err := e.SQS.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &e.queue, ReceiptHandle: m.ReceiptHandle}); err != nil {
			t.Fatal(err)
		}
	}
	e.checkLanded(t, long)
	if invocations < 2 {
		t.Errorf("the long file landed in %d invocation(s): the deadline path was not exercised", invocations)
	}
	if e.openUploads(t) != 0 {
		t.Error("open multipart uploads")
	}
	logs := strings.Join(r.Logs(), "\n")
	for _, want := range []string{"continuation enqueued", `"FilesDownloaded"`, `"md5_verified":true`, "bad message"} {
		if !strings.Contains(logs, want) {
			t.Errorf("bootstrap logs lack %q", want)
		}
	}
	noSecrets(t, e, logs)
	if testing.Verbose() {
		t.Log(logs)
	}
}
