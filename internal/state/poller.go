package state

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
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
	av, err := valueAV(p)
	if err != nil {
		return fmt.Errorf("save listing pass %s/%s: %w", bucket, packageID, err)
	}
	_, err = t.update(ctx, watermarkKey(bucket, packageID), write{
		Update: "SET #pass = :pass, #b = if_not_exists(#b, :b), #p = if_not_exists(#p, :p), #u = :u",
		Names:  map[string]string{"#pass": "pass", "#b": "bucket", "#p": "packageId", "#u": "updatedAt"},
		Values: values{":pass": av, ":b": strAV(bucket), ":p": strAV(packageID), ":u": timeAV(t.now())},
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

func watermarkKey(bucket, packageID string) primaryKey {
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
	sets := []string{"#b = :b", "#p = :p", "#n = :n", "#u = :u"}
	w0 := write{
		Names:  map[string]string{"#b": "bucket", "#p": "packageId", "#n": "pollsSinceFull", "#u": "updatedAt", "#pass": "pass"},
		Values: values{":b": strAV(w.Bucket), ":p": strAV(w.PackageID), ":n": numAV(int64(w.PollsSinceFull)), ":u": timeAV(t.now())},
	}
	if !w.LastFullAt.IsZero() {
		w0.Names["#f"] = "lastFullAt"
		w0.Values[":f"] = timeAV(w.LastFullAt)
		sets = append(sets, "#f = :f")
	}
	if !w.LastPollAt.IsZero() {
		w0.Names["#l"] = "lastPollAt"
		w0.Values[":l"] = timeAV(w.LastPollAt)
		sets = append(sets, "#l = :l")
	}
	w0.Update = "SET " + strings.Join(sets, ", ") + " REMOVE #pass"
	key := watermarkKey(w.Bucket, w.PackageID)
	if !w.Modified.IsZero() {
		// Times are stored as fixed-width RFC 3339 UTC strings, so string
		// order is time order and the condition keeps the watermark monotonic.
		withM := write{
			Update: "SET " + strings.Join(append(sets, "#m = :m"), ", ") + " REMOVE #pass",
			Cond:   "attribute_not_exists(#m) OR #m <= :m",
			Names:  maps.Clone(w0.Names),
			Values: maps.Clone(w0.Values),
		}
		withM.Names["#m"] = "modified"
		withM.Values[":m"] = strAV(watermarkTime(w.Modified))
		_, err := t.update(ctx, key, withM)
		if err == nil {
			return nil
		}
		if !isConditionFailed(err) {
			return fmt.Errorf("put watermark %s/%s: %w", w.Bucket, w.PackageID, err)
		}
		// The stored watermark is newer: keep it, record the counters.
	}
	if _, err := t.update(ctx, key, w0); err != nil {
		return fmt.Errorf("put watermark %s/%s: %w", w.Bucket, w.PackageID, err)
	}
	return nil
}

// watermarkTime formats t with a fixed width (always 9 fractional digits) so
// that lexical order equals time order in condition expressions.
func watermarkTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
}
