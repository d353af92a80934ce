package metrics

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestFlushWritesEMF(t *testing.T) {
	var buf bytes.Buffer
	r := New(&buf, "token-refresher")
	r.now = func() time.Time { return time.UnixMilli(1700000000000) }
	r.Add("AuthRequests", 1, "grant", "refresh")
	r.Add("AuthRequests", 1, "grant", "refresh")
	r.Add("AuthRequests", 1, "grant", "password")
	r.Put("TokenRemainingSeconds", Seconds, 540)
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3 (one per dimension set):\n%s", len(lines), buf.String())
	}
	var rec struct {
		Function string    `json:"Function"`
		Grant    string    `json:"grant"`
		Auth     []float64 `json:"AuthRequests"`
		AWS      struct {
			Timestamp         int64
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	cw := rec.AWS.CloudWatchMetrics[0]
	if rec.Function != "token-refresher" || rec.Grant != "refresh" || len(rec.Auth) != 2 || cw.Namespace != "cfsync" ||
		strings.Join(cw.Dimensions[0], ",") != "Function,grant" || cw.Metrics[0].Name != "AuthRequests" || cw.Metrics[0].Unit != "Count" ||
		rec.AWS.Timestamp != 1700000000000 {
		t.Fatalf("bad EMF record: %s", lines[0])
	}
	buf.Reset()
	if err := r.Flush(); err != nil || buf.Len() != 0 {
		t.Fatalf("second flush wrote %q", buf.String())
	}
	var nilRec *Recorder
	nilRec.Add("x", 1) // a nil recorder is a no-op
}

func TestDeployedFunctionNameIsTheDimension(t *testing.T) {
	t.Setenv("AWS_LAMBDA_FUNCTION_NAME", "cfsync-prod-FilesetPollerFunction-AbC123")
	var buf bytes.Buffer
	r := New(&buf, "fileset-poller")
	r.Add("FilesQueued", 3)
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"Function":"cfsync-prod-FilesetPollerFunction-AbC123"`) {
		t.Fatalf("dimension is not the deployed name: %s", buf.String())
	}
}
