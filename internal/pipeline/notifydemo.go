package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"golang.org/x/oauth2"

	"github.com/cfsync/cfsync/internal/notify"
	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// Push notifications locally (docs/design.md#notifications): the simulator
// plays LSEG's message-services API and publishes each new READY file-set,
// encrypted, to the subscription's queue, which lives in moto's SQS; the
// simulator's CredentialGate in front of moto plays AWS's check of the
// queue's temporary credentials (moto checks none).

// Notifications sets up a pipeline deployed with Notifications=true. Use
// Prepare as Config.Prepare.
type Notifications struct {
	Sim *rdptest.Server
	// Package is the subscribed package (one subscription, as the stack reads one).
	Package DemoPackage
	// CredentialsTTL is how long the simulator's queue credentials live.
	CredentialsTTL time.Duration

	Gate         *rdptest.CredentialGate // set by Prepare
	Subscription *rdp.Subscription       // set by Prepare
}

// simQueues makes the simulator's subscription queues in moto's SQS and
// delivers to them (rdptest.NotificationQueues).
type simQueues struct{ sqs *sqs.Client }

var _ rdptest.NotificationQueues = simQueues{}

// NotificationQueues is the simulator's subscription queues in moto's SQS,
// for callers that enable the simulator's notifications themselves (test/e2e).
func NotificationQueues(c *sqs.Client) rdptest.NotificationQueues { return simQueues{sqs: c} }

func (q simQueues) CreateQueue(id string) (string, error) {
	out, err := q.sqs.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String("cfs-notify-" + id[:min(8, len(id))])})
	if err != nil {
		return "", fmt.Errorf("create notification queue: %w", err)
	}
	return aws.ToString(out.QueueUrl), nil
}

func (q simQueues) Send(queueURL, body string) error {
	if _, err := q.sqs.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String(body)}); err != nil {
		return fmt.Errorf("send notification: %w", err)
	}
	return nil
}

// Prepare turns on the simulator's notifications into moto's SQS, starts
// the credential gate, makes the subscription as `cfsync notifications
// subscribe` does (with a simulator-issued operator token: no /auth
// request), writes it into the stack's subscription secret, and points the
// reader's client of LSEG's queue at the gate (NOTIFY_QUEUE_ENDPOINT_URL).
func (n *Notifications) Prepare(ctx context.Context, p *Pipeline) error {
	if p.Res.NotifySubscriptionSecret == "" {
		return fmt.Errorf("notifications: stack %s has no subscription secret (deploy with Notifications=true)", p.Config.StackName)
	}
	n.Sim.EnableNotifications(NotificationQueues(p.SQS), n.CredentialsTTL)
	gate, err := n.Sim.StartCredentialGate(p.Endpoint)
	if err != nil {
		return fmt.Errorf("notifications: %w", err)
	}
	n.Gate = gate
	var secret string
	if n.Subscription, secret, err = SubscribeSim(ctx, n.Sim, n.Package.Bucket, n.Package.ID, "cfsync-local-operator"); err != nil {
		return fmt.Errorf("notifications: %w", err)
	}
	if _, err := p.Secrets.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId: aws.String(p.Res.NotifySubscriptionSecret), SecretString: aws.String(secret),
	}); err != nil {
		return fmt.Errorf("notifications: write the subscription secret: %w", err)
	}
	if p.Config.Env == nil {
		p.Config.Env = map[string][]string{}
	}
	p.Config.Env[Reader] = append(p.Config.Env[Reader], "NOTIFY_QUEUE_ENDPOINT_URL="+gate.URL())
	return nil
}

// SubscribeSim subscribes to the READY file-sets of bucket/packageID in sim
// as `cfsync notifications subscribe` does, with a simulator-issued token of
// the service account operator (no /auth request), and returns the
// subscription with the subscription secret's JSON.
func SubscribeSim(ctx context.Context, sim *rdptest.Server, bucket, packageID, operator string) (*rdp.Subscription, string, error) {
	hc := oauth2.NewClient(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: sim.IssueServiceToken(operator)}))
	c, err := rdp.NewClient(rdp.WithBaseURL(sim.URL()), rdp.WithHTTPClient(hc))
	if err != nil {
		return nil, "", fmt.Errorf("subscribe: %w", err)
	}
	sub, err := c.Subscribe(ctx, rdp.ReadyQuery(bucket, packageID))
	if err != nil {
		return nil, "", fmt.Errorf("subscribe: %w", err)
	}
	b, err := json.Marshal(notify.Subscription{SubscriptionID: sub.ID, Endpoint: sub.Endpoint, CryptographyKey: sub.CryptographyKey})
	if err != nil {
		return nil, "", fmt.Errorf("subscribe: %w", err)
	}
	return sub, string(b), nil
}

// Close stops the gate.
func (n *Notifications) Close() {
	if n.Gate != nil {
		_ = n.Gate.Close()
	}
}

// Publication is a file-set published while the pipeline runs.
type Publication struct {
	FileSet rdptest.FileSet
	At      time.Time // when it became READY (published)
	Landed  time.Time // when its last file became DONE; zero until then
}

// Latency is publish → landed (zero until landed).
func (pb Publication) Latency() time.Duration {
	if pb.Landed.IsZero() {
		return 0
	}
	return pb.Landed.Sub(pb.At)
}

// PublishFiles is the number of files in each file-set Publish adds.
const PublishFiles = 2

// Publish adds the k-th live file-set of pkg (two files, sized like the
// package's demo files) to the simulator as READY, which notifies the
// subscriptions that match it.
func Publish(sim *rdptest.Server, pkg DemoPackage, k int) Publication {
	at := time.Now()
	stamp := at.UTC().Format("2006-01-02T15:04:05.000Z")
	spec := rdptest.FileSetSpec{Bucket: pkg.Bucket, PackageID: pkg.ID, Name: fmt.Sprintf("%s-Live-%02d-%s", pkg.Prefix, k, stamp)}
	for j := range PublishFiles {
		spec.Files = append(spec.Files, rdptest.FileSpec{
			Name: fmt.Sprintf("%s-Live-%02d-%s-part%d.jsonl.gz", pkg.Prefix, k, stamp, j+1),
			Size: pkg.Sizes[(2*k+j)%len(pkg.Sizes)],
		})
	}
	return Publication{FileSet: sim.AddFileSet(spec), At: at}
}

// LandedAt reports when the last file of fs became DONE; ok is false while
// any file of it is not DONE.
func (pr Progress) LandedAt(fs rdptest.FileSet) (at time.Time, ok bool) {
	for _, f := range fs.Files {
		done, ok := pr.DoneAt[f.ID]
		if !ok {
			return time.Time{}, false
		}
		if done.After(at) {
			at = done
		}
	}
	return at, true
}

// Percentile is the nearest-rank q-th percentile (0 < q ≤ 100) of ds (zero
// for none).
func Percentile(ds []time.Duration, q int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	rank := (len(s)*q + 99) / 100
	return s[min(max(rank, 1), len(s))-1]
}
