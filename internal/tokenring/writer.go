package tokenring

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// PutAPI is the part of Secrets Manager the ring's writer (the refresher) uses.
type PutAPI interface {
	PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
}

var _ PutAPI = (*secretsmanager.Client)(nil)

// ClientRequestToken is the idempotency token (the new version's id) of the
// write of generation gen: a retried write of the same generation creates
// no second version. Secrets Manager wants 32–64 characters.
func ClientRequestToken(gen int64) string {
	return fmt.Sprintf("cfsync-token-generation-%020d", gen)
}

// Write puts s (whose Generation must be set) into the slot secret slotID.
// The error never contains the token.
func Write(ctx context.Context, sm PutAPI, slotID string, s Slot) error {
	if s.Generation <= 0 || s.Empty() {
		return fmt.Errorf("write slot %s: token without generation or access token", slotID)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("write slot %s: encode: %w", slotID, err)
	}
	_, err = sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId:           aws.String(slotID),
		SecretString:       aws.String(string(b)),
		ClientRequestToken: aws.String(ClientRequestToken(s.Generation)),
	})
	if err != nil {
		return fmt.Errorf("write slot %s generation %d: %w", slotID, s.Generation, err)
	}
	return nil
}
