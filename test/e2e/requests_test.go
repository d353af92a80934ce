package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/cost"
	"github.com/cfsync/cfsync/internal/lambdarun"
	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/internal/randid"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

const pkgRequests = "4e94-0c0c-7e7e7e7e-9abc-abcdefabcdef"

// requestsBatchSize is the template's downloader BatchSize: the
// downloader gets the small files in batches of that many.
const requestsBatchSize = 4

// TestRequestsPerFile counts every AWS request (at a proxy in front of
// moto_server, by function, service and operation) and every RDP request
// (the simulator's counters) for a refresher run, a poll and the download
// of small files, README's 20 MB files (one PutObject) and files over
// SINGLE_PUT_MAX (multipart), and fails when any kind of request per
// file, run or poll is above the checked-in budget
// internal/cost/testdata/requests.json (docs/cost.md's table is computed
// from it). CFSYNC_UPDATE_REQUESTS=1 rewrites the file with this run's
// counts: do that when a change removes requests, and say why in the commit.
func TestRequestsPerFile(t *testing.T) {
	rc, err := pipeline.NewRequestCounter(pipeline.Functions...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	extra := map[string][]string{}
	for _, fn := range pipeline.Functions {
		extra[fn] = []string{"AWS_ENDPOINT_URL=" + rc.URL(fn)}
	}
	// The checkpoint's default interval: the tests' 1 s would add
	// timing-dependent checkpoint writes to the counts.
	extra[pipeline.Downloader] = append(extra[pipeline.Downloader], "CHECKPOINT_INTERVAL=30s")
	// Tokens of 3 minutes refreshed when 150 s are left: a write every
	// ~30 s (the refresher scenarios need one), and the newest token always
	// has more than 2 minutes left, so a ring read is good for the whole of
	// the download scenarios: their ring reads do not depend on timing.
	extra[pipeline.Refresher] = append(extra[pipeline.Refresher], "TOKEN_REFRESH_MARGIN=150s")
	subs := []string{"bulk-Req/" + pkgRequests}
	e := newEnv(t, envOptions{subs: subs, noEvents: true, extraEnv: extra, sim: rdptest.Options{AccessTokenTTL: 3 * time.Minute}})
	if err := rc.Point(e.p.Endpoint); err != nil {
		t.Fatal(err)
	}
	e.waitToken()
	m := cost.Measured{Date: time.Now().UTC().Format(time.DateOnly),
		Command: "CFSYNC_REQUIRE_MOTO=1 CFSYNC_UPDATE_REQUESTS=1 go test -count=1 -run TestRequestsPerFile ./test/e2e/"}

	small := publishFiles(t, e.sim, "Delta", []int64{100 << 10, 1 << 20, 3 << 10, 512 << 10, 70 << 10, 1<<20 + 7, 200 << 10, 9 << 10})
	m.PollNew = e.measure(rc, pipeline.Poller, len(small), func() int { pollOnce(t, e.p); return 1 })
	m.SmallFile = e.measure(rc, pipeline.Downloader, len(small), func() int { return deliverQueue(t, e.p, requestsBatchSize) })
	m.PollIdle = e.measure(rc, pipeline.Poller, 1, func() int { pollOnce(t, e.p); return 1 })

	// README's 20 MB average file: within SINGLE_PUT_MAX (32 MiB), so
	// fetched in 8 MiB ranges and stored with one PutObject.
	middleSizes, bigSizes := []int64{20 << 20, 20<<20 + 3}, []int64{40 << 20, 40<<20 - 5}
	if limit := config.Defaults[config.Downloader]().SinglePutMax; slices.Max(middleSizes) > limit || slices.Min(bigSizes) <= limit {
		t.Fatalf("SINGLE_PUT_MAX %d: the middle files must be within it and the multipart ones over it", limit)
	}
	middle := publishFiles(t, e.sim, "Init", middleSizes)
	pollOnce(t, e.p)
	m.MiddleFile = e.measure(rc, pipeline.Downloader, len(middle), func() int { return deliverQueue(t, e.p, requestsBatchSize) })
	m.MiddleRanges = pieces(middleSizes)
	// Over SINGLE_PUT_MAX: a multipart upload of 5 parts of 8 MiB.
	big := publishFiles(t, e.sim, "Full", bigSizes)
	pollOnce(t, e.p)
	m.MultipartFile = e.measure(rc, pipeline.Downloader, len(big), func() int { return deliverQueue(t, e.p, requestsBatchSize) })
	m.MultipartParts = pieces(bigSizes)
	e.verify(slices.Concat(small, middle, big))
	e.measureRefresher(rc, &m)
	m.Metrics = emfMetrics(e.p)

	for _, s := range m.Scenarios() {
		t.Logf("%s: %d units, %d invocations, AWS %v, RDP %v", s.Name, s.S.Units, s.S.Invocations, s.S.AWS, s.S.RDP)
	}
	t.Logf("custom metrics (%d): %v", len(m.Metrics), m.Metrics)
	path := filepath.Join(repoRoot, "internal", "cost", "testdata", "requests.json")
	if os.Getenv("CFSYNC_UPDATE_REQUESTS") == "1" {
		if err := m.Save(path); err != nil {
			t.Fatal(err)
		}
		return
	}
	budget, err := cost.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.OverBudget(budget) {
		t.Errorf("more requests than budgeted (%s): %s", path, p)
	}
	for _, p := range budget.OverBudget(m) {
		t.Logf("fewer requests than budgeted, update the budget with CFSYNC_UPDATE_REQUESTS=1: %s", p)
	}
}

// requestsPartSize is the downloader's part and range size for files of up
// to 10,000 × 8 MiB: max(8 MiB, size ÷ 10,000) (docs/design.md#downloader).
const requestsPartSize = 8 << 20

// pieces is the number of requestsPartSize ranges of each of sizes (which
// must all have the same number), the k of docs/cost.md's minimums.
func pieces(sizes []int64) int {
	k := int((sizes[0] + requestsPartSize - 1) / requestsPartSize)
	for _, s := range sizes {
		if int((s+requestsPartSize-1)/requestsPartSize) != k {
			panic(fmt.Sprintf("file sizes %v differ in ranges of %d bytes", sizes, requestsPartSize))
		}
	}
	return k
}

// publishFiles publishes a file-set of the given sizes in pkgRequests.
func publishFiles(tb testing.TB, sim *rdptest.Server, kind string, sizes []int64) []rdptest.File {
	tb.Helper()
	ts := time.Now().UTC().Add(-time.Minute)
	spec := rdptest.FileSetSpec{Bucket: "bulk-Req", PackageID: pkgRequests, Name: "Req-" + kind + "-" + randid.Hex(3), Created: ts, Modified: ts}
	for i, size := range sizes {
		spec.Files = append(spec.Files, rdptest.FileSpec{Name: fmt.Sprintf("RFT-Req-%s-Part%03d.jsonl.gz", kind, i+1), Size: size})
	}
	fs := sim.AddFileSet(spec)
	var out []rdptest.File
	for _, f := range sim.GroundTruth() {
		if f.FileSetID == fs.ID {
			out = append(out, f)
		}
	}
	if len(out) != len(sizes) {
		tb.Fatalf("file-set %s has %d files, want %d", fs.ID, len(out), len(sizes))
	}
	return out
}

// measure runs f (which returns the invocations it made) with zeroed
// counters and returns function fn's AWS requests and all RDP requests.
func (e *env) measure(rc *pipeline.RequestCounter, fn string, units int, f func() int) cost.Scenario {
	e.t.Helper()
	rc.Reset()
	e.sim.ResetCounters()
	inv := f()
	s := cost.Scenario{Units: units, Invocations: inv, AWS: map[string]int{}, RDP: map[string]int{}}
	for k, n := range rc.Counts() {
		if k.Caller != fn {
			e.t.Errorf("%s sent %d %s:%s while only %s ran", k.Caller, n, k.Service, k.Operation, fn)
			continue
		}
		s.AWS[k.Service+":"+k.Operation] += n
	}
	maps.Copy(s.RDP, e.sim.Counters().Requests)
	return s
}

// refresherRun invokes the refresher once and returns its counts and outcome.
func (e *env) refresherRun(rc *pipeline.RequestCounter) (cost.Scenario, string) {
	var outcome, grant string
	s := e.measure(rc, pipeline.Refresher, 1, func() int {
		res := e.invoke(pipeline.Refresher, `{}`)
		var r struct{ Outcome, Grant string }
		_ = json.Unmarshal(res.Payload, &r)
		outcome, grant = r.Outcome, r.Grant
		return 1
	})
	if outcome == "refreshed" && grant != "refresh_token" {
		outcome = "refreshed by " + grant
	}
	return s, outcome
}

// measureRefresher measures, in order: a run that writes a token with the
// refresh grant, the first run after it (ring fresh: it keeps the ring its
// own write left) and the run after that (ring fresh, steady state).
func (e *env) measureRefresher(rc *pipeline.RequestCounter, m *cost.Measured) {
	e.t.Helper()
	if !testenv.WaitUntil(2*time.Minute, 2*time.Second, func() bool {
		w, out := e.refresherRun(rc)
		if out != "refreshed" {
			return false
		}
		first, out1 := e.refresherRun(rc)
		steady, out2 := e.refresherRun(rc)
		if out1 != "fresh" || out2 != "fresh" {
			return false
		}
		m.RefresherWrite, m.RefresherFirstIdle, m.RefresherIdle = w, first, steady
		return true
	}) {
		e.t.Fatal("no refresher write followed by two fresh runs within 2 minutes")
	}
}

// pollOnce invokes the poller as its schedule does.
func pollOnce(tb testing.TB, p *pipeline.Pipeline) {
	tb.Helper()
	res, err := p.Invoke(context.Background(), pipeline.Poller, []byte(`{}`))
	if err != nil || res.Err != nil {
		tb.Fatalf("poll: %v %v", err, res.Err)
	}
}

// deliverQueue plays Lambda's event source for one execution environment
// (the pool's first: a warm environment keeps its ring read across
// invocations while the token is fresh): batches of up to batch messages
// from the download queue, one invocation at a time, until the queue is
// empty (continuations included). It returns the invocations.
func deliverQueue(tb testing.TB, p *pipeline.Pipeline, batch int) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	es := p.NewEventSource()
	es.Function = p.Downloader.Runners()[0]
	inv := 0
	for ctx.Err() == nil {
		out, err := p.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &p.Res.QueueURL, MaxNumberOfMessages: int32(batch),
			VisibilityTimeout: 120, MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll}})
		if err != nil {
			tb.Fatal(err)
		}
		if len(out.Messages) == 0 { // short poll: no wait in the benchmarks' timing
			pr, err := p.Progress(ctx)
			if err != nil {
				tb.Fatal(err)
			}
			if pr.Queued+pr.InFlight == 0 {
				return inv
			}
			time.Sleep(200 * time.Millisecond) // a delayed message (deferral)
			continue
		}
		inv++
		if rep := es.Deliver(ctx, out.Messages); rep.Failed > 0 || rep.Err != nil {
			tb.Fatalf("downloader batch failed: %+v", rep)
		}
	}
	tb.Fatalf("download queue not drained: %v", ctx.Err())
	return inv
}

// emfMetrics lists the distinct CloudWatch metrics (namespace, name and
// dimension values) in the functions' EMF log lines: what CloudWatch bills.
func emfMetrics(p *pipeline.Pipeline) []string {
	seen := map[string]bool{}
	for _, fn := range pipeline.Functions {
		for _, line := range p.Logs(fn) {
			for _, m := range emfLine(line, fn) {
				seen[m] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// emfLine lists the metrics of one EMF line, with the dimension Function
// (the physical function name) given as fn.
func emfLine(line, fn string) []string {
	var rec map[string]any
	if !strings.Contains(line, `"_aws"`) || json.Unmarshal([]byte(line), &rec) != nil {
		return nil
	}
	var meta struct {
		CloudWatchMetrics []struct {
			Namespace  string
			Dimensions [][]string
			Metrics    []struct{ Name string }
		}
	}
	b, _ := json.Marshal(rec["_aws"])
	_ = json.Unmarshal(b, &meta)
	var out []string
	for _, d := range meta.CloudWatchMetrics {
		for _, dims := range d.Dimensions {
			var kv []string
			for _, k := range dims {
				v := rec[k]
				if k == "Function" {
					v = fn
				}
				kv = append(kv, fmt.Sprintf("%s=%v", k, v))
			}
			for _, m := range d.Metrics {
				out = append(out, d.Namespace+"/"+m.Name+"{"+strings.Join(kv, ",")+"}")
			}
		}
	}
	return out
}

// BenchmarkSmallFiles measures files per second for ONE downloader
// execution environment (one invocation at a time, as Lambda runs one
// environment) landing 1 MiB files, by MESSAGE_CONCURRENCY and batch size.
// DynamoDB, SQS and S3 are moto_server behind the request counter (which
// serializes DynamoDB, as the concurrency tests must); the simulator serves
// the files. Everything shares this machine, so compare the rows with each
// other, not with production.
//
//	CFSYNC_REQUIRE_MOTO=1 go test -run '^$' -bench BenchmarkSmallFiles -benchtime 2x -timeout 30m ./test/e2e/
func BenchmarkSmallFiles(b *testing.B) {
	const files = 24
	for _, conc := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			e := startBenchEnv(b, []string{fmt.Sprintf("MESSAGE_CONCURRENCY=%d", conc)})
			for _, batch := range []int{1, 4, 10} {
				b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
					var spent time.Duration
					e.rc.Reset()
					cpu0 := e.downloaderCPU()
					for range b.N {
						sizes := slices.Repeat([]int64{1 << 20}, files)
						publishFiles(b, e.sim, "Bench", sizes)
						pollOnce(b, e.p)
						start := time.Now()
						inv := deliverQueue(b, e.p, batch)
						spent += time.Since(start)
						b.ReportMetric(float64(inv), "invocations/op")
					}
					b.ReportMetric(float64(files*b.N)/spent.Seconds(), "files/s")
					aws := 0
					for k, n := range e.rc.Counts() {
						if k.Caller == pipeline.Downloader {
							aws += n
						}
					}
					b.ReportMetric(float64(aws)/spent.Seconds(), "aws-req/s")
					if cpu1 := e.downloaderCPU(); cpu1 > cpu0 {
						b.ReportMetric(float64((cpu1-cpu0).Milliseconds())/float64(files*b.N), "bootstrap-cpu-ms/file")
					}
					b.ReportMetric(0, "ns/op")
				})
			}
		})
	}
}

// benchEnv is a pipeline for benchmarks (testing.TB; the tests' env takes
// *testing.T): moto, the simulator, the stack, no event source.
type benchEnv struct {
	rc  *pipeline.RequestCounter
	p   *pipeline.Pipeline
	sim *rdptest.Server
}

func startBenchEnv(b *testing.B, downloaderEnv []string) *benchEnv {
	return startBenchEnvWith(b, downloaderEnv, rdptest.Options{AccessTokenTTL: 30 * time.Minute}, 0)
}

// startBenchEnvWith also takes the simulator's options and the
// downloader's timeout (0: the template's).
func startBenchEnvWith(b *testing.B, downloaderEnv []string, simOpts rdptest.Options, timeout time.Duration) *benchEnv {
	moto := testenv.Moto(b)
	bins := functionBinaries(b)
	rc, err := pipeline.NewRequestCounter(pipeline.Downloader, pipeline.Poller)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(rc.Close)
	// One invocation at a time and every file delivered once: no two
	// requests race for one item, so moto may take them in parallel.
	rc.SerializeDynamoDB(false)
	sim := rdptest.NewServer(simOpts)
	b.Cleanup(sim.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p, err := pipeline.Start(ctx, pipeline.Config{Root: repoRoot, MotoEndpoint: moto.Endpoint, Binaries: bins, StackName: "bench" + randid.Hex(2),
		Credentials: pipeline.AddSimUser(sim, "bench@example.com").Secret, NoEventSource: true, Timeouts: map[string]time.Duration{pipeline.Downloader: timeout},
		Params: pipeline.StackParams(sim.URL(), "bulk-Req/"+pkgRequests),
		Env: map[string][]string{
			pipeline.Downloader: append([]string{"AWS_ENDPOINT_URL=" + rc.URL(pipeline.Downloader)}, downloaderEnv...),
			pipeline.Poller:     {"AWS_ENDPOINT_URL=" + rc.URL(pipeline.Poller)},
		}})
	if err != nil {
		b.Fatalf("start pipeline: %v", err)
	}
	b.Cleanup(p.Close)
	if err := rc.Point(p.Endpoint); err != nil {
		b.Fatal(err)
	}
	waitRefresherToken(b, func() (lambdarun.Result, error) { return p.Invoke(ctx, pipeline.Refresher, []byte(`{}`)) })
	return &benchEnv{rc: rc, p: p, sim: sim}
}

// BenchmarkResume measures what a continuation costs: one large file whose
// download needs several invocations (the simulator caps each connection
// at 2 MiB/s, the downloader's timeout is 20 s with DEADLINE_MARGIN 8 s).
// Per invocation after the first it reports the AWS requests other than
// UploadPart and the RDP requests other than the ranged GETs (the resume
// overhead), and the MiB landed per invocation-second.
//
//	CFSYNC_REQUIRE_MOTO=1 go test -run '^$' -bench BenchmarkResume -benchtime 1x -timeout 30m ./test/e2e/
func BenchmarkResume(b *testing.B) {
	const size = 256 << 20
	e := startBenchEnvWith(b, []string{"DEADLINE_MARGIN=8s", "RANGE_READ_TIMEOUT=5s"},
		rdptest.Options{AccessTokenTTL: 30 * time.Minute, BandwidthPerConn: 2 << 20}, 20*time.Second)
	for range b.N {
		publishFiles(b, e.sim, "Huge", []int64{size})
		pollOnce(b, e.p)
		es := e.p.NewEventSource()
		var inv, overhead, rdpOver int
		var spent time.Duration
		for {
			out, err := e.p.SQS.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &e.p.Res.QueueURL, MaxNumberOfMessages: 1,
				WaitTimeSeconds: 2, VisibilityTimeout: 60, MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll}})
			if err != nil {
				b.Fatal(err)
			}
			if len(out.Messages) == 0 {
				break
			}
			e.rc.Reset()
			e.sim.ResetCounters()
			start := time.Now()
			if rep := es.Deliver(context.Background(), out.Messages); rep.Failed > 0 || rep.Err != nil {
				b.Fatalf("downloader invocation failed: %+v", rep)
			}
			spent += time.Since(start)
			inv++
			ops := map[string]int{}
			for k, n := range e.rc.Counts() {
				if k.Caller == pipeline.Downloader && k.Operation != "UploadPart" {
					ops[k.Service+":"+k.Operation] += n
				}
			}
			rdpReq := e.sim.Counters().Requests
			b.Logf("invocation %d: %.1f s, AWS besides UploadPart %v, RDP %v", inv, time.Since(start).Seconds(), ops, rdpReq)
			if inv > 1 {
				for _, n := range ops {
					overhead += n
				}
				for ep, n := range rdpReq {
					if ep != rdptest.EPS3Get {
						rdpOver += n
					}
				}
			}
		}
		if inv < 2 {
			b.Fatalf("the file landed in %d invocation(s): no continuation to measure", inv)
		}
		b.ReportMetric(float64(inv), "invocations")
		b.ReportMetric(float64(overhead)/float64(inv-1), "aws-req/continuation")
		b.ReportMetric(float64(rdpOver)/float64(inv-1), "rdp-req/continuation")
		b.ReportMetric(float64(size>>20)/spent.Seconds(), "MiB/s")
		b.ReportMetric(0, "ns/op")
	}
}

// downloaderCPU is the CPU time of the downloader's bootstraps so far.
func (e *benchEnv) downloaderCPU() time.Duration {
	var t time.Duration
	for _, r := range e.p.Downloader.Runners() {
		t += processCPU(r.PID())
	}
	return t
}

// processCPU is a process's user + system CPU time from /proc (Linux; 0
// elsewhere or when it cannot be read).
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the ")" closing the command name: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}
