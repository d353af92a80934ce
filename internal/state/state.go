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
//	NOTIFY                 / QUEUECREDS            refresher and notification reader: queue credentials generation, rejection report (ring.go)
//	FILESET#<fileSetId>    / FILESET               file-set metadata, file ids, landed ids, landing lease (filesets.go)
//
// Index nonFinal-updatedAt (files.go): the FILE items not DONE or FAILED,
// least recently updated first (sparse: only they carry nonFinal).
//
// Nothing secret is ever stored here (docs/design.md#no-secret-leaves).
package state

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cfsync/cfsync/internal/backoff"
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

// values are the attribute values of a request's expressions (":name" → value).
type values map[string]types.AttributeValue

// primaryKey is the key of one item (itemKey).
type primaryKey map[string]types.AttributeValue

// write is one write request's expressions: Update (updates only), an
// optional Cond, and the Names and Values they use (nil: none).
type write struct {
	Update string
	Cond   string
	Names  map[string]string
	Values values
	// Into, when set, receives the item as an update left it, or with Old
	// as it was before.
	Into any
	Old  bool
}

// getItem reads the item at key (a consistent read) into dst and reports
// whether it exists (dst is left alone when not); what names the item in errors.
func (t *Table) getItem(ctx context.Context, key primaryKey, dst any, what string) (bool, error) {
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

// mustGet reads the item at key, which must exist (ErrNotFound when not), as
// a T.
func mustGet[T any](ctx context.Context, t *Table, key primaryKey, what string) (*T, error) {
	var it T
	found, err := t.getItem(ctx, key, &it, what)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("get %s: %w", what, ErrNotFound)
	}
	return &it, nil
}

// update applies w to the item at key. With w.Into it reports whether the
// item was decoded into it (false: w.Old and there was no item before).
// Errors are DynamoDB's, for the caller to wrap with its operation.
func (t *Table) update(ctx context.Context, key primaryKey, w write) (bool, error) {
	in := &dynamodb.UpdateItemInput{TableName: &t.Name, Key: key, UpdateExpression: aws.String(w.Update),
		ConditionExpression: condition(w.Cond), ExpressionAttributeNames: w.Names, ExpressionAttributeValues: w.Values}
	if w.Into != nil {
		in.ReturnValues = types.ReturnValueAllNew
		if w.Old {
			in.ReturnValues = types.ReturnValueAllOld
		}
	}
	out, err := t.DB.UpdateItem(ctx, in)
	if err != nil || w.Into == nil || len(out.Attributes) == 0 {
		return false, err
	}
	if err := attributevalue.UnmarshalMap(out.Attributes, w.Into); err != nil {
		return false, fmt.Errorf("decode: %w", err)
	}
	return true, nil
}

// updateIf applies the conditional update w to the item at key; an unmet
// condition leaves the item alone and is no error. op names the update in
// errors.
func (t *Table) updateIf(ctx context.Context, op string, key primaryKey, w write) error {
	if _, err := t.update(ctx, key, w); err != nil && !isConditionFailed(err) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// fileWrite is w on a file's item: #s in its expressions is the status.
func fileWrite(w write) write {
	w.Names = maps.Clone(w.Names)
	if w.Names == nil {
		w.Names = map[string]string{}
	}
	w.Names["#s"] = "status"
	return w
}

// put writes item (w.Cond, w.Names and w.Values make it conditional).
func (t *Table) put(ctx context.Context, item any, w write) error {
	av, err := attributevalue.MarshalMap(item)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	_, err = t.DB.PutItem(ctx, &dynamodb.PutItemInput{TableName: &t.Name, Item: av,
		ConditionExpression: condition(w.Cond), ExpressionAttributeNames: w.Names, ExpressionAttributeValues: w.Values})
	return err
}

// deleteItem deletes the item at key (w.Cond, w.Names and w.Values make it
// conditional).
func (t *Table) deleteItem(ctx context.Context, key primaryKey, w write) error {
	_, err := t.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &t.Name, Key: key,
		ConditionExpression: condition(w.Cond), ExpressionAttributeNames: w.Names, ExpressionAttributeValues: w.Values})
	return err
}

func condition(cond string) *string {
	if cond == "" {
		return nil
	}
	return &cond
}

// query is a Query: KeyCond on the table (or on Index), at most Limit items
// (0: all), in key order.
type query struct {
	Index, KeyCond string
	Names          map[string]string
	Values         values
	Consistent     bool
	Limit          int
}

// queryEach calls fn with each item q finds, decoded as a T.
func queryEach[T any](ctx context.Context, t *Table, q query, fn func(*T) error) error {
	in := &dynamodb.QueryInput{TableName: &t.Name, KeyConditionExpression: aws.String(q.KeyCond),
		ExpressionAttributeNames: q.Names, ExpressionAttributeValues: q.Values, ScanIndexForward: aws.Bool(true)}
	if q.Index != "" {
		in.IndexName = aws.String(q.Index)
	}
	if q.Consistent {
		in.ConsistentRead = aws.Bool(true)
	}
	n := 0
	for {
		if q.Limit > 0 {
			in.Limit = aws.Int32(int32(min(q.Limit-n, 100)))
		}
		out, err := t.DB.Query(ctx, in)
		if err != nil {
			return err
		}
		for _, raw := range out.Items {
			if err := decodeThen(raw, fn); err != nil {
				return err
			}
			if n++; q.Limit > 0 && n >= q.Limit {
				return nil
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// scanEach calls fn with each item of the table that filter selects,
// decoded as a T.
func scanEach[T any](ctx context.Context, t *Table, filter string, vals values, fn func(*T) error) error {
	p := dynamodb.NewScanPaginator(t.DB, &dynamodb.ScanInput{
		TableName: &t.Name, FilterExpression: aws.String(filter), ExpressionAttributeValues: vals,
	})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, raw := range out.Items {
			if err := decodeThen(raw, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeThen decodes one item as a T and calls fn with it.
func decodeThen[T any](raw map[string]types.AttributeValue, fn func(*T) error) error {
	var it T
	if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return fn(&it)
}

// unprocessedBackoff spaces the retries of keys BatchGetItem left
// unprocessed (internal/backoff's full jitter).
var unprocessedBackoff = backoff.Policy{Base: 20 * time.Millisecond, Max: time.Second}

// batchGet reads the items at keys (consistent reads, 100 keys per request,
// unprocessed keys retried with a growing pause) and calls fn with each,
// decoded as a T. It returns the number of requests sent.
func batchGet[T any](ctx context.Context, t *Table, keys []primaryKey, fn func(*T) error) (int, error) {
	calls := 0
	for batch := range slices.Chunk(keys, 100) {
		ks := make([]map[string]types.AttributeValue, len(batch))
		for i, k := range batch {
			ks[i] = k
		}
		req := map[string]types.KeysAndAttributes{t.Name: {Keys: ks, ConsistentRead: aws.Bool(true)}}
		for attempt := 0; len(req) > 0; attempt++ {
			if attempt > 8 {
				return calls, fmt.Errorf("unprocessed keys after %d attempts", attempt)
			}
			if attempt > 0 {
				if err := backoff.Sleep(ctx, unprocessedBackoff.Delay(attempt)); err != nil {
					return calls, err
				}
			}
			out, err := t.DB.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			calls++
			if err != nil {
				return calls, err
			}
			for _, raw := range out.Responses[t.Name] {
				if err := decodeThen(raw, fn); err != nil {
					return calls, err
				}
			}
			req = out.UnprocessedKeys
		}
	}
	return calls, nil
}

func strAV(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

// strSetAV is a string set of one or more strings.
func strSetAV(s ...string) types.AttributeValue { return &types.AttributeValueMemberSS{Value: s} }

func numAV(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func timeAV(t time.Time) types.AttributeValue {
	return &types.AttributeValueMemberS{Value: t.UTC().Format(time.RFC3339Nano)}
}

// valueAV encodes v (a struct: a map attribute) for an expression value.
func valueAV(v any) (types.AttributeValue, error) { return attributevalue.Marshal(v) }

func isConditionFailed(err error) bool {
	var cf *types.ConditionalCheckFailedException
	return errors.As(err, &cf)
}

// conflictOr wraps the error of a conditional write with op: a failed
// condition becomes ErrConflict.
func conflictOr(op string, err error) error {
	if isConditionFailed(err) {
		err = ErrConflict
	}
	return fmt.Errorf("%s: %w", op, err)
}

// itemKey is the primary key of an item.
func itemKey(pk, sk string) primaryKey {
	return primaryKey{AttrPK: strAV(pk), AttrSK: strAV(sk)}
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
	cond := "#c = :prev"
	if prev == 0 {
		cond = "attribute_not_exists(pk) OR attribute_not_exists(#c) OR #c = :prev"
	}
	err := t.put(ctx, item, write{Cond: cond, Names: map[string]string{"#c": attr}, Values: values{":prev": numAV(prev)}})
	if err != nil {
		return conflictOr(op, err)
	}
	return nil
}
