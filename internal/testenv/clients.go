package testenv

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// AWS is a moto_server started for one test with the SDK clients most
// integration tests need.
type AWS struct {
	Moto   *MotoServer
	Config aws.Config
	SM     *secretsmanager.Client
	DB     *dynamodb.Client
}

// MotoAWS starts a moto_server for the test (see [Moto]) and returns it with
// Secrets Manager and DynamoDB clients pointed at it.
func MotoAWS(t testing.TB) *AWS {
	t.Helper()
	m, cfg := MotoConfig(t)
	return &AWS{Moto: m, Config: cfg, SM: secretsmanager.NewFromConfig(cfg), DB: dynamodb.NewFromConfig(cfg)}
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

// EnvMap is AWSEnv as a map (for code that takes its environment as one).
func (m *MotoServer) EnvMap() map[string]string {
	env := map[string]string{}
	for _, kv := range m.AWSEnv() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env
}
