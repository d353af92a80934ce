package testenv

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cfsync/cfsync/internal/tokenring"
)

// AWS is a moto_server started for one test with the SDK clients most
// integration tests need.
type AWS struct {
	Moto   *MotoServer
	Config aws.Config
	SM     *secretsmanager.Client
	DB     *dynamodb.Client
	SQS    *sqs.Client
}

// MotoAWS starts a moto_server for the test (see [Moto]) and returns it with
// Secrets Manager, DynamoDB and SQS clients pointed at it.
func MotoAWS(t testing.TB) *AWS {
	t.Helper()
	m, cfg := MotoConfig(t)
	return &AWS{Moto: m, Config: cfg, SM: secretsmanager.NewFromConfig(cfg), DB: dynamodb.NewFromConfig(cfg),
		SQS: sqs.NewFromConfig(cfg)}
}

// CreateSecret creates secret name holding value (nil: a secret without a
// value, like the template's third ring placeholder) and returns its ARN.
func (a *AWS) CreateSecret(t testing.TB, name string, value *string) string {
	t.Helper()
	out, err := a.SM.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: value})
	if err != nil {
		t.Fatalf("create secret %s: %v", name, err)
	}
	return aws.ToString(out.ARN)
}

// SeedRing does the token-refresher's job by hand: it creates the ring's
// slot secrets (holding "{}", as the template does) and stores token in the
// first one as generation 1, valid for ttl.
func (a *AWS) SeedRing(t testing.TB, slots []string, token string, ttl time.Duration) {
	t.Helper()
	for _, id := range slots {
		a.CreateSecret(t, id, aws.String("{}"))
	}
	WriteSlot(t, a.SM, slots[0], token, ttl, 1)
}

// WriteSlot stores token in ring slot as generation gen, issued now and
// valid for ttl (what a refresh does).
func WriteSlot(t testing.TB, sm tokenring.PutAPI, slot, token string, ttl time.Duration, gen int64) {
	t.Helper()
	now := time.Now()
	s := tokenring.Slot{AccessToken: token, TokenType: "Bearer", ExpiresAt: now.Add(ttl), IssuedAt: now, Generation: gen}
	if err := tokenring.Write(context.Background(), sm, slot, s); err != nil {
		t.Fatalf("write ring slot %s: %v", slot, err)
	}
}

// EnvMap is AWSEnv as a map (for code that takes its environment as one).
func (m *MotoServer) EnvMap() map[string]string {
	env := map[string]string{}
	for _, kv := range m.AWSEnv() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env
}
