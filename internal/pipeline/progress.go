package pipeline

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
)

// Progress is a snapshot of the pipeline's state, read from the state table
// and the queues (what an operator could see in AWS) and the local loops.
type Progress struct {
	At        time.Time
	ByStatus  map[string]int       // file items by status
	Files     int                  // file items in the state table
	BytesDone int64                // sum of the sizes of DONE files
	LastDone  time.Time            // when the last file became DONE
	DoneAt    map[string]time.Time // when each DONE file (by file id) became DONE
	Queued    int                  // download-queue messages visible
	InFlight  int                  // download-queue messages received, not yet deleted
	DLQ       int                  // dead-letter-queue messages
	Events    StatsSnapshot
	Refresh   ScheduleStats
	Poll      ScheduleStats
	Read      ScheduleStats // the notification-reader's
}

// Done is the number of files in S3 (state DONE).
func (p Progress) Done() int { return p.ByStatus[state.StatusDone] }

// Failed is the number of files given up (state FAILED).
func (p Progress) Failed() int { return p.ByStatus[state.StatusFailed] }

// Progress reads a snapshot.
func (p *Pipeline) Progress(ctx context.Context) (Progress, error) {
	pr := Progress{At: time.Now(), ByStatus: map[string]int{}, DoneAt: map[string]time.Time{}}
	err := p.State.ScanFiles(ctx, func(it *state.FileItem) error {
		pr.Files++
		pr.ByStatus[it.Status]++
		if it.Status == state.StatusDone {
			pr.BytesDone += it.Size
			pr.DoneAt[it.FileID] = it.DoneAt
			if it.DoneAt.After(pr.LastDone) {
				pr.LastDone = it.DoneAt
			}
		}
		return nil
	})
	if err != nil {
		return pr, fmt.Errorf("progress: %w", err)
	}
	if pr.Queued, pr.InFlight, err = queueDepth(ctx, p.SQS, p.Res.QueueURL); err != nil {
		return pr, fmt.Errorf("progress: %w", err)
	}
	if pr.DLQ, _, err = queueDepth(ctx, p.SQS, p.Res.DLQURL); err != nil {
		return pr, fmt.Errorf("progress: %w", err)
	}
	if p.Events != nil {
		pr.Events = p.Events.Stats()
	}
	if p.RefreshSchedule != nil {
		pr.Refresh = p.RefreshSchedule.Stats()
	}
	if p.PollSchedule != nil {
		pr.Poll = p.PollSchedule.Stats()
	}
	if p.ReadSchedule != nil {
		pr.Read = p.ReadSchedule.Stats()
	}
	return pr, nil
}

// queueDepth reads the visible and in-flight messages of the queue at url.
func queueDepth(ctx context.Context, c *sqs.Client, url string) (visible, inFlight int, err error) {
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: &url,
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return 0, 0, fmt.Errorf("queue attributes: %w", err)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight, nil
}

// WaitFor polls Progress every interval until done returns true, ctx ends
// (its error is returned with the last snapshot) or a read fails.
func (p *Pipeline) WaitFor(ctx context.Context, interval time.Duration, done func(Progress) bool) (Progress, error) {
	var pr Progress
	var err error
	if werr := testenv.Poll(ctx, interval, func() bool {
		pr, err = p.Progress(ctx)
		return err == nil && done(pr) || err != nil && ctx.Err() == nil
	}); werr != nil {
		return pr, werr
	}
	return pr, err
}
