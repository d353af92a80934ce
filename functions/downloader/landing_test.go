package main

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/cfsync/cfsync/internal/landing"
	"github.com/cfsync/cfsync/internal/state"
)

// fakeLanding records the files it is told about; err fails the next calls.
type fakeLanding struct {
	mu    sync.Mutex
	calls []string
	done  []string // the file's state was DONE at the call
	st    *fakeState
	err   error
}

func (f *fakeLanding) FileLanded(ctx context.Context, fileID string) (landing.Outcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fileID)
	if fi, err := f.st.GetFile(ctx, fileID); err == nil && fi.Status == state.StatusDone {
		f.done = append(f.done, fileID)
	}
	if f.err != nil {
		return "", f.err
	}
	return landing.Published, nil
}

// landingRig is a rig whose landing step is a fakeLanding failing with err
// (nil: succeeding), and whose RDP has one file, f1.
func landingRig(t *testing.T, err error) (*rig, *fakeLanding) {
	r := newRig(t, nil)
	fl := &fakeLanding{st: r.st, err: err}
	r.h.landing = fl
	r.rdp.add("f1", "a.csv", 1000, true)
	return r, fl
}

func TestLandingStepAfterTheFileIsDone(t *testing.T) {
	r, fl := landingRig(t, nil)
	ctx := context.Background()

	resp, _ := r.h.Handle(ctx, event(msgFor("f1").Encode()))
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("failures %v", failedIDs(resp))
	}
	if !slices.Equal(fl.calls, []string{"f1"}) || !slices.Equal(fl.done, []string{"f1"}) {
		t.Fatalf("landing calls %v (DONE at the call: %v), want [f1] after DONE", fl.calls, fl.done)
	}
	if metric(t, r.metrics.String(), "FileSetsLanded") != 1 {
		t.Errorf("metrics: %s", r.metrics.String())
	}
}

// A failed landing step fails the message; its redelivery finds the file
// DONE and runs the step again.
func TestLandingFailureIsRetriedByTheRedelivery(t *testing.T) {
	r, fl := landingRig(t, errors.New("put event: unavailable"))
	ctx := context.Background()

	resp, _ := r.h.Handle(ctx, received(1, msgFor("f1").Encode()))
	if got := failedIDs(resp); !slices.Equal(got, []string{"m0"}) {
		t.Fatalf("failures %v, want [m0]", got)
	}
	if !strings.Contains(r.logs.String(), "file-set landing step failed") {
		t.Errorf("no log of the failed step: %s", r.logs.String())
	}
	if n := len(r.snd.messages()); n != 0 {
		t.Errorf("%d messages sent before the last receive", n)
	}
	fl.err = nil
	resp, _ = r.h.Handle(ctx, received(2, msgFor("f1").Encode()))
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("redelivery failures %v", failedIDs(resp))
	}
	if !slices.Equal(fl.calls, []string{"f1", "f1"}) {
		t.Fatalf("landing calls %v, want two", fl.calls)
	}
	if r.s3.Calls("PutObject") != 1 {
		t.Errorf("the file was uploaded %d times", r.s3.Calls("PutObject"))
	}
}

func TestNoLandingStepForAFailedMessage(t *testing.T) {
	r, fl := landingRig(t, nil)
	resp, _ := r.h.Handle(context.Background(), event(`{"fileId":""}`))
	if len(resp.BatchItemFailures) != 1 || len(fl.calls) != 0 {
		t.Fatalf("failures %v, landing calls %v", failedIDs(resp), fl.calls)
	}
}

// received is an event whose records carry ApproximateReceiveCount n.
func received(n int, bodies ...string) events.SQSEvent {
	evt := event(bodies...)
	for i := range evt.Records {
		evt.Records[i].Attributes = map[string]string{"ApproximateReceiveCount": strconv.Itoa(n)}
	}
	return evt
}

// On the last receive a failed landing step does not send the message to
// the DLQ: a fresh copy is enqueued, and only if that fails does it fail.
func TestLandingFailureOnTheLastReceiveEnqueuesACopy(t *testing.T) {
	r, _ := landingRig(t, errors.New("put event: unavailable"))
	ctx := context.Background()

	resp, _ := r.h.Handle(ctx, received(5, msgFor("f1").Encode()))
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("failures %v on the last receive, want the message replaced", failedIDs(resp))
	}
	// The copy is the same work (it may carry what this receive learnt, e.g. the size).
	if sent := r.snd.messages(); len(sent) != 1 || sent[0].FileID != "f1" || sent[0].FileSetID != msgFor("f1").FileSetID {
		t.Fatalf("sent %v, want one copy of the message", sent)
	}
	r.snd.Err = errors.New("sqs down")
	resp, _ = r.h.Handle(ctx, received(5, msgFor("f1").Encode()))
	if got := failedIDs(resp); !slices.Equal(got, []string{"m0"}) {
		t.Fatalf("failures %v with no copy sent, want [m0]", got)
	}
	if metric(t, r.metrics.String(), "LandingFailures") < 1 {
		t.Errorf("metrics: %s", r.metrics.String())
	}
}

// FileDone records the call as FileLanded does (the downloader names the
// file-set when it read the file's item).
func (f *fakeLanding) FileDone(ctx context.Context, fileID, fileSetID string) (landing.Outcome, error) {
	return f.FileLanded(ctx, fileID)
}
