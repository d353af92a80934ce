package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// Self-healing delivery (issue 11's acceptance): every listed file lands by
// itself, exactly once, whatever the faults and however long the outage.

const pkgHeal = "4f10-77aa-1c2d3e4f-9a8b-0123456789ab"

// healSet is one file-set of the self-healing runs: five files from 16 KiB
// to 3 MiB (every second one also a 9 MiB file: a multipart upload).
func healSet(i int, ts time.Time) rdptest.FileSetSpec {
	sizes := []int64{16 << 10, 200<<10 + 3, 700 << 10, 3 << 19, 3 << 20}
	if i%2 == 1 {
		sizes = append(sizes[:4], 9<<20+11)
	}
	spec := rdptest.FileSetSpec{Bucket: "bulk-ESG", PackageID: pkgHeal, Name: fmt.Sprintf("Heal-%03d", i), Created: ts, Modified: ts}
	for j, size := range sizes {
		spec.Files = append(spec.Files, rdptest.FileSpec{Name: fmt.Sprintf("Heal-%03d-part%d.jsonl.gz", i, j+1), Size: size})
	}
	return spec
}

// proxiedEnv is envOptions with the downloaders' DynamoDB and S3 behind a
// serialProxy (moto's conditional writes are not atomic across threads).
// (newEnv gives every function readerEnv's TOKEN_SKEW, below the
// refresher's margin: with the default 30 s skew, 60 s tokens and a 20 s
// margin, readers would find no usable token for 10 s of every token's life.)
func proxiedEnv(t *testing.T, o envOptions) (*env, *serialProxy) {
	t.Helper()
	proxy := newSerialProxy(t)
	if o.extraEnv == nil {
		o.extraEnv = map[string][]string{}
	}
	o.extraEnv[pipeline.Downloader] = append(o.extraEnv[pipeline.Downloader],
		"AWS_ENDPOINT_URL_DYNAMODB="+proxy.srv.URL, "AWS_ENDPOINT_URL_S3="+proxy.srv.URL)
	e := newEnv(t, o)
	proxy.point(t, e.p.Endpoint)
	return e, proxy
}

// checkOnce checks that every file landed exactly once: DONE, one state
// item each, nothing FAILED or dead-lettered, S3 as the ground truth, and
// each key written by exactly one successful PutObject or
// CompleteMultipartUpload.
func (e *env) checkOnce(pr pipeline.Progress, want []rdptest.File, proxy *serialProxy) {
	e.t.Helper()
	if pr.Failed() != 0 || pr.DLQ != 0 || pr.Files != len(want) || pr.Done() != len(want) {
		e.t.Errorf("%d files expected: %s", len(want), describe(pr))
	}
	e.verify(want)
	writes := proxy.writesPerKey()
	for _, f := range want {
		path := "/" + e.p.Res.Bucket + "/" + pipeline.ExpectedKey(e.p.Res.Prefix, f)
		if n := writes[path]; n != 1 {
			e.t.Errorf("%s written %d times, want once", path, n)
		}
	}
}

// ringGaps samples the token ring while a test runs and measures the time
// it held no unexpired token, from the first token on.
type ringGaps struct {
	mu              sync.Mutex
	samples, errors int
	total, longest  time.Duration
	stop            context.CancelFunc
	done            chan struct{}
}

func (e *env) sampleRing(every time.Duration) *ringGaps {
	ctx, cancel := context.WithCancel(context.Background())
	g := &ringGaps{stop: cancel, done: make(chan struct{})}
	ring := &tokenring.Ring{SM: e.p.Secrets, IDs: e.p.Res.TokenSecretIDs}
	go func() {
		defer close(g.done)
		var seen bool
		var gapStart time.Time
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			vals, err := ring.Read(ctx)
			now := time.Now()
			g.mu.Lock()
			g.samples++
			switch _, ok := tokenring.Newest(vals, now, 0); {
			case err != nil:
				g.errors++
			case ok:
				seen = true
				if !gapStart.IsZero() {
					d := now.Sub(gapStart)
					g.total += d
					g.longest = max(g.longest, d)
					gapStart = time.Time{}
				}
			case seen && gapStart.IsZero():
				gapStart = now
			}
			g.mu.Unlock()
		}
	}()
	return g
}

// result stops the sampling and returns the total and longest gap.
func (g *ringGaps) result() (total, longest time.Duration, samples int) {
	g.stop()
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.total, g.longest, g.samples
}

// measuredFaults are the faults of issue 11's measured run: a 401 "token
// expired" to every 7th file-store request although the token is valid
// (forever), and 429s, 503s, connection resets, truncated bodies and
// expired URLs on the file store and the presigned host.
func measuredFaults() []rdptest.Fault {
	const fs, sets, files = "/file-store/", "/file-store/v1/file-sets", "/file-store/v1/files"
	return []rdptest.Fault{
		{Kind: rdptest.FaultUnauthorized, Host: rdptest.HostAPI, PathPrefix: fs, Every: 7, Times: -1},
		{Kind: rdptest.FaultTooManyRequests, Host: rdptest.HostAPI, PathPrefix: files, Times: 3, RetryAfter: time.Second},
		{Kind: rdptest.FaultTooManyRequests, Host: rdptest.HostAPI, PathPrefix: sets, RetryAfter: time.Second},
		{Kind: rdptest.FaultUnavailable, Host: rdptest.HostAPI, PathPrefix: files, Times: 3},
		{Kind: rdptest.FaultUnavailable, Host: rdptest.HostAPI, PathPrefix: sets},
		{Kind: rdptest.FaultReset, Host: rdptest.HostAPI, PathPrefix: files, Times: 2},
		{Kind: rdptest.FaultTruncate, Host: rdptest.HostAPI, PathPrefix: sets},
		{Kind: rdptest.FaultExpiredURL, Host: rdptest.HostAPI, Times: 2},
		{Kind: rdptest.FaultTooManyRequests, Host: rdptest.HostS3, Times: 3},
		{Kind: rdptest.FaultUnavailable, Host: rdptest.HostS3, Times: 3},
		{Kind: rdptest.FaultReset, Host: rdptest.HostS3, Times: 4},
		{Kind: rdptest.FaultTruncate, Host: rdptest.HostS3, Times: 4},
		{Kind: rdptest.FaultExpiredURL, Host: rdptest.HostS3, Times: 3},
		{Kind: rdptest.FaultExpiredToken, Host: rdptest.HostS3, Times: 2},
	}
}

// TestMeasuredRun is issue 11's measured run on the built bootstraps, with
// its timing (90 s access tokens, TOKEN_REFRESH_MARGIN=60s,
// SECRET_MIN_WRITE_INTERVAL=60s, 3 ring slots, visibility 30 s,
// maxReceiveCount 3, downloader timeout 60 s) and its faults, every access
// token invalidated once at RDP and every refresh token revoked once, while
// file-sets keep being published: every file lands exactly once, nothing
// reaches the DLQ, and the ring never lacks an unexpired token once the
// refresher wrote its first. (The run had 220 files; this one has
// 100, to stay within a few minutes.)
func TestMeasuredRun(t *testing.T) {
	const sets, atStart = 20, 6
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	e, proxy := proxiedEnv(t, envOptions{
		sim:  rdptest.Options{AccessTokenTTL: 90 * time.Second, BandwidthPerConn: 1 << 20},
		subs: []string{"bulk-ESG/" + pkgHeal},
		seed: func(sim *rdptest.Server) {
			for i := range atStart {
				sim.AddFileSet(healSet(i, base.Add(time.Duration(i)*time.Minute)))
			}
			sim.Inject(measuredFaults()...)
		},
		refreshEvery: 5 * time.Second, pollEvery: 5 * time.Second,
		downloaderTO: 60 * time.Second, visibility: 30 * time.Second, maxReceive: 3, tokenSlots: 3,
		extraEnv: map[string][]string{
			pipeline.Refresher:  {"TOKEN_REFRESH_MARGIN=60s", "SECRET_MIN_WRITE_INTERVAL=60s"},
			pipeline.Downloader: {"DEADLINE_MARGIN=10s"},
		},
	})
	start := time.Now()
	gaps := e.sampleRing(500 * time.Millisecond)
	e.waitGeneration(1, 90*time.Second)
	t.Logf("first token after %s", time.Since(start).Round(time.Second))

	// More file-sets while the files move; every access token invalidated
	// once, later every refresh token (the session) revoked once.
	for i := atStart; i < sets; i++ {
		time.Sleep(6 * time.Second)
		e.sim.AddFileSet(healSet(i, time.Now().UTC()))
		switch i {
		case atStart + 4:
			e.sim.ExpireAccessTokens()
		case atStart + 11:
			e.sim.RevokeSessions(e.user)
		}
	}
	want := e.expected()
	if len(want) != sets*5 {
		t.Fatalf("ground truth has %d files, want %d", len(want), sets*5)
	}
	pr := e.waitLanded(len(want), 4*time.Minute)
	total, longest, samples := gaps.result()
	e.checkOnce(pr, want, proxy)
	if longest > 0 {
		t.Errorf("the ring held no unexpired token for %s in total (longest gap %s, %d samples)", total, longest, samples)
	}
	for _, f := range e.sim.PendingFaults() {
		if f.Every == 0 {
			t.Errorf("a fault never fired (the run did not exercise it): %+v", f)
		}
	}
	deferred := countLines(e.p.Logs(pipeline.Refresher), "no ring slot may be written yet")
	c := e.sim.Counters()
	t.Logf("%d files in %s; ring sampled %d times, gap %s; faults fired %d (file-store 401s %d); auth requests %d; refresher 'no slot' lines %d; downloader %+v",
		len(want), time.Since(start).Round(time.Second), samples, total, c.FaultsFired, c.FileStore401s, len(e.sim.AuthLog()), deferred, pr.Events)
}

func countLines(lines []string, sub string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// TestOutageLongerThanRedrive: the refresher stops and RDP refuses every
// access token for longer than maxReceiveCount × visibility, while messages
// wait in the queue and polls run: nothing reaches the DLQ or ends FAILED,
// and once the refresher runs again every file lands, with no operator
// action.
func TestOutageLongerThanRedrive(t *testing.T) {
	const outage = 90 * time.Second // > 3 × 25 s
	base := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	e, proxy := proxiedEnv(t, envOptions{
		subs: []string{"bulk-ESG/" + pkgHeal},
		seed: func(sim *rdptest.Server) {
			for i := range 3 {
				sim.AddFileSet(healSet(i, base.Add(time.Duration(i)*time.Minute)))
			}
		},
		refreshEvery: 2 * time.Second, pollEvery: 5 * time.Second, startPaused: true,
		downloaderTO: 20 * time.Second, visibility: 25 * time.Second, maxReceive: 3,
	})
	e.p.RefreshSchedule.Resume()
	e.waitGeneration(1, time.Minute)
	e.p.PollSchedule.Resume()
	queued := len(e.expected())
	e.waitProgress(fmt.Sprintf("%d queued messages", queued), time.Minute, func(pr pipeline.Progress) bool { return pr.Queued >= queued })

	// The outage: no refresher, every token refused, the messages waiting
	// are delivered, a new file-set is published and polls keep running.
	e.p.RefreshSchedule.Pause()
	e.sim.ExpireAccessTokens()
	e.sim.AddFileSet(healSet(3, time.Now().UTC()))
	polls := e.p.PollSchedule.Stats()
	e.p.Events.Resume()
	end := time.Now().Add(outage)
	for time.Now().Before(end) {
		pr, err := e.p.Progress(context.Background())
		if err == nil && (pr.DLQ != 0 || pr.Failed() != 0 || pr.Done() != 0) {
			t.Fatalf("during the outage: %s", describe(pr))
		}
		time.Sleep(time.Second)
	}
	pr, _ := e.p.Progress(context.Background())
	if st := e.p.PollSchedule.Stats(); st.Runs <= polls.Runs {
		t.Errorf("no poll ran during the outage: %+v", st)
	}
	if pr.Events.Messages <= int64(queued) {
		t.Errorf("the waiting messages were not delivered during the outage: %+v", pr.Events)
	}
	t.Logf("after the outage: %s", describe(pr))

	e.p.RefreshSchedule.Resume()
	want := e.expected()
	pr = e.waitLanded(len(want), 5*time.Minute)
	e.checkOnce(pr, want, proxy)
	t.Logf("landed %s after the outage ended; downloader %+v", time.Since(end).Round(time.Second), pr.Events)
}

// TestSameMessageTwoEnvironments: two downloader execution environments
// fed by one queue get the same messages at the same time, and a copy of
// every body waits in the queue too: each file lands once, each key is
// written by exactly one successful PutObject or CompleteMultipartUpload.
func TestSameMessageTwoEnvironments(t *testing.T) {
	base := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	e, proxy := proxiedEnv(t, envOptions{
		sim:  rdptest.Options{BandwidthPerConn: 2 << 20},
		subs: []string{"bulk-ESG/" + pkgHeal},
		seed: func(sim *rdptest.Server) {
			for i := range 3 {
				sim.AddFileSet(healSet(i, base.Add(time.Duration(i)*time.Minute)))
			}
		},
		refreshEvery: 2 * time.Second,
	})
	runners := e.p.Downloader.Runners()
	if len(runners) < 2 {
		t.Fatalf("%d downloader environments, want 2", len(runners))
	}
	e.p.Events.Pause()
	e.waitGeneration(1, time.Minute)
	want := e.expected()
	if res := e.invoke(pipeline.Poller, `{}`); res.Err != nil {
		t.Fatalf("poller: %s", res.Payload)
	}
	msgs := e.receiveAll(len(want), 30*time.Second)
	e.sendAgain(want) // copies of every body, for the event source afterwards

	// Each batch goes to both environments at once.
	var wg sync.WaitGroup
	for i := 0; i < len(msgs); i += 4 {
		batch := msgs[i:min(i+4, len(msgs))]
		for _, r := range runners[:2] {
			es := e.p.NewEventSource()
			es.Function = r
			wg.Go(func() { es.Deliver(context.Background(), batch) })
		}
		wg.Wait()
	}
	e.p.Events.Resume()
	e.waitLanded(len(want), 3*time.Minute)
	// The delayed copies the duplicates enqueued come back too: wait for
	// them, so their handling is checked as well.
	e.waitQueueEmpty(2 * time.Minute)
	pr, err := e.p.Progress(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.checkOnce(pr, want, proxy)
	logs := e.p.Logs(pipeline.Downloader)
	dup := countLines(logs, "duplicate delivery: another invocation holds the lease")
	if dup == 0 {
		t.Errorf("no delivery ever found the other environment holding the lease: the two deliveries did not overlap")
	}
	t.Logf("%d files, %d messages delivered to both environments (%d found the lease held, %d found the file done); event source afterwards %+v",
		len(want), len(msgs), dup, countLines(logs, "already downloaded"), pr.Events)
}

// waitQueueEmpty waits until the download queue holds no message, delayed
// ones included.
func (e *env) waitQueueEmpty(timeout time.Duration) {
	e.t.Helper()
	names := []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed}
	var attrs map[string]string
	if !testenv.WaitUntil(timeout, time.Second, func() bool {
		out, err := e.p.SQS.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: &e.p.Res.QueueURL, AttributeNames: names})
		if err != nil {
			e.t.Fatal(err)
		}
		attrs = out.Attributes
		left := 0
		for _, n := range names {
			v, _ := strconv.Atoi(attrs[string(n)])
			left += v
		}
		return left == 0
	}) {
		e.t.Fatalf("the download queue still holds messages after %s: %v", timeout, attrs)
	}
}

// receiveAll receives n messages from the download queue (they stay
// invisible for 60 s).
func (e *env) receiveAll(n int, timeout time.Duration) []sqstypes.Message {
	e.t.Helper()
	var out []sqstypes.Message
	if !testenv.WaitUntil(timeout, 0, func() bool {
		r, err := e.p.SQS.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: &e.p.Res.QueueURL, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
		})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, m := range r.Messages {
			e.extra = append(e.extra, aws.ToString(m.Body))
		}
		out = append(out, r.Messages...)
		return len(out) >= n
	}) {
		e.t.Fatalf("received %d of %d messages", len(out), n)
	}
	return out
}

// TestShortTimeoutLargeFile: with a downloader Timeout of 5 s, a 300 MiB
// file on a bandwidth-capped presigned host lands via continuations, and
// the continuations form a chain: no invocation makes more than one new
// message.
func TestShortTimeoutLargeFile(t *testing.T) {
	e, proxy := proxiedEnv(t, envOptions{
		sim:  rdptest.Options{BandwidthPerConn: 6 << 20},
		subs: []string{"bulk-ESG/" + pkgHeal},
		seed: func(sim *rdptest.Server) {
			ts := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
			sim.AddFileSet(rdptest.FileSetSpec{Bucket: "bulk-ESG", PackageID: pkgHeal, Name: "Big", Created: ts, Modified: ts,
				Files: []rdptest.FileSpec{{Name: "big-300MiB.jsonl.gz", Size: 300 << 20}}})
		},
		refreshEvery: 2 * time.Second,
		downloaderTO: 5 * time.Second,
	})
	start := time.Now()
	e.waitGeneration(1, time.Minute)
	if res := e.invoke(pipeline.Poller, `{}`); res.Err != nil {
		t.Fatalf("poller: %s", res.Payload)
	}
	want := e.expected()
	maxDepth := 0
	pr := e.waitProgress("the 300 MiB file", 5*time.Minute, func(pr pipeline.Progress) bool {
		maxDepth = max(maxDepth, pr.Queued+pr.InFlight)
		return drained(pr, len(want))
	})
	e.checkOnce(pr, want, proxy)
	st := pr.Events
	fresh := st.Messages - st.Redelivered // distinct messages (the poller's and the chain's)
	if st.Invocations < 3 {
		t.Errorf("landed in %d invocations of 5 s: the test does not exercise continuations", st.Invocations)
	}
	// Each delivery makes at most one new message (continuation, deferral
	// or delayed copy): a chain, never a tree.
	if fresh > st.Invocations+1 {
		t.Errorf("%d distinct messages from 1 input in %d invocations: continuations multiply", fresh, st.Invocations)
	}
	t.Logf("300 MiB in %s: %d invocations, %d distinct messages (%d redelivered), max queue depth %d",
		time.Since(start).Round(time.Second), st.Invocations, fresh, st.Redelivered, maxDepth)
}
