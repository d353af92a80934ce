package state

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The sparse index of non-final files (template.yaml's StateTable GSI):
//
//	index NonFinalIndex: partition key nonFinal (S), sort key updatedAt (S), keys only + the attributes below
//
// A FILE item carries nonFinal = NonFinalValue from its claim (or the
// downloader's first BeginDownload) until MarkDone or MarkFailed removes it,
// so the index holds exactly the files that are not DONE or FAILED, oldest
// update first. The poller's sweep and `cfsync status` query it instead of
// scanning the table.
const (
	NonFinalIndex = "nonFinal-updatedAt"
	AttrNonFinal  = "nonFinal"
	AttrUpdatedAt = "updatedAt"
	NonFinalValue = "FILE"
)

// QueryNonFinal calls fn with the non-final files, least recently updated
// first, whose last update is before `before` (every non-final file when
// before is zero), at most limit of them (no limit when limit ≤ 0). Index
// reads are eventually consistent: callers re-check with a conditional write.
func (t *Table) QueryNonFinal(ctx context.Context, before time.Time, limit int, fn func(*FileItem) error) error {
	in := &dynamodb.QueryInput{
		TableName:                 &t.Name,
		IndexName:                 aws.String(NonFinalIndex),
		KeyConditionExpression:    aws.String("#nf = :nf"),
		ExpressionAttributeNames:  map[string]string{"#nf": AttrNonFinal},
		ExpressionAttributeValues: map[string]types.AttributeValue{":nf": &types.AttributeValueMemberS{Value: NonFinalValue}},
		ScanIndexForward:          aws.Bool(true),
	}
	if !before.IsZero() {
		in.KeyConditionExpression = aws.String("#nf = :nf AND #u < :before")
		in.ExpressionAttributeNames["#u"] = AttrUpdatedAt
		in.ExpressionAttributeValues[":before"] = timeAV(before)
	}
	n := 0
	for {
		if limit > 0 {
			in.Limit = aws.Int32(int32(min(limit-n, 100)))
		}
		out, err := t.DB.Query(ctx, in)
		if err != nil {
			return fmt.Errorf("query non-final files: %w", err)
		}
		for _, raw := range out.Items {
			var it FileItem
			if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
				return fmt.Errorf("decode file state: %w", err)
			}
			if err := fn(&it); err != nil {
				return err
			}
			if n++; limit > 0 && n >= limit {
				return nil
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// RequeueFile moves a non-final file back to CLAIMED so that its message is
// sent again (then MarkQueued), provided nobody touched the item since it was
// read (its updatedAt is still seen). It returns ErrConflict otherwise: the
// file moved, or another sweep took it first, so one file is never re-sent
// twice at once.
func (t *Table) RequeueFile(ctx context.Context, fileID string, seen time.Time) error {
	_, err := t.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           &t.Name,
		Key:                 fileKey(fileID),
		UpdateExpression:    aws.String("SET #s = :c, #u = :now ADD resends :one"),
		ConditionExpression: aws.String("attribute_exists(#nf) AND #u = :seen"),
		ExpressionAttributeNames: map[string]string{
			"#s": "status", "#u": AttrUpdatedAt, "#nf": AttrNonFinal,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":c":    &types.AttributeValueMemberS{Value: StatusClaimed},
			":now":  timeAV(t.now()),
			":seen": timeAV(seen),
			":one":  numAV(1),
		},
	})
	if err != nil {
		return conflictOr("requeue file "+fileID, err)
	}
	return nil
}

// MarkNonFinal adds a file written before the sparse index existed to it:
// it sets nonFinal on a file item that is not DONE or FAILED (anything else
// is left alone).
func (t *Table) MarkNonFinal(ctx context.Context, fileID string) error {
	return t.updateIf(ctx, fmt.Sprintf("index file %s as non-final", fileID), &dynamodb.UpdateItemInput{
		Key:                      fileKey(fileID),
		UpdateExpression:         aws.String("SET #nf = :nf"),
		ConditionExpression:      aws.String("attribute_exists(pk) AND NOT #s IN (:done, :failed)"),
		ExpressionAttributeNames: map[string]string{"#nf": AttrNonFinal, "#s": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":nf":     &types.AttributeValueMemberS{Value: NonFinalValue},
			":done":   &types.AttributeValueMemberS{Value: StatusDone},
			":failed": &types.AttributeValueMemberS{Value: StatusFailed},
		},
	})
}
