package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cfsync/cfsync/internal/landing"
	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/randid"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

const (
	pkgLanding = "4e94-0a0a-5c5c5c5c-1234-abcdefabcdef"
	pkgOther   = "4e94-0b0b-6d6d6d6d-5678-abcdefabcdef"
)

// landingData: an Init file-set of four parts (one of them a multipart
// upload), a Delta of three and a Delta of one, created a day apart; and a
// file-set of another package whose events a rule on pkgLanding must not see.
func landingData(sim *rdptest.Server) {
	base := time.Now().UTC().Add(-72 * time.Hour).Truncate(time.Hour)
	sets := []struct {
		name  string
		sizes []int64
	}{
		{"ESG-Scores-Init-%s", []int64{1 << 10, 200 << 10, 9<<20 + 17, 0}},
		{"ESG-Scores-Delta-%s", []int64{70 << 10, 1<<20 + 5, 3 << 10}},
		{"ESG-Scores-Delta-%s", []int64{512 << 10}},
	}
	for i, s := range sets {
		ts := base.Add(time.Duration(i) * 24 * time.Hour)
		spec := rdptest.FileSetSpec{Bucket: "bulk-ESG", PackageID: pkgLanding, Name: fmt.Sprintf(s.name, ts.Format("2006-01-02")),
			Created: ts, Modified: ts, Attributes: []rdptest.Attribute{{Name: "ContentKey", Value: "Scores"}}}
		for j, size := range s.sizes {
			spec.Files = append(spec.Files, rdptest.FileSpec{Name: fmt.Sprintf("RFT-ESG-%d-Part%03d.jsonl.gz", i, j+1), Size: size})
		}
		sim.AddFileSet(spec)
	}
	sim.AddFileSet(rdptest.FileSetSpec{Bucket: "bulk-ESG", PackageID: pkgOther, Name: "Other-Init", Created: base, Modified: base,
		Files: []rdptest.FileSpec{{Name: "other.jsonl.gz", Size: 2 << 10}}})
}

// eventCapture is an EventBridge rule on moto's default bus with an SQS
// queue as its target: the events cfsync puts, as a consumer would get them.
type eventCapture struct {
	e        *env
	queueURL string
}

func (e *env) captureEvents(pattern string) *eventCapture {
	e.t.Helper()
	ctx := context.Background()
	name := "landed-" + randid.Hex(4)
	q, err := e.p.SQS.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		e.t.Fatal(err)
	}
	attrs, err := e.p.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		e.t.Fatal(err)
	}
	eb := eventbridge.NewFromConfig(e.p.AWS)
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(name), EventPattern: aws.String(pattern)}); err != nil {
		e.t.Fatalf("put rule: %v", err)
	}
	_, err = eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(name),
		Targets: []ebtypes.Target{{Id: aws.String("q"), Arn: aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)])}}})
	if err != nil {
		e.t.Fatalf("put targets: %v", err)
	}
	return &eventCapture{e: e, queueURL: aws.ToString(q.QueueUrl)}
}

// landedEvent is an EventBridge event as delivered to a target.
type landedEvent struct {
	Source     string            `json:"source"`
	DetailType string            `json:"detail-type"`
	Detail     json.RawMessage   `json:"detail"`
	Manifest   *landing.Manifest `json:"-"`
}

// drain receives (and deletes) every event now in the capture queue.
func (c *eventCapture) drain() []landedEvent {
	c.e.t.Helper()
	ctx := context.Background()
	var out []landedEvent
	for {
		r, err := c.e.p.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &c.queueURL, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			c.e.t.Fatal(err)
		}
		if len(r.Messages) == 0 {
			return out
		}
		for _, m := range r.Messages {
			c.e.extra = append(c.e.extra, aws.ToString(m.Body)) // the leak scan covers the events
			var ev landedEvent
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &ev); err != nil {
				c.e.t.Fatalf("event is not JSON: %v: %s", err, aws.ToString(m.Body))
			}
			ev.Manifest = &landing.Manifest{}
			if err := json.Unmarshal(ev.Detail, ev.Manifest); err != nil {
				c.e.t.Fatalf("event detail is not a manifest: %v", err)
			}
			out = append(out, ev)
			if _, err := c.e.p.SQS.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &c.queueURL, ReceiptHandle: m.ReceiptHandle}); err != nil {
				c.e.t.Fatal(err)
			}
		}
	}
}

// getJSON reads an object into v and returns its ETag; false if missing.
func (e *env) getJSON(key string, v any) (string, bool) {
	e.t.Helper()
	out, err := e.p.S3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &e.p.Res.Bucket, Key: aws.String(key)})
	if err != nil {
		return "", false
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	e.extra = append(e.extra, string(b)) // the leak scan covers manifests and indexes
	if err := json.Unmarshal(b, v); err != nil {
		e.t.Fatalf("%s is not JSON: %v", key, err)
	}
	return aws.ToString(out.ETag), true
}

// sendAgain puts a second copy of each file's message on the download queue.
func (e *env) sendAgain(files []rdptest.File) {
	e.t.Helper()
	for _, f := range files {
		body := queue.Message{FileID: f.ID, FileSetID: f.FileSetID, FileSetName: f.FileSetName, Bucket: f.Bucket, PackageID: f.PackageID}.Encode()
		if _, err := e.p.SQS.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &e.p.Res.QueueURL, MessageBody: aws.String(body)}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// TestFileSetLanded: every part of three multi-file file-sets is delivered
// twice, to two downloader environments at once. Each file-set gets exactly
// one manifest and one "FileSet Landed" event, after its last part landed;
// the manifest's keys, sizes and ETags match the objects; the package index
// lists each file-set once, in order, with its kind. A later redelivery of
// a part changes nothing, and a rule on another package sees nothing.
func TestFileSetLanded(t *testing.T) {
	proxy := newSerialProxy(t)
	e := newEnv(t, envOptions{
		subs: []string{"bulk-ESG/" + pkgLanding}, seed: landingData,
		extraEnv: map[string][]string{pipeline.Downloader: {"AWS_ENDPOINT_URL_DYNAMODB=" + proxy.srv.URL, "AWS_ENDPOINT_URL_S3=" + proxy.srv.URL}},
	})
	proxy.point(t, e.p.Endpoint)
	want := e.expected()
	if len(want) != 8 {
		t.Fatalf("ground truth has %d subscribed files, want 8", len(want))
	}
	rule := `{"source":["cfsync"],"detail-type":["FileSet Landed"],"detail":{"packageId":["%s"]}}`
	events := e.captureEvents(fmt.Sprintf(rule, pkgLanding))
	other := e.captureEvents(fmt.Sprintf(rule, pkgOther))
	e.waitToken()

	// The poller sends one message per file; a second copy of each makes
	// every part arrive twice, in batches that two downloaders run at once.
	e.p.Events.Pause()
	if res := e.invoke(pipeline.Poller, `{}`); res.Err != nil {
		t.Fatalf("poller: %s", res.Payload)
	}
	e.sendAgain(want)
	e.p.Events.Resume()
	e.waitLanded(len(want), 2*time.Minute)
	e.verify(want)
	if st := e.p.Events.Stats(); st.ItemFailures != 0 || st.BatchFailures != 0 || st.Deleted != int64(2*len(want)) {
		t.Errorf("event source: %+v; want every message and its copy to succeed the first time (%d)", st, 2*len(want))
	}

	bySet := map[string][]rdptest.File{}
	for _, f := range want {
		bySet[f.FileSetID] = append(bySet[f.FileSetID], f)
	}
	got := events.drain()
	if len(got) != len(bySet) {
		t.Fatalf("%d FileSet Landed events for %d file-sets", len(got), len(bySet))
	}
	seen := map[string]bool{}
	for _, ev := range got {
		m := ev.Manifest
		if ev.Source != "cfsync" || ev.DetailType != "FileSet Landed" {
			t.Errorf("event source %q detail-type %q", ev.Source, ev.DetailType)
		}
		if seen[m.FileSetID] {
			t.Errorf("a second event for file-set %s", m.FileSetID)
		}
		seen[m.FileSetID] = true
		e.checkManifest(m, bySet[m.FileSetID])
	}
	idx := e.checkIndex(bySet)

	t.Run("redelivered parts change nothing", func(t *testing.T) {
		before := e.p.Events.Stats().Deleted
		e.sendAgain([]rdptest.File{bySet[m0(got)][0], want[len(want)-1]})
		if !testenv.WaitUntil(time.Minute, 200*time.Millisecond, func() bool { return e.p.Events.Stats().Deleted >= before+2 }) {
			t.Fatalf("the redelivered messages were not handled: %+v", e.p.Events.Stats())
		}
		if extra := events.drain(); len(extra) != 0 {
			t.Errorf("%d more events after redeliveries: %+v", len(extra), extra)
		}
		var again landing.Index
		etag, _ := e.getJSON(landing.IndexKey(e.p.Res.Prefix, "bulk-ESG", pkgLanding), &again)
		if etag != idx {
			t.Errorf("the index was rewritten by a redelivery: %+v", again)
		}
	})
	if n := len(other.drain()); n != 0 {
		t.Errorf("the rule on package %s got %d events", pkgOther, n)
	}
}

func m0(evs []landedEvent) string { return evs[0].Manifest.FileSetID }

// checkManifest compares an event's manifest with the manifest object and
// with the objects themselves (read back).
func (e *env) checkManifest(m *landing.Manifest, files []rdptest.File) {
	t := e.t
	t.Helper()
	key := landing.ManifestKey(e.p.Res.Prefix, "bulk-ESG", pkgLanding, m.FileSetID)
	var obj landing.Manifest
	if _, ok := e.getJSON(key, &obj); !ok {
		t.Errorf("no manifest object %s", key)
		return
	}
	a, _ := json.Marshal(m)
	b, _ := json.Marshal(&obj)
	if string(a) != string(b) {
		t.Errorf("event detail and manifest object differ:\n%s\n%s", a, b)
	}
	if m.ManifestKey != key || m.PackageID != pkgLanding || m.Bucket != "bulk-ESG" || m.DestBucket != e.p.Res.Bucket ||
		m.FileCount != len(files) || len(m.Files) != len(files) || m.FileSetName != files[0].FileSetName {
		t.Errorf("manifest header %+v for %d files", m, len(files))
	}
	var keys []string
	for _, f := range files {
		keys = append(keys, pipeline.ExpectedKey(e.p.Res.Prefix, f))
	}
	slices.Sort(keys)
	var total int64
	for i, mf := range m.Files {
		if i < len(keys) && mf.Key != keys[i] {
			t.Errorf("manifest file %d key %s, want %s", i, mf.Key, keys[i])
		}
		h, err := e.p.S3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &e.p.Res.Bucket, Key: aws.String(mf.Key)})
		if err != nil {
			t.Errorf("head %s: %v", mf.Key, err)
			continue
		}
		if aws.ToInt64(h.ContentLength) != mf.Size || aws.ToString(h.ETag) != mf.ETag || h.Metadata["cfs-file-id"] != mf.FileID {
			t.Errorf("manifest says %+v; the object has size %d, ETag %s, file id %s", mf, aws.ToInt64(h.ContentLength), aws.ToString(h.ETag), h.Metadata["cfs-file-id"])
		}
		total += mf.Size
	}
	if total != m.TotalSize {
		t.Errorf("totalSize %d, files sum to %d", m.TotalSize, total)
	}
}

// checkIndex checks the package index and returns its ETag.
func (e *env) checkIndex(bySet map[string][]rdptest.File) string {
	t := e.t
	t.Helper()
	var idx landing.Index
	etag, ok := e.getJSON(landing.IndexKey(e.p.Res.Prefix, "bulk-ESG", pkgLanding), &idx)
	if !ok {
		t.Fatal("no package index")
	}
	if len(idx.FileSets) != len(bySet) {
		t.Fatalf("index lists %d file-sets, want %d: %+v", len(idx.FileSets), len(bySet), idx.FileSets)
	}
	wantKinds := []string{landing.KindInit, landing.KindDelta, landing.KindDelta}
	for i, f := range idx.FileSets {
		if bySet[f.FileSetID] == nil {
			t.Errorf("index entry %d: unknown file-set %s", i, f.FileSetID)
		}
		if f.Kind != wantKinds[i] || !strings.Contains(f.FileSetName, "ESG-Scores-"+wantKinds[i]) {
			t.Errorf("index entry %d: %s %s, want kind %s", i, f.FileSetName, f.Kind, wantKinds[i])
		}
		if f.Created == nil {
			t.Errorf("index entry %d has no created time", i)
		} else if i > 0 && idx.FileSets[i-1].Created != nil && !idx.FileSets[i-1].Created.Before(*f.Created) {
			t.Errorf("index not in creation order at %d: %v then %v", i, idx.FileSets[i-1].Created, f.Created)
		}
	}
	return etag
}
