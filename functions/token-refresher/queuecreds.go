package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cfsync/cfsync/internal/notify"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// Queue credentials upkeep (docs/design.md#notifications): the refresher is
// the only function that calls /auth/*, so it also keeps the temporary AWS
// credentials of the notification queue (GET /auth/cloud-credentials/v1/)
// in their own secret, written at most once per SECRET_MIN_WRITE_INTERVAL.

// QueueCredsAPI gets a queue's temporary credentials.
type QueueCredsAPI interface {
	CloudCredentialsFor(ctx context.Context, accessToken, endpoint string) (*rdp.CloudCredentials, error)
}

var _ QueueCredsAPI = (*rdp.Client)(nil)

// QueueCredsStore is the state the upkeep keeps: the generation written and
// the reader's rejection reports.
type QueueCredsStore interface {
	GetQueueCredsState(ctx context.Context) (*state.QueueCredsState, error)
	ClaimQueueCredsGeneration(ctx context.Context, prev, next int64, at time.Time) error
}

var _ QueueCredsStore = (*state.Table)(nil)

// QueueCredsOptions configure the upkeep. Without SubscriptionSecretID
// (notifications off) there is none.
type QueueCredsOptions struct {
	SubscriptionSecretID string        // NOTIFY_SUBSCRIPTION_SECRET_ID
	CredentialsSecretID  string        // NOTIFY_CREDENTIALS_SECRET_ID
	RefreshAfter         time.Duration // QUEUE_CREDENTIALS_REFRESH: fetch new ones this long after the last
}

const (
	// queueCredsMargin: when RDP states an expiration, new credentials are
	// fetched this long before it.
	queueCredsMargin = 5 * time.Minute
	grantCloud       = "cloud_credentials"
)

// Reasons new queue credentials are due.
const (
	qcNone     = "none stored"
	qcChanged  = "subscription queue changed"
	qcReported = "reported rejected by AWS"
	qcExpiring = "expiring"
	qcAging    = "aging"
)

// queueCredsDue says why new credentials are needed ("" if not).
func queueCredsDue(cur notify.QueueCredentials, st *state.QueueCredsState, endpoint string, now time.Time, o QueueCredsOptions) string {
	switch {
	case cur.Empty():
		return qcNone
	case cur.Endpoint != endpoint:
		return qcChanged
	case st.ReportedGeneration >= cur.Generation && !st.ReportedAt.Before(cur.FetchedAt):
		return qcReported
	case !cur.Expiration.IsZero() && cur.Expiration.Sub(now) < queueCredsMargin:
		return qcExpiring
	case now.Sub(cur.FetchedAt) >= o.RefreshAfter:
		return qcAging
	}
	return ""
}

// upkeepQueueCreds fetches and stores new queue credentials when due. It
// returns what it did for Result.QueueCredentials; failures are logged and
// counted (metric QueueCredentialsFailures), never fail the token run; a
// wait for the auth backoff (a 429's Retry-After) is no failure.
func (r *run) upkeepQueueCreds(ctx context.Context) string {
	o := r.h.Queue
	if o.SubscriptionSecretID == "" {
		return ""
	}
	out, err := r.queueCreds(ctx, o)
	if errors.Is(err, errBusy) || errors.Is(err, errLostRace) {
		r.log.Info("queue credentials left to the other refresher invocation")
		return "busy"
	}
	if errors.Is(err, errBackoff) {
		r.log.Info("queue credentials due but /auth is backing off: the next run after it tries again", "error", err.Error())
		return "backoff"
	}
	if err != nil {
		r.h.Metrics.Add("QueueCredentialsFailures", 1)
		r.log.Error("queue credentials not refreshed: the next run tries again", "error", err.Error())
		return "failed"
	}
	return out
}

func (r *run) queueCreds(ctx context.Context, o QueueCredsOptions) (string, error) {
	h := r.h
	raw, err := notify.ReadSecret(ctx, h.SM, o.SubscriptionSecretID)
	if err != nil {
		return "", fmt.Errorf("read subscription secret: %w", err)
	}
	sub, _, err := notify.ParseSubscription(raw)
	if err != nil {
		return "", err
	}
	raw, err = notify.ReadSecret(ctx, h.SM, o.CredentialsSecretID)
	if err != nil {
		return "", fmt.Errorf("read queue credentials secret: %w", err)
	}
	cur, err := notify.ParseQueueCredentials(raw)
	if err != nil {
		r.log.Warn("queue credentials secret unreadable: replacing it", "error", err.Error())
		cur = notify.QueueCredentials{}
	}
	st, err := h.QueueState.GetQueueCredsState(ctx)
	if err != nil {
		return "", err
	}
	now := h.now()
	due := queueCredsDue(cur, st, sub.Endpoint, now, o)
	if due == "" {
		return "fresh", nil
	}
	if !st.WrittenAt.IsZero() && now.Sub(st.WrittenAt) < h.Opts.MinWriteInterval {
		r.log.Warn("queue credentials due but their secret was written too recently: waiting",
			"reason", due, "last_write", st.WrittenAt.Format(time.RFC3339), "min_write_interval", h.Opts.MinWriteInterval.String())
		return "deferred", nil
	}
	access, ok := r.accessToken(now)
	if !ok {
		return "", errors.New("no valid access token in the ring to ask for queue credentials")
	}
	creds, err := r.fetchQueueCreds(ctx, access, sub.Endpoint)
	if err != nil {
		return "", err
	}
	next := max(st.Generation, cur.Generation) + 1
	if err := h.QueueState.ClaimQueueCredsGeneration(ctx, st.Generation, next, now); err != nil {
		if errors.Is(err, state.ErrConflict) {
			r.log.Warn("another refresher stored queue credentials meanwhile: discarding these")
			return "lost_race", nil
		}
		return "", err
	}
	qc := notify.QueueCredentials{Endpoint: sub.Endpoint, AccessKeyID: creds.AccessKeyID, SecretKey: creds.SecretKey,
		SessionToken: creds.SessionToken, FetchedAt: now, Expiration: creds.Expiration, Generation: next}
	if err := writeQueueCreds(ctx, h.SM, o.CredentialsSecretID, qc); err != nil {
		return "", err
	}
	h.Metrics.Add("QueueCredentialsWrites", 1)
	r.log.Info("queue credentials stored", "reason", due, "generation", next, "subscription_id", sub.SubscriptionID)
	return "refreshed", nil
}

// accessToken is the token written by this run, else the newest valid one.
func (r *run) accessToken(now time.Time) (string, bool) {
	if r.written != nil {
		return r.written.AccessToken, true
	}
	if v, ok := tokenring.Newest(r.vals, now, 30*time.Second); ok {
		return v.Slot.AccessToken, true
	}
	return "", false
}

// fetchQueueCreds sends the /auth request within the auth budget and the
// auth backoff. A 429 feeds that backoff (its Retry-After honoured, by every
// /auth request) as it does for the token grants; other failures do not:
// the token grants work regardless.
func (r *run) fetchQueueCreds(ctx context.Context, access, endpoint string) (*rdp.CloudCredentials, error) {
	creds, err := call(ctx, r, grantCloud, func() (*rdp.CloudCredentials, error) {
		return r.h.Cloud.CloudCredentialsFor(ctx, access, endpoint)
	})
	if err != nil {
		if reason, retryAfter := classify(err); reason == reasonRateLimited {
			if ferr := r.fail(ctx, reason, retryAfter); ferr != nil {
				err = errors.Join(err, ferr)
			}
		}
		return nil, fmt.Errorf("get queue credentials: %w", err)
	}
	return creds, nil
}

// writeQueueCreds puts qc into its secret (idempotent per generation).
func writeQueueCreds(ctx context.Context, sm SecretsAPI, id string, qc notify.QueueCredentials) error {
	b, err := qc.MarshalSecret()
	if err != nil {
		return err
	}
	var lastErr error
	for range writeAttempts {
		_, lastErr = sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
			SecretId: aws.String(id), SecretString: aws.String(string(b)),
			ClientRequestToken: aws.String(fmt.Sprintf("cfsync-queue-credentials-gen-%020d", qc.Generation)),
		})
		if lastErr == nil {
			return nil
		}
	}
	return fmt.Errorf("write queue credentials generation %d: %w", qc.Generation, lastErr)
}
