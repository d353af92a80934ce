package state

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Notification queue credentials item (NOTIFY / QUEUECREDS): the generation
// of the queue credentials the refresher last wrote to their secret, when,
// and the notification reader's latest report that AWS rejected them. It
// holds no credential.
const (
	PKNotify      = "NOTIFY"
	SKQueueCreds  = "QUEUECREDS"
	attrQCGen     = "generation"
	attrQCWritten = "writtenAt"
)

// QueueCredsState is the NOTIFY / QUEUECREDS item.
type QueueCredsState struct {
	Generation         int64     `dynamodbav:"generation"`
	WrittenAt          time.Time `dynamodbav:"writtenAt"`
	ReportedGeneration int64     `dynamodbav:"reportedGeneration"`
	ReportedAt         time.Time `dynamodbav:"reportedAt"`
	Reason             string    `dynamodbav:"reason"`
	Reports            int64     `dynamodbav:"reports"`
}

// Reported reports whether a reader found the current generation rejected.
func (s *QueueCredsState) Reported() bool {
	return s.Generation > 0 && s.ReportedGeneration >= s.Generation
}

func queueCredsKey() map[string]types.AttributeValue { return itemKey(PKNotify, SKQueueCreds) }

// GetQueueCredsState returns the item, or a zero state when none exists.
func (t *Table) GetQueueCredsState(ctx context.Context) (*QueueCredsState, error) {
	st := &QueueCredsState{}
	if _, err := t.getItem(ctx, queueCredsKey(), st, "queue credentials state"); err != nil {
		return nil, err
	}
	return st, nil
}

// ReportQueueCredentials records that AWS rejected the queue credentials of
// generation gen (ExpiredToken and the like). reason must hold nothing secret.
func (t *Table) ReportQueueCredentials(ctx context.Context, gen int64, reason string) error {
	_, err := t.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:        &t.Name,
		Key:              queueCredsKey(),
		UpdateExpression: aws.String("SET reportedGeneration = :g, reportedAt = :now, reason = :r ADD reports :one"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":g":   &types.AttributeValueMemberN{Value: strconv.FormatInt(gen, 10)},
			":now": timeAV(t.now()),
			":r":   &types.AttributeValueMemberS{Value: clipReason(reason, maxReason)},
			":one": &types.AttributeValueMemberN{Value: "1"},
		},
	})
	if err != nil {
		return fmt.Errorf("report queue credentials generation %d: %w", gen, err)
	}
	return nil
}

// ClaimQueueCredsGeneration records that generation next is about to be
// written, if the stored generation is still prev (so two refresher runs
// never both write). It returns ErrConflict when another run was first.
func (t *Table) ClaimQueueCredsGeneration(ctx context.Context, prev, next int64, at time.Time) error {
	cond := "attribute_not_exists(pk) OR #g = :prev"
	if prev == 0 {
		cond = "attribute_not_exists(pk) OR attribute_not_exists(#g) OR #g = :prev"
	}
	_, err := t.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                &t.Name,
		Key:                      queueCredsKey(),
		ConditionExpression:      aws.String(cond),
		UpdateExpression:         aws.String("SET #g = :next, #w = :at"),
		ExpressionAttributeNames: map[string]string{"#g": attrQCGen, "#w": attrQCWritten},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":prev": &types.AttributeValueMemberN{Value: strconv.FormatInt(prev, 10)},
			":next": &types.AttributeValueMemberN{Value: strconv.FormatInt(next, 10)},
			":at":   timeAV(at.UTC()),
		},
	})
	if err != nil {
		return conflictOr(fmt.Sprintf("claim queue credentials generation %d", next), err)
	}
	return nil
}
