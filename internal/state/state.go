// Package state is cfsync's DynamoDB state table: one table, partition key
// `pk` (S) and sort key `sk` (S), TTL attribute `ttl` (epoch seconds).
//
// Item layout (pk / sk):
//
//	FILE#<fileId>          / FILE                  one CFS file: status, attempts, file-set, size, key, reason
//	FILE#<fileId>          / UPLOAD                downloader: lease and multipart upload header (upload.go)
//	FILE#<fileId>          / UPLOAD#PARTS#<nnnnn>  downloader: completed parts, 1,000 per item (upload.go)
//	SUB#<bucket>/<pkg>     / WATERMARK             poller: watermark, polls since full reconcile, listing pass in progress (poller.go)
//	AUTH                   / BUDGET                refresher: auth budget, backoff, session start, revoke hold, lease (auth.go)
//	AUTH                   / RING                  refresher: ring generation, last write per slot (ring.go)
//	RING                   / REPORT#<generation>   readers' token-invalid reports (ring.go)
//	FILESET#<fileSetId>    / FILESET               file-set metadata, file ids, landed ids, landing lease (filesets.go)
//
// Index nonFinal-updatedAt (files.go): the FILE items not DONE or FAILED,
// least recently updated first (sparse: only they carry nonFinal).
//
// Nothing secret is ever stored here (docs/design.md#no-secret-leaves).
package state

import (
	"context"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DynamoDB is the part of the DynamoDB API the state table uses.
type DynamoDB interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, opts ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

var _ DynamoDB = (*dynamodb.Client)(nil)

// Table is the state table.
type Table struct {
	DB   DynamoDB
	Name string
	// Now is the clock (tests inject a fake one); default time.Now.
	Now func() time.Time
}

// New returns a Table.
func New(db DynamoDB, name string) *Table { return &Table{DB: db, Name: name, Now: time.Now} }

func (t *Table) now() time.Time {
	if t.Now == nil {
		return time.Now().UTC()
	}
	return t.Now().UTC()
}

// Key attribute names.
const (
	AttrPK  = "pk"
	AttrSK  = "sk"
	AttrTTL = "ttl"
)

// getItem reads the item at key (a consistent read) into dst and reports
// whether it exists (dst is left alone when not); what names the item in errors.
func (t *Table) getItem(ctx context.Context, key map[string]types.AttributeValue, dst any, what string) (bool, error) {
	out, err := t.DB.GetItem(ctx, &dynamodb.GetItemInput{TableName: &t.Name, Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return false, fmt.Errorf("get %s: %w", what, err)
	}
	if out.Item == nil {
		return false, nil
	}
	if err := attributevalue.UnmarshalMap(out.Item, dst); err != nil {
		return false, fmt.Errorf("decode %s: %w", what, err)
	}
	return true, nil
}

// updateIf applies the conditional update in to the table; an unmet
// condition leaves the item alone and is no error. op names the update in
// errors.
func (t *Table) updateIf(ctx context.Context, op string, in *dynamodb.UpdateItemInput) error {
	in.TableName = &t.Name
	_, err := t.DB.UpdateItem(ctx, in)
	if err != nil && !isConditionFailed(err) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// updateFile sends a conditional update of a file's item: #s in the
// expressions is its status; names adds other attribute names (nil: none).
func (t *Table) updateFile(ctx context.Context, fileID, update, cond string, names map[string]string, vals map[string]types.AttributeValue) error {
	if names == nil {
		names = map[string]string{}
	}
	names["#s"] = "status"
	_, err := t.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &t.Name,
		Key:                       fileKey(fileID),
		UpdateExpression:          aws.String(update),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: vals,
	})
	return err
}

// updateFileIf is updateFile where an unmet condition leaves the item alone
// and is no error (see updateIf); op names the update in errors.
func (t *Table) updateFileIf(ctx context.Context, op, fileID, update, cond string, names map[string]string, vals map[string]types.AttributeValue) error {
	if err := t.updateFile(ctx, fileID, update, cond, names, vals); err != nil && !isConditionFailed(err) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func strAV(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func numAV(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func timeAV(t time.Time) types.AttributeValue {
	return &types.AttributeValueMemberS{Value: t.UTC().Format(time.RFC3339Nano)}
}

// conflictOr wraps the error of a conditional write with op: a failed
// condition becomes ErrConflict.
func conflictOr(op string, err error) error {
	if isConditionFailed(err) {
		err = ErrConflict
	}
	return fmt.Errorf("%s: %w", op, err)
}

// mustGetItem is getItem for an item that must exist: ErrNotFound when not.
func (t *Table) mustGetItem(ctx context.Context, key map[string]types.AttributeValue, dst any, what string) error {
	found, err := t.getItem(ctx, key, dst, what)
	if err == nil && !found {
		err = fmt.Errorf("get %s: %w", what, ErrNotFound)
	}
	return err
}

// itemKey is the primary key of an item.
func itemKey(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		AttrPK: &types.AttributeValueMemberS{Value: pk},
		AttrSK: &types.AttributeValueMemberS{Value: sk},
	}
}

// maxFailureReason bounds a stored file failure reason.
const maxFailureReason = 1000

// clipReason shortens a stored reason to at most max bytes without
// splitting a UTF-8 character.
func clipReason(s string, max int) string {
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// putIfCounter writes item if its stored counter attribute is still prev
// (an optimistic write: of two writers that read the same prev, one wins and
// the other gets ErrConflict). prev 0 means no counter yet: no item, an item
// without the attribute, or 0.
func (t *Table) putIfCounter(ctx context.Context, op string, item any, attr string, prev int64) error {
	av, err := attributevalue.MarshalMap(item)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	cond := "#c = :prev"
	if prev == 0 {
		cond = "attribute_not_exists(pk) OR attribute_not_exists(#c) OR #c = :prev"
	}
	_, err = t.DB.PutItem(ctx, &dynamodb.PutItemInput{TableName: &t.Name, Item: av,
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  map[string]string{"#c": attr},
		ExpressionAttributeValues: map[string]types.AttributeValue{":prev": numAV(prev)}})
	if err != nil {
		return conflictOr(op, err)
	}
	return nil
}
