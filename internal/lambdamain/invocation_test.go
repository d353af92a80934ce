package lambdamain

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/cfsync/cfsync/internal/logx"
	"github.com/cfsync/cfsync/internal/metrics"
)

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("stdout closed") }

func TestStartInvocation(t *testing.T) {
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "req-42"})
	tests := []struct {
		name      string
		emf       func(*bytes.Buffer) *metrics.Recorder
		wantLog   []string
		wantNoLog string
		wantEMF   string
	}{
		{name: "metrics flushed at the end", emf: func(b *bytes.Buffer) *metrics.Recorder { return metrics.New(b, "fn") },
			wantLog: []string{`"msg":"working"`, `"request_id":"req-42"`}, wantNoLog: "flush metrics", wantEMF: `"Runs":1`},
		{name: "a failed flush is logged", emf: func(*bytes.Buffer) *metrics.Recorder { return metrics.New(failingWriter{}, "fn") },
			wantLog: []string{`"msg":"flush metrics"`, `"error":"`, `stdout closed`, `"request_id":"req-42"`}},
		{name: "no recorder", emf: func(*bytes.Buffer) *metrics.Recorder { return nil },
			wantLog: []string{`"request_id":"req-42"`}, wantNoLog: "flush metrics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs, emf bytes.Buffer
			m := tt.emf(&emf)
			log, end := StartInvocation(ctx, logx.New(&logs, slog.LevelDebug, "fn"), m)
			m.Add("Runs", 1)
			log.Info("working")
			if emf.Len() != 0 {
				t.Fatalf("metrics written before end: %s", emf.String())
			}
			end()
			for _, want := range tt.wantLog {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("logs lack %s:\n%s", want, logs.String())
				}
			}
			if tt.wantNoLog != "" && strings.Contains(logs.String(), tt.wantNoLog) {
				t.Errorf("logs have %q:\n%s", tt.wantNoLog, logs.String())
			}
			if !strings.Contains(emf.String(), tt.wantEMF) {
				t.Errorf("EMF output lacks %s: %s", tt.wantEMF, emf.String())
			}
		})
	}
	log, end := StartInvocation(context.Background(), nil, nil)
	log.Info("discarded") // a nil logger discards
	end()
}
