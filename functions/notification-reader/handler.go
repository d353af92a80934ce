package main

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/lambdaerr"
	"github.com/cfsync/cfsync/internal/lambdamain"
	"github.com/cfsync/cfsync/internal/metrics"
	"github.com/cfsync/cfsync/internal/notify"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// QueueAPI is the part of SQS the reader uses on LSEG's queue.
type QueueAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
}

var _ QueueAPI = (*sqs.Client)(nil)

// QueueFactory makes a client of the subscription's queue with its
// temporary credentials.
type QueueFactory func(creds aws.Credentials, endpoint string) QueueAPI

// QueueRegion returns the region of an SQS queue URL
// (https://sqs.<region>.amazonaws.com/<account>/<name>), us-east-1 by default
// (the region of LSEG's queues in its FileNoti sample).
func QueueRegion(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err == nil {
		parts := strings.Split(u.Hostname(), ".")
		if len(parts) >= 4 && parts[0] == "sqs" && strings.HasSuffix(u.Hostname(), ".amazonaws.com") {
			return parts[1]
		}
	}
	return "us-east-1"
}

// Enqueuer is the claim-then-queue hand-off.
type Enqueuer interface {
	Enqueue(ctx context.Context, fs notify.FileSet, files []notify.File) (notify.HandoffResult, error)
}

var _ Enqueuer = (*notify.Handoff)(nil)

// Reporter records that AWS rejected the queue credentials.
type Reporter interface {
	ReportQueueCredentials(ctx context.Context, gen int64, reason string) error
}

var _ Reporter = (*state.Table)(nil)

// FileLister lists a file-set's files (used when a notification lists fewer
// files than its numFiles says).
type FileLister interface {
	Files(ctx context.Context, fileSetID string) iter.Seq2[rdp.File, error]
}

var _ FileLister = (*rdp.Client)(nil)

// Handler is the notification reader; build it with New. One Handle call
// receives from the subscription's queue until DeadlineMargin before the
// invocation's deadline.
type Handler struct {
	Deps
	Settings
}

// Deps are the reader's collaborators.
type Deps struct {
	Secrets  notify.SecretReader // the subscription and queue-credentials secrets
	NewQueue QueueFactory
	Handoff  Enqueuer
	Reports  Reporter
	Files    FileLister        // nil: a file-set listing fewer files than numFiles is left to the poller
	Log      *slog.Logger      // nil: discard
	Metrics  *metrics.Recorder // nil: none
	Now      func() time.Time  // nil: time.Now
}

// Settings are the reader's knobs, config.ReaderKnobs: a loaded config's
// (tests: config.Defaults[config.NotificationReader]()'s). New rejects a
// zero duration.
type Settings struct {
	config.ReaderKnobs
	MaxRun time.Duration // 0: until the deadline; tests bound a run
}

// New returns a reader. Secrets, NewQueue, Handoff and Reports are
// required, and so are both secret ids; the durations must pass
// config.ReaderKnobs' checks (none zero).
func New(d Deps, s Settings) (*Handler, error) {
	switch {
	case d.Secrets == nil || d.NewQueue == nil || d.Handoff == nil || d.Reports == nil:
		return nil, errors.New("notification-reader: Secrets, NewQueue, Handoff and Reports are required")
	case s.SubscriptionSecretID == "" || s.CredentialsSecretID == "":
		return nil, errors.New("notification-reader: SubscriptionSecretID and CredentialsSecretID (NOTIFY_SUBSCRIPTION_SECRET_ID, NOTIFY_CREDENTIALS_SECRET_ID) are required")
	}
	if err := config.Check(s.ReaderKnobs); err != nil {
		return nil, fmt.Errorf("notification-reader: %w", err)
	}
	return &Handler{Deps: d, Settings: s}, nil
}

// Outcomes (Result.Outcome).
const (
	OutcomeDone          = "done"
	OutcomeNoCredentials = "no_credentials"       // the refresher has not stored queue credentials yet
	OutcomeCredsRejected = "credentials_rejected" // AWS refused them: reported, messages left in the queue
	OutcomeFailed        = "failed"
)

// Result is what an invocation returns (no secrets, no message content).
type Result struct {
	Outcome    string `json:"outcome"`
	Receives   int    `json:"receives"`
	Messages   int    `json:"messages"`
	FileSets   int    `json:"fileSets"`
	Ignored    int    `json:"ignored"`  // not READY
	Rejected   int    `json:"rejected"` // undecryptable or unparsable: deleted
	Kept       int    `json:"kept"`     // hand-off failed: left for redelivery
	Claimed    int    `json:"claimed"`
	Queued     int    `json:"queued"`
	Generation int64  `json:"credentialsGeneration,omitempty"`
}

func (h *Handler) now() time.Time {
	if h.Now == nil {
		return time.Now()
	}
	return h.Now()
}

// Invoke implements lambda.Handler: the raw payload goes through Handle
// (see lambdaerr.Invoke).
func (h *Handler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	return lambdaerr.Invoke(ctx, payload, h.Handle)
}

// Handle runs one invocation. Any JSON object is a scheduled event.
func (h *Handler) Handle(ctx context.Context, payload []byte) (Result, error) {
	log, end := lambdamain.StartInvocation(ctx, h.Log, h.Metrics)
	defer end()
	if err := checkEvent(payload); err != nil {
		log.Error("rejected event", "error", err.Error())
		return Result{Outcome: OutcomeFailed}, lambdaerr.Malformed(err)
	}
	res, err := h.run(ctx, log)
	h.Metrics.Add("NotificationsReceived", float64(res.Messages))
	h.Metrics.Add("NotificationsRejected", float64(res.Rejected))
	if err != nil {
		if res.Outcome == "" {
			res.Outcome = OutcomeFailed
		}
		log.Error("notification reader failed", "outcome", res.Outcome, "messages", res.Messages, "error", err.Error())
		return res, err
	}
	log.Info("notification reader run", "outcome", res.Outcome, "receives", res.Receives, "messages", res.Messages,
		"file_sets", res.FileSets, "ignored", res.Ignored, "rejected", res.Rejected, "kept", res.Kept,
		"claimed", res.Claimed, "queued", res.Queued)
	return res, nil
}

func checkEvent(payload []byte) error {
	if _, err := lambdamain.EventFields(payload); err != nil {
		return fmt.Errorf("event: %w", err)
	}
	return nil
}

// run reads the configuration and receives until the deadline.
func (h *Handler) run(ctx context.Context, log *slog.Logger) (Result, error) {
	var res Result
	raw, err := notify.ReadSecret(ctx, h.Secrets, h.SubscriptionSecretID)
	if err != nil {
		return res, fmt.Errorf("read subscription secret: %w", err)
	}
	sub, key, err := notify.ParseSubscription(raw)
	if err != nil {
		return res, lambdaerr.Config(err)
	}
	raw, err = notify.ReadSecret(ctx, h.Secrets, h.CredentialsSecretID)
	if err != nil {
		return res, fmt.Errorf("read queue credentials secret: %w", err)
	}
	creds, err := notify.ParseQueueCredentials(raw)
	if err != nil {
		return res, lambdaerr.Config(err)
	}
	if creds.Empty() || creds.Endpoint != sub.Endpoint {
		log.Warn("no queue credentials for this subscription yet: the token-refresher fetches them on its next run",
			"subscription_id", sub.SubscriptionID)
		res.Outcome = OutcomeNoCredentials
		return res, nil
	}
	res.Generation = creds.Generation
	q := h.NewQueue(aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretKey,
		SessionToken: creds.SessionToken, Source: "cfsync-queue-credentials"}, sub.Endpoint)
	r := &reader{h: h, log: log.With("subscription_id", sub.SubscriptionID), q: q, key: key, endpoint: sub.Endpoint, res: &res}
	err = r.loop(ctx, creds.Generation)
	if err == nil && res.Outcome == "" {
		res.Outcome = OutcomeDone
	}
	return res, err
}
