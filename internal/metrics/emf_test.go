package metrics

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
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
	r.Put("FilesStuck", Count, 2)
	r.Add("FilesFailed", 1, "reason", "gone") // published by Function only
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4 (one per dimension set):\n%s", len(lines), buf.String())
	}
	type record struct {
		Function string  `json:"Function"`
		Grant    string  `json:"grant"`
		Auth     any     `json:"AuthRequests"`
		Stuck    float64 `json:"FilesStuck"`
		AWS      *struct {
			Timestamp         int64
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
	}
	var recs []record
	for _, l := range lines {
		var rec record
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	// AuthRequests is not Published: its values are log fields, no metric.
	if r0 := recs[0]; r0.Function != "token-refresher" || r0.Grant != "refresh" || fmt.Sprint(r0.Auth) != "[1 1]" || r0.AWS != nil {
		t.Fatalf("bad record for an unpublished value: %s", lines[0])
	}
	r2 := recs[2]
	if r2.AWS == nil || len(r2.AWS.CloudWatchMetrics) != 1 {
		t.Fatalf("no EMF metadata for a published metric: %s", lines[2])
	}
	cw := r2.AWS.CloudWatchMetrics[0]
	if r2.Stuck != 2 || cw.Namespace != "cfsync" || strings.Join(cw.Dimensions[0], ",") != "Function" || len(cw.Metrics) != 1 ||
		cw.Metrics[0].Name != "FilesStuck" || cw.Metrics[0].Unit != "Count" || r2.AWS.Timestamp != 1700000000000 {
		t.Fatalf("bad EMF record: %s", lines[2])
	}
	// A published metric with an extra dimension: the alarm's dimension only.
	if !strings.Contains(lines[3], `"reason":"gone"`) || !strings.Contains(lines[3], `"Dimensions":[["Function"]]`) {
		t.Fatalf("published metric with an extra dimension: %s", lines[3])
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

// TestPublishedAreTheAlarmedMetrics: the custom metrics CloudWatch bills are
// exactly the ones template.yaml's alarms on namespace cfsync watch, by the
// dimension the alarm reads (StateTable: StackWide); none of those alarms
// treats missing data as breaching (the metrics are published only when
// nonzero, so missing data is the healthy case).
func TestPublishedAreTheAlarmedMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	alarmed := map[string]Publish{}
	re := regexp.MustCompile(`(?m)^\s+Namespace: ` + Namespace + `\n\s+MetricName: (\w+)\n\s+Dimensions:\n\s+- Name: (\w+)$`)
	for _, res := range regexp.MustCompile(`(?m)^  [A-Za-z0-9]+:\n`).Split(string(b), -1) {
		for _, m := range re.FindAllStringSubmatch(res, -1) {
			alarmed[m[1]] = WhenNonZero
			if m[2] == StackDimension {
				alarmed[m[1]] = StackWide
			}
			if strings.Contains(res, "TreatMissingData: breaching") {
				t.Errorf("the alarm on %s/%s treats missing data as breaching: it is published only when nonzero", Namespace, m[1])
			}
		}
	}
	if len(alarmed) == 0 || !maps.Equal(alarmed, Published) {
		t.Errorf("alarms on namespace %s watch %v (2: by StateTable); Published is %v", Namespace, alarmed, Published)
	}
}

// TestZeroNotPublished: a WhenNonZero metric with only zeros stays a log
// field; one nonzero value publishes it; an Always metric is published at 0.
func TestZeroNotPublished(t *testing.T) {
	for _, tc := range []struct {
		name string
		vals []float64
		want bool
	}{
		{"FilesFailed", []float64{0, 0}, false},
		{"FilesFailed", []float64{0, 2}, true},
		{"FilesStuck", []float64{0}, false},
		{"FilesStuck", []float64{3}, true},
		{"FilesQueued", []float64{5}, false},
	} {
		var buf bytes.Buffer
		r := New(&buf, "x")
		for _, v := range tc.vals {
			r.Add(tc.name, v)
		}
		if err := r.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(buf.String(), `"_aws"`); got != tc.want {
			t.Errorf("%s %v: published %v, want %v: %s", tc.name, tc.vals, got, tc.want, buf.String())
		}
	}
}

// TestStackWideMetric: a StackWide metric is published by the stack's state
// table only, so the poller's and the downloader's FilesFailed are one
// CloudWatch metric (one alarm metric); the line keeps Function as a field.
func TestStackWideMetric(t *testing.T) {
	var lines []string
	for _, fn := range []string{"cfsync-prod-FilesetPoller-1", "cfsync-prod-Downloader-2"} {
		var buf bytes.Buffer
		r := New(&buf, fn)
		r.SetStack("cfsync-prod-StateTable-9")
		r.Add("FilesFailed", 1)
		r.Add("FilesNearingExpiry", 2)
		if err := r.Flush(); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.TrimSpace(buf.String()))
	}
	for i, fn := range []string{"cfsync-prod-FilesetPoller-1", "cfsync-prod-Downloader-2"} {
		var rec struct {
			Function   string
			StateTable string
			AWS        struct {
				CloudWatchMetrics []struct {
					Dimensions [][]string
					Metrics    []struct{ Name string }
				}
			} `json:"_aws"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &rec); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, d := range rec.AWS.CloudWatchMetrics {
			for _, m := range d.Metrics {
				got[m.Name] = strings.Join(d.Dimensions[0], ",")
			}
		}
		want := map[string]string{"FilesFailed": StackDimension, "FilesNearingExpiry": "Function"}
		if rec.Function != fn || rec.StateTable != "cfsync-prod-StateTable-9" || !maps.Equal(got, want) {
			t.Errorf("line %d: function %q, state table %q, metrics by dimension %v; want %v: %s", i, rec.Function, rec.StateTable, got, want, lines[i])
		}
	}
	// Without a stack (tests, local runs) it falls back to Function.
	var buf bytes.Buffer
	r := New(&buf, "downloader")
	r.Add("FilesFailed", 1)
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"Dimensions":[["Function"]]`) {
		t.Errorf("no stack set: %s", buf.String())
	}
}
