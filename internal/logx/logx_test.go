package logx

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/aws/aws-lambda-go/lambdacontext"
)

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in      string
		want    slog.Level
		wantErr bool
	}{
		{"", slog.LevelInfo, false}, {"info", slog.LevelInfo, false}, {"DEBUG", slog.LevelDebug, false},
		{" warn ", slog.LevelWarn, false}, {"warning", slog.LevelWarn, false}, {"error", slog.LevelError, false},
		{"verbose", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseLevel(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("ParseLevel(%q) = %v, %v", tt.in, got, err)
		}
		if err != nil && !bytes.Contains([]byte(err.Error()), []byte("LOG_LEVEL")) {
			t.Errorf("error %q does not name LOG_LEVEL", err)
		}
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
