package testenv

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// CreateStateTable creates a state table shaped like template.yaml's
// StateTable (pk S HASH, sk S RANGE, on demand) for integration tests.
func CreateStateTable(ctx context.Context, db *dynamodb.Client, name string) error {
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("nonFinal"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("updatedAt"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
		// The sparse index of non-final files (state.NonFinalIndex, as in template.yaml).
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName: aws.String("nonFinal-updatedAt"),
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String("nonFinal"), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String("updatedAt"), KeyType: types.KeyTypeRange},
			},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		}},
		BillingMode: types.BillingModePayPerRequest,
	})
	if err != nil {
		return fmt.Errorf("create state table %s: %w", name, err)
	}
	return nil
}

// StateTable creates a state table (see [CreateStateTable]) and fails the
// test if it cannot.
func StateTable(t testing.TB, db *dynamodb.Client, name string) {
	t.Helper()
	if err := CreateStateTable(context.Background(), db, name); err != nil {
		t.Fatal(err)
	}
}
