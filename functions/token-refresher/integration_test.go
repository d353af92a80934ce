package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cfsync/cfsync/internal/lambdarun"
	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// TestIntegration runs the BUILT function under the Lambda Runtime API
// server against moto_server (Secrets Manager, DynamoDB) and the RDP
// simulator: the ring is written, a reader picks the newest token, a
// server-side revoke leads to a reader's report and the next run recovers
// with one password grant, without a storm; the logs hold no secret.
func TestIntegration(t *testing.T) {
	aw := testenv.MotoAWS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sm, db := aw.SM, aw.DB
	testenv.StateTable(t, db, "cfsync-state")
	const (
		user     = "machine-user"
		password = "Pa55-word-secret"
		appKey   = "appkey0123456789abcdef"
	)
	aw.CreateSecret(t, "cfsync/rdp-credentials", aws.String(`{"username":"`+user+`","password":"`+password+`","client_id":"`+appKey+`"}`))
	// The template's placeholders: `{}` in two slots, no value in the third.
	ids := []string{"cfsync/token-0", "cfsync/token-1", "cfsync/token-2"}
	for i, id := range ids {
		var placeholder *string
		if i < 2 {
			placeholder = aws.String("{}")
		}
		aw.CreateSecret(t, id, placeholder)
	}
	sim := rdptest.NewServer(rdptest.Options{})
	defer sim.Close()
	sim.AddUser(user, password, appKey)
	sim.AddPackage("bulk-ESG", "pkg-1", "ESG package") // the reader lists it; an unknown bucket is a 404

	bin, err := lambdarun.BuildFunction(ctx, ".", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env := append(aw.Moto.AWSEnv(),
		"RDP_BASE_URL="+sim.URL(),
		"RDP_CREDENTIALS_SECRET_ID=cfsync/rdp-credentials",
		"TOKEN_SECRET_IDS="+strings.Join(ids, ","),
		"STATE_TABLE=cfsync-state",
		"LOG_LEVEL=debug",
	)
	fn, err := lambdarun.Start(ctx, lambdarun.Options{Name: "token-refresher", Binary: bin, Env: env, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer fn.Close()
	invoke := func(payload string) (Result, *lambdarun.FunctionError) {
		t.Helper()
		out, err := fn.Invoke(ctx, []byte(payload))
		if err != nil {
			t.Fatalf("invoke %s: %v", payload, err)
		}
		if out.Err != nil {
			return Result{}, out.Err
		}
		var res Result
		if err := json.Unmarshal(out.Payload, &res); err != nil {
			t.Fatalf("result %s: %v", out.Payload, err)
		}
		return res, nil
	}
	mustInvoke := func(payload string) Result {
		t.Helper()
		res, ferr := invoke(payload)
		if ferr != nil {
			t.Fatalf("invoke %s: %v\nlogs:\n%s", payload, ferr, strings.Join(fn.Logs(), "\n"))
		}
		return res
	}

	// 1. The first run signs on and writes generation 1.
	res := mustInvoke(`{"version":"0","detail-type":"Scheduled Event","source":"aws.events","detail":{}}`)
	if res.Outcome != OutcomeRefreshed || res.Grant != grantPassword || res.Generation != 1 || res.Slot != ids[0] {
		t.Fatalf("first run: %+v", res)
	}
	// 2. A forced refresh uses the refresh grant into the next slot.
	res = mustInvoke(`{"action":"refresh","force":true}`)
	if res.Outcome != OutcomeRefreshed || res.Grant != grantRefresh || res.Generation != 2 || res.Slot != ids[1] {
		t.Fatalf("forced run: %+v", res)
	}
	// 3. The next scheduled run has nothing to do.
	if res = mustInvoke(`{}`); res.Outcome != OutcomeFresh || res.AuthCalls != 0 {
		t.Fatalf("third run: %+v", res)
	}

	// A reader picks the newest generation and RDP accepts it.
	table := state.New(db, "cfsync-state")
	reader := tokenring.NewReader(sm, table, ids, tokenring.ReaderOptions{})
	list := readerLister(t, sim, reader)
	if err := list(ctx); err != nil {
		t.Fatalf("reader: %v", err)
	}
	if g := reader.Generation(); g != 2 {
		t.Fatalf("reader uses generation %d, want 2", g)
	}

	// The session dies at RDP: the reader re-reads, retries, and reports.
	sim.RevokeSessions(user)
	err = list(ctx)
	if !errors.Is(err, tokenring.ErrTokenInvalid) || !errors.Is(err, rdp.ErrUnauthorized) {
		t.Fatalf("reader after revoke: %v", err)
	}
	rep, err := table.GetTokenReport(ctx, 2)
	if err != nil {
		t.Fatalf("no report for generation 2: %v", err)
	}
	t.Logf("report: generation %d, reason %q", rep.Generation, rep.Reason)

	// The next run recovers: the refresh grant fails, one password grant.
	sim.ResetCounters()
	res = mustInvoke(`{}`)
	if res.Outcome != OutcomeRefreshed || res.Reason != dueReported || res.Grant != grantPassword || res.Generation != 3 || res.Slot != ids[2] {
		t.Fatalf("recovery run: %+v", res)
	}
	for range 3 {
		if res = mustInvoke(`{}`); res.Outcome != OutcomeFresh {
			t.Fatalf("after recovery: %+v", res)
		}
	}
	c := sim.Counters()
	if c.PasswordGrants != 1 || c.RefreshGrants != 1 || c.AuthRequests != 2 {
		t.Fatalf("recovery cost password=%d refresh=%d auth=%d, want 1, 1, 2", c.PasswordGrants, c.RefreshGrants, c.AuthRequests)
	}
	if err := list(ctx); err != nil || reader.Generation() != 3 {
		t.Fatalf("reader after recovery: generation %d, %v", reader.Generation(), err)
	}

	// Revoke action: the session ends at RDP, sign-ons are held, slots untouched.
	res = mustInvoke(`{"action":"revoke"}`)
	if res.Outcome != OutcomeRevoked || sim.SessionLive(user) {
		t.Fatalf("revoke: %+v, session live %v", res, sim.SessionLive(user))
	}
	if res = mustInvoke(`{"action":"refresh","force":false}`); res.Outcome != OutcomeFresh && res.Outcome != OutcomeHeld {
		t.Fatalf("after revoke: %+v", res)
	}
	if err := list(ctx); !errors.Is(err, tokenring.ErrTokenInvalid) {
		t.Fatalf("reader after revoke action: %v", err)
	}
	if res = mustInvoke(`{}`); res.Outcome != OutcomeHeld {
		t.Fatalf("reported while held: %+v", res)
	}

	// Malformed event and bad credentials are function errors naming the problem.
	if _, ferr := invoke(`{"action":"rotate"}`); ferr == nil || !strings.Contains(ferr.Message, `unknown action "rotate"`) {
		t.Fatalf("malformed event: %v", ferr)
	}
	if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("cfsync/rdp-credentials"),
		SecretString: aws.String(`{"username":"` + user + `","client_id":"` + appKey + `"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, ferr := invoke(`{"action":"refresh","force":true}`); ferr == nil || !strings.Contains(ferr.Message, `field "password" is missing`) {
		t.Fatalf("bad credentials: %v", ferr)
	}

	// Nothing secret in the function's output (logs and EMF metrics).
	logs := strings.Join(fn.Logs(), "\n")
	if !strings.Contains(logs, `"AuthRequests"`) || !strings.Contains(logs, `"token written to the ring"`) {
		t.Errorf("expected log lines and metrics missing:\n%s", logs)
	}
	tokens, err := (&pipeline.Pipeline{Secrets: sm, Res: pipeline.Resources{TokenSecretIDs: ids}}).RingTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) < 6 {
		t.Fatalf("only %d ring tokens collected, want the 3 generations' access and refresh tokens", len(tokens))
	}
	secrets := append([]string{password, appKey}, tokens...)
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the function's output contains a secret (%d chars)", len(s))
		}
	}
	items, err := db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String("cfsync-state")})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items.Items {
		raw, _ := json.Marshal(it)
		for _, s := range secrets {
			if strings.Contains(string(raw), s) {
				t.Errorf("the state table holds a secret")
			}
		}
	}
}
