package landing

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The event (see docs/design.md#downstream).
const (
	EventSource     = "cfsync"
	EventDetailType = "FileSet Landed"
	// maxDetail bounds the event's detail: an EventBridge entry is at most
	// 256 KB in all (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html);
	// a larger manifest is sent without its file list (FilesOmitted).
	maxDetail = 200 << 10
)

// jsonObject is a PUT of v as indented JSON at key in the destination bucket;
// what names the object in errors.
func (l *Lander) jsonObject(what, key string, v any) (*s3.PutObjectInput, error) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s %s: %w", what, key, err)
	}
	return &s3.PutObjectInput{
		Bucket: &l.cfg.DestBucket, Key: aws.String(key), Body: bytes.NewReader(body), ContentType: aws.String("application/json"),
	}, nil
}

func (l *Lander) putManifest(ctx context.Context, m *Manifest) error {
	in, err := l.jsonObject("manifest", m.ManifestKey, m)
	if err != nil {
		return err
	}
	if _, err := l.s3.PutObject(ctx, in); err != nil {
		return fmt.Errorf("put manifest %s: %w", m.ManifestKey, err)
	}
	return nil
}

// eventDetail is the manifest, without its file list if that is too large.
func eventDetail(m *Manifest) (string, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode event detail: %w", err)
	}
	if len(b) <= maxDetail {
		return string(b), nil
	}
	small := *m
	small.Files, small.FilesOmitted = nil, true
	if b, err = json.Marshal(&small); err != nil {
		return "", fmt.Errorf("encode event detail: %w", err)
	}
	return string(b), nil
}

func (l *Lander) putEvent(ctx context.Context, m *Manifest) error {
	detail, err := eventDetail(m)
	if err != nil {
		return err
	}
	out, err := l.events.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
		Source: aws.String(EventSource), DetailType: aws.String(EventDetailType), Detail: aws.String(detail),
		EventBusName: aws.String(l.cfg.EventBus),
	}}})
	if err != nil {
		return fmt.Errorf("put event for file-set %s: %w", m.FileSetID, err)
	}
	if out.FailedEntryCount > 0 {
		code, msg := "", ""
		if len(out.Entries) > 0 {
			code, msg = aws.ToString(out.Entries[0].ErrorCode), aws.ToString(out.Entries[0].ErrorMessage)
		}
		return fmt.Errorf("put event for file-set %s: entry rejected: %s %s", m.FileSetID, code, msg)
	}
	return nil
}
