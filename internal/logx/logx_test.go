package logx

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/lambdacontext"
)

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{
		"": slog.LevelInfo, "info": slog.LevelInfo, "DEBUG": slog.LevelDebug,
		" warn ": slog.LevelWarn, "warning": slog.LevelWarn, "error": slog.LevelError,
	} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseLevel("verbose"); err == nil || !strings.Contains(err.Error(), `LOG_LEVEL="verbose"`) {
		t.Errorf("ParseLevel(%q) = %v; want an error naming LOG_LEVEL and the value", "verbose", err)
	}
}

func TestJSONLogsCarryFunctionAndRequestID(t *testing.T) {
	var buf bytes.Buffer
	logger := New(&buf, slog.LevelInfo, "downloader")
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "req-42"})
	WithRequest(ctx, logger).Info("file landed", "file_id", "f1")
	logger.Debug("not at info level")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	if rec["function"] != "downloader" || rec["request_id"] != "req-42" || rec["file_id"] != "f1" || rec["msg"] != "file landed" {
		t.Fatalf("record = %v", rec)
	}
	if got := WithRequest(context.Background(), logger); got != logger {
		t.Error("WithRequest without a Lambda context should return the logger unchanged")
	}
}

func TestOrDiscard(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, slog.LevelInfo, "fn")
	if OrDiscard(l) != l {
		t.Error("a logger was replaced")
	}
	d := OrDiscard(nil)
	if d == nil || d.Enabled(context.Background(), slog.LevelError) {
		t.Error("nil logger: want one that discards everything")
	}
}
