package state

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Poller items (see the layout in state.go):
//
//	SUB#<bucket>/<packageId> / WATERMARK   one per polled package
//
// <bucket> is lower-cased (bucket names are case-insensitive at RDP), so
// "bulk-ESG/p" and "bulk-esg/p" share one watermark.
const (
	subPKPrefix = "SUB#"
	SKWatermark = "WATERMARK"
)

// Watermark is the fileset-poller's progress for one package: the earlier of
// the start time and the largest `modified` of the last listing pass that
// completed with every message sent (every file-set modified before it,
// less the poll overlap, has been seen), how
// many incremental polls ran since the last full reconciliation, and the
// listing pass in progress, if any.
type Watermark struct {
	PK        string `dynamodbav:"pk"`
	SK        string `dynamodbav:"sk"`
	Bucket    string `dynamodbav:"bucket"`
	PackageID string `dynamodbav:"packageId"`
	// Modified is the watermark; zero when no poll has completed yet.
	Modified time.Time `dynamodbav:"modified,omitempty"`
	// PollsSinceFull counts the completed incremental polls since the last
	// completed full reconciliation.
	PollsSinceFull int       `dynamodbav:"pollsSinceFull"`
	LastFullAt     time.Time `dynamodbav:"lastFullAt,omitempty"`
	LastPollAt     time.Time `dynamodbav:"lastPollAt,omitempty"`
	UpdatedAt      time.Time `dynamodbav:"updatedAt"`
	// Pass is the listing pass in progress (nil when none): a listing
	// stopped by its time budget resumes from its cursor on the next run.
	Pass *Pass `dynamodbav:"pass,omitempty"`
}

// Pass is a listing pass in progress. Cursor is the @nextLink of the next
// page to fetch: a path relative to the API host with an opaque skipToken
// (no credential).
type Pass struct {
	Full      bool      `dynamodbav:"full"`
	Since     time.Time `dynamodbav:"since,omitempty"` // modifiedSince; zero for a full pass
	StartedAt time.Time `dynamodbav:"startedAt"`       // taken before the first page
	// MaxModified is the largest `modified` of the file-sets listed so far.
	MaxModified time.Time `dynamodbav:"maxModified,omitempty"`
	Cursor      string    `dynamodbav:"cursor,omitempty"`
	// Problems counts what earlier runs of the pass could not do (messages
	// not sent, malformed file-sets): the completed pass then does not move
	// the watermark, so the next pass lists those file-sets again.
	Problems int `dynamodbav:"problems,omitempty"`
	Pages    int `dynamodbav:"pages"` // pages fetched so far
	Runs     int `dynamodbav:"runs"`  // invocations that worked on the pass
}

// SavePass records the listing pass in progress of bucket/packageID.
func (t *Table) SavePass(ctx context.Context, bucket, packageID string, p Pass) error {
	if err := checkSubscription(bucket, packageID); err != nil {
		return fmt.Errorf("save listing pass %s/%s: %w", bucket, packageID, err)
	}
	av, err := attributevalue.Marshal(p)
	if err != nil {
		return fmt.Errorf("save listing pass %s/%s: %w", bucket, packageID, err)
	}
	_, err = t.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                &t.Name,
		Key:                      watermarkKey(bucket, packageID),
		UpdateExpression:         aws.String("SET #pass = :pass, #b = if_not_exists(#b, :b), #p = if_not_exists(#p, :p), #u = :u"),
		ExpressionAttributeNames: map[string]string{"#pass": "pass", "#b": "bucket", "#p": "packageId", "#u": "updatedAt"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pass": av,
			":b":    &types.AttributeValueMemberS{Value: bucket},
			":p":    &types.AttributeValueMemberS{Value: packageID},
			":u":    timeAV(t.now()),
		},
	})
	if err != nil {
		return fmt.Errorf("save listing pass %s/%s: %w", bucket, packageID, err)
	}
	return nil
}

// SubscriptionPK is the partition key of a package's watermark.
func SubscriptionPK(bucket, packageID string) string {
	return subPKPrefix + strings.ToLower(bucket) + "/" + packageID
}

func watermarkKey(bucket, packageID string) map[string]types.AttributeValue {
	return itemKey(SubscriptionPK(bucket, packageID), SKWatermark)
}

func checkSubscription(bucket, packageID string) error {
	if bucket == "" || packageID == "" {
		return errors.New("bucket and package id are required")
	}
	if strings.Contains(bucket, "/") || strings.Contains(packageID, "/") {
		return errors.New("bucket and package id must not contain '/'")
	}
	return nil
}

// GetWatermark returns the watermark of bucket/packageID; a zero Watermark
// (Modified zero, PollsSinceFull 0) when none was written yet.
func (t *Table) GetWatermark(ctx context.Context, bucket, packageID string) (*Watermark, error) {
	if err := checkSubscription(bucket, packageID); err != nil {
		return nil, fmt.Errorf("get watermark %s/%s: %w", bucket, packageID, err)
	}
	w := &Watermark{PK: SubscriptionPK(bucket, packageID), SK: SKWatermark, Bucket: bucket, PackageID: packageID}
	if _, err := t.getItem(ctx, watermarkKey(bucket, packageID), w, "watermark "+bucket+"/"+packageID); err != nil {
		return nil, err
	}
	return w, nil
}

// PutWatermark writes w (keyed by w.Bucket and w.PackageID) in one
// UpdateItem and ends the listing pass in progress (w.Pass is not written). The stored watermark never moves backwards: a write whose
// Modified is older than the stored one keeps the stored Modified (a slower,
// overlapping poll cannot undo a newer one's progress) but still records its
// poll counters (a second request).
func (t *Table) PutWatermark(ctx context.Context, w Watermark) error {
	if err := checkSubscription(w.Bucket, w.PackageID); err != nil {
		return fmt.Errorf("put watermark %s/%s: %w", w.Bucket, w.PackageID, err)
	}
	now := t.now()
	names := map[string]string{"#b": "bucket", "#p": "packageId", "#n": "pollsSinceFull", "#u": "updatedAt", "#pass": "pass"}
	values := map[string]types.AttributeValue{
		":b": &types.AttributeValueMemberS{Value: w.Bucket},
		":p": &types.AttributeValueMemberS{Value: w.PackageID},
		":n": &types.AttributeValueMemberN{Value: fmt.Sprint(w.PollsSinceFull)},
		":u": timeAV(now),
	}
	sets := []string{"#b = :b", "#p = :p", "#n = :n", "#u = :u"}
	if !w.LastFullAt.IsZero() {
		names["#f"] = "lastFullAt"
		values[":f"] = timeAV(w.LastFullAt)
		sets = append(sets, "#f = :f")
	}
	if !w.LastPollAt.IsZero() {
		names["#l"] = "lastPollAt"
		values[":l"] = timeAV(w.LastPollAt)
		sets = append(sets, "#l = :l")
	}
	in := &dynamodb.UpdateItemInput{
		TableName:                 &t.Name,
		Key:                       watermarkKey(w.Bucket, w.PackageID),
		UpdateExpression:          aws.String("SET " + strings.Join(sets, ", ") + " REMOVE #pass"),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	}
	if !w.Modified.IsZero() {
		// Times are stored as fixed-width RFC 3339 UTC strings, so string
		// order is time order and the condition keeps the watermark monotonic.
		withM := *in
		withM.ExpressionAttributeNames = mergeNames(names, map[string]string{"#m": "modified"})
		withM.ExpressionAttributeValues = mergeValues(values, map[string]types.AttributeValue{
			":m": &types.AttributeValueMemberS{Value: watermarkTime(w.Modified)},
		})
		withM.UpdateExpression = aws.String("SET " + strings.Join(append(sets, "#m = :m"), ", ") + " REMOVE #pass")
		withM.ConditionExpression = aws.String("attribute_not_exists(#m) OR #m <= :m")
		_, err := t.DB.UpdateItem(ctx, &withM)
		if err == nil {
			return nil
		}
		if !isConditionFailed(err) {
			return fmt.Errorf("put watermark %s/%s: %w", w.Bucket, w.PackageID, err)
		}
		// The stored watermark is newer: keep it, record the counters.
	}
	if _, err := t.DB.UpdateItem(ctx, in); err != nil {
		return fmt.Errorf("put watermark %s/%s: %w", w.Bucket, w.PackageID, err)
	}
	return nil
}

func mergeNames(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

func mergeValues(a, b map[string]types.AttributeValue) map[string]types.AttributeValue {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// watermarkTime formats t with a fixed width (always 9 fractional digits) so
// that lexical order equals time order in condition expressions.
func watermarkTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
}
