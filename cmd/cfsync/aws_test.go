package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cfsync/cfsync/internal/queue"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// TestAWS runs the commands that use AWS against one moto_server.
func TestAWS(t *testing.T) {
	aw := testenv.MotoAWS(t)
	awsEnv := func(extra map[string]string) map[string]string {
		env := aw.Moto.EnvMap()
		maps.Copy(env, extra)
		return env
	}
	t.Run("status", func(t *testing.T) { testStatus(t, aw.DB, awsEnv) })
	t.Run("redrive", func(t *testing.T) { testRedrive(t, aw.SQS, awsEnv) })
	t.Run("credentials secret", func(t *testing.T) { testCredentialsSecret(t, aw.SM, awsEnv) })
	t.Run("token ring", func(t *testing.T) { testTokenRing(t, aw.SM, awsEnv) })
}

func testStatus(t *testing.T, db *dynamodb.Client, awsEnv func(map[string]string) map[string]string) {
	ctx := context.Background()
	testenv.StateTable(t, db, "cfsync-state")
	testenv.StateTable(t, db, "cfsync-empty")
	h := time.Hour
	// Fixture items as the functions leave them (written directly: this is
	// about reading the table, not about the transitions).
	type fixture struct {
		id, set, status, reason string
		created, updated        time.Duration // before t0
		avail                   time.Duration // availableTo - t0
		attempts                int
	}
	fixtures := []fixture{
		{"f-claimed", "ESG-Delta-0131", state.StatusClaimed, "", 3 * h, 3 * h, 30 * 24 * h, 0},
		{"f-queued", "ESG-Delta-0130", state.StatusQueued, "", 2 * h, 2 * h, 20 * h, 0},
		{"f-downloading", "ESG-Delta-0101", state.StatusDownloading, "", 90 * time.Minute, 5 * time.Minute, -1 * h, 2},
		{"f-done", "ESG-Delta-0101", state.StatusDone, "", 5 * h, 4 * h, 1 * h, 1},
		{"f-gone", "ESG-Full-0102", state.StatusFailed, "download: get stream url: 404 File not found", 50 * time.Minute, 30 * time.Minute, 10 * 24 * h, 1},
		{"f-md5", "ESG-Full-0102", state.StatusFailed, "verify: md5 mismatch: got 0cc175b9c0f1b6a831c399e269772661, want 92eb5ffee6ae2fec3ad71c777531578f", 40 * time.Minute, 10 * time.Minute, 2 * h, 5},
	}
	for _, f := range fixtures {
		it := state.FileItem{PK: state.FilePK(f.id), SK: state.SKFile, FileID: f.id, FileSetID: "fs-" + f.set, FileSetName: f.set,
			Bucket: bucketESG, PackageID: pkgScores, Status: f.status, Attempts: f.attempts, Reason: f.reason,
			AvailableTo: t0.Add(f.avail), CreatedAt: t0.Add(-f.created), UpdatedAt: t0.Add(-f.updated)}
		av, err := attributevalue.MarshalMap(it)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("cfsync-state"), Item: av}); err != nil {
			t.Fatal(err)
		}
	}
	// Items that are not files are not counted.
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("cfsync-state"), Item: map[string]ddbtypes.AttributeValue{
		"pk": &ddbtypes.AttributeValueMemberS{Value: state.PKAuth}, "sk": &ddbtypes.AttributeValueMemberS{Value: state.SKRing},
		"generation": &ddbtypes.AttributeValueMemberN{Value: "7"},
	}}); err != nil {
		t.Fatal(err)
	}

	c := &cli{t: t, env: awsEnv(map[string]string{"STATE_TABLE": "cfsync-state"})}
	r := c.run("status")
	if r.code != exitOK {
		t.Fatalf("code %d stderr %s", r.code, r.stderr)
	}
	golden(t, "status.golden", r.stdout)

	r = c.run("status", "--json", "--window", "3h")
	rep := jsonOut[statusReport](t, r)
	ids := func(fs []*state.FileItem) string {
		var out []string
		for _, f := range fs {
			out = append(out, f.FileID)
		}
		return strings.Join(out, ",")
	}
	if rep.Total != 6 || rep.Counts[state.StatusFailed] != 2 || rep.Counts[state.StatusDone] != 1 ||
		rep.OldestPending == nil || rep.OldestPending.FileID != "f-claimed" ||
		ids(rep.Failures) != "f-md5,f-gone" || ids(rep.Expiring) != "f-downloading,f-md5" ||
		rep.Failures[1].Reason != fixtures[4].reason || rep.Failures[0].Attempts != 5 {
		t.Errorf("status --json = %+v", rep)
	}
	// The field names of a file are the contract; the table's keys stay out.
	raw := jsonOut[struct{ Failures []map[string]any }](t, r)
	if len(raw.Failures) == 0 {
		t.Fatalf("status --json: no failures: %s", r.stdout)
	}
	for _, k := range []string{"fileId", "fileSetId", "fileSetName", "bucket", "packageId", "status", "attempts", "reason", "createdAt", "updatedAt", "availableTo"} {
		if _, ok := raw.Failures[0][k]; !ok {
			t.Errorf("status --json failure lacks %q: %v", k, raw.Failures[0])
		}
	}
	for _, k := range []string{"pk", "sk", "PK", "SK"} {
		if _, ok := raw.Failures[0][k]; ok {
			t.Errorf("status --json failure has %q: %v", k, raw.Failures[0])
		}
	}

	r = c.run("status", "--check")
	if r.code != exitCheckFailed || !strings.Contains(r.stderr, "2 failed file(s), 3 file(s) nearing availableTo") {
		t.Errorf("--check: code %d stderr %q", r.code, r.stderr)
	}
	// The flag wins over STATE_TABLE; an empty table passes the check.
	r = c.run("status", "--check", "--table", "cfsync-empty")
	if r.code != exitOK || !strings.Contains(r.stdout, "cfsync-empty") || !strings.Contains(r.stdout, "oldest pending: none") {
		t.Errorf("empty table: code %d stdout %s stderr %s", r.code, r.stdout, r.stderr)
	}
	r = c.run("status", "--table", "no-such-table")
	if r.code != exitError || !strings.Contains(r.stderr, "scan file states") {
		t.Errorf("missing table: code %d stderr %s", r.code, r.stderr)
	}
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

func createQueue(t *testing.T, q *sqs.Client, name string) string {
	t.Helper()
	out, err := q.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.QueueUrl)
}

func sendBodies(t *testing.T, q *sqs.Client, url string, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		if _, err := q.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
}

// queueCounts returns the visible and in-flight message counts.
func queueCounts(t *testing.T, q *sqs.Client, url string) (visible, inFlight int) {
	t.Helper()
	out, err := q.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		t.Fatal(err)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight
}

// drain receives and deletes every visible message of a queue.
func drain(t *testing.T, q *sqs.Client, url string) []string {
	t.Helper()
	var bodies []string
	for {
		out, err := q.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, VisibilityTimeout: 60})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			return bodies
		}
		for _, m := range out.Messages {
			bodies = append(bodies, aws.ToString(m.Body))
			if _, err := q.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func testRedrive(t *testing.T, q *sqs.Client, awsEnv func(map[string]string) map[string]string) {
	dl := createQueue(t, q, "cfsync-downloads")
	dlq := createQueue(t, q, "cfsync-downloads-dlq")
	msg := func(id string) queue.Message {
		return queue.Message{FileID: id, FileSetID: "fs-1", FileSetName: "ESG-Delta-0130", Bucket: bucketESG, PackageID: pkgScores}
	}
	good := []queue.Message{msg("f-1"), msg("f-2"), msg("f-2")} // a duplicate delivery too
	sendBodies(t, q, dlq, good[0].Encode(), good[1].Encode(), good[2].Encode(),
		`{"fileId": "f-3", "bucket": "bulk-ESG"`,                  // truncated JSON
		`{"fileId":"f-4","fileSetId":"fs-1","bucket":"bulk-ESG"}`) // no packageId
	c := &cli{t: t, env: awsEnv(map[string]string{"DLQ_URL": dlq, "DOWNLOAD_QUEUE_URL": dl})}
	norm := func(s string) string { return uuidRE.ReplaceAllString(s, "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx") }

	r := c.run("redrive", "--dry-run", "--wait", "0s")
	if r.code != exitCheckFailed {
		t.Fatalf("dry run: code %d stderr %s", r.code, r.stderr)
	}
	golden(t, "redrive-dry-run.golden", norm(r.stdout))
	if v, _ := queueCounts(t, q, dl); v != 0 {
		t.Errorf("dry run sent %d messages", v)
	}
	if v, inFlight := queueCounts(t, q, dlq); v != 5 || inFlight != 0 {
		t.Errorf("after the dry run the DLQ has %d visible, %d in flight; want 5, 0", v, inFlight)
	}

	r = c.run("redrive", "--wait", "0s")
	if r.code != exitCheckFailed || !strings.Contains(r.stderr, "2 bad message(s) left in the DLQ") {
		t.Fatalf("redrive: code %d stderr %s", r.code, r.stderr)
	}
	golden(t, "redrive.golden", norm(r.stdout))
	var moved []string
	for _, b := range drain(t, q, dl) {
		m, err := queue.Decode(b)
		if err != nil {
			t.Fatalf("download queue got a bad message: %v", err)
		}
		if m != msg(m.FileID) {
			t.Errorf("message changed on the way: %+v", m)
		}
		moved = append(moved, m.FileID)
	}
	slices.Sort(moved)
	if strings.Join(moved, ",") != "f-1,f-2,f-2" {
		t.Errorf("download queue got %v, want f-1, f-2, f-2", moved)
	}
	left := drain(t, q, dlq)
	slices.Sort(left)
	if len(left) != 2 || !strings.Contains(left[0], `"f-3"`) || !strings.Contains(left[1], `"f-4"`) {
		t.Errorf("DLQ keeps %q, want the two bad messages", left)
	}

	// --max bounds the run.
	dl2 := createQueue(t, q, "cfsync-downloads-2")
	dlq2 := createQueue(t, q, "cfsync-downloads-2-dlq")
	sendBodies(t, q, dlq2, msg("a").Encode(), msg("b").Encode(), msg("c").Encode())
	r = c.run("redrive", "--dlq-url", dlq2, "--queue-url", dl2, "--max", "2", "--wait", "0s")
	if r.code != exitOK || !strings.Contains(r.stdout, "moved 2 message(s)") {
		t.Fatalf("--max: code %d stdout %s stderr %s", r.code, r.stdout, r.stderr)
	}
	if got, left := len(drain(t, q, dl2)), len(drain(t, q, dlq2)); got != 2 || left != 1 {
		t.Errorf("--max 2: moved %d, left %d", got, left)
	}

	// A download queue that does not exist: nothing is deleted from the DLQ.
	sendBodies(t, q, dlq2, msg("d").Encode())
	r = c.run("redrive", "--dlq-url", dlq2, "--queue-url", dl2+"-missing", "--wait", "0s")
	if r.code != exitError || !strings.Contains(r.stdout, "send failed, left in DLQ") {
		t.Errorf("missing queue: code %d stdout %s stderr %s", r.code, r.stdout, r.stderr)
	}
	if v, inFlight := queueCounts(t, q, dlq2); v != 1 || inFlight != 0 {
		t.Errorf("after a failed send the DLQ has %d visible, %d in flight; want 1, 0", v, inFlight)
	}
}

func testCredentialsSecret(t *testing.T, sm *secretsmanager.Client, awsEnv func(map[string]string) map[string]string) {
	sim := newSim(t, rdptest.Options{})
	ctx := context.Background()
	for name, value := range map[string]string{
		"cfsync/rdp-credentials": fmt.Sprintf(`{"client_id":%q,"client_secret":%q}`, testSAID, testSASecret),
		"cfsync/bad-credentials": `{"username":"u","client_id":"k"}`,
	} {
		if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)}); err != nil {
			t.Fatal(err)
		}
	}
	c := &cli{t: t, env: awsEnv(map[string]string{"RDP_BASE_URL": sim.URL()})}
	r := c.run("login", "--credentials-secret", "cfsync/rdp-credentials")
	if r.code != exitOK || !strings.Contains(r.stdout, "client credentials grant with secret cfsync/rdp-credentials") {
		t.Errorf("code %d stdout %s stderr %s", r.code, r.stdout, r.stderr)
	}
	r = c.run("login", "--credentials-secret", "cfsync/bad-credentials")
	if r.code != exitError || !strings.Contains(r.stderr, `field "password" is missing or empty`) {
		t.Errorf("bad secret: code %d stderr %s", r.code, r.stderr)
	}
	r = c.run("login", "--credentials-secret", "cfsync/missing")
	if r.code != exitError || !strings.Contains(r.stderr, "read credentials secret cfsync/missing") {
		t.Errorf("missing secret: code %d stderr %s", r.code, r.stderr)
	}
	for _, out := range []string{r.stdout, r.stderr} {
		if strings.Contains(out, testSASecret) || strings.Contains(out, testSAID) {
			t.Error("output contains the service account's credentials")
		}
	}
}

func testTokenRing(t *testing.T, sm *secretsmanager.Client, awsEnv func(map[string]string) map[string]string) {
	sim := newSim(t, rdptest.Options{})
	ctx := context.Background()
	access, refresh := sim.IssueTokens(testUser, testAppKey) // the refresher's session, no /auth request
	slot := func(s tokenring.Slot) string {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	slots := map[string]string{
		"cfsync/token-0": "{}", // the template's placeholder
		"cfsync/token-1": slot(tokenring.Slot{AccessToken: access, RefreshToken: refresh, TokenType: "Bearer", ExpiresAt: t0.Add(10 * time.Minute), IssuedAt: t0, Generation: 7}),
		"cfsync/token-2": slot(tokenring.Slot{AccessToken: "expired-token-of-generation-6", TokenType: "Bearer", ExpiresAt: t0.Add(-time.Minute), IssuedAt: t0.Add(-11 * time.Minute), Generation: 6}),
		"cfsync/stale":   slot(tokenring.Slot{AccessToken: "expired-token-of-generation-5", ExpiresAt: t0.Add(-time.Hour), Generation: 5}),
	}
	for name, value := range slots {
		if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)}); err != nil {
			t.Fatal(err)
		}
	}
	// The environment also holds (wrong) v1 credentials: --token-ring must not sign on.
	env := awsEnv(map[string]string{"RDP_BASE_URL": sim.URL(), "TOKEN_SECRET_IDS": "cfsync/token-0, cfsync/token-1,cfsync/token-2",
		"RDP_USERNAME": testUser, "RDP_PASSWORD": "wrong", "RDP_CLIENT_ID": testAppKey})
	c := &cli{t: t, env: env}
	sim.ResetCounters()

	r := c.run("login", "--token-ring")
	if r.code != exitOK {
		t.Fatalf("code %d stderr %s", r.code, r.stderr)
	}
	golden(t, "login-token-ring.golden", normalize(r.stdout, sim.URL(), "http://RDP"))

	r = c.run("packages", "--token-ring", "--bucket", bucketESG, "--json")
	var pkgs []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &pkgs); r.code != exitOK || err != nil || len(pkgs) != 2 {
		t.Fatalf("packages --token-ring: code %d, %d packages (%v); stderr %s", r.code, len(pkgs), err, r.stderr)
	}
	if n := sim.Counters().AuthRequests; n != 0 {
		t.Errorf("--token-ring sent %d /auth requests, want 0", n)
	}
	if sim.SessionLive(testUser) != true {
		t.Error("the refresher's session ended")
	}
	for _, out := range []string{r.stdout, r.stderr} {
		if strings.Contains(out, access) || strings.Contains(out, refresh) {
			t.Error("output contains a ring token")
		}
	}

	r = c.run("login", "--token-ring", "--token-secret-ids", "cfsync/token-2,cfsync/stale")
	if r.code != exitError || !strings.Contains(r.stderr, "no valid token") || !strings.Contains(r.stderr, "is the token-refresher running?") {
		t.Errorf("expired ring: code %d stderr %s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "expired-token-of") {
		t.Error("error output contains a token")
	}
}
