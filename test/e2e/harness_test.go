package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cfsync/cfsync/internal/lambdarun"
	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/internal/randid"
	"github.com/cfsync/cfsync/internal/repo"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// The functions are built once for the whole package (as `make build`
// does, without -trimpath so the build reuses the go build cache), by the
// first test that needs them.
var (
	buildOnce sync.Once
	binaries  map[string]string
	buildErr  error
	repoRoot  string
	binDir    string
)

// functionBinaries builds the three functions (once) and returns them.
func functionBinaries(t testing.TB) map[string]string {
	t.Helper()
	buildOnce.Do(func() {
		if repoRoot, buildErr = repo.Root(); buildErr != nil {
			return
		}
		if binDir, buildErr = os.MkdirTemp("", "cfsync-e2e-bin-"); buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		binaries, buildErr = pipeline.BuildFunctions(ctx, repoRoot, binDir, false)
	})
	if buildErr != nil {
		t.Fatalf("build the functions: %v", buildErr)
	}
	return binaries
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// Fast knobs for the tests (the defaults are minutes; the simulator's tokens
// live 60 s here). Each is a tuning variable the functions document.
var (
	readerEnv    = []string{"TOKEN_SKEW=5s"}
	refresherEnv = []string{"TOKEN_REFRESH_MARGIN=20s", "SECRET_MIN_WRITE_INTERVAL=5s", "AUTH_BACKOFF_BASE=1s", "AUTH_BACKOFF_MAX=5s"}
	pollerEnv    = []string{"POLL_PAGE_SIZE=5"} // several pages per package: @nextLink and repeat-item faults
	// The downloader's timeout is cut to 20 s (template: 300 s): its margins follow.
	downloaderEnv = []string{"DEADLINE_MARGIN=3s", "RANGE_READ_TIMEOUT=2s", "RETRY_BASE_DELAY=100ms", "RETRY_MAX_DELAY=1s", "CHECKPOINT_INTERVAL=1s", "DEFER_BASE_DELAY=2s", "DEFER_MAX_DELAY=10s"}
)

// envOptions shape one test's pipeline.
type envOptions struct {
	sim          rdptest.Options
	subs         []string
	seed         func(sim *rdptest.Server) // file-sets to create before start
	refreshEvery time.Duration             // 0: not scheduled
	pollEvery    time.Duration             // 0: not scheduled
	noEvents     bool
	startPaused  bool          // schedules and event source start paused
	downloaderTO time.Duration // default 20s
	visibility   time.Duration // default downloaderTO + 5s
	extraEnv     map[string][]string
	tokenSlots   int // the TokenSlots parameter (0: the template's default)
	// maxReceive, when positive, replaces the download queue's maxReceiveCount
	// (and the downloader's MAX_RECEIVE_COUNT, which must equal it).
	maxReceive int
}

// env is one test's pipeline: its own moto_server, simulator and stack.
type env struct {
	t        *testing.T
	sim      *rdptest.Server
	p        *pipeline.Pipeline
	user     string
	password string
	appKey   string
	subs     []string
	// extra holds more text the leak scan covers (invocation results).
	extra []string
	// diagnose, when set, adds to the failure message of a wait.
	diagnose func() string
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	moto := testenv.Moto(t) // skips under -short / without moto_server
	bins := functionBinaries(t)
	if o.sim.AccessTokenTTL == 0 {
		o.sim.AccessTokenTTL = 60 * time.Second
	}
	sim := rdptest.NewServer(o.sim)
	t.Cleanup(sim.Close)
	u := pipeline.AddSimUser(sim, "e2e-"+randid.Hex(4)+"@example.com")
	e := &env{t: t, sim: sim, user: u.Username, password: u.Password, appKey: u.AppKey, subs: o.subs}
	if o.seed != nil {
		o.seed(sim)
	}
	if o.downloaderTO == 0 {
		o.downloaderTO = 20 * time.Second
	}
	if o.visibility == 0 {
		o.visibility = o.downloaderTO + 5*time.Second
	}
	envs := map[string][]string{
		pipeline.Refresher:  refresherEnv,
		pipeline.Poller:     pollerEnv,
		pipeline.Downloader: downloaderEnv,
	}
	if o.maxReceive > 0 {
		envs[pipeline.Downloader] = append(append([]string(nil), envs[pipeline.Downloader]...), fmt.Sprintf("MAX_RECEIVE_COUNT=%d", o.maxReceive))
	}
	for k, v := range o.extraEnv {
		envs[k] = append(append([]string(nil), envs[k]...), v...)
	}
	params := pipeline.StackParams(sim.URL(), o.subs...)
	if o.tokenSlots > 0 {
		params["TokenSlots"] = fmt.Sprint(o.tokenSlots)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p, err := pipeline.Start(ctx, pipeline.Config{
		Root: repoRoot, MotoEndpoint: moto.Endpoint, Binaries: bins,
		StackName: "e2e", Credentials: u.Secret,
		Params:    params,
		CommonEnv: readerEnv, Env: envs, Timeouts: map[string]time.Duration{pipeline.Downloader: o.downloaderTO},
		VisibilityTimeout: o.visibility, RefreshEvery: o.refreshEvery, PollEvery: o.pollEvery, NoEventSource: o.noEvents, StartPaused: o.startPaused,
	})
	if err != nil {
		t.Fatalf("start pipeline: %v", err)
	}
	e.p = p
	if o.maxReceive > 0 {
		if err := setMaxReceiveCount(ctx, p, o.maxReceive); err != nil {
			p.Close()
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		// Every test ends with the leak scan (docs/design.md#no-secret-leaves) over everything it produced.
		e.checkNoLeaks()
		if t.Failed() {
			e.dumpLogs(40)
		}
		p.Close()
	})
	return e
}

// setMaxReceiveCount rewrites the download queue's redrive policy (the
// pipeline's event source is the consumer, so moto's redrive applies it).
func setMaxReceiveCount(ctx context.Context, p *pipeline.Pipeline, n int) error {
	attrs, err := p.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &p.Res.DLQURL,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		return fmt.Errorf("set maxReceiveCount: dead-letter queue ARN: %w", err)
	}
	policy, _ := json.Marshal(map[string]any{"deadLetterTargetArn": attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)], "maxReceiveCount": n})
	_, err = p.SQS.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: &p.Res.QueueURL,
		Attributes: map[string]string{string(sqstypes.QueueAttributeNameRedrivePolicy): string(policy)}})
	if err != nil {
		return fmt.Errorf("set maxReceiveCount: %w", err)
	}
	return nil
}

// invoke invokes a function and records the result for the leak scan.
func (e *env) invoke(fn, payload string) lambdarun.Result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := e.p.Invoke(ctx, fn, []byte(payload))
	if err != nil {
		e.t.Fatalf("invoke %s %s: %v", fn, payload, err)
	}
	e.extra = append(e.extra, string(res.Payload))
	return res
}

// waitToken invokes the refresher until the ring holds a token (see
// [waitRefresherToken]); the results join the leak scan.
func (e *env) waitToken() {
	e.t.Helper()
	waitRefresherToken(e.t, func() (lambdarun.Result, error) { return e.invoke(pipeline.Refresher, `{}`), nil })
}

// waitRefresherToken calls invoke (an invocation of the refresher) every
// second until one writes a token (the first write waits for
// SECRET_MIN_WRITE_INTERVAL after the stack created the slots); it fails tb
// after 30 s.
func waitRefresherToken(tb testing.TB, invoke func() (lambdarun.Result, error)) {
	tb.Helper()
	var res lambdarun.Result
	var err error
	if !testenv.WaitUntil(30*time.Second, time.Second, func() bool {
		res, err = invoke()
		return err == nil && res.Err == nil && strings.Contains(string(res.Payload), `"generation"`)
	}) {
		tb.Fatalf("no token in the ring after 30s; last refresher result: %s %v", res.Payload, err)
	}
}

// waitLanded waits until want files are DONE (or FAILED) and the download
// queue is drained.
func (e *env) waitLanded(want int, timeout time.Duration) pipeline.Progress {
	e.t.Helper()
	return e.waitProgress(fmt.Sprintf("%d files", want), timeout, func(pr pipeline.Progress) bool { return drained(pr, want) })
}

// drained reports whether want files are DONE (or FAILED) and the download
// queue is empty in pr.
func drained(pr pipeline.Progress, want int) bool {
	return pr.Done()+pr.Failed() >= want && pr.Queued == 0 && pr.InFlight == 0
}

// waitProgress waits until done accepts a snapshot of the pipeline and
// returns it; after timeout it fails the test, naming what it waited for.
func (e *env) waitProgress(what string, timeout time.Duration, done func(pipeline.Progress) bool) pipeline.Progress {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	pr, err := e.p.WaitFor(ctx, 300*time.Millisecond, done)
	if err != nil {
		more := ""
		if e.diagnose != nil {
			more = "; " + e.diagnose()
		}
		e.t.Fatalf("waiting for %s: %v; progress: %s%s", what, err, describe(pr), more)
	}
	return pr
}

func describe(pr pipeline.Progress) string {
	return fmt.Sprintf("files %v, queue %d visible / %d in flight, DLQ %d, downloader %+v, refresher %+v, poller %+v",
		pr.ByStatus, pr.Queued, pr.InFlight, pr.DLQ, pr.Events, pr.Refresh, pr.Poll)
}

// verify checks S3 and the state table against files.
func (e *env) verify(files []rdptest.File) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := e.p.Verify(ctx, files)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range rep.Problems {
		e.t.Error(p)
	}
	if rep.Verified != len(files) {
		e.t.Errorf("%d of %d files verified", rep.Verified, len(files))
	}
}

// expected is the ground truth restricted to the subscriptions.
func (e *env) expected() []rdptest.File {
	return pipeline.SubscribedFiles(e.sim.GroundTruth(), e.subs)
}

// maxAuthIn5Min is the largest number of /auth requests in any rolling
// 5-minute window of log (simulator clock).
func maxAuthIn5Min(log []rdptest.AuthRecord) int {
	best := 0
	for i := range log {
		n := 0
		for j := i; j < len(log) && log[j].Time.Sub(log[i].Time) < 5*time.Minute; j++ {
			n++
		}
		best = max(best, n)
	}
	return best
}

func (e *env) checkAuthBudget(budget int) {
	e.t.Helper()
	log := e.sim.AuthLog()
	if n := maxAuthIn5Min(log); n > budget {
		e.t.Errorf("%d auth requests within 5 minutes, budget %d: %+v", n, budget, log)
	}
}

// leak is one secret found where it must not be.
type leak struct{ what, where string }

// findLeaks looks for every needle in every haystack.
func findLeaks(needles map[string]string, haystacks map[string][]string) []leak {
	var out []leak
	for where, lines := range haystacks {
		for i, line := range lines {
			for what, n := range needles {
				if n != "" && strings.Contains(line, n) {
					out = append(out, leak{what: what, where: fmt.Sprintf("%s line %d", where, i+1)})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].where+out[i].what < out[j].where+out[j].what })
	return out
}

// checkNoLeaks scans the functions' logs, the invocation results, the state
// table, the S3 object metadata and the queues for the password, the app key
// (client_id), every token the ring ever held and presigned-URL signatures.
func (e *env) checkNoLeaks() {
	t := e.t
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	needles := map[string]string{
		"password":               e.password,
		"client_id (app key)":    e.appKey,
		"presigned signature":    "X-Amz-Signature=",
		"presigned STS token":    "X-Amz-Security-Token=",
		"presigned signature lc": "x-amz-signature=",
	}
	toks, err := e.p.RingTokens(ctx)
	if err != nil {
		t.Errorf("leak scan: %v", err)
	}
	for i, tok := range toks {
		needles[fmt.Sprintf("ring token #%d", i+1)] = tok
	}
	hay := map[string][]string{}
	lines := 0
	for _, fn := range pipeline.Functions {
		hay[fn+" log"] = e.p.Logs(fn)
		lines += len(hay[fn+" log"])
	}
	hay["invocation results"] = e.extra
	hay["state table"] = e.stateTableText(ctx)
	hay["s3 metadata"] = e.s3MetadataText(ctx)
	hay["dead-letter queue"] = e.queueText(ctx, e.p.Res.DLQURL)
	if lines == 0 && !t.Failed() {
		t.Errorf("leak scan: no log lines captured at all")
	}
	for _, l := range findLeaks(needles, hay) {
		t.Errorf("LEAK: %s found in %s", l.what, l.where)
	}
}

func (e *env) stateTableText(ctx context.Context) []string {
	var out []string
	pg := dynamodb.NewScanPaginator(e.p.DynamoDB, &dynamodb.ScanInput{TableName: aws.String(e.p.Res.StateTable)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			e.t.Errorf("leak scan: scan state table: %v", err)
			return out
		}
		for _, it := range page.Items {
			out = append(out, fmt.Sprintf("%v", it))
			for k, v := range it {
				out = append(out, k+"="+avText(v))
			}
		}
	}
	return out
}

// avText flattens an attribute value to text.
func avText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func (e *env) s3MetadataText(ctx context.Context) []string {
	var out []string
	objs, err := e.p.ListKeys(ctx)
	if err != nil {
		e.t.Errorf("leak scan: %v", err)
		return nil
	}
	for _, o := range objs {
		h, err := e.p.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &e.p.Res.Bucket, Key: aws.String(o.Key)})
		if err != nil {
			e.t.Errorf("leak scan: head %s: %v", o.Key, err)
			continue
		}
		for k, v := range h.Metadata {
			out = append(out, o.Key+" "+k+"="+v)
		}
	}
	return out
}

// queueText peeks at a queue's messages (visibility 0: they stay as they were).
func (e *env) queueText(ctx context.Context, url string) []string {
	out, err := e.p.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, VisibilityTimeout: 0})
	if err != nil {
		e.t.Errorf("leak scan: receive %s: %v", url, err)
		return nil
	}
	var bodies []string
	for _, m := range out.Messages {
		bodies = append(bodies, aws.ToString(m.Body))
	}
	return bodies
}

// pids are the process ids of a function's bootstraps.
func (e *env) pids(fn string) []int {
	switch fn {
	case pipeline.Refresher:
		return []int{e.p.Refresher.PID()}
	case pipeline.Poller:
		return []int{e.p.Poller.PID()}
	}
	var out []int
	for _, r := range e.p.Downloader.Runners() {
		out = append(out, r.PID())
	}
	return out
}

func (e *env) dumpLogs(n int) {
	for _, fn := range pipeline.Functions {
		lines := e.p.Logs(fn)
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		e.t.Logf("--- last %d log lines of %s:\n%s", len(lines), fn, strings.Join(lines, "\n"))
	}
}
