package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	stypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

const (
	itDest   = "cfsync-dest"
	itPrefix = "cfs/"
)

var itSlots = []string{"cfsync-token-1", "cfsync-token-2"}

// dlEnv is a [testenv.Function] (moto, the simulator, a token in the ring)
// with the S3 destination bucket and the download queue.
type dlEnv struct {
	*testenv.Function
	s3    *s3.Client
	queue string
}

func newDLEnv(t testing.TB, opts rdptest.Options) *dlEnv {
	t.Helper()
	f := testenv.NewFunction(t, opts, itSlots...)
	e := &dlEnv{Function: f, s3: s3.NewFromConfig(f.Config, func(o *s3.Options) {
		o.UsePathStyle = true
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})}
	if _, err := e.s3.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(itDest)}); err != nil {
		t.Fatal(err)
	}
	e.queue = e.NewQueue(t, "downloads")
	return e
}

func (e *dlEnv) writeToken(t testing.TB, slot, token string, gen int64) {
	t.Helper()
	testenv.WriteSlot(t, e.SM, slot, token, e.Sim.Options().AccessTokenTTL, gen)
}

func itSettings() Settings {
	// config.Downloader's defaults, changed for quick tests.
	s := Settings{DownloaderKnobs: config.Defaults[config.Downloader]().DownloaderKnobs}
	s.DestBucket, s.DestPrefix, s.PartSize, s.ParallelRanges = itDest, itPrefix, 5*MiB, 4
	s.MessageConcurrency, s.DeadlineMargin, s.RangeReadTimeout, s.RangeAttempts = 4, time.Second, time.Second, 4
	s.RetryBaseDelay, s.RetryMaxDelay, s.CheckpointInterval = 20*time.Millisecond, 200*time.Millisecond, time.Second
	s.SinglePutMax = 0 // multipart, as these tests were written for; the single-PUT tests turn it on
	return s
}

// handler is the downloader in-process on real SDK clients, the real token
// ring reader and the real RDP client.
func (e *dlEnv) handler(t testing.TB, mod func(*Settings)) (*Handler, *syncBuffer, *syncBuffer) {
	t.Helper()
	s := itSettings()
	if mod != nil {
		mod(&s)
	}
	client := e.RDPClient(t, "",
		withDownloadTransport(s.DownloaderKnobs),
		rdp.WithRetryPolicy(rdp.RetryPolicy{MaxAttempts: 3, BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond, MaxRetryAfter: 2 * time.Second}))
	logs, emf := &syncBuffer{}, &syncBuffer{}
	h := newTestHandler(t, Deps{S3: e.s3, RDP: client, State: e.Table, Sender: &queue.Sender{SQS: e.SQS, QueueURL: e.queue}}, s, logs, emf)
	return h, logs, emf
}

// addFile publishes a file-set with one file and returns the file.
func (e *dlEnv) addFile(name string, size int64) rdptest.File {
	fs := e.Sim.AddFileSet(rdptest.FileSetSpec{Bucket: rdptest.DefaultBucket, PackageID: rdptest.DefaultPackageID, Name: "set " + name,
		Files: []rdptest.FileSpec{{Name: name, Size: size}}})
	return fs.Files[0]
}

// itMsg is the poller's message for f: with the listing's name and size.
func itMsg(f rdptest.File) queue.Message {
	m := itOldMsg(f)
	m.FileName, m.Size = f.Name, &f.Size
	return m
}

// itOldMsg is a message of the first format (no name, no size).
func itOldMsg(f rdptest.File) queue.Message {
	return queue.Message{FileID: f.ID, FileSetID: f.FileSetID, FileSetName: f.FileSetName, Bucket: f.Bucket, PackageID: f.PackageID}
}

func itKey(f rdptest.File) string {
	return itPrefix + f.Bucket + "/" + f.PackageID + "/" + f.FileSetID + "/" + f.DestName()
}

func sqsEvent(msgs ...queue.Message) events.SQSEvent {
	var bodies []string
	for _, m := range msgs {
		bodies = append(bodies, m.Encode())
	}
	return event(bodies...)
}

// checkLanded streams the object back and compares it with the simulator's
// content (by md5, without holding either), and checks metadata and state.
func (e *dlEnv) checkLanded(t *testing.T, f rdptest.File) {
	t.Helper()
	ctx := context.Background()
	out, err := e.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(itDest), Key: aws.String(itKey(f))})
	if err != nil {
		t.Fatalf("get %s: %v", itKey(f), err)
	}
	defer out.Body.Close()
	h := md5.New()
	n, err := io.Copy(h, out.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := rdptest.ContentMD5(f.ID, f.Size); n != f.Size || hex.EncodeToString(h.Sum(nil)) != want {
		t.Fatalf("object %s: %d bytes md5 %x, want %d bytes md5 %s", itKey(f), n, h.Sum(nil), f.Size, want)
	}
	want := map[string]string{"cfs-file-id": f.ID, "cfs-fileset-id": f.FileSetID, "cfs-package-id": f.PackageID, "cfs-bucket": f.Bucket, "cfs-size": strconv.FormatInt(f.Size, 10)}
	for k, v := range want {
		if out.Metadata[k] != v {
			t.Errorf("metadata %s = %q, want %q (all: %v)", k, out.Metadata[k], v, out.Metadata)
		}
	}
	st, err := e.Table.GetFile(ctx, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != state.StatusDone || st.Key != itKey(f) || st.Size != f.Size || st.ETag != aws.ToString(out.ETag) {
		t.Errorf("state %+v, want DONE with key, size and the object's ETag %s", st, aws.ToString(out.ETag))
	}
	if _, err := e.Table.GetUpload(ctx, f.ID); err == nil {
		t.Error("checkpoint item left behind")
	}
}

func (e *dlEnv) openUploads(t *testing.T) int {
	t.Helper()
	out, err := e.s3.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(itDest)})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Uploads)
}

func (e *dlEnv) objectCount(t *testing.T, prefix string) int {
	t.Helper()
	out, err := e.s3.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(itDest), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Contents)
}

func noSecrets(t *testing.T, e *dlEnv, logs string) {
	t.Helper()
	for _, s := range []string{"X-Amz-Signature", "X-Amz-Security-Token", "X-Amz-Credential", e.Token} {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain %q", s)
		}
	}
	if n := e.Sim.Counters().AuthHeaderOnS3; n != 0 {
		t.Errorf("%d presigned requests carried an Authorization header", n)
	}
}

// TestIntegrationLands: small and multipart files land byte-identical with
// the docs/design.md#output-layout key and metadata; duplicates download nothing twice.
func TestIntegrationLands(t *testing.T) {
	e := newDLEnv(t, rdptest.Options{})
	ctx := context.Background()
	h, logs, emf := e.handler(t, nil)
	small := e.addFile("ESG Scores 2024-01-02T03:04:05Z part 1.csv.gz", 1*MiB+3)
	multi := e.addFile("ESG Scores multi:part.jsonl.gz", 23*MiB) // 5 parts, the last 3 MiB

	before := e.Sim.Counters()
	resp, _ := h.Handle(ctx, sqsEvent(itMsg(small), itMsg(multi)))
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("failures %v\n%s", failedIDs(resp), logs.String())
	}
	e.checkLanded(t, small)
	e.checkLanded(t, multi)
	if !strings.Contains(itKey(multi), "multi_part.jsonl.gz") {
		t.Errorf("key %s: ':' not replaced", itKey(multi))
	}
	c := e.Sim.Counters()
	if got := c.RangeRequests - before.RangeRequests; got != 1+5 {
		t.Errorf("%d range requests, want 6 (1 + 5 parts)", got)
	}
	if e.openUploads(t) != 0 {
		t.Error("open multipart uploads")
	}
	if got := metric(t, emf.String(), "FilesDownloaded"); got != 2 {
		t.Errorf("FilesDownloaded %v, want 2", got)
	}
	if got := metric(t, emf.String(), "BytesDownloaded"); got != float64(small.Size+multi.Size) {
		t.Errorf("BytesDownloaded %v, want %d", got, small.Size+multi.Size)
	}
	if strings.Count(logs.String(), `"md5_verified":true`) != 2 {
		t.Error("md5 not verified for both files")
	}
	noSecrets(t, e, logs.String())

	t.Run("a message without size (first format): size from Content-Range", func(t *testing.T) {
		f := e.addFile("old format.bin", 12*MiB)
		before := e.Sim.Counters()
		resp, _ := h.Handle(ctx, sqsEvent(itOldMsg(f)))
		if len(resp.BatchItemFailures) != 0 {
			t.Fatalf("failures %v\n%s", failedIDs(resp), logs.String())
		}
		e.checkLanded(t, f)
		if got := e.Sim.Counters().RangeRequests - before.RangeRequests; got != 1+3 {
			t.Errorf("%d range requests, want 4 (a one-byte probe + 3 parts)", got)
		}
	})
	t.Run("redelivery of a DONE file downloads nothing", func(t *testing.T) {
		before := e.Sim.Counters()
		resp, _ := h.Handle(ctx, sqsEvent(itMsg(multi)))
		if len(resp.BatchItemFailures) != 0 {
			t.Fatal("redelivery failed")
		}
		c := e.Sim.Counters()
		if c.RangeRequests != before.RangeRequests || c.StreamURLs != before.StreamURLs {
			t.Errorf("redelivery made %d range requests and %d /stream calls", c.RangeRequests-before.RangeRequests, c.StreamURLs-before.StreamURLs)
		}
		if n := e.objectCount(t, itKey(multi)); n != 1 {
			t.Errorf("%d objects", n)
		}
	})
	t.Run("duplicate delivery in one batch: one object, one download", func(t *testing.T) {
		// One message at a time: moto_server serves requests on threads
		// without making DynamoDB's conditional writes atomic, so two
		// concurrent lease takers can both win there (never in DynamoDB).
		// Concurrent duplicates are covered with the atomic fake in
		// handler_test.go ("duplicate delivery in one batch").
		h, logs, _ := e.handler(t, func(s *Settings) { s.MessageConcurrency = 1 })
		f := e.addFile("dup.bin", 12*MiB)
		before := e.Sim.Counters()
		resp, _ := h.Handle(ctx, sqsEvent(itMsg(f), itMsg(f)))
		if len(resp.BatchItemFailures) != 0 {
			t.Fatalf("failures %v\n%s", failedIDs(resp), logs.String())
		}
		e.checkLanded(t, f)
		if got := e.Sim.Counters().RangeRequests - before.RangeRequests; got != 3 {
			t.Errorf("%d range requests, want 3 (one download)", got)
		}
		if n := e.objectCount(t, itKey(f)); n != 1 {
			t.Errorf("%d objects", n)
		}
	})
	t.Run("state lost, object present: no second download", func(t *testing.T) {
		if _, err := e.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(testenv.FunctionTable), Key: map[string]dtypes.AttributeValue{
			"pk": &dtypes.AttributeValueMemberS{Value: state.FilePK(small.ID)}, "sk": &dtypes.AttributeValueMemberS{Value: state.SKFile}}}); err != nil {
			t.Fatal(err)
		}
		before := e.Sim.Counters()
		resp, _ := h.Handle(ctx, sqsEvent(itMsg(small)))
		if len(resp.BatchItemFailures) != 0 {
			t.Fatal("failed")
		}
		if got := e.Sim.Counters().RangeRequests - before.RangeRequests; got != 0 {
			t.Errorf("%d range requests for a file already in S3", got)
		}
		e.checkLanded(t, small)
	})
}

// TestIntegrationFaults: every simulator fault kind still lands the file
// byte-identical, once; permanent ones fail it with no upload left open.
func TestIntegrationFaults(t *testing.T) {
	e := newDLEnv(t, rdptest.Options{})
	ctx := context.Background()
	h, logs, emf := e.handler(t, nil)
	// Warm the reader's cache with generation 1 (the 401 cases rely on it).
	warm := e.addFile("warm.bin", 1000)
	if resp, _ := h.Handle(ctx, sqsEvent(itMsg(warm))); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("warm-up failed:\n%s", logs.String())
	}
	const size = 11 * MiB // parts of 5, 5 and 1 MiB
	tests := []struct {
		name   string
		fault  func(f rdptest.File) rdptest.Fault
		before func(t *testing.T) // e.g. a newer token in the ring
		kind   string             // Retries{kind} expected (≥ 1), "" for none
		defer_ string             // state reason prefix when the work must be deferred
	}{
		// Twice: Go's transport silently retries a GET once when a reused
		// connection is reset; the second reset reaches the downloader.
		{name: "connection reset", kind: kindReset, fault: func(f rdptest.File) rdptest.Fault {
			return rdptest.Fault{Kind: rdptest.FaultReset, FileID: f.ID, Times: 2}
		}},
		{name: "truncated body", kind: kindTruncated, fault: func(f rdptest.File) rdptest.Fault {
			return rdptest.Fault{Kind: rdptest.FaultTruncate, FileID: f.ID}
		}},
		{name: "stall", kind: kindStall, fault: func(f rdptest.File) rdptest.Fault {
			return rdptest.Fault{Kind: rdptest.FaultStall, FileID: f.ID, After: 1000}
		}},
		{name: "expired URL (403)", kind: kindURLExpired, fault: func(f rdptest.File) rdptest.Fault {
			return rdptest.Fault{Kind: rdptest.FaultExpiredURL, FileID: f.ID}
		}},
		{name: "access denied on the URL (403)", kind: kindURLExpired, fault: func(f rdptest.File) rdptest.Fault {
			return rdptest.Fault{Kind: rdptest.FaultUnauthorized, Host: rdptest.HostS3, FileID: f.ID}
		}},
		{name: "/stream hands out an expired URL", kind: kindURLExpired, fault: func(f rdptest.File) rdptest.Fault {
			return rdptest.Fault{Kind: rdptest.FaultExpiredURL, Host: rdptest.HostAPI, PathPrefix: "/file-store/v1/files/" + f.ID + "/stream"}
		}},
		{name: "429 SlowDown", kind: kindThrottle, fault: func(f rdptest.File) rdptest.Fault {
			return rdptest.Fault{Kind: rdptest.FaultTooManyRequests, FileID: f.ID, RetryAfter: time.Second}
		}},
		{name: "500", kind: kindServer, fault: func(f rdptest.File) rdptest.Fault {
			return rdptest.Fault{Kind: rdptest.FaultServerError, FileID: f.ID}
		}},
		{name: "503 SlowDown", kind: kindThrottle, fault: func(f rdptest.File) rdptest.Fault {
			return rdptest.Fault{Kind: rdptest.FaultUnavailable, FileID: f.ID}
		}},
		{name: "500 on /stream (client retry)", fault: func(f rdptest.File) rdptest.Fault {
			return rdptest.Fault{Kind: rdptest.FaultServerError, Host: rdptest.HostAPI, PathPrefix: "/file-store/v1/files/" + f.ID + "/stream"}
		}},
		{name: "401 on /stream, newer token in the ring", fault: func(f rdptest.File) rdptest.Fault {
			return rdptest.Fault{Kind: rdptest.FaultUnauthorized, Host: rdptest.HostAPI, PathPrefix: "/file-store/v1/files/" + f.ID + "/stream"}
		}, before: func(t *testing.T) {
			e.writeToken(t, itSlots[1], e.Sim.IssueServiceToken(rdptest.DefaultServiceID), 2)
		}},
		{name: "401 on /stream, nothing newer: reported, deferred", defer_: "deferred (unauthorized)", fault: func(f rdptest.File) rdptest.Fault {
			return rdptest.Fault{Kind: rdptest.FaultUnauthorized, Host: rdptest.HostAPI, PathPrefix: "/file-store/v1/files/" + f.ID + "/stream", Times: 2}
		}},
		{name: "500 on every range: deferred, upload kept", defer_: "deferred (rdp-unavailable)", fault: func(f rdptest.File) rdptest.Fault {
			return rdptest.Fault{Kind: rdptest.FaultServerError, FileID: f.ID, Times: -1}
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := e.addFile(fmt.Sprintf("fault %02d.bin", i), size)
			if tt.before != nil {
				tt.before(t)
			}
			e.Sim.Inject(tt.fault(f))
			defer e.Sim.ClearFaults()
			fired := e.Sim.Counters().FaultsFired
			emfBefore := emf.String()
			resp, _ := h.Handle(ctx, sqsEvent(itMsg(f)))
			if e.Sim.Counters().FaultsFired == fired {
				t.Fatal("the fault did not fire")
			}
			if tt.defer_ != "" {
				if len(resp.BatchItemFailures) != 0 {
					t.Fatalf("the message must succeed (work deferred); failures %v", failedIDs(resp))
				}
				st, err := e.Table.GetFile(ctx, f.ID)
				if err != nil || st.Status != state.StatusDownloading || !strings.HasPrefix(st.Reason, tt.defer_) {
					t.Errorf("state %+v (%v), want DOWNLOADING %q…", st, err, tt.defer_)
				}
				if !strings.Contains(logs.String(), "work re-enqueued with a delay") || e.objectCount(t, itKey(f)) != 0 {
					t.Error("no deferral logged, or an object written")
				}
				attrs, err := e.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &e.queue,
					AttributeNames: []stypes.QueueAttributeName{stypes.QueueAttributeNameApproximateNumberOfMessagesDelayed}})
				if n, _ := strconv.Atoi(attrs.Attributes[string(stypes.QueueAttributeNameApproximateNumberOfMessagesDelayed)]); err != nil || n < 1 {
					t.Errorf("no delayed message on the queue: %v %v", attrs, err)
				}
				return
			}
			if e.openUploads(t) != 0 {
				t.Error("multipart upload left open")
			}
			if len(resp.BatchItemFailures) != 0 {
				t.Fatalf("failed:\n%s", logs.String())
			}
			e.checkLanded(t, f)
			if n := e.objectCount(t, itKey(f)); n != 1 {
				t.Errorf("%d objects", n)
			}
			if tt.kind != "" {
				if got := metric(t, strings.TrimPrefix(emf.String(), emfBefore), "Retries", "kind", tt.kind); got < 1 {
					t.Errorf("Retries{kind=%s} = %v; metrics:\n%s", tt.kind, got, strings.TrimPrefix(emf.String(), emfBefore))
				}
			}
		})
	}
	t.Run("the unauthorized case left a token-invalid report", func(t *testing.T) {
		if _, err := e.Table.GetTokenReport(ctx, 2); err != nil {
			t.Errorf("no report for generation 2: %v", err)
		}
	})
	t.Run("file gone (404): fails, FAILED gone", func(t *testing.T) {
		f := e.addFile("gone.bin", size)
		e.Sim.DeleteFile(f.ID)
		resp, _ := h.Handle(ctx, sqsEvent(itMsg(f)))
		if len(resp.BatchItemFailures) != 1 {
			t.Fatal("the message must fail")
		}
		if st, _ := e.Table.GetFile(ctx, f.ID); st == nil || !strings.HasPrefix(st.Reason, "gone:") {
			t.Errorf("state %+v", st)
		}
	})
	noSecrets(t, e, logs.String())
}

// TestIntegrationContinuation: a deadline mid-file checkpoints to DynamoDB and
// enqueues a continuation on SQS; the continuation completes the file.
func TestIntegrationContinuation(t *testing.T) {
	e := newDLEnv(t, rdptest.Options{BandwidthPerConn: 5 << 20}) // 1 s per 5 MiB part
	ctx := context.Background()
	h, logs, _ := e.handler(t, func(s *Settings) { s.ParallelRanges = 2; s.RangeReadTimeout = 5 * time.Second })
	f := e.addFile("long.bin", 30*MiB) // six parts; two at a time
	dctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer cancel()
	resp, _ := h.Handle(dctx, sqsEvent(itMsg(f)))
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("first invocation failed:\n%s", logs.String())
	}
	up, err := e.Table.GetUpload(ctx, f.ID)
	if err != nil || up.UploadID == "" || up.PartsDone == 0 || up.PartsDone >= 6 || up.Owner != "" {
		t.Fatalf("checkpoint %+v (%v): want an upload with 1..5 parts and a released lease", up, err)
	}
	if e.openUploads(t) != 1 || e.objectCount(t, itKey(f)) != 0 {
		t.Fatal("want one open upload and no object yet")
	}
	out, err := e.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &e.queue, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("continuation messages: %d (%v)", len(out.Messages), err)
	}
	want := itMsg(f)
	want.Seq = 1
	if m, err := queue.Decode(aws.ToString(out.Messages[0].Body)); err != nil || m.Encode() != want.Encode() {
		t.Fatalf("continuation %q is not the same message", aws.ToString(out.Messages[0].Body))
	}
	first := e.Sim.Counters().RangeRequests
	resp, _ = h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: aws.ToString(out.Messages[0].MessageId), Body: aws.ToString(out.Messages[0].Body)}}})
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("continuation failed:\n%s", logs.String())
	}
	e.checkLanded(t, f)
	if e.openUploads(t) != 0 {
		t.Error("open uploads after completion")
	}
	if !strings.Contains(logs.String(), `"md5_verified":true`) {
		t.Error("md5 not verified across the two invocations")
	}
	if got := e.Sim.Counters().RangeRequests - first; got != 6-up.PartsDone {
		t.Errorf("the continuation made %d range requests for the %d parts not checkpointed", got, 6-up.PartsDone)
	}
}

// TestIntegrationPoisonToDLQ acts as the SQS event source (receive, invoke,
// delete successes) over a queue with a redrive policy: a poison message and
// a vanished file reach the DLQ after maxReceiveCount; the good file lands.
func TestIntegrationPoisonToDLQ(t *testing.T) {
	e := newDLEnv(t, rdptest.Options{})
	ctx := context.Background()
	h, logs, _ := e.handler(t, nil)
	dlq, err := e.SQS.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("downloads-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := e.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl, AttributeNames: []stypes.QueueAttributeName{stypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	const maxReceive = 2
	redrive, _ := json.Marshal(map[string]string{"deadLetterTargetArn": attrs.Attributes["QueueArn"], "maxReceiveCount": strconv.Itoa(maxReceive)})
	src, err := e.SQS.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("downloads-src"), Attributes: map[string]string{"RedrivePolicy": string(redrive), "VisibilityTimeout": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	good := e.addFile("good.bin", 6*MiB)
	gone := e.addFile("gone.bin", 6*MiB)
	e.Sim.DeleteFile(gone.ID)
	poison := `{"fileId":"x","bucket":"b","packageId":"p"}`
	for _, body := range []string{poison, itMsg(good).Encode(), itMsg(gone).Encode()} {
		if _, err := e.SQS.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: src.QueueUrl, MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	invocations := 0
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out, err := e.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: src.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			MessageSystemAttributeNames: []stypes.MessageSystemAttributeName{stypes.MessageSystemAttributeNameAll}})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			a, err := e.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: src.QueueUrl, AttributeNames: []stypes.QueueAttributeName{stypes.QueueAttributeNameAll}})
			if err != nil {
				t.Fatal(err)
			}
			if a.Attributes["ApproximateNumberOfMessages"] == "0" && a.Attributes["ApproximateNumberOfMessagesNotVisible"] == "0" {
				break
			}
			continue
		}
		var evt events.SQSEvent
		handles := map[string]*string{}
		for _, m := range out.Messages {
			evt.Records = append(evt.Records, events.SQSMessage{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body), Attributes: m.Attributes})
			handles[aws.ToString(m.MessageId)] = m.ReceiptHandle
		}
		resp, err := h.Handle(ctx, evt)
		invocations++
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range resp.BatchItemFailures {
			delete(handles, f.ItemIdentifier)
		}
		for _, rh := range handles {
			if _, err := e.SQS.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: src.QueueUrl, ReceiptHandle: rh}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var inDLQ []string
	for range 3 {
		out, err := e.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: dlq.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			inDLQ = append(inDLQ, aws.ToString(m.Body))
		}
		if len(inDLQ) >= 2 {
			break
		}
	}
	if len(inDLQ) != 2 || !containsStr(inDLQ, poison) || !containsStr(inDLQ, itMsg(gone).Encode()) {
		t.Fatalf("DLQ holds %q, want the poison message and the vanished file's (after %d invocations)", inDLQ, invocations)
	}
	if invocations < maxReceive {
		t.Errorf("%d invocations: messages reached the DLQ before maxReceiveCount", invocations)
	}
	e.checkLanded(t, good)
	if st, _ := e.Table.GetFile(ctx, gone.ID); st == nil || st.Status != state.StatusFailed || !strings.HasPrefix(st.Reason, "gone:") {
		t.Errorf("vanished file state %+v, want FAILED gone", st)
	}
	if e.openUploads(t) != 0 {
		t.Error("open multipart uploads")
	}
	if !strings.Contains(logs.String(), `\"fileSetId\" is required`) {
		t.Error("the poison message's error does not name the field")
	}
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
