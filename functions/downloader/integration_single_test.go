package main

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// claim writes the file's item as the poller does (CLAIMED, no attempt).
func (e *dlEnv) claim(t *testing.T, f rdptest.File) {
	t.Helper()
	if err := e.Table.ClaimFile(context.Background(), state.FileItem{FileID: f.ID, FileSetID: f.FileSetID, Bucket: f.Bucket, PackageID: f.PackageID}); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationSinglePut (moto + simulator): a middle-sized file lands
// with one PutObject of its parallel ranges (a plain-MD5 ETag, no multipart
// upload), and moto answers the If-None-Match: * of a fresh file's
// PutObject with the 412 the downloader then HEADs for: another file at the
// key is never overwritten; this file found there is DONE without a second
// write.
func TestIntegrationSinglePut(t *testing.T) {
	e := newDLEnv(t, rdptest.Options{})
	ctx := context.Background()
	h, logs, _ := e.handler(t, func(s *Settings) { s.SinglePutMax = 20 * MiB })

	f := e.addFile("middle file.csv", 17*MiB+5) // four 5 MiB ranges
	e.claim(t, f)
	before := e.Sim.Counters()
	if resp, _ := h.Handle(ctx, sqsEvent(itMsg(f))); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("failures %v\n%s", failedIDs(resp), logs.String())
	}
	e.checkLanded(t, f)
	if got := e.Sim.Counters().RangeRequests - before.RangeRequests; got != 4 {
		t.Errorf("%d range requests, want 4", got)
	}
	head, err := e.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(itDest), Key: aws.String(itKey(f))})
	if err != nil {
		t.Fatal(err)
	}
	if etag := aws.ToString(head.ETag); strings.Contains(etag, "-") {
		t.Errorf("ETag %s: a multipart upload, want one PutObject", etag)
	}

	// The same file again with its state lost and claimed anew: the
	// PutObject's 412, then a HEAD that finds this file: DONE, not rewritten.
	if _, err := e.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(testenv.FunctionTable), Key: map[string]dtypes.AttributeValue{
		"pk": &dtypes.AttributeValueMemberS{Value: state.FilePK(f.ID)}, "sk": &dtypes.AttributeValueMemberS{Value: state.SKFile}}}); err != nil {
		t.Fatal(err)
	}
	e.claim(t, f)
	if resp, _ := h.Handle(ctx, sqsEvent(itMsg(f))); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("failures %v\n%s", failedIDs(resp), logs.String())
	}
	again, err := e.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(itDest), Key: aws.String(itKey(f))})
	if err != nil || !again.LastModified.Equal(*head.LastModified) || aws.ToString(again.ETag) != aws.ToString(head.ETag) {
		t.Errorf("object rewritten: %v %v → %v %v (%v)", head.LastModified, head.ETag, again.LastModified, again.ETag, err)
	}
	if !strings.Contains(logs.String(), "object already in S3 with matching cfs-file-id") {
		t.Errorf("no 412 → HEAD → DONE in the log:\n%s", logs.String())
	}
	if it, err := e.Table.GetFile(ctx, f.ID); err != nil || it.Status != state.StatusDone {
		t.Errorf("state %+v, %v: want DONE", it, err)
	}

	// Another file's object at the key: key collision, never overwritten.
	g := e.addFile("taken.csv", 6*MiB)
	e.claim(t, g)
	if _, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(itDest), Key: aws.String(itKey(g)), Body: strings.NewReader("other"),
		Metadata: map[string]string{metaFileID: "someone-else"}}); err != nil {
		t.Fatal(err)
	}
	resp, _ := h.Handle(ctx, sqsEvent(itMsg(g)))
	if len(resp.BatchItemFailures) != 1 {
		t.Fatalf("failures %v, want the collision to fail the message", failedIDs(resp))
	}
	if it, err := e.Table.GetFile(ctx, g.ID); err != nil || it.Status != state.StatusFailed || !strings.HasPrefix(it.Reason, "key-collision") {
		t.Errorf("state %+v, %v: want FAILED key-collision", it, err)
	}
	if o, err := e.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(itDest), Key: aws.String(itKey(g))}); err != nil || aws.ToInt64(o.ContentLength) != int64(len("other")) {
		t.Errorf("object at the taken key: %v: overwritten", err)
	}
}
