package rdptest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/cfsync/cfsync/internal/notify"
	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// memQueues is an in-memory NotificationQueues.
type memQueues struct {
	mu     sync.Mutex
	bodies map[string][]string
}

func (q *memQueues) CreateQueue(id string) (string, error) {
	return "https://sqs.us-east-1.amazonaws.com/000000000000/cfs-" + id, nil
}

func (q *memQueues) Send(url, body string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.bodies[url] = append(q.bodies[url], body)
	return nil
}

func (q *memQueues) take(url string) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.bodies[url]
	q.bodies[url] = nil
	return b
}

type notesEnv struct {
	s     *rdptest.Server
	q     *memQueues
	c     *rdp.Client
	token string
	sub   *rdp.Subscription
	key   []byte
	clock *rdptest.Clock
}

func newNotesEnv(t *testing.T) *notesEnv {
	t.Helper()
	clock := rdptest.NewClock(time.Time{})
	s := rdptest.New(t, rdptest.Options{Now: clock.Now})
	q := &memQueues{bodies: map[string][]string{}}
	s.EnableNotifications(q, 30*time.Minute)
	tok := s.IssueServiceToken("svc")
	c, err := rdp.NewClient(rdp.WithBaseURL(s.URL()), rdp.WithHTTPClient(oauth2.NewClient(context.Background(), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok}))))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe(context.Background(), rdp.ReadyQuery(rdptest.DefaultBucket, rdptest.DefaultPackageID))
	if err != nil {
		t.Fatal(err)
	}
	key, err := notify.ParseKey(sub.CryptographyKey)
	if err != nil {
		t.Fatal(err)
	}
	return &notesEnv{s: s, q: q, c: c, token: tok, sub: sub, key: key, clock: clock}
}

func (e *notesEnv) publish(t *testing.T, status string, files int) rdptest.FileSet {
	t.Helper()
	spec := rdptest.FileSetSpec{Bucket: rdptest.DefaultBucket, PackageID: rdptest.DefaultPackageID, Name: fmt.Sprintf("fs-%d", time.Now().UnixNano()), Status: status}
	for i := range files {
		spec.Files = append(spec.Files, rdptest.FileSpec{Name: fmt.Sprintf("f%d.gz", i), Size: int64(100 + i)})
	}
	return e.s.AddFileSet(spec)
}

// received decrypts what reached the subscription's queue; undecryptable
// bodies come back as "".
func (e *notesEnv) received(t *testing.T) []string {
	t.Helper()
	if !e.s.WaitNotifications(5 * time.Second) {
		t.Fatal("notifications not delivered")
	}
	var ids []string
	for _, b := range e.q.take(e.sub.Endpoint) {
		plain, err := notify.Decrypt(e.key, b)
		if err != nil {
			ids = append(ids, "")
			continue
		}
		n, err := notify.Parse(plain)
		if err != nil {
			t.Fatalf("simulator notification does not parse: %v", err)
		}
		ids = append(ids, n.FileSet.ID)
	}
	return ids
}

func TestNotificationPublishedWhenReady(t *testing.T) {
	e := newNotesEnv(t)
	fs := e.publish(t, "READY", 2)
	got := e.received(t)
	if len(got) != 1 || got[0] != fs.ID {
		t.Fatalf("received %v, want [%s]", got, fs.ID)
	}
	pending := e.publish(t, "PENDING", 1)
	if got := e.received(t); len(got) != 0 {
		t.Fatalf("PENDING file-set notified: %v", got)
	}
	e.s.SetFileSetStatus(pending.ID, "READY")
	if got := e.received(t); len(got) != 1 || got[0] != pending.ID {
		t.Fatalf("READY transition: %v", got)
	}
	e.s.AddPackage(rdptest.DefaultBucket, "other-package", "Other")
	e.s.AddFileSet(rdptest.FileSetSpec{Bucket: rdptest.DefaultBucket, PackageID: "other-package", Name: "x", Files: []rdptest.FileSpec{{Name: "a", Size: 1}}})
	if got := e.received(t); len(got) != 0 {
		t.Fatalf("file-set of another package notified: %v", got)
	}
}

func TestNotificationContent(t *testing.T) {
	e := newNotesEnv(t)
	fs := e.publish(t, "READY", 3)
	if !e.s.WaitNotifications(5 * time.Second) {
		t.Fatal("not delivered")
	}
	bodies := e.q.take(e.sub.Endpoint)
	plain, err := notify.Decrypt(e.key, bodies[0])
	if err != nil {
		t.Fatal(err)
	}
	n, err := notify.Parse(plain)
	if err != nil {
		t.Fatal(err)
	}
	if n.FileSet.BucketName != rdptest.DefaultBucket || n.FileSet.PackageID != rdptest.DefaultPackageID || n.FileSet.NumFiles != 3 ||
		len(n.FileSet.Files) != 3 || n.FileSet.Files[0].ID != fs.Files[0].ID || n.FileSet.Files[1].Size != 101 || n.MessageID == "" || n.SeqNo != 1 {
		t.Fatalf("notification %+v", n)
	}
}

func TestNotificationFaults(t *testing.T) {
	for _, tt := range []struct {
		name   string
		faults rdptest.NotificationFaults
		check  func(t *testing.T, a, b string, got []string)
	}{
		{"duplicate", rdptest.NotificationFaults{Duplicate: 1}, func(t *testing.T, a, b string, got []string) {
			if strings.Join(got, ",") != a+","+a+","+b {
				t.Fatalf("got %v", got)
			}
		}},
		{"lost", rdptest.NotificationFaults{Lose: 1}, func(t *testing.T, a, b string, got []string) {
			if strings.Join(got, ",") != b {
				t.Fatalf("got %v", got)
			}
		}},
		{"reordered", rdptest.NotificationFaults{Reorder: 1}, func(t *testing.T, a, b string, got []string) {
			if strings.Join(got, ",") != b+","+a {
				t.Fatalf("got %v", got)
			}
		}},
		{"undecryptable", rdptest.NotificationFaults{Undecryptable: 1}, func(t *testing.T, a, b string, got []string) {
			if strings.Join(got, ",") != ","+a+","+b {
				t.Fatalf("got %v", got)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newNotesEnv(t)
			e.s.SetNotificationFaults(tt.faults)
			a := e.publish(t, "READY", 1).ID
			b := e.publish(t, "READY", 1).ID
			tt.check(t, a, b, e.received(t))
		})
	}
}

func TestSubscriptionLifecycle(t *testing.T) {
	e := newNotesEnv(t)
	ctx := context.Background()
	subs, err := e.c.Subscriptions(ctx)
	if err != nil || len(subs) != 1 || subs[0].ID != e.sub.ID {
		t.Fatal(subs, err)
	}
	if b, p, ok := subs[0].Target(); !ok || b != rdptest.DefaultBucket || p != rdptest.DefaultPackageID {
		t.Fatal(b, p, ok)
	}
	if err := e.c.DeleteSubscription(ctx, e.sub.ID); err != nil {
		t.Fatal(err)
	}
	e.publish(t, "READY", 1)
	if got := e.received(t); len(got) != 0 {
		t.Fatalf("deleted subscription still notified: %v", got)
	}
	if subs, _ := e.c.Subscriptions(ctx); len(subs) != 0 {
		t.Fatal(subs)
	}
}

func TestCloudCredentialsAndGate(t *testing.T) {
	e := newNotesEnv(t)
	ctx := context.Background()
	auth, _ := rdp.NewClient(rdp.WithBaseURL(e.s.URL()), rdp.WithUserAgent("cfsync-token-refresher"))
	if _, err := auth.CloudCredentialsFor(ctx, "bad-token", e.sub.Endpoint); err == nil {
		t.Fatal("bad token accepted")
	}
	cr, err := auth.CloudCredentialsFor(ctx, e.token, e.sub.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.CloudCredentialsFor(ctx, e.token, "https://sqs.us-east-1.amazonaws.com/1/not-a-subscription"); err == nil {
		t.Fatal("credentials for an unknown queue")
	}
	log := e.s.AuthLog()
	if len(log) != 3 || log[1].Path != "/auth/cloud-credentials/v1/" || log[1].Status != 200 {
		t.Fatalf("auth log %+v", log)
	}
	for _, r := range log { // who asked: the demo's check that only the refresher calls /auth
		if r.UserAgent != "cfsync-token-refresher" {
			t.Errorf("auth record %s %d has User-Agent %q, want the client's", r.Path, r.Status, r.UserAgent)
		}
	}

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "upstream") }))
	defer upstream.Close()
	gate, err := e.s.StartCredentialGate(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer gate.Close()
	call := func(akid string) (int, string, string) {
		req, _ := http.NewRequest(http.MethodPost, gate.URL()+"/", nil)
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+akid+"/20250106/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=x")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("x-amzn-query-error"), string(b)
	}
	if st, _, body := call(cr.AccessKeyID); st != 200 || body != "upstream" {
		t.Fatalf("good credentials: %d %s", st, body)
	}
	if st, code, _ := call("ASIAUNKNOWN"); st != 403 || !strings.HasPrefix(code, "InvalidClientTokenId") {
		t.Fatalf("unknown credentials: %d %s", st, code)
	}
	e.clock.Advance(31 * time.Minute)
	if st, code, _ := call(cr.AccessKeyID); st != 400 || !strings.HasPrefix(code, "ExpiredToken") {
		t.Fatalf("expired credentials: %d %s", st, code)
	}
	cr2, err := auth.CloudCredentialsFor(ctx, e.s.IssueServiceToken("svc"), e.sub.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if st, _, _ := call(cr2.AccessKeyID); st != 200 {
		t.Fatalf("renewed credentials refused: %d", st)
	}
	e.s.ExpireCloudCredentials()
	if st, _, _ := call(cr2.AccessKeyID); st != 400 {
		t.Fatalf("ExpireCloudCredentials: %d", st)
	}
}
