package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cfsync/cfsync/internal/lambdarun"
	"github.com/cfsync/cfsync/internal/notify"
	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/internal/randid"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

const notificationReader = "notification-reader"

// pathRecorder is a proxy in front of the simulator's API that records the
// paths one function requests (to show it never calls /auth).
type pathRecorder struct {
	mu    sync.Mutex
	paths []string
	srv   *httptest.Server
}

func newPathRecorder(t *testing.T, target string) *pathRecorder {
	u, _ := url.Parse(target)
	r := &pathRecorder{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.paths = append(r.paths, req.URL.Path)
		r.mu.Unlock()
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *pathRecorder) authPaths() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.paths {
		if strings.HasPrefix(p, "/auth") {
			out = append(out, p)
		}
	}
	return out
}

type notifyEnv struct {
	*env
	sub         *rdp.Subscription
	subSecret   string
	credsSecret string
	gate        *rdptest.CredentialGate
	rdpProxy    *pathRecorder
	reader      *lambdarun.Runner
	schedule    *pipeline.Schedule
	mu          sync.Mutex
	results     []string
}

// newNotifyEnv starts the pipeline with the poller unscheduled (the
// reconciler is invoked by hand), subscribes the package, stores the
// subscription secret as `cfsync notifications subscribe` would, and runs
// the notification reader on a compressed schedule.
func newNotifyEnv(t *testing.T) *notifyEnv {
	t.Helper()
	ne := &notifyEnv{subSecret: "e2e-notify-subscription-" + randid.Hex(4), credsSecret: "e2e-notify-queue-creds-" + randid.Hex(4)}
	notifyVars := []string{"NOTIFY_SUBSCRIPTION_SECRET_ID=" + ne.subSecret, "NOTIFY_CREDENTIALS_SECRET_ID=" + ne.credsSecret}
	ne.env = newEnv(t, envOptions{
		subs: []string{"bulk-ESG/" + pkgESG}, refreshEvery: time.Second,
		seed:     func(sim *rdptest.Server) { sim.AddPackage("bulk-ESG", pkgESG, "Bulk-ESG-Global-Scores") },
		extraEnv: map[string][]string{pipeline.Refresher: append(notifyVars, "QUEUE_CREDENTIALS_REFRESH=1m")},
	})
	e := ne.env
	e.diagnose = func() string { return fmt.Sprintf("reader results %v", tail(ne.readerResults(), 5)) }
	// The subscription's queue (LSEG's, in its own account) lives in moto's SQS.
	e.sim.EnableNotifications(pipeline.NotificationQueues(e.p.SQS), 10*time.Minute)
	ctx := context.Background()
	e.waitToken()

	// The operator's subscribe step (cmd/cfsync notifications subscribe does
	// the same with the ring's token).
	var subJSON string
	var err error
	if ne.sub, subJSON, err = pipeline.SubscribeSim(ctx, e.sim, "bulk-ESG", pkgESG, "e2e-operator"); err != nil {
		t.Fatal(err)
	}
	for id, v := range map[string]string{ne.subSecret: subJSON, ne.credsSecret: "{}"} {
		if _, err := e.p.Secrets.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(id), SecretString: aws.String(v)}); err != nil {
			t.Fatal(err)
		}
	}
	if ne.gate, err = e.sim.StartCredentialGate(e.p.Endpoint); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ne.gate.Close() })
	ne.rdpProxy = newPathRecorder(t, e.sim.URL())
	ne.startReader(t, notifyVars)
	return ne
}

// startReader builds the reader and runs it every 500 ms (each run polls
// until 2 s before its 10 s timeout: nearly always one long poll waiting,
// as with the template's 1-minute schedule and 60 s timeout).
func (ne *notifyEnv) startReader(t *testing.T, notifyVars []string) {
	t.Helper()
	dir := filepath.Join(binDir, notificationReader+"-"+randid.Hex(3))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bins, err := pipeline.BuildFunctions(ctx, repoRoot, dir, false, notificationReader)
	if err != nil {
		t.Fatal(err)
	}
	env := ne.p.FunctionEnv(pipeline.Poller) // the reader's template environment is the poller's plus the NOTIFY_* secrets
	env = append(env, notifyVars...)
	env = append(env, "NOTIFY_QUEUE_ENDPOINT_URL="+ne.gate.URL(), "NOTIFY_WAIT=2s", "NOTIFY_DEADLINE_MARGIN=2s",
		"NOTIFY_VISIBILITY_TIMEOUT=5s", "RDP_BASE_URL="+ne.rdpProxy.srv.URL)
	runCtx, stop := context.WithCancel(context.Background())
	ne.reader, err = lambdarun.Start(runCtx, lambdarun.Options{Name: "e2e-" + notificationReader, Binary: bins[notificationReader], Env: env, Timeout: 10 * time.Second})
	if err != nil {
		stop()
		t.Fatal(err)
	}
	ne.schedule = &pipeline.Schedule{Name: notificationReader, Every: 500 * time.Millisecond, Payload: []byte(`{}`), Function: ne.reader,
		OnResult: func(_ string, res lambdarun.Result, _ error) {
			ne.mu.Lock()
			ne.results = append(ne.results, string(res.Payload))
			ne.mu.Unlock()
		}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); ne.schedule.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		wg.Wait()
		_ = ne.reader.Close()
		ne.checkReaderNoLeaks(t)
		if t.Failed() {
			logs := ne.reader.Logs()
			for _, l := range logs[max(0, len(logs)-30):] {
				t.Log("reader: " + l)
			}
		}
	})
}

func (ne *notifyEnv) readerResults() []string {
	ne.mu.Lock()
	defer ne.mu.Unlock()
	return slices.Clone(ne.results)
}

// publish adds a READY file-set of n files and returns it with its publish time.
func (ne *notifyEnv) publish(name string, n int) (rdptest.FileSet, time.Time) {
	spec := rdptest.FileSetSpec{Bucket: "bulk-ESG", PackageID: pkgESG, Name: name}
	for i := range n {
		spec.Files = append(spec.Files, rdptest.FileSpec{Name: fmt.Sprintf("%s-part%d.jsonl.gz", name, i+1), Size: int64(4<<10 + i*1000)})
	}
	at := time.Now()
	return ne.sim.AddFileSet(spec), at
}

// waitDone waits until every file of fs is DONE and returns when the last landed.
func (ne *notifyEnv) waitDone(fs rdptest.FileSet, timeout time.Duration) time.Time {
	ne.t.Helper()
	var last time.Time
	ne.waitProgress("file-set "+fs.Name+" DONE", timeout, func(pr pipeline.Progress) bool {
		var ok bool
		last, ok = pr.LandedAt(fs)
		return ok
	})
	return last
}

func tail(s []string, n int) []string { return s[max(0, len(s)-n):] }

func (ne *notifyEnv) notKnown(t *testing.T, fs rdptest.FileSet) bool {
	t.Helper()
	_, err := ne.p.State.GetFile(context.Background(), fs.Files[0].ID)
	return errors.Is(err, state.ErrNotFound)
}

// waitCredentials waits until the refresher stored queue credentials.
func (ne *notifyEnv) waitCredentials(t *testing.T) notify.QueueCredentials {
	t.Helper()
	var c notify.QueueCredentials
	if !testenv.WaitUntil(30*time.Second, 200*time.Millisecond, func() bool {
		out, err := ne.p.Secrets.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(ne.credsSecret)})
		if err == nil {
			c, err = notify.ParseQueueCredentials(aws.ToString(out.SecretString))
		}
		return err == nil && !c.Empty()
	}) {
		t.Fatalf("no queue credentials after 30s; refresher logs %v", tail(ne.p.Logs(pipeline.Refresher), 5))
	}
	return c
}

func (ne *notifyEnv) checkReaderNoLeaks(t *testing.T) {
	out, err := ne.p.Secrets.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(ne.credsSecret)})
	needles := map[string]string{"cryptography key": ne.sub.CryptographyKey, "app key": ne.appKey, "password": ne.password}
	if err == nil {
		c, _ := notify.ParseQueueCredentials(aws.ToString(out.SecretString))
		needles["queue secret key"], needles["queue session token"] = c.SecretKey, c.SessionToken
	}
	hay := map[string][]string{"reader log": ne.reader.Logs(), "reader results": ne.readerResults()}
	for _, fn := range pipeline.Functions {
		hay[fn+" log"] = ne.p.Logs(fn)
	}
	for _, l := range findLeaks(needles, hay) {
		t.Errorf("LEAK: %s found in %s", l.what, l.where)
	}
}

// TestNotifications: with notifications on and the poller not scheduled,
// file-sets published during the run land; a lost notification is landed
// by the next reconciliation; duplicates and an undecryptable message are
// harmless; expired queue credentials are renewed without losing messages;
// the reader never calls /auth. Latency p50/p95 is logged (-v).
func TestNotifications(t *testing.T) {
	ne := newNotifyEnv(t)
	ne.waitCredentials(t)

	// 1. Published during the run → landed, latency measured.
	var lat []time.Duration
	for i := range 8 {
		fs, at := ne.publish(fmt.Sprintf("ESG-Live-%02d", i), 2)
		landed := ne.waitDone(fs, 60*time.Second)
		lat = append(lat, landed.Sub(at))
	}
	p50, p95 := pipeline.Percentile(lat, 50), pipeline.Percentile(lat, 95)
	t.Logf("publish → landed over %d file-sets: p50 %s, p95 %s, max %s", len(lat), p50.Round(time.Millisecond), p95.Round(time.Millisecond), pipeline.Percentile(lat, 100).Round(time.Millisecond))
	if line := os.Getenv("CFSYNC_NOTIFY_LATENCY_OUT"); line != "" {
		_ = os.WriteFile(line, fmt.Appendf(nil, "p50=%s p95=%s n=%d\n", p50, p95, len(lat)), 0o644)
	}

	// 2. Duplicates and an undecryptable message: each file lands once.
	ne.sim.SetNotificationFaults(rdptest.NotificationFaults{Duplicate: 2, Undecryptable: 1})
	dupA, _ := ne.publish("ESG-Dup-A", 2)
	dupB, _ := ne.publish("ESG-Dup-B", 1)
	ne.waitDone(dupA, 60*time.Second)
	ne.waitDone(dupB, 60*time.Second)

	// 3. A lost notification: nothing lands until the reconciliation.
	ne.sim.SetNotificationFaults(rdptest.NotificationFaults{Lose: 1})
	lost, _ := ne.publish("ESG-Lost", 2)
	time.Sleep(5 * time.Second)
	if !ne.notKnown(t, lost) {
		t.Fatal("a lost notification's file-set was queued without the poller")
	}
	if res := ne.invoke(pipeline.Poller, `{}`); res.Err != nil {
		t.Fatalf("poller: %v %s", res.Err, res.Payload)
	}
	ne.waitDone(lost, 60*time.Second)

	// 4. Expired queue credentials: reported, renewed by the refresher, the
	// message waiting in the queue meanwhile is landed.
	before := ne.waitCredentials(t)
	ne.sim.ExpireCloudCredentials()
	exp, _ := ne.publish("ESG-After-Expiry", 1)
	ne.waitDone(exp, 90*time.Second)
	// A long poll already in flight may deliver the message before AWS rejects
	// the credentials (its delete then fails): the renewal can come after the
	// file landed, so wait for it.
	var after notify.QueueCredentials
	if !testenv.WaitUntil(60*time.Second, 500*time.Millisecond, func() bool {
		after = ne.waitCredentials(t)
		return after.Generation > before.Generation
	}) {
		t.Errorf("queue credentials not renewed: generation %d → %d", before.Generation, after.Generation)
	}
	if !slices.ContainsFunc(ne.readerResults(), func(s string) bool { return strings.Contains(s, `"outcome":"credentials_rejected"`) }) {
		t.Error("the reader never reported rejected credentials")
	}

	// Every published file-set landed exactly once, complete.
	ne.verify(ne.expected())
	nc := ne.sim.NotificationCounters()
	if nc.Garbage != 1 || nc.Lost != 1 || nc.CredentialsDenied == 0 {
		t.Errorf("faults did not all fire: %+v", nc)
	}
	rejected := 0
	for _, r := range ne.readerResults() {
		var res struct{ Rejected int }
		_ = json.Unmarshal([]byte(r), &res)
		rejected += res.Rejected
	}
	if rejected != 1 {
		t.Errorf("reader rejected %d messages, want the 1 undecryptable", rejected)
	}
	if p := ne.rdpProxy.authPaths(); len(p) > 0 {
		t.Errorf("the notification reader called /auth: %v", p)
	}
	cloud := 0
	for _, a := range ne.sim.AuthLog() {
		if a.Path == "/auth/cloud-credentials/v1/" {
			cloud++
		}
	}
	if cloud < 2 {
		t.Errorf("%d cloud-credential requests, want the first and the renewal", cloud)
	}
}
