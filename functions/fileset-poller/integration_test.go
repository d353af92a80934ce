package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	stypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/cfsync/cfsync/internal/lambdarun"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

const (
	itSlot   = "cfsync-token-1"
	itBucket = rdptest.DefaultBucket
	itPage   = 20 // small pages so that 60 file-sets span 3
)

// itEnv is a [testenv.Function] (moto, the simulator, a token in the ring)
// that makes numbered download queues.
type itEnv struct {
	*testenv.Function
	queues int
}

func newITEnv(t testing.TB, opts rdptest.Options) *itEnv {
	t.Helper()
	return &itEnv{Function: testenv.NewFunction(t, opts, itSlot)}
}

func (e *itEnv) newQueue(t testing.TB) string {
	t.Helper()
	e.queues++
	return e.NewQueue(t, fmt.Sprintf("downloads-%d", e.queues))
}

// handler builds the poller in-process on real SDK clients. sqsAPI may wrap
// the real client; baseURL "" means the simulator.
func (e *itEnv) handler(t testing.TB, queueURL string, sqsAPI queue.SQS, baseURL string, subs ...string) (*Handler, *bytes.Buffer) {
	t.Helper()
	client := e.RDPClient(t, baseURL,
		rdp.WithRetryPolicy(rdp.RetryPolicy{MaxAttempts: 2, BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond, MaxRetryAfter: time.Second}))
	if sqsAPI == nil {
		sqsAPI = e.SQS
	}
	logs := &bytes.Buffer{}
	s := testSettings(subs...)
	s.PollPageSize = itPage
	h, err := newLogged(Deps{Files: client, State: e.Table, Queue: &queue.Sender{SQS: sqsAPI, QueueURL: queueURL}}, s, logs, logs)
	if err != nil {
		t.Fatal(err)
	}
	return h, logs
}

// drain receives and deletes every message of the queue, counting them by file id.
func (e *itEnv) drain(t testing.TB, queueURL string) map[string]int {
	t.Helper()
	ctx := context.Background()
	counts := map[string]int{}
	for empty := 0; empty < 2; {
		out, err := e.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &queueURL, MaxNumberOfMessages: 10, VisibilityTimeout: 120})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			empty++
			continue
		}
		var del []stypes.DeleteMessageBatchRequestEntry
		for i, m := range out.Messages {
			msg, err := queue.Decode(aws.ToString(m.Body))
			if err != nil {
				t.Fatalf("bad message %q: %v", aws.ToString(m.Body), err)
			}
			counts[msg.FileID]++
			del = append(del, stypes.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
		}
		if _, err := e.SQS.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &queueURL, Entries: del}); err != nil {
			t.Fatal(err)
		}
	}
	return counts
}

// filesOf returns the file ids of the simulator's READY file-sets of a package.
// filesOf lists a package's files in the order the poller meets them: RDP
// lists file-sets in ascending id order (files keep their order inside one).
func (e *itEnv) filesOf(pkg string) []string {
	var files []rdptest.File
	for _, f := range e.Sim.GroundTruth() {
		if f.PackageID == pkg {
			files = append(files, f)
		}
	}
	slices.SortStableFunc(files, func(a, b rdptest.File) int { return strings.Compare(a.FileSetID, b.FileSetID) })
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.ID
	}
	return out
}

func wantExactlyOnce(t *testing.T, got map[string]int, want []string) {
	t.Helper()
	for _, id := range want {
		if got[id] != 1 {
			t.Errorf("file %s received %d times, want 1", id, got[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("received %d distinct files, want %d", len(got), len(want))
	}
}

func (e *itEnv) fileSetRequests() int { return e.Sim.Counters().Requests[rdptest.EPFileSets] }

func TestIntegration(t *testing.T) {
	e := newITEnv(t, rdptest.Options{})
	ctx := context.Background()

	t.Run("every file once, incremental, new, repeated item", func(t *testing.T) {
		q := e.newQueue(t)
		h, logs := e.handler(t, q, nil, "", itBucket+"/p-main", itBucket+"/p-repeat")
		e.Sim.AddFileSets(itBucket, "p-main", 60, 2, 1000)
		// p-repeat: 30 file-sets over 2 pages, the second starting with the first's last item.
		e.Sim.AddFileSets(itBucket, "p-repeat", 30, 1, 10)
		e.Sim.Inject(rdptest.Fault{Kind: rdptest.FaultRepeatItem})

		before := e.fileSetRequests()
		res, err := h.Handle(ctx, json.RawMessage(`{}`))
		if err != nil {
			t.Fatalf("first poll: %v", err)
		}
		if got := e.fileSetRequests() - before; got != 5 || res.PagesFetched != 5 {
			t.Errorf("first poll fetched %d pages (result %d), want 3 + 2", got, res.PagesFetched)
		}
		if e.Sim.Counters().FaultsFired == 0 {
			t.Fatal("the repeat-item fault did not fire")
		}
		wantExactlyOnce(t, e.drain(t, q), append(e.filesOf("p-main"), e.filesOf("p-repeat")...))
		if res.FilesQueued != 150 || res.FileSetsSeen != 90 {
			t.Errorf("result %+v, want 150 files of 90 file-sets", res)
		}
		if strings.Contains(logs.String(), e.Token) {
			t.Fatal("a token appears in the logs")
		}

		// Nothing new: nothing queued.
		res, err = h.Handle(ctx, json.RawMessage(`{}`))
		if err != nil {
			t.Fatalf("second poll: %v", err)
		}
		if got := e.drain(t, q); len(got) != 0 || res.FilesQueued != 0 {
			t.Errorf("second poll queued %d (received %d), want 0", res.FilesQueued, len(got))
		}
		if res.Packages[0].Full || res.Packages[0].ModifiedSince.IsZero() {
			t.Errorf("second poll %+v: want incremental with modifiedSince", res.Packages[0])
		}

		// Five new file-sets: exactly their files.
		added := e.Sim.AddFileSets(itBucket, "p-main", 5, 2, 1000)
		var want []string
		for _, fs := range added {
			for _, f := range fs.Files {
				want = append(want, f.ID)
			}
		}
		res, err = h.Handle(ctx, json.RawMessage(`{"subscriptions":["bulk-ESG/p-main"]}`))
		if err != nil {
			t.Fatalf("third poll: %v", err)
		}
		wantExactlyOnce(t, e.drain(t, q), want)
		if res.FilesQueued != 10 || len(res.Packages) != 1 {
			t.Errorf("third poll %+v, want 10 files of bulk-ESG/p-main only", res)
		}
		// State: QUEUED with the file-set's data and a TTL after availableTo.
		it, err := e.Table.GetFile(ctx, want[0])
		if err != nil {
			t.Fatal(err)
		}
		if it.Status != state.StatusQueued || it.FileSetID != added[0].ID || it.PackageID != "p-main" ||
			!it.AvailableTo.Equal(added[0].AvailableTo.Truncate(time.Millisecond)) || // the API sends milliseconds
			it.TTL != added[0].AvailableTo.Add(testSettings().FileTTLMargin).Unix() {
			t.Errorf("file item %+v", it)
		}
	})

	t.Run("crash between claim and send", func(t *testing.T) {
		q := e.newQueue(t)
		h, _ := e.handler(t, q, nil, "", itBucket+"/p-crash")
		e.Sim.AddFileSets(itBucket, "p-crash", 3, 2, 10)
		h.AfterClaim = func(context.Context, Target, []queue.Message) error { return errors.New("injected crash") }
		if _, err := h.Handle(ctx, json.RawMessage(`{}`)); err == nil || !strings.Contains(err.Error(), "injected crash") {
			t.Fatalf("crashing poll error = %v", err)
		}
		if got := e.drain(t, q); len(got) != 0 {
			t.Fatalf("%d messages sent despite the crash", len(got))
		}
		for _, id := range e.filesOf("p-crash") {
			if it, err := e.Table.GetFile(ctx, id); err != nil || it.Status != state.StatusClaimed {
				t.Fatalf("file %s after the crash: %+v, %v; want CLAIMED", id, it, err)
			}
		}
		h.AfterClaim = nil
		if _, err := h.Handle(ctx, json.RawMessage(`{}`)); err != nil {
			t.Fatalf("poll after the crash: %v", err)
		}
		wantExactlyOnce(t, e.drain(t, q), e.filesOf("p-crash"))
	})

	t.Run("lost messages are swept, once, lease and DONE respected", func(t *testing.T) {
		// Its own state table: the sweep covers every file of a table.
		testenv.StateTable(t, e.DB, "state-sweep")
		var skew atomic.Int64 // how far the poller's and the table's clocks run ahead
		clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		ops := &dbOps{}
		st := state.New(ops.client(e.Config), "state-sweep")
		st.Now = clock
		q := e.newQueue(t)
		h, _ := e.handler(t, q, nil, "", itBucket+"/p-sweep")
		h.State, h.Now = st, clock
		e.Sim.AddFileSets(itBucket, "p-sweep", 1, 3, 10)
		files := e.filesOf("p-sweep")
		if _, err := h.Handle(ctx, json.RawMessage(`{}`)); err != nil {
			t.Fatal(err)
		}
		wantExactlyOnce(t, e.drain(t, q), files) // ... and the messages are lost
		if err := st.MarkDone(ctx, files[0], 10, "k", "e"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.AcquireUpload(ctx, files[1], "downloader-1", clock().Add(9*time.Hour)); err != nil {
			t.Fatal(err)
		}
		skew.Store(int64(7 * time.Hour)) // past STUCK_AFTER (6h)
		for range 2 {                    // the second poll finds nothing stale
			if _, err := h.Handle(ctx, json.RawMessage(`{}`)); err != nil {
				t.Fatal(err)
			}
		}
		wantExactlyOnce(t, e.drain(t, q), files[2:])
		if it, err := st.GetFile(ctx, files[2]); err != nil || it.Status != state.StatusQueued || it.Resends != 1 {
			t.Errorf("swept file %+v, %v; want QUEUED after 1 resend", it, err)
		}
		// template.yaml grants the poller exactly these on the state table.
		allowed := []string{"GetItem", "BatchGetItem", "PutItem", "UpdateItem", "Query " + state.NonFinalIndex}
		if !slices.Contains(ops.seen(), "Query "+state.NonFinalIndex) {
			t.Errorf("DynamoDB operations recorded %v, want the sweep's Query %s among them", ops.seen(), state.NonFinalIndex)
		}
		for _, op := range ops.seen() {
			if !slices.Contains(allowed, op) {
				t.Errorf("the poller called DynamoDB %s, which its IAM role does not allow (%v)", op, allowed)
			}
		}
	})

	t.Run("sqs failing mid-batch", func(t *testing.T) {
		q := e.newQueue(t)
		e.Sim.AddFileSets(itBucket, "p-sqs", 25, 2, 10) // 50 files: 5 batches
		flaky := &flakySQS{next: e.SQS}
		victims := e.filesOf("p-sqs")
		// Two entries fail on their own (every attempt); the batch holding
		// victims[15] (the 2nd: files 10–19) goes to a queue URL that does not exist.
		flaky.failIDs = map[string]bool{victims[3]: true, victims[27]: true}
		flaky.breakFor = map[string]bool{victims[15]: true}
		h, _ := e.handler(t, q, flaky, "", itBucket+"/p-sqs")
		res, err := h.Handle(ctx, json.RawMessage(`{}`))
		if err == nil || !strings.Contains(err.Error(), `subscription "bulk-ESG/p-sqs"`) || !strings.Contains(err.Error(), "not sent") {
			t.Fatalf("poll with failing SQS: error = %v", err)
		}
		first := e.drain(t, q)
		failed := res.Packages[0].SendFailed
		if failed != 12 || len(first) != 38 {
			t.Fatalf("first poll: %d received, %d failed; want 38 and 12", len(first), failed)
		}
		for _, id := range append([]string{victims[3], victims[27]}, victims[10:20]...) {
			if first[id] != 0 {
				t.Errorf("file %s received although its send failed", id)
			}
		}
		// SQS recovers: the next poll sends exactly the rest.
		flaky.off()
		if _, err := h.Handle(ctx, json.RawMessage(`{}`)); err != nil {
			t.Fatalf("second poll: %v", err)
		}
		second := e.drain(t, q)
		for id := range first {
			if second[id] > 0 {
				t.Errorf("file %s sent again although it was sent and marked", id)
			}
			second[id] += first[id]
		}
		wantExactlyOnce(t, second, victims)
	})

	t.Run("bad input is named, the rest polled", func(t *testing.T) {
		q := e.newQueue(t)
		e.Sim.AddFileSets(itBucket, "p-good", 2, 1, 10)
		e.Sim.AddFileSets(itBucket, "p-badjson", 2, 1, 10)
		proxy := malformingProxy(t, e.Sim.URL(), "p-badjson")
		h, _ := e.handler(t, q, nil, proxy, "not-a-subscription", "nobucket/*", "nobucket/p1", itBucket+"/p-badjson", itBucket+"/p-good")
		_, err := h.Handle(ctx, json.RawMessage(`{}`))
		for _, want := range []string{
			`subscription "not-a-subscription": no '/'`,
			`subscription "nobucket/*": list packages: 404 No resource found for: nobucket [EDS.CFS.NoBucketFound]`,
			`subscription "nobucket/p1": list file-sets: 404 No resource found for: nobucket [EDS.CFS.NoBucketFound]`,
			`subscription "bulk-ESG/p-badjson": list file-sets: malformed response`,
			`FileSet.value.files`, // the field the API got wrong
		} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v\nwant it to contain %q", err, want)
			}
		}
		wantExactlyOnce(t, e.drain(t, q), e.filesOf("p-good"))
	})

	t.Run("401 fails the invocation after the report", func(t *testing.T) {
		q := e.newQueue(t)
		e.Sim.AddFileSets(itBucket, "p-401a", 1, 1, 10)
		e.Sim.AddFileSets(itBucket, "p-401b", 1, 1, 10)
		h, _ := e.handler(t, q, nil, "", itBucket+"/p-401a", itBucket+"/p-401b")
		e.Sim.Inject(rdptest.Fault{Kind: rdptest.FaultUnauthorized, PathPrefix: rdp.FileSetsPath, Times: -1})
		defer e.Sim.ClearFaults()
		before := e.fileSetRequests()
		_, err := h.Handle(ctx, json.RawMessage(`{}`))
		if !errors.Is(err, rdp.ErrUnauthorized) || !errors.Is(err, tokenring.ErrTokenInvalid) {
			t.Fatalf("error = %v, want ErrUnauthorized / ErrTokenInvalid", err)
		}
		if got := e.fileSetRequests() - before; got != 1 {
			t.Errorf("%d file-set requests, want 1 (no retry without a newer token, then stop)", got)
		}
		if r, err := e.Table.GetTokenReport(ctx, 1); err != nil || r.Reports < 1 {
			t.Errorf("token report: %+v, %v", r, err)
		}
		if got := e.Sim.Counters().AuthRequests; got != 0 {
			t.Errorf("the poller sent %d /auth requests, want 0", got)
		}
	})

	t.Run("built bootstrap under the Lambda runtime API", func(t *testing.T) {
		q := e.newQueue(t)
		e.Sim.AddFileSets(itBucket, "p-boot", 45, 1, 10)
		bin, err := lambdarun.BuildFunction(ctx, "github.com/cfsync/cfsync/functions/fileset-poller", t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		env := append(e.Moto.AWSEnv(),
			"RDP_BASE_URL="+e.Sim.URL(), "TOKEN_SECRET_IDS="+itSlot, "STATE_TABLE="+testenv.FunctionTable,
			"DOWNLOAD_QUEUE_URL="+q, "SUBSCRIPTIONS=bulk-ESG/p-boot", fmt.Sprintf("POLL_PAGE_SIZE=%d", itPage))
		r, err := lambdarun.Start(ctx, lambdarun.Options{Binary: bin, Env: env, Timeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()

		invoke := func(payload string) lambdarun.Result {
			t.Helper()
			res, err := r.Invoke(ctx, []byte(payload))
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		res := invoke(`{"version":"0","detail-type":"Scheduled Event","source":"aws.scheduler"}`)
		if res.Err != nil {
			t.Fatalf("scheduled invocation failed: %v\nlogs:\n%s", res.Err, strings.Join(r.Logs(), "\n"))
		}
		var out Result
		if err := json.Unmarshal(res.Payload, &out); err != nil || out.FilesQueued != 45 || out.PagesFetched != 3 {
			t.Fatalf("result %s (%v), want 45 files over 3 pages", res.Payload, err)
		}
		wantExactlyOnce(t, e.drain(t, q), e.filesOf("p-boot"))
		if res := invoke(`{}`); res.Err != nil || !bytes.Contains(res.Payload, []byte(`"filesQueued":0`)) {
			t.Fatalf("second invocation: %s %v", res.Payload, res.Err)
		}
		for payload, want := range map[string]string{
			`not json`:                "event: not JSON",
			`{"subscriptions":"x/y"}`: `field "subscriptions"`,
			`{"subscriptions":["x"]}`: `subscription "x": no '/'`,
			`{"full":"yes"}`:          `field "full"`,
		} {
			if res := invoke(payload); res.Err == nil || !strings.Contains(res.Err.Message, want) {
				t.Errorf("invoke %s: %+v, want an error containing %q", payload, res.Err, want)
			}
		}
		if got := e.drain(t, q); len(got) != 0 {
			t.Errorf("%d messages after the later invocations, want 0", len(got))
		}
		logs := strings.Join(r.Logs(), "\n")
		if strings.Contains(logs, e.Token) {
			t.Fatal("a token appears in the function's logs")
		}
		for _, want := range []string{`"request_id":"` + res.RequestID + `"`, `"msg":"package polled"`, `"subscription":"bulk-ESG/p-boot"`, `"FilesQueued":45`} {
			if !strings.Contains(logs, want) {
				t.Errorf("logs lack %s:\n%s", want, logs)
			}
		}
	})
}

// flakySQS forwards to the real SQS client, failing chosen entries (as SQS
// reports per-entry failures) and sending chosen calls to a queue that does
// not exist (a real SQS error).
type flakySQS struct {
	next     queue.SQS
	mu       sync.Mutex
	failIDs  map[string]bool // entries reported failed
	breakFor map[string]bool // a batch holding one of these goes to a missing queue
}

func (f *flakySQS) off() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failIDs, f.breakFor = nil, nil
}

func (f *flakySQS) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	f.mu.Lock()
	broken := false
	var pass []stypes.SendMessageBatchRequestEntry
	var failed []stypes.BatchResultErrorEntry
	for _, e := range in.Entries {
		m, err := queue.Decode(aws.ToString(e.MessageBody))
		broken = broken || (err == nil && f.breakFor[m.FileID])
		if err == nil && f.failIDs[m.FileID] {
			failed = append(failed, stypes.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), Message: aws.String("injected")})
			continue
		}
		pass = append(pass, e)
	}
	f.mu.Unlock()
	fwd := *in
	fwd.Entries = pass
	if broken {
		u, _ := url.Parse(aws.ToString(in.QueueUrl))
		u.Path += "-does-not-exist"
		fwd.QueueUrl = aws.String(u.String())
	}
	out := &sqs.SendMessageBatchOutput{}
	if len(pass) > 0 {
		var err error
		if out, err = f.next.SendMessageBatch(ctx, &fwd, opts...); err != nil {
			return nil, err
		}
	}
	out.Failed = append(out.Failed, failed...)
	return out, nil
}

// malformingProxy forwards to the simulator, but answers the file-set
// listing of one package with JSON of the wrong shape.
func malformingProxy(t *testing.T, target, badPackage string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == rdp.FileSetsPath && r.URL.Query().Get("packageId") == badPackage {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"value":[{"id":"fs-1","files":"not-a-list"}]}`))
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// dbOps records the DynamoDB operations a client makes (Query with its
// index), to count them and check them against the IAM role.
type dbOps struct {
	mu  sync.Mutex
	ops map[string]int
}

// client is a DynamoDB client of the environment whose every call (not every
// retry: the Initialize step runs once a call) is recorded.
func (o *dbOps) client(cfg aws.Config) *dynamodb.Client {
	return dynamodb.NewFromConfig(cfg, func(opts *dynamodb.Options) {
		opts.APIOptions = append(opts.APIOptions, func(stack *middleware.Stack) error {
			return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("cfsyncRecordOps", o.record), middleware.After)
		})
	})
}

func (o *dbOps) record(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	op := awsmiddleware.GetOperationName(ctx)
	if q, ok := in.Parameters.(*dynamodb.QueryInput); ok {
		op = strings.TrimSpace(op + " " + aws.ToString(q.IndexName))
	}
	o.mu.Lock()
	if o.ops == nil {
		o.ops = map[string]int{}
	}
	o.ops[op]++
	o.mu.Unlock()
	return next.HandleInitialize(ctx, in)
}

// seen lists the operations called, sorted.
func (o *dbOps) seen() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Sorted(maps.Keys(o.ops))
}

// total counts the calls made.
func (o *dbOps) total() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, c := range o.ops {
		n += c
	}
	return n
}
