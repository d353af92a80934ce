package lambdamain

import (
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/queue"
)

// DownloadQueue is the sender of download-queue messages
// (DOWNLOAD_QUEUE_URL): the poller and the notification reader feed the
// queue, the downloader sends its continuations and deferrals to it.
func (e *Env) DownloadQueue(w config.Worker) *queue.Sender {
	return &queue.Sender{SQS: sqs.NewFromConfig(e.AWS), QueueURL: w.DownloadQueueURL}
}
