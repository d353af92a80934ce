package lambdamain

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/cfsync/cfsync/internal/config"
)

func TestDownloadQueueSendsToTheConfiguredQueue(t *testing.T) {
	e := &Env{AWS: aws.Config{Region: "eu-west-1"}}
	s := e.DownloadQueue(config.Worker{DownloadQueueURL: "https://sqs.eu-west-1.amazonaws.com/1/downloads"})
	if s.QueueURL != "https://sqs.eu-west-1.amazonaws.com/1/downloads" || s.SQS == nil {
		t.Fatalf("DownloadQueue = %+v, want a sender of the configured queue", s)
	}
}
