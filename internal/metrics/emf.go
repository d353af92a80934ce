// Package metrics writes CloudWatch Embedded Metric Format (EMF) records: one
// JSON line per flush, which CloudWatch Logs turns into metrics. No IAM and
// no API calls are needed.
package metrics

import (
	"encoding/json"
	"io"
	"maps"
	"os"
	"slices"
	"sync"
	"time"
)

// Namespace is the CloudWatch namespace of every cfsync metric.
const Namespace = "cfsync"

// Publish says when a value becomes a CloudWatch metric.
type Publish int

const (
	// WhenNonZero: only nonzero values are published; the alarm treats
	// missing data as not breaching. CloudWatch bills a custom metric by the
	// hours in which it receives data, so a healthy month costs nothing.
	// (No metric is published Always: liveness comes from AWS/Lambda's
	// Errors, which Lambda publishes for every invocation; docs/cost.md.)
	WhenNonZero Publish = iota + 1
	// StackWide: like WhenNonZero, but published with the dimension
	// StateTable (the stack's state table name) instead of Function, so
	// that several functions feed one metric and one alarm metric
	// (CloudWatch bills an alarm per metric it reads).
	StackWide
)

// StackDimension is the dimension of StackWide metrics: the state table's
// name, which every function of a stack knows (STATE_TABLE) and no other
// stack shares.
const StackDimension = "StateTable"

// Published are the only metrics CloudWatch turns into custom metrics (each
// $0.30 a month per dimension combination): the ones template.yaml's alarms
// watch, each published with the dimension Function only (StackWide: the
// dimension StateTable only), as the alarms read them. Every other value, and every extra dimension, is still
// written as a field of the same JSON log line, where CloudWatch Logs
// Insights can query and chart it at no cost beyond log ingestion
// (docs/cost.md). The other alarms use what AWS/Lambda and AWS/SQS publish.
var Published = map[string]Publish{
	"FilesStuck": WhenNonZero, "FilesFailed": StackWide, "FilesNearingExpiry": WhenNonZero,
	"QueueCredentialsFailures": WhenNonZero, "NotificationsRejected": WhenNonZero,
}

// published reports whether a metric with these values is published.
func published(name string, vals []float64) bool {
	return Published[name] != 0 && slices.ContainsFunc(vals, func(v float64) bool { return v != 0 })
}

// Unit names used by cfsync.
const (
	Count        = "Count"
	Seconds      = "Seconds"
	Bytes        = "Bytes"
	BytesPerSec  = "Bytes/Second"
	Milliseconds = "Milliseconds"
)

type key struct{ name, dims string }

type value struct {
	unit string
	dims map[string]string
	vals []float64
}

// Recorder accumulates metrics until Flush. Safe for concurrent use.
type Recorder struct {
	mu       sync.Mutex
	w        io.Writer
	function string
	stack    string
	now      func() time.Time
	order    []key
	m        map[key]*value
}

// New returns a recorder writing EMF lines to w (the function's stdout),
// with dimension Function on every metric: the deployed function's name
// (AWS_LAMBDA_FUNCTION_NAME, so two stacks in one account never feed each
// other's alarms), or function when not running in Lambda.
func New(w io.Writer, function string) *Recorder {
	if n := os.Getenv("AWS_LAMBDA_FUNCTION_NAME"); n != "" {
		function = n
	}
	return &Recorder{w: w, function: function, now: time.Now, m: map[key]*value{}}
}

// SetStack sets the value of the StackWide metrics' dimension StateTable
// (the stack's STATE_TABLE); unset, they are published by Function.
func (r *Recorder) SetStack(stateTable string) {
	r.mu.Lock()
	r.stack = stateTable
	r.mu.Unlock()
}

// Put records one value of a metric, with optional extra dimensions as
// name/value pairs ("grant", "password").
func (r *Recorder) Put(name, unit string, v float64, dims ...string) {
	if r == nil {
		return
	}
	d := map[string]string{}
	for i := 0; i+1 < len(dims); i += 2 {
		d[dims[i]] = dims[i+1]
	}
	k := key{name, dimsKey(d)}
	r.mu.Lock()
	defer r.mu.Unlock()
	val, ok := r.m[k]
	if !ok {
		val = &value{unit: unit, dims: d}
		r.m[k] = val
		r.order = append(r.order, k)
	}
	val.vals = append(val.vals, v)
}

// Add records a count.
func (r *Recorder) Add(name string, n float64, dims ...string) { r.Put(name, Count, n, dims...) }

func dimsKey(d map[string]string) string {
	var s string
	for _, k := range slices.Sorted(maps.Keys(d)) {
		s += k + "=" + d[k] + ";"
	}
	return s
}

// Flush writes one JSON line per distinct dimension set and resets the
// recorder; a line with a Published metric is an EMF record for it.
func (r *Recorder) Flush() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	groups := map[string][]key{}
	var gorder []string
	for _, k := range r.order {
		if _, ok := groups[k.dims]; !ok {
			gorder = append(gorder, k.dims)
		}
		groups[k.dims] = append(groups[k.dims], k)
	}
	for _, g := range gorder {
		if err := r.writeGroup(groups[g]); err != nil {
			return err
		}
	}
	r.order = nil
	r.m = map[key]*value{}
	return nil
}

// writeGroup writes one JSON line for metrics sharing a dimension set, with
// EMF directives for the published ones (caller holds r.mu).
func (r *Recorder) writeGroup(keys []key) error {
	rec := map[string]any{"Function": r.function}
	first := r.m[keys[0]]
	for _, dn := range slices.Sorted(maps.Keys(first.dims)) {
		rec[dn] = first.dims[dn]
	}
	var byFunction, byStack []map[string]string
	for _, k := range keys {
		v := r.m[k]
		if published(k.name, v.vals) {
			def := map[string]string{"Name": k.name, "Unit": v.unit}
			if Published[k.name] == StackWide && r.stack != "" {
				byStack = append(byStack, def)
			} else {
				byFunction = append(byFunction, def)
			}
		}
		if len(v.vals) == 1 {
			rec[k.name] = v.vals[0]
		} else {
			rec[k.name] = v.vals
		}
	}
	var directives []any
	if len(byFunction) > 0 {
		directives = append(directives, map[string]any{"Namespace": Namespace, "Dimensions": [][]string{{"Function"}}, "Metrics": byFunction})
	}
	if len(byStack) > 0 {
		rec[StackDimension] = r.stack
		directives = append(directives, map[string]any{"Namespace": Namespace, "Dimensions": [][]string{{StackDimension}}, "Metrics": byStack})
	}
	if len(directives) > 0 {
		rec["_aws"] = map[string]any{"Timestamp": r.now().UnixMilli(), "CloudWatchMetrics": directives}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = r.w.Write(append(b, '\n'))
	return err
}
