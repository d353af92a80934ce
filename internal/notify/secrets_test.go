package notify

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// secretFunc answers GetSecretValue for the secret id asked.
type secretFunc func(id string) (*secretsmanager.GetSecretValueOutput, error)

func (f secretFunc) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	return f(aws.ToString(in.SecretId))
}

var _ SecretReader = secretFunc(nil)

func TestReadSecret(t *testing.T) {
	denied := errors.New("AccessDeniedException")
	tests := []struct {
		name    string
		out     *secretsmanager.GetSecretValueOutput
		err     error
		want    string
		wantErr error
	}{
		{name: "string value", out: &secretsmanager.GetSecretValueOutput{SecretString: aws.String(`{"subscriptionID":"s1"}`)}, want: `{"subscriptionID":"s1"}`},
		{name: "no string value is empty", out: &secretsmanager.GetSecretValueOutput{SecretBinary: []byte{1}}, want: ""},
		{name: "error passed on", err: denied, wantErr: denied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked string
			got, err := ReadSecret(context.Background(), secretFunc(func(id string) (*secretsmanager.GetSecretValueOutput, error) {
				asked = id
				return tt.out, tt.err
			}), "cfsync/notify-subscription")
			if got != tt.want || !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("ReadSecret = %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
			if asked != "cfsync/notify-subscription" {
				t.Errorf("read secret %q, want cfsync/notify-subscription", asked)
			}
		})
	}
}
