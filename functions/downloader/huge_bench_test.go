package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cfsync/cfsync/internal/lambdarun"
	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// BenchmarkHugeFile lands one huge file (20 GiB unless CFSYNC_HUGE_GIB says
// otherwise) from the simulator into versitygw through the BUILT bootstrap,
// one warm execution environment (as a continuation often finds in Lambda)
// with a 60 s timeout (so a margin of 15 s: a quarter of it) and the
// simulator capped at 16 MiB/s per range: each invocation moves ranges for
// ~45 s, at most ~2.8 GiB, so the file takes many invocations,
// each resumed from the checkpoint by the continuation message the previous
// one sent (received from SQS here, as the event source would). AWS requests
// pass through counting proxies (DynamoDB, SQS, Secrets Manager: moto; S3:
// versitygw). Per invocation it logs the requests by kind, the RDP requests,
// the seconds from the invocation's start to the first byte served by the
// simulator, the chunk items the resume's Query reads, the process's peak
// RSS (VmHWM, reset before each invocation) and the largest Go heap the
// collector saw (GODEBUG=gctrace=1). The invocation expected to complete the
// file runs in a second environment with Lambda's largest timeout (900 s):
// versitygw's CompleteMultipartUpload copies every part into the object
// (25 s for 20 GiB here; see BENCHMARKS.md).
//
//	make bench-big   (or)
//	go test -run '^$' -bench BenchmarkHugeFile -benchtime 1x -timeout 60m -v ./functions/downloader
func BenchmarkHugeFile(b *testing.B) {
	size := int64(20) * GiB
	if v := os.Getenv("CFSYNC_HUGE_GIB"); v != "" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n <= 0 {
			b.Fatalf("CFSYNC_HUGE_GIB=%q: want a positive number of GiB", v)
		}
		size = int64(n * float64(GiB))
	}
	if versitygwBinary() == "" {
		b.Skip("needs versitygw as the S3 target (make bench-tools): moto holds objects in memory and times out completing ≥ 768 MiB")
	}
	// versitygw's posix backend keeps the parts and then writes the object.
	if free := freeDisk(os.TempDir()); free < size*21/10 {
		b.Skipf("needs %.1f GiB free in %s for the parts and the object, has %.1f GiB", float64(size*21/10)/float64(GiB), os.TempDir(), float64(free)/float64(GiB))
	}
	he := newHugeEnv(b)
	for i := range b.N {
		f := he.addFile(fmt.Sprintf("huge %d.bin", i), size)
		he.land(b, f)
	}
}

// hugeEnv is benchEnv with request counters in front of moto and versitygw.
type hugeEnv struct {
	*benchEnv
	aws, s3c *pipeline.RequestCounter
}

func newHugeEnv(b *testing.B) *hugeEnv {
	// Each range is capped at 16 MiB/s (64 MiB/s for the 4 ranges), so that
	// a 60 s invocation moves at most ~2.8 GiB whatever else the machine
	// runs: 20 GiB take 8 or more invocations.
	be := newBenchEnv(b, rdptest.Options{AccessTokenTTL: 2 * time.Hour, BandwidthPerConn: 16 << 20})
	return &hugeEnv{benchEnv: be, aws: countRequests(b, be.Moto.Endpoint), s3c: countRequests(b, be.s3Endpoint)}
}

// countRequests is a request counter for the bootstrap in front of target.
// It keeps the Host header the requests were signed for, as versitygw
// checks signatures.
func countRequests(b *testing.B, target string) *pipeline.RequestCounter {
	c, err := pipeline.NewRequestCounter(function)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	c.KeepHost(true)
	c.SerializeDynamoDB(false) // the downloader's DynamoDB calls run in parallel, as against AWS
	if err := c.Point(target); err != nil {
		b.Fatal(err)
	}
	return c
}

// opStats is the count and the summed duration of one kind of request.
type opStats struct {
	n int
	d time.Duration
}

// take returns c's requests by "service:Operation" and zeroes them.
func take(c *pipeline.RequestCounter) map[string]*opStats {
	counts, took := c.Counts(), c.Took()
	c.Reset()
	m := map[string]*opStats{}
	for k, n := range counts {
		m[k.Service+":"+k.Operation] = &opStats{n: n, d: took[k]}
	}
	return m
}

// invocationStats is what one invocation of the huge file cost.
type invocationStats struct {
	wall, firstByte time.Duration
	aws             map[string]*opStats // by "service:Operation", UploadPart apart
	uploadParts     int
	rdp             map[string]int // endpoint (ranged GETs included)
	chunkItems      int            // chunk items stored when it started (what LoadParts' Query reads)
	bytes           int64          // bytes served by the simulator
	rss, heap       float64        // MiB: peak RSS of the process, largest heap in a GC cycle
}

// land downloads f through as many invocations as it takes and logs each.
func (he *hugeEnv) land(b *testing.B, f rdptest.File) {
	ctx := context.Background()
	env := append(he.bootstrapEnv(), "AWS_ENDPOINT_URL="+he.aws.URL(function), "AWS_ENDPOINT_URL_S3="+he.s3c.URL(function),
		"AWS_SESSION_TOKEN=", "LOG_LEVEL=info", "GODEBUG=gctrace=1")
	short := he.runner(b, time.Minute, env)
	var final *lambdarun.Runner
	var all []invocationStats
	body := itMsg(f).Encode()
	start := time.Now()
	for body != "" {
		r := short
		if n := len(all); n > 0 && he.bytesLeft(b, f) < all[n-1].bytes*3/4 {
			// Likely the last invocation: it gets Lambda's largest timeout,
			// as versitygw's CompleteMultipartUpload copies every part into
			// the object.
			if final == nil {
				final = he.runner(b, 15*time.Minute, env)
			}
			r = final
		}
		st, next := he.invokeOnce(b, r, f, body)
		all = append(all, st)
		b.Logf("invocation %d (timeout %s): %s", len(all), map[bool]string{true: "60 s", false: "900 s"}[r == short], st)
		body = next
	}
	total := time.Since(start)
	head, err := he.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(itDest), Key: aws.String(itKey(f))})
	if err != nil || aws.ToInt64(head.ContentLength) != f.Size {
		b.Fatalf("object %s: %v, %d bytes, want %d", itKey(f), err, aws.ToInt64(head.ContentLength), f.Size)
	}
	_, _ = he.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(itDest), Key: aws.String(itKey(f))})
	reportHuge(b, f.Size, total, all)
}

// runner starts one execution environment of the built bootstrap.
func (he *hugeEnv) runner(b *testing.B, timeout time.Duration, env []string) *lambdarun.Runner {
	r, err := lambdarun.Start(context.Background(), lambdarun.Options{Binary: he.bin, Timeout: timeout, MemoryMB: 512, Env: env})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Close() })
	return r
}

// bytesLeft is what the checkpoint says is still to be uploaded.
func (he *hugeEnv) bytesLeft(b *testing.B, f rdptest.File) int64 {
	up, err := he.Table.GetUpload(context.Background(), f.ID)
	if err != nil {
		b.Fatal(err)
	}
	return f.Size - int64(up.PartsDone)*up.PartSize
}

// invokeOnce runs one invocation with the message body and returns its
// figures and the continuation's body ("" when the file landed).
func (he *hugeEnv) invokeOnce(b *testing.B, r *lambdarun.Runner, f rdptest.File, body string) (invocationStats, string) {
	ctx := context.Background()
	st := invocationStats{chunkItems: he.chunkItems(b, f.ID)}
	he.aws.Reset()
	he.s3c.Reset()
	he.Sim.ResetCounters()
	if pid := r.PID(); pid != 0 {
		_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) // reset VmHWM
	}
	logsBefore := len(r.Logs())
	payload, _ := json.Marshal(event(body))
	var first atomic.Int64
	stop := make(chan struct{})
	go he.watchFirstByte(stop, &first)
	start := time.Now()
	res, err := r.Invoke(ctx, payload)
	st.wall = time.Since(start)
	close(stop)
	if err != nil || res.Err != nil || !strings.Contains(string(res.Payload), `"batchItemFailures":[]`) {
		b.Fatalf("invoke: %v %v %s\n%s", err, res.Err, res.Payload, strings.Join(r.Logs()[logsBefore:], "\n"))
	}
	if ns := first.Load(); ns > 0 {
		st.firstByte = time.Duration(ns - start.UnixNano())
	}
	st.aws = take(he.aws)
	maps.Copy(st.aws, take(he.s3c))
	if up := st.aws["s3:UploadPart"]; up != nil {
		st.uploadParts = up.n
		delete(st.aws, "s3:UploadPart")
	}
	c := he.Sim.Counters()
	st.rdp, st.bytes = c.Requests, c.BytesServed
	st.rss, _ = peakRSS(r.PID())
	st.heap = maxGCHeap(r.Logs()[logsBefore:])
	return st, he.continuation(b, f.ID)
}

// watchFirstByte stores the time the simulator first served a byte.
func (he *hugeEnv) watchFirstByte(stop chan struct{}, first *atomic.Int64) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if he.Sim.Counters().BytesServed > 0 {
				first.Store(time.Now().UnixNano())
				return
			}
		}
	}
}

// continuation receives the file's continuation message ("" when none came:
// the file landed).
func (he *hugeEnv) continuation(b *testing.B, fileID string) string {
	out, err := he.SQS.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &he.queue, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	if err != nil {
		b.Fatal(err)
	}
	var body string
	for _, m := range out.Messages {
		if !strings.Contains(aws.ToString(m.Body), fileID) {
			b.Fatalf("unexpected message %s", aws.ToString(m.Body))
		}
		body = aws.ToString(m.Body)
		_, _ = he.SQS.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: &he.queue, ReceiptHandle: m.ReceiptHandle})
	}
	return body
}

// chunkItems counts the file's stored part-chunk items: what the resume's
// LoadParts Query reads.
func (he *hugeEnv) chunkItems(b *testing.B, fileID string) int {
	out, err := he.DB.Query(context.Background(), &dynamodb.QueryInput{
		TableName:              aws.String(testenv.FunctionTable),
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :p)"),
		ExpressionAttributeValues: map[string]dtypes.AttributeValue{
			":pk": &dtypes.AttributeValueMemberS{Value: state.FilePK(fileID)},
			":p":  &dtypes.AttributeValueMemberS{Value: state.SKUploadPartsPrefix},
		},
		Select: dtypes.SelectCount,
	})
	if err != nil {
		b.Fatal(err)
	}
	return int(out.Count)
}

func (s invocationStats) String() string {
	var ops []string
	for _, k := range slices.Sorted(maps.Keys(s.aws)) {
		ops = append(ops, fmt.Sprintf("%s %d (%d ms)", k, s.aws[k].n, s.aws[k].d.Milliseconds()))
	}
	heap := "– (no gctrace line)"
	if s.heap > 0 {
		heap = fmt.Sprintf("%.0f MB", s.heap)
	}
	return fmt.Sprintf("%.1f s, first byte after %.2f s, %.0f MiB in %d UploadPart, AWS besides UploadPart [%s], RDP %v, chunk items %d, peak RSS %.1f MiB, max heap %s",
		s.wall.Seconds(), s.firstByte.Seconds(), float64(s.bytes)/float64(MiB), s.uploadParts, strings.Join(ops, ", "), s.rdp, s.chunkItems, s.rss, heap)
}

// reportHuge reports the whole file's figures; resumes are the invocations
// after the first.
func reportHuge(b *testing.B, size int64, total time.Duration, all []invocationStats) {
	if len(all) < 2 {
		b.Fatalf("the file landed in %d invocation(s): no continuation to measure", len(all))
	}
	var firstBytes []float64
	var resumeReq int
	for _, s := range all[1:] {
		firstBytes = append(firstBytes, s.firstByte.Seconds())
		for _, o := range s.aws {
			resumeReq += o.n
		}
	}
	slices.Sort(firstBytes)
	b.ReportMetric(float64(len(all)), "invocations")
	b.ReportMetric(float64(resumeReq)/float64(len(all)-1), "aws-req/resume")
	b.ReportMetric(firstBytes[len(firstBytes)/2], "s-to-first-byte/resume")
	b.ReportMetric(all[0].rss, "first-RSS-MiB")
	b.ReportMetric(all[len(all)-1].rss, "last-RSS-MiB")
	b.ReportMetric(float64(size)/1e6/total.Seconds(), "MB/s")
	b.ReportMetric(0, "ns/op")
}

// freeDisk is the space available in dir's file system (0 if unknown).
func freeDisk(dir string) int64 {
	var s syscall.Statfs_t
	if syscall.Statfs(dir, &s) != nil {
		return 0
	}
	return int64(s.Bavail) * s.Bsize
}

// peakRSS is a process's VmHWM in MiB.
func peakRSS(pid int) (float64, error) {
	n, err := vmHWM(pid)
	return float64(n) / float64(MiB), err
}

// gcLine matches gctrace's "… 40->42->20 MB, 44 MB goal …".
var gcLine = regexp.MustCompile(`(\d+)->(\d+)->(\d+) MB`)

// maxGCHeap is the largest heap (at the start or end of a cycle) in the
// gctrace lines, in MB.
func maxGCHeap(lines []string) float64 {
	var m float64
	for _, l := range lines {
		if g := gcLine.FindStringSubmatch(l); g != nil {
			for _, s := range g[1:3] {
				v, _ := strconv.ParseFloat(s, 64)
				m = max(m, v)
			}
		}
	}
	return m
}
