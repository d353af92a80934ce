package pipeline

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// countInFrontOf starts a target server answering with h and a request
// counter for callers pointed at it; both stop with the test.
func countInFrontOf(t *testing.T, h http.HandlerFunc, callers ...string) *RequestCounter {
	t.Helper()
	target := httptest.NewServer(h)
	t.Cleanup(target.Close)
	c, err := NewRequestCounter(callers...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Point(target.URL); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRequestCounterNamesSDKRequests sends real SDK requests through the
// counter (to a target that answers 500, one attempt each) and checks each
// is counted once under its caller, service and operation.
func TestRequestCounterNamesSDKRequests(t *testing.T) {
	c := countInFrontOf(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}, "poller", "downloader")
	ctx := context.Background()
	cfg := func(caller string) aws.Config {
		cf := AWSConfig(c.URL(caller))
		cf.RetryMaxAttempts = 1
		return cf
	}
	ddb := dynamodb.NewFromConfig(cfg("poller"))
	item := map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "x"}}
	_, _ = ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("t"), Item: item})
	_, _ = ddb.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]ddbtypes.KeysAndAttributes{"t": {Keys: []map[string]ddbtypes.AttributeValue{item}}}})
	_, _ = sqs.NewFromConfig(cfg("poller")).SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String("q"),
		Entries: []sqstypes.SendMessageBatchRequestEntry{{Id: aws.String("1"), MessageBody: aws.String("m")}}})
	_, _ = secretsmanager.NewFromConfig(cfg("downloader")).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("s")})
	s3c := s3.NewFromConfig(cfg("downloader"), func(o *s3.Options) { o.UsePathStyle = true })
	b, k, u := aws.String("b"), aws.String("dir/k"), aws.String("u")
	_, _ = s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: k, Body: bytes.NewReader([]byte("x"))})
	_, _ = s3c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: b, Key: k})
	_, _ = s3c.UploadPart(ctx, &s3.UploadPartInput{Bucket: b, Key: k, UploadId: u, PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("x"))})
	_, _ = s3c.UploadPart(ctx, &s3.UploadPartInput{Bucket: b, Key: k, UploadId: u, PartNumber: aws.Int32(2), Body: bytes.NewReader([]byte("x"))})
	_, _ = s3c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: b, Key: k, UploadId: u,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: []s3types.CompletedPart{{PartNumber: aws.Int32(1)}}}})
	_, _ = s3c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: b, Key: k, UploadId: u})
	_, _ = s3c.ListParts(ctx, &s3.ListPartsInput{Bucket: b, Key: k, UploadId: u})
	_, _ = s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: b, Key: k})
	_, _ = s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: b, Key: k})
	_, _ = s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: b})

	want := map[string]int{
		"poller dynamodb:PutItem": 1, "poller dynamodb:BatchGetItem": 1, "poller sqs:SendMessageBatch": 1,
		"downloader secretsmanager:GetSecretValue": 1,
		"downloader s3:PutObject":                  1, "downloader s3:CreateMultipartUpload": 1, "downloader s3:UploadPart": 2,
		"downloader s3:CompleteMultipartUpload": 1, "downloader s3:AbortMultipartUpload": 1, "downloader s3:ListParts": 1,
		"downloader s3:HeadObject": 1, "downloader s3:GetObject": 1, "downloader s3:ListObjectsV2": 1,
	}
	got := map[string]int{}
	for k, n := range c.Counts() {
		got[k.String()] = n
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: counted %d, want %d", k, got[k], n)
		}
	}
	for k, n := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s: %d", k, n)
		}
	}
	c.Reset()
	if n := len(c.Counts()); n != 0 {
		t.Errorf("after Reset: %d kinds counted", n)
	}
}

// TestClassifyS3Shapes covers the S3 requests the SDK sends without x-id.
func TestClassifyS3Shapes(t *testing.T) {
	auth := "AWS4-HMAC-SHA256 Credential=testing/20261205/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x"
	for _, tc := range []struct{ method, target, copySrc, want string }{
		{"POST", "/b/k?uploads", "", "CreateMultipartUpload"},
		{"POST", "/b/k?uploadId=u", "", "CompleteMultipartUpload"},
		{"POST", "/b?delete", "", "DeleteObjects"},
		{"HEAD", "/b/k", "", "HeadObject"},
		{"HEAD", "/b", "", "HeadBucket"},
		{"PUT", "/b/k", "", "PutObject"},
		{"PUT", "/b/k?tagging", "", "PutObjectTagging"},
		{"PUT", "/b/k", "/b/src", "CopyObject"},
		{"PUT", "/b/k?partNumber=1&uploadId=u", "", "UploadPart"},
		{"GET", "/b?uploads", "", "ListMultipartUploads"},
		{"GET", "/b?list-type=2", "", "ListObjectsV2"},
		{"DELETE", "/b/k?uploadId=u", "", "AbortMultipartUpload"},
		{"DELETE", "/b/k", "", "DeleteObject"},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		r.Header.Set("Authorization", auth)
		if tc.copySrc != "" {
			r.Header.Set("X-Amz-Copy-Source", tc.copySrc)
		}
		if svc, op := ClassifyAWSRequest(r); svc != "s3" || op != tc.want {
			t.Errorf("%s %s: %s:%s, want s3:%s", tc.method, tc.target, svc, op, tc.want)
		}
	}
	r := httptest.NewRequest("POST", "/", strings.NewReader("Action=PutMetricData&Version=2010-08-01"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	r.Header.Set("Authorization", strings.Replace(auth, "/s3/", "/monitoring/", 1))
	if svc, op := ClassifyAWSRequest(r); svc != "monitoring" || op != "PutMetricData" {
		t.Errorf("query protocol: %s:%s", svc, op)
	}
}

// TestRequestCounterSerializesDynamoDB: two DynamoDB requests from two
// callers never reach the target at once; S3 requests may.
func TestRequestCounterSerializesDynamoDB(t *testing.T) {
	var inFlight, most atomic.Int32
	c := countInFrontOf(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(50 * time.Millisecond)
		http.Error(w, "no", http.StatusInternalServerError)
	}, "a", "b")
	send := func(caller string, s3op bool) {
		cf := AWSConfig(c.URL(caller))
		cf.RetryMaxAttempts = 1
		if s3op {
			_, _ = s3.NewFromConfig(cf, func(o *s3.Options) { o.UsePathStyle = true }).HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
			return
		}
		_, _ = dynamodb.NewFromConfig(cf).GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String("t"),
			Key: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "x"}}})
	}
	run := func(s3op bool) int32 {
		most.Store(0)
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Go(func() { send([]string{"a", "b"}[i%2], s3op) })
		}
		wg.Wait()
		return most.Load()
	}
	if m := run(false); m != 1 {
		t.Errorf("DynamoDB: %d requests at moto at once, want 1", m)
	}
	if m := run(true); m < 2 {
		t.Errorf("S3: at most %d requests at once, want them concurrent", m)
	}
}

// TestRequestCounterKeepHost: by default the target sees its own Host;
// with KeepHost the one the request was signed for. Took sums the time the
// target took per kind of request.
func TestRequestCounterKeepHost(t *testing.T) {
	hosts := make(chan string, 2)
	c := countInFrontOf(t, func(w http.ResponseWriter, r *http.Request) {
		hosts <- r.Host
		time.Sleep(20 * time.Millisecond)
	}, "downloader")
	for _, keep := range []bool{false, true} {
		c.KeepHost(keep)
		req, err := http.NewRequest(http.MethodHead, c.URL("downloader")+"/b/k", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "signed.example"
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20261205/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := <-hosts; (got == "signed.example") != keep {
			t.Errorf("KeepHost(%v): the target saw Host %q", keep, got)
		}
	}
	key := RequestKey{"downloader", "s3", "HeadObject"}
	if n, d := c.Counts()[key], c.Took()[key]; n != 2 || d < 40*time.Millisecond {
		t.Errorf("%s: counted %d taking %s, want 2 taking ≥ 40ms", key, n, d)
	}
	c.Reset()
	if n := len(c.Took()); n != 0 {
		t.Errorf("after Reset: %d kinds timed", n)
	}
}
