package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/notify"
	"github.com/cfsync/cfsync/pkg/rdp"
)

func newTestHandler(t *testing.T, sm fakeSecrets, q *fakeQueue, e *fakeEnqueuer, rep *fakeReporter, logs *bytes.Buffer) *Handler {
	t.Helper()
	h, err := New(Deps{
		Secrets:  sm,
		NewQueue: func(c aws.Credentials, endpoint string) QueueAPI { q.creds = c; return q },
		Handoff:  e, Reports: rep,
		Log: slog.New(slog.NewJSONHandler(logs, nil)),
	}, testSettings())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// testSettings are the production defaults (config.NotificationReader's
// tags) with secret ids "sub" and "creds" and a run bounded to 1 ms.
func testSettings() Settings {
	s := Settings{ReaderKnobs: config.Defaults[config.NotificationReader]().ReaderKnobs}
	s.SubscriptionSecretID, s.CredentialsSecretID, s.MaxRun = "sub", "creds", time.Millisecond
	return s
}

func TestHandle(t *testing.T) {
	tests := []struct {
		name        string
		creds       string
		bodies      func(t *testing.T) []string
		receiveErr  error
		enqueueErr  error
		want        Result
		wantErr     string
		wantDeleted int
		wantHanded  []string // file-set ids handed off
		wantReports []int64
	}{
		{name: "READY file-sets are handed off and deleted", creds: goodCreds,
			bodies: func(t *testing.T) []string {
				return []string{seal(t, testKey, notification("fs1", "READY", "f1", "f2")), seal(t, testKey, notification("fs2", "READY", "f3"))}
			},
			want:        Result{Outcome: OutcomeDone, Messages: 2, FileSets: 2, Claimed: 3, Queued: 3, Generation: 3},
			wantDeleted: 2, wantHanded: []string{"fs1", "fs2"}},
		{name: "duplicates are handed off again (the claim makes them harmless) and deleted", creds: goodCreds,
			bodies: func(t *testing.T) []string {
				b := seal(t, testKey, notification("fs1", "READY", "f1"))
				return []string{b, b}
			},
			want:        Result{Outcome: OutcomeDone, Messages: 2, FileSets: 2, Claimed: 2, Queued: 2, Generation: 3},
			wantDeleted: 2, wantHanded: []string{"fs1", "fs1"}},
		{name: "not READY is ignored and deleted", creds: goodCreds,
			bodies:      func(t *testing.T) []string { return []string{seal(t, testKey, notification("fs1", "DELETED", "f1"))} },
			want:        Result{Outcome: OutcomeDone, Messages: 1, Ignored: 1, Generation: 3},
			wantDeleted: 1},
		{name: "undecryptable and unparsable are rejected, deleted, the rest handled", creds: goodCreds,
			bodies: func(t *testing.T) []string {
				return []string{seal(t, []byte("another key of 32 bytes........."), notification("fsX", "READY", "f9")), "bm90IGEgbWVzc2FnZQ==",
					seal(t, testKey, `{"payload":{}}`), seal(t, testKey, notification("fs1", "READY", "f1"))}
			},
			want:        Result{Outcome: OutcomeDone, Messages: 4, Rejected: 3, FileSets: 1, Claimed: 1, Queued: 1, Generation: 3},
			wantDeleted: 4, wantHanded: []string{"fs1"}},
		{name: "failed hand-off keeps the message and fails the run", creds: goodCreds,
			bodies:     func(t *testing.T) []string { return []string{seal(t, testKey, notification("fs1", "READY", "f1"))} },
			enqueueErr: errors.New("dynamodb down"),
			want:       Result{Outcome: OutcomeFailed, Messages: 1, Kept: 1, Generation: 3}, wantErr: "kept in the queue"},
		{name: "hand-off finds a malformed field: rejected and deleted, not retried forever", creds: goodCreds,
			bodies:      func(t *testing.T) []string { return []string{seal(t, testKey, notification("fs1", "READY", "f1"))} },
			enqueueErr:  fmt.Errorf("%w: file-set fs1: message: field \"fileId\" has an invalid value", notify.ErrMalformed),
			want:        Result{Outcome: OutcomeDone, Messages: 1, Rejected: 1, Generation: 3},
			wantDeleted: 1},
		{name: "expired credentials are reported, nothing deleted, no error", creds: goodCreds,
			bodies:     func(t *testing.T) []string { return []string{seal(t, testKey, notification("fs1", "READY", "f1"))} },
			receiveErr: expiredToken(),
			want:       Result{Outcome: OutcomeCredsRejected, Generation: 3}, wantReports: []int64{3}},
		{name: "other receive errors fail the run", creds: goodCreds,
			receiveErr: errors.New("connection refused"),
			want:       Result{Outcome: OutcomeFailed, Generation: 3}, wantErr: "receive notifications"},
		{name: "no credentials yet", creds: `{}`, want: Result{Outcome: OutcomeNoCredentials}},
		{name: "credentials of another queue", creds: strings.Replace(goodCreds, "lseg-sub-1", "old", 1), want: Result{Outcome: OutcomeNoCredentials}},
		{name: "bad credentials secret names the field", creds: `{"accessKeyId":"A","endpoint":"x","secretKey":"s"}`,
			want: Result{Outcome: OutcomeFailed}, wantErr: `"sessionToken"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &fakeQueue{receiveErr: tt.receiveErr}
			if tt.bodies != nil {
				q.add(tt.bodies(t)...)
			}
			e, rep, logs := &fakeEnqueuer{err: tt.enqueueErr}, &fakeReporter{}, &bytes.Buffer{}
			h := newTestHandler(t, secrets(t, tt.creds), q, e, rep, logs)
			got, err := h.Handle(context.Background(), []byte(`{"source":"aws.scheduler"}`))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			got.Receives = 0
			if got != tt.want {
				t.Fatalf("result = %+v\nwant     %+v", got, tt.want)
			}
			if len(q.deleted) != tt.wantDeleted {
				t.Errorf("deleted %d, want %d", len(q.deleted), tt.wantDeleted)
			}
			var ids []string
			for _, c := range e.calls {
				ids = append(ids, c.fs.ID)
			}
			if strings.Join(ids, ",") != strings.Join(tt.wantHanded, ",") {
				t.Errorf("handed off %v, want %v", ids, tt.wantHanded)
			}
			if len(rep.gens) != len(tt.wantReports) || len(rep.gens) > 0 && rep.gens[0] != tt.wantReports[0] {
				t.Errorf("reports %v, want %v", rep.gens, tt.wantReports)
			}
			for _, secret := range []string{"SECRETKEY", "SESSIONTOKEN", "ASIAFAKE", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "f9", "fsX"} {
				if strings.Contains(logs.String(), secret) {
					t.Errorf("log contains %q:\n%s", secret, logs.String())
				}
			}
		})
	}
}

func TestHandleRejectedMessageLogsItsID(t *testing.T) {
	q := &fakeQueue{}
	q.add("AAAA")
	logs := &bytes.Buffer{}
	h := newTestHandler(t, secrets(t, goodCreds), q, &fakeEnqueuer{}, &fakeReporter{}, logs)
	if _, err := h.Handle(context.Background(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"message_id":"m1"`) || !strings.Contains(logs.String(), `"reason":"undecryptable"`) {
		t.Fatalf("log: %s", logs.String())
	}
}

func TestHandleUsesStoredCredentials(t *testing.T) {
	q := &fakeQueue{}
	h := newTestHandler(t, secrets(t, goodCreds), q, &fakeEnqueuer{}, &fakeReporter{}, &bytes.Buffer{})
	if _, err := h.Handle(context.Background(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if q.creds.AccessKeyID != "ASIAFAKE" || q.creds.SecretAccessKey != "SECRETKEY" || q.creds.SessionToken != "SESSIONTOKEN" {
		t.Fatalf("queue client built with %+v", q.creds)
	}
}

func TestHandleRejectsNonJSON(t *testing.T) {
	h := newTestHandler(t, secrets(t, goodCreds), &fakeQueue{}, &fakeEnqueuer{}, &fakeReporter{}, &bytes.Buffer{})
	if _, err := h.Handle(context.Background(), []byte(`nope`)); err == nil || !strings.Contains(err.Error(), "JSON object") {
		t.Fatal(err)
	}
}

// The loop long-polls until the deadline margin, then stops.
func TestLoopStopsBeforeDeadline(t *testing.T) {
	q := &fakeQueue{}
	h := newTestHandler(t, secrets(t, goodCreds), q, &fakeEnqueuer{}, &fakeReporter{}, &bytes.Buffer{})
	h.MaxRun, h.DeadlineMargin = 0, 150*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res, err := h.Handle(ctx, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("ran past the deadline margin")
	}
	if res.Receives < 2 {
		t.Fatalf("receives = %d, want the loop to keep polling until the margin", res.Receives)
	}
}

func TestQueueRegion(t *testing.T) {
	for in, want := range map[string]string{
		"https://sqs.us-east-1.amazonaws.com/1/q": "us-east-1",
		"https://sqs.eu-west-2.amazonaws.com/1/q": "eu-west-2",
		"http://127.0.0.1:5000/1/q":               "us-east-1",
	} {
		if got := QueueRegion(in); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

type fakeLister struct{ ids []string }

func (l fakeLister) Files(_ context.Context, fsID string) iter.Seq2[rdp.File, error] {
	return func(yield func(rdp.File, error) bool) {
		for _, id := range l.ids {
			if !yield(rdp.File{ID: id, FileSetID: fsID, FileName: id + ".gz", Size: 7}, nil) {
				return
			}
		}
	}
}

// A notification that lists fewer files than its numFiles: the reader lists
// the file-set's files (with the ring's token) and hands all of them off.
func TestHandleListsMissingFiles(t *testing.T) {
	q := &fakeQueue{}
	body := strings.Replace(notification("fs1", "READY", "f1"), `"numFiles":1`, `"numFiles":3`, 1)
	q.add(seal(t, testKey, body))
	e := &fakeEnqueuer{}
	h := newTestHandler(t, secrets(t, goodCreds), q, e, &fakeReporter{}, &bytes.Buffer{})
	h.Files = fakeLister{ids: []string{"f1", "f2", "f3"}}
	if _, err := h.Handle(context.Background(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if len(e.calls) != 1 || len(e.calls[0].files) != 3 || e.calls[0].files[2].ID != "f3" {
		t.Fatalf("handed off %+v", e.calls)
	}
}
