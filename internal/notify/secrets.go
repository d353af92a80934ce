package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// SecretReader is the part of Secrets Manager that reads the notification
// secrets.
type SecretReader interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

var _ SecretReader = (*secretsmanager.Client)(nil)

// ReadSecret returns the string value of secret id ("" when it has none),
// for ParseSubscription and ParseQueueCredentials; the caller names the
// secret in the error.
func ReadSecret(ctx context.Context, sm SecretReader, id string) (string, error) {
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		return "", err
	}
	return aws.ToString(out.SecretString), nil
}

// Subscription is the content of the subscription secret
// (NOTIFY_SUBSCRIPTION_SECRET_ID), written by `cfsync notifications
// subscribe`: what RDP answered when the subscription was made. The key is
// a secret: it lives only in Secrets Manager, never in an env var or log.
type Subscription struct {
	SubscriptionID  string `json:"subscriptionID"`
	Endpoint        string `json:"endpoint"`        // SQS queue URL
	CryptographyKey string `json:"cryptographyKey"` // base64 AES key
}

// ParseSubscription decodes and checks the subscription secret; errors name
// the field, never a value.
func ParseSubscription(secret string) (Subscription, []byte, error) {
	var s Subscription
	if err := json.Unmarshal([]byte(secret), &s); err != nil {
		return Subscription{}, nil, errors.New("subscription secret: not a JSON object")
	}
	if strings.TrimSpace(s.SubscriptionID) == "" {
		return Subscription{}, nil, errors.New(`subscription secret: field "subscriptionID" is required`)
	}
	if err := checkEndpoint(s.Endpoint); err != nil {
		return Subscription{}, nil, fmt.Errorf("subscription secret: %w", err)
	}
	key, err := ParseKey(s.CryptographyKey)
	if err != nil {
		return Subscription{}, nil, fmt.Errorf("subscription secret: %w", err)
	}
	return s, key, nil
}

func checkEndpoint(e string) error {
	u, err := url.Parse(e)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New(`field "endpoint": want the SQS queue URL`)
	}
	return nil
}

// String hides the key.
func (s Subscription) String() string {
	return fmt.Sprintf("subscription %s (queue %s)", s.SubscriptionID, s.Endpoint)
}

// LogValue hides the key.
func (s Subscription) LogValue() slog.Value {
	return slog.GroupValue(slog.String("subscription_id", s.SubscriptionID), slog.String("endpoint", s.Endpoint))
}

// QueueCredentials is the content of the queue-credentials secret
// (NOTIFY_CREDENTIALS_SECRET_ID): the temporary AWS credentials RDP hands
// out for the subscription's queue (GET /auth/cloud-credentials/v1/), kept
// fresh by the token-refresher only.
type QueueCredentials struct {
	Endpoint     string    `json:"endpoint"`
	AccessKeyID  string    `json:"accessKeyId"`
	SecretKey    string    `json:"secretKey"`
	SessionToken string    `json:"sessionToken"`
	FetchedAt    time.Time `json:"fetchedAt"`
	Expiration   time.Time `json:"expiration,omitzero"` // when RDP says; zero when it does not
	Generation   int64     `json:"generation"`
}

// Empty reports a secret that holds no credentials yet (placeholder "{}").
func (c QueueCredentials) Empty() bool { return c.AccessKeyID == "" }

// ParseQueueCredentials decodes the queue-credentials secret. An empty
// value or "{}" is an empty QueueCredentials, not an error.
func ParseQueueCredentials(secret string) (QueueCredentials, error) {
	var c QueueCredentials
	if strings.TrimSpace(secret) == "" {
		return c, nil
	}
	if err := json.Unmarshal([]byte(secret), &c); err != nil {
		return QueueCredentials{}, errors.New("queue credentials secret: not a JSON object")
	}
	if c.Empty() {
		return c, nil
	}
	for _, f := range []struct{ name, v string }{{"secretKey", c.SecretKey}, {"sessionToken", c.SessionToken}, {"endpoint", c.Endpoint}} {
		if f.v == "" {
			return QueueCredentials{}, fmt.Errorf("queue credentials secret: field %q is required", f.name)
		}
	}
	return c, nil
}

// String hides the credentials.
func (c QueueCredentials) String() string {
	return fmt.Sprintf("queue credentials generation %d fetched %s", c.Generation, c.FetchedAt.Format(time.RFC3339))
}

// GoString hides the credentials.
func (c QueueCredentials) GoString() string { return c.String() }

// LogValue hides the credentials.
func (c QueueCredentials) LogValue() slog.Value {
	return slog.GroupValue(slog.Int64("generation", c.Generation), slog.Time("fetched_at", c.FetchedAt))
}

// MarshalSecret encodes the credentials for their secret.
func (c QueueCredentials) MarshalSecret() ([]byte, error) {
	type plain QueueCredentials // no String/GoString hiding in the encoding
	return json.Marshal(plain(c))
}
