package main

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cfsync/cfsync/internal/notify"
	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

type nullQueues struct {
	mu sync.Mutex
	n  int
}

func (q *nullQueues) CreateQueue(id string) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.n++
	return "https://sqs.us-east-1.amazonaws.com/000000000000/cfs-" + id, nil
}

func (q *nullQueues) Send(string, string) error { return nil }

func notifySim(t *testing.T) (*rdptest.Server, *nullQueues) {
	sim := newSim(t, rdptest.Options{})
	q := &nullQueues{}
	sim.EnableNotifications(q, 0)
	return sim, q
}

func subscriptionRows(t *testing.T, r result) []subscriptionRow {
	t.Helper()
	if r.code != exitOK {
		t.Fatalf("code %d stderr %s", r.code, r.stderr)
	}
	return jsonOut[[]subscriptionRow](t, r)
}

func TestNotificationsSubscribeIsIdempotent(t *testing.T) {
	sim, q := notifySim(t)
	env := v2Env(sim)
	env["SUBSCRIPTIONS"] = bucketESG + "/" + pkgScores
	c := &cli{t: t, env: env}

	first := subscriptionRows(t, c.run("notifications", "subscribe", "--json"))
	again := subscriptionRows(t, c.run("notifications", "subscribe", "--json"))
	if len(first) != 1 || first[0].Action != "created" || first[0].Bucket != bucketESG || first[0].Package != pkgScores {
		t.Fatalf("first subscribe: %+v", first)
	}
	if len(again) != 1 || again[0].Action != "exists" || again[0].ID != first[0].ID || q.n != 1 {
		t.Fatalf("second subscribe made another subscription: %+v (queues %d)", again, q.n)
	}
	// A bucket-wide entry is another subscription.
	env2 := v2Env(sim)
	env2["SUBSCRIPTIONS"] = bucketESG + "/*"
	if rows := subscriptionRows(t, (&cli{t: t, env: env2}).run("notifications", "subscribe", "--json")); rows[0].Action != "created" || rows[0].Package != "*" {
		t.Fatalf("bucket-wide: %+v", rows)
	}
	list := c.run("notifications", "list")
	if list.code != exitOK || strings.Count(list.stdout, "\n") != 3 {
		t.Fatalf("list: %d %s", list.code, list.stdout)
	}
	for _, r := range []result{list, c.run("notifications", "list", "--json")} {
		if strings.Contains(r.stdout, "cryptographyKey") {
			t.Fatal("the key is printed")
		}
	}
	if rows := subscriptionRows(t, c.run("notifications", "delete", "--json")); len(rows) != 1 || rows[0].ID != first[0].ID {
		t.Fatalf("delete: %+v", rows)
	}
	if r := c.run("notifications", "delete"); r.code != exitCheckFailed {
		t.Fatalf("delete of nothing: code %d", r.code)
	}
	if sim.NotificationCounters().Subscriptions != 1 {
		t.Fatalf("subscriptions left: %+v", sim.NotificationCounters())
	}
}

func TestNotificationsUsage(t *testing.T) {
	sim, _ := notifySim(t)
	for _, tt := range []struct {
		args []string
		subs string
		want string
	}{
		{[]string{"notifications"}, "", "subscribe, list or delete"},
		{[]string{"notifications", "subscribe"}, "a/b,c/d", "exactly one"},
		{[]string{"notifications", "subscribe"}, "nobucket", "bucket/packageId"},
	} {
		env := v2Env(sim)
		env["SUBSCRIPTIONS"] = tt.subs
		r := (&cli{t: t, env: env}).run(tt.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v: code %d stderr %s", tt.args, r.code, r.stderr)
		}
	}
}

// subscribe --secret writes the subscription the stack reads, once.
func TestNotificationsSubscribeStoresSecret(t *testing.T) {
	moto := testenv.Moto(t)
	sim, _ := notifySim(t)
	sm := secretsmanager.NewFromConfig(pipeline.AWSConfig(moto.Endpoint))
	ctx := context.Background()
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("notify-sub"), SecretString: aws.String("{}")}); err != nil {
		t.Fatal(err)
	}
	env := v2Env(sim)
	env["SUBSCRIPTIONS"] = bucketESG + "/" + pkgScores
	for _, kv := range moto.AWSEnv() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	env["NOTIFY_SUBSCRIPTION_SECRET_ID"] = "notify-sub"
	c := &cli{t: t, env: env}
	rows := subscriptionRows(t, c.run("notifications", "subscribe", "--json"))
	if rows[0].Action != "created, secret written" {
		t.Fatalf("%+v", rows)
	}
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("notify-sub")})
	if err != nil {
		t.Fatal(err)
	}
	sub, _, err := notify.ParseSubscription(aws.ToString(out.SecretString))
	if err != nil || sub.SubscriptionID != rows[0].ID || sub.Endpoint != rows[0].Endpoint {
		t.Fatalf("secret holds %v (%v)", sub, err)
	}
	if rows := subscriptionRows(t, c.run("notifications", "subscribe", "--json")); rows[0].Action != "exists, secret already up to date" {
		t.Fatalf("second run: %+v", rows)
	}
}
