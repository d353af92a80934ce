package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/cfsync/cfsync/internal/notify"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

const testEndpoint = "https://sqs.us-east-1.amazonaws.com/123456789012/lseg-sub-1"

// seal encrypts plain in the FileNoti layout (AAD 16 bytes ending in the
// nonce, then cipher text and tag). Decryption itself is checked against
// Python-made vectors in internal/notify.
func seal(t *testing.T, key []byte, plain string) string {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, _ := cipher.NewGCM(block)
	aad := []byte("aad-0123456789ab")
	return base64.StdEncoding.EncodeToString(append(append([]byte{}, aad...), gcm.Seal(nil, aad[4:], []byte(plain), aad)...))
}

func notification(fsID, status string, fileIDs ...string) string {
	type file struct {
		ID string `json:"id"`
	}
	var files []file
	for _, id := range fileIDs {
		files = append(files, file{id})
	}
	b, _ := json.Marshal(map[string]any{"ecpMessageID": "ecp-" + fsID, "payload": map[string]any{"FileStoreNotification": map[string]any{
		"currentAt": "2026-12-05T04:00:00Z",
		"fileset": map[string]any{"id": fsID, "bucketName": "bulk-ESG", "packageId": "p1", "name": fsID + "-name", "status": status,
			"numFiles": len(files), "files": map[string]any{"values": files}}}}})
	return string(b)
}

type fakeSecrets map[string]string

func (f fakeSecrets) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	v, ok := f[aws.ToString(in.SecretId)]
	if !ok {
		return nil, &smtypes.ResourceNotFoundException{Message: aws.String("no secret")}
	}
	return &secretsmanager.GetSecretValueOutput{SecretString: aws.String(v)}, nil
}

func secrets(t *testing.T, creds string) fakeSecrets {
	t.Helper()
	sub, _ := json.Marshal(notify.Subscription{SubscriptionID: "sub-1", Endpoint: testEndpoint, CryptographyKey: base64.StdEncoding.EncodeToString(testKey)})
	return fakeSecrets{"sub": string(sub), "creds": creds}
}

const goodCreds = `{"endpoint":"` + testEndpoint + `","accessKeyId":"ASIAFAKE","secretKey":"SECRETKEY","sessionToken":"SESSIONTOKEN","generation":3}`

// fakeQueue serves its messages once each, in batches of up to 10, and
// records deletes.
type fakeQueue struct {
	mu         sync.Mutex
	msgs       []sqstypes.Message
	receiveErr error
	deleted    []string
	receives   int
	creds      aws.Credentials
}

func (q *fakeQueue) add(bodies ...string) {
	for _, b := range bodies {
		id := fmt.Sprintf("m%d", len(q.msgs)+1)
		q.msgs = append(q.msgs, sqstypes.Message{MessageId: aws.String(id), ReceiptHandle: aws.String("rh-" + id), Body: aws.String(b)})
	}
}

func (q *fakeQueue) ReceiveMessage(_ context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.receives++
	if aws.ToString(in.QueueUrl) != testEndpoint {
		return nil, errors.New("wrong queue")
	}
	if q.receiveErr != nil {
		return nil, q.receiveErr
	}
	n := min(len(q.msgs), int(in.MaxNumberOfMessages))
	out := q.msgs[:n]
	q.msgs = q.msgs[n:]
	return &sqs.ReceiveMessageOutput{Messages: out}, nil
}

func (q *fakeQueue) DeleteMessage(_ context.Context, in *sqs.DeleteMessageInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deleted = append(q.deleted, aws.ToString(in.ReceiptHandle))
	return &sqs.DeleteMessageOutput{}, nil
}

type handed struct {
	fs    notify.FileSet
	files []notify.File
}

type fakeEnqueuer struct {
	mu    sync.Mutex
	calls []handed
	err   error
	fail  map[string]error // by file-set id: the hand-off of that file-set fails
}

func (e *fakeEnqueuer) Enqueue(_ context.Context, fs notify.FileSet, files []notify.File) (notify.HandoffResult, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return notify.HandoffResult{}, e.err
	}
	if err := e.fail[fs.ID]; err != nil {
		return notify.HandoffResult{}, err
	}
	e.calls = append(e.calls, handed{fs, files})
	return notify.HandoffResult{Claimed: len(files), Queued: len(files)}, nil
}

type fakeReporter struct {
	gens []int64
}

func (r *fakeReporter) ReportQueueCredentials(_ context.Context, gen int64, _ string) error {
	r.gens = append(r.gens, gen)
	return nil
}

var (
	_ notify.SecretReader = fakeSecrets(nil)
	_ QueueAPI            = (*fakeQueue)(nil)
	_ Enqueuer            = (*fakeEnqueuer)(nil)
	_ Reporter            = (*fakeReporter)(nil)
)

func expiredToken() error {
	return &smithy.GenericAPIError{Code: "ExpiredToken", Message: "The security token included in the request is expired"}
}
