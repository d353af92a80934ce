package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// File statuses. CLAIMED: the poller wrote the item but has not yet sent the
// message (a crash here is repaired by the next poll); QUEUED: sent to SQS;
// DOWNLOADING: a downloader works on it; DONE: the object is in S3;
// FAILED: given up, with Reason (the message goes to the DLQ).
const (
	StatusClaimed     = "CLAIMED"
	StatusQueued      = "QUEUED"
	StatusDownloading = "DOWNLOADING"
	StatusDone        = "DONE"
	StatusFailed      = "FAILED"
)

// SKFile is the sort key of a file item.
const SKFile = "FILE"

// FileItem is the state of one CFS file.
type FileItem struct {
	PK          string    `dynamodbav:"pk"`
	SK          string    `dynamodbav:"sk"`
	FileID      string    `dynamodbav:"fileId"`
	FileSetID   string    `dynamodbav:"fileSetId"`
	FileSetName string    `dynamodbav:"fileSetName,omitempty"`
	FileName    string    `dynamodbav:"fileName,omitempty"`
	Bucket      string    `dynamodbav:"bucket"`
	PackageID   string    `dynamodbav:"packageId"`
	Status      string    `dynamodbav:"status"`
	Attempts    int       `dynamodbav:"attempts"`
	Size        int64     `dynamodbav:"size,omitempty"`
	Key         string    `dynamodbav:"s3Key,omitempty"`
	ETag        string    `dynamodbav:"etag,omitempty"`
	Reason      string    `dynamodbav:"reason,omitempty"`
	AvailableTo time.Time `dynamodbav:"availableTo,omitempty"`
	CreatedAt   time.Time `dynamodbav:"createdAt"`
	UpdatedAt   time.Time `dynamodbav:"updatedAt"`
	QueuedAt    time.Time `dynamodbav:"queuedAt,omitempty"`
	DoneAt      time.Time `dynamodbav:"doneAt,omitempty"`
	TTL         int64     `dynamodbav:"ttl,omitempty"`
	// NonFinal is the sparse index's partition key (NonFinalIndex): set
	// while the file is not DONE or FAILED, removed when it is.
	NonFinal string `dynamodbav:"nonFinal,omitempty"`
	// Resends counts the times a sweep sent the file's message again.
	Resends int `dynamodbav:"resends,omitempty"`
}

// FilePK is the partition key of a file.
func FilePK(fileID string) string { return "FILE#" + fileID }

func fileKey(fileID string) map[string]types.AttributeValue {
	return itemKey(FilePK(fileID), SKFile)
}

// ErrNotFound: no such item.
var ErrNotFound = errors.New("state: not found")

// ErrConflict: a conditional write lost (another writer got there first, or
// the item is not in the expected status).
var ErrConflict = errors.New("state: conditional write failed")

func isConditionFailed(err error) bool {
	var cf *types.ConditionalCheckFailedException
	return errors.As(err, &cf)
}

// GetFile returns a file's state, or ErrNotFound.
func (t *Table) GetFile(ctx context.Context, fileID string) (*FileItem, error) {
	var it FileItem
	if err := t.mustGetItem(ctx, fileKey(fileID), &it, "file state "+fileID); err != nil {
		return nil, err
	}
	return &it, nil
}

// BatchGetFiles returns the known files among ids (100 keys per request,
// unprocessed keys retried), keyed by file id. Calls counts DynamoDB requests.
func (t *Table) BatchGetFiles(ctx context.Context, ids []string) (map[string]*FileItem, int, error) {
	found := map[string]*FileItem{}
	calls := 0
	seen := map[string]bool{}
	var uniq []string
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			uniq = append(uniq, id)
		}
	}
	for start := 0; start < len(uniq); start += 100 {
		end := min(start+100, len(uniq))
		keys := make([]map[string]types.AttributeValue, 0, end-start)
		for _, id := range uniq[start:end] {
			keys = append(keys, fileKey(id))
		}
		req := map[string]types.KeysAndAttributes{t.Name: {Keys: keys, ConsistentRead: aws.Bool(true)}}
		for attempt := 0; len(req) > 0; attempt++ {
			if attempt > 0 {
				if attempt > 8 {
					return nil, calls, fmt.Errorf("batch get file states: unprocessed keys after %d attempts", attempt)
				}
				select {
				case <-ctx.Done():
					return nil, calls, ctx.Err()
				case <-time.After(time.Duration(attempt*attempt) * 20 * time.Millisecond):
				}
			}
			out, err := t.DB.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			calls++
			if err != nil {
				return nil, calls, fmt.Errorf("batch get file states: %w", err)
			}
			for _, raw := range out.Responses[t.Name] {
				var it FileItem
				if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
					return nil, calls, fmt.Errorf("decode file state: %w", err)
				}
				found[it.FileID] = &it
			}
			req = out.UnprocessedKeys
		}
	}
	return found, calls, nil
}

// ClaimFile creates the item of a new file in status CLAIMED. It returns
// ErrConflict if the file is already known.
func (t *Table) ClaimFile(ctx context.Context, it FileItem) error {
	now := t.now()
	it.PK, it.SK = FilePK(it.FileID), SKFile
	it.Status = StatusClaimed
	it.NonFinal = NonFinalValue
	it.CreatedAt, it.UpdatedAt = now, now
	av, err := attributevalue.MarshalMap(it)
	if err != nil {
		return fmt.Errorf("claim file %s: %w", it.FileID, err)
	}
	_, err = t.DB.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:           &t.Name,
		Item:                av,
		ConditionExpression: aws.String("attribute_not_exists(pk)"),
	})
	if err != nil {
		return conflictOr("claim file "+it.FileID, err)
	}
	return nil
}

// MarkQueued records that the file's message was sent (CLAIMED → QUEUED).
// A file already past QUEUED is left alone.
func (t *Table) MarkQueued(ctx context.Context, fileID string) error {
	return t.updateFileIf(ctx, fmt.Sprintf("mark file %s queued", fileID), fileID,
		"SET #s = :q, queuedAt = :now, updatedAt = :now", "attribute_exists(pk) AND #s = :c", nil,
		map[string]types.AttributeValue{":q": strAV(StatusQueued), ":c": strAV(StatusClaimed), ":now": timeAV(t.now())})
}

// BeginDownload moves a file to DOWNLOADING and counts the attempt. It
// returns the item as it was before, ErrNotFound for an unknown file (the
// downloader then creates it from the message), or ErrConflict if it is DONE.
func (t *Table) BeginDownload(ctx context.Context, it FileItem) (*FileItem, error) {
	now := t.now()
	out, err := t.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: &t.Name,
		Key:       fileKey(it.FileID),
		UpdateExpression: aws.String("SET #s = :d, updatedAt = :now, attempts = if_not_exists(attempts, :zero) + :one, " +
			"fileId = :id, fileSetId = if_not_exists(fileSetId, :fs), #b = if_not_exists(#b, :b), " +
			"packageId = if_not_exists(packageId, :p), createdAt = if_not_exists(createdAt, :now), " + AttrNonFinal + " = :nf REMOVE reason"),
		ConditionExpression:      aws.String("attribute_not_exists(pk) OR #s <> :done"),
		ExpressionAttributeNames: map[string]string{"#s": "status", "#b": "bucket"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":d":    &types.AttributeValueMemberS{Value: StatusDownloading},
			":done": &types.AttributeValueMemberS{Value: StatusDone},
			":now":  timeAV(now),
			":zero": &types.AttributeValueMemberN{Value: "0"},
			":one":  &types.AttributeValueMemberN{Value: "1"},
			":id":   &types.AttributeValueMemberS{Value: it.FileID},
			":fs":   &types.AttributeValueMemberS{Value: it.FileSetID},
			":b":    &types.AttributeValueMemberS{Value: it.Bucket},
			":p":    &types.AttributeValueMemberS{Value: it.PackageID},
			":nf":   &types.AttributeValueMemberS{Value: NonFinalValue},
		},
		ReturnValues: types.ReturnValueAllOld,
	})
	if err != nil {
		return nil, conflictOr("begin download "+it.FileID, err)
	}
	if len(out.Attributes) == 0 {
		return nil, nil // new item
	}
	var old FileItem
	if err := attributevalue.UnmarshalMap(out.Attributes, &old); err != nil {
		return nil, fmt.Errorf("decode file state %s: %w", it.FileID, err)
	}
	return &old, nil
}

// MarkDone records a landed file.
func (t *Table) MarkDone(ctx context.Context, fileID string, size int64, key, etag string) error {
	now := t.now()
	_, err := t.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                &t.Name,
		Key:                      fileKey(fileID),
		UpdateExpression:         aws.String("SET #s = :done, #size = :size, s3Key = :key, etag = :etag, doneAt = :now, updatedAt = :now REMOVE reason, " + AttrNonFinal),
		ExpressionAttributeNames: map[string]string{"#s": "status", "#size": "size"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":done": &types.AttributeValueMemberS{Value: StatusDone},
			":size": &types.AttributeValueMemberN{Value: fmt.Sprint(size)},
			":key":  &types.AttributeValueMemberS{Value: key},
			":etag": &types.AttributeValueMemberS{Value: etag},
			":now":  timeAV(now),
		},
	})
	if err != nil {
		return fmt.Errorf("mark file %s done: %w", fileID, err)
	}
	return nil
}

// MarkFailed records why a file failed. A DONE file is never downgraded.
func (t *Table) MarkFailed(ctx context.Context, fileID, reason string) error {
	reason = clipReason(reason, maxFailureReason)
	return t.updateFileIf(ctx, fmt.Sprintf("mark file %s failed", fileID), fileID,
		"SET #s = :f, reason = :r, updatedAt = :now REMOVE "+AttrNonFinal, "attribute_not_exists(#s) OR #s <> :done", nil,
		map[string]types.AttributeValue{":f": strAV(StatusFailed), ":r": strAV(reason), ":done": strAV(StatusDone), ":now": timeAV(t.now())})
}

// ScanFiles calls fn for every file item (operator tools; not on hot paths).
func (t *Table) ScanFiles(ctx context.Context, fn func(*FileItem) error) error {
	p := dynamodb.NewScanPaginator(t.DB, &dynamodb.ScanInput{
		TableName:                 &t.Name,
		FilterExpression:          aws.String("sk = :f"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":f": &types.AttributeValueMemberS{Value: SKFile}},
	})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("scan file states: %w", err)
		}
		if err := eachFile(out.Items, fn); err != nil {
			return err
		}
	}
	return nil
}

// eachFile decodes file items (of a scan or query) and calls fn with each.
func eachFile(items []map[string]types.AttributeValue, fn func(*FileItem) error) error {
	for _, raw := range items {
		var it FileItem
		if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
			return fmt.Errorf("decode file state: %w", err)
		}
		if err := fn(&it); err != nil {
			return err
		}
	}
	return nil
}

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
	errLimit := errors.New("limit reached")
	counted := func(it *FileItem) error {
		if err := fn(it); err != nil {
			return err
		}
		if n++; limit > 0 && n >= limit {
			return errLimit
		}
		return nil
	}
	for {
		if limit > 0 {
			in.Limit = aws.Int32(int32(min(limit-n, 100)))
		}
		out, err := t.DB.Query(ctx, in)
		if err != nil {
			return fmt.Errorf("query non-final files: %w", err)
		}
		if err := eachFile(out.Items, counted); err != nil {
			if errors.Is(err, errLimit) {
				return nil
			}
			return err
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
	err := t.updateFile(ctx, fileID, "SET #s = :c, #u = :now ADD resends :one", "attribute_exists(#nf) AND #u = :seen",
		map[string]string{"#u": AttrUpdatedAt, "#nf": AttrNonFinal},
		map[string]types.AttributeValue{":c": strAV(StatusClaimed), ":now": timeAV(t.now()), ":seen": timeAV(seen), ":one": numAV(1)})
	if err != nil {
		return conflictOr("requeue file "+fileID, err)
	}
	return nil
}

// MarkNonFinal adds a file written before the sparse index existed to it:
// it sets nonFinal on a file item that is not DONE or FAILED (anything else
// is left alone).
func (t *Table) MarkNonFinal(ctx context.Context, fileID string) error {
	return t.updateFileIf(ctx, fmt.Sprintf("index file %s as non-final", fileID), fileID,
		"SET #nf = :nf", "attribute_exists(pk) AND NOT #s IN (:done, :failed)", map[string]string{"#nf": AttrNonFinal},
		map[string]types.AttributeValue{":nf": strAV(NonFinalValue), ":done": strAV(StatusDone), ":failed": strAV(StatusFailed)})
}
