package cost

import (
	"fmt"
	"strings"
	"time"
)

// Prices are AWS list prices in US dollars, us-east-1, without free tiers.
type Prices struct {
	Date                string  // when they were read from AWS's pricing pages
	LambdaRequest       float64 // per request
	LambdaGBSecondArm   float64 // per GB-second, arm64
	SchedulerInvocation float64 // EventBridge Scheduler, per invocation
	SQSRequest          float64 // standard queue, per 64 KB request
	DynamoWrite         float64 // on-demand, per write request unit
	DynamoRead          float64 // on-demand, per read request unit
	DynamoStorageGB     float64 // per GB-month, Standard table class
	DynamoPITRGB        float64 // continuous backups, per GB-month
	Secret              float64 // per secret-month
	SecretCall          float64 // per API call
	S3PutClass          float64 // PUT, COPY, POST, LIST, per request
	S3GetClass          float64 // GET, HEAD and the others, per request
	CustomEvent         float64 // EventBridge PutEvents, per event
	CustomMetric        float64 // CloudWatch, per metric-month (first 10,000)
	Alarm               float64 // CloudWatch standard-resolution alarm, per alarm-month
	LogsIngestGB        float64 // CloudWatch Logs, per GB ingested
	XRayTrace           float64 // per trace recorded
	S3StandardStorageGB float64 // per GB-month (first 50 TB)
}

// ListPrices are the prices docs/cost.md uses.
var ListPrices = Prices{
	Date:          "2026-09-20 for Secrets Manager (aws.amazon.com/secrets-manager/pricing); the others as published by AWS in 2025 and unchanged since as far as known: re-check in the AWS Pricing Calculator",
	LambdaRequest: 0.20 / 1e6, LambdaGBSecondArm: 0.0000133334,
	SchedulerInvocation: 1.00 / 1e6,
	SQSRequest:          0.40 / 1e6,
	DynamoWrite:         0.625 / 1e6, DynamoRead: 0.125 / 1e6, DynamoStorageGB: 0.25, DynamoPITRGB: 0.20,
	Secret: 0.40, SecretCall: 0.05 / 1e4,
	S3PutClass: 0.005 / 1e3, S3GetClass: 0.0004 / 1e3,
	CustomEvent:  1.00 / 1e6,
	CustomMetric: 0.30, Alarm: 0.10, LogsIngestGB: 0.50,
	XRayTrace:           5.00 / 1e6,
	S3StandardStorageGB: 0.023,
}

// Workload is a month of cfsync: the load and the template's settings.
type Workload struct {
	Name        string
	Packages    int     // subscribed packages
	FilesPerDay float64 // new files per day, all packages
	FileMB      float64 // average file size (decimal MB)
	// SmallShare and MultipartShare are the shares of files priced as the
	// measured small file (one GET, one PutObject) and multipart file (over
	// SINGLE_PUT_MAX); the rest are priced as the measured 20 MiB file
	// (ranges, one PutObject).
	SmallShare, MultipartShare float64
	MonthDays                  float64
	RefreshEvery               time.Duration // RefreshSchedule
	TokenLife                  time.Duration // RDP access-token lifetime (expires_in "600" in LSEG's CFS workflow sample, docs/rdp.md)
	RefreshMargin              time.Duration // TOKEN_REFRESH_MARGIN
	PollEvery                  time.Duration // PollSchedule
	BatchSize                  int           // downloader BatchSize
	DownloaderEnvs             int           // DownloaderMaxConcurrency: the most concurrent downloader environments
	ReaderSkew                 time.Duration // readers' TOKEN_SKEW
	// WarmRingReads credits the downloader's warm environments with keeping
	// a ring read across invocations (measured); false: one ring read per
	// invocation (the model before that measurement).
	WarmRingReads bool
	Secrets       int // credentials secret + TokenSlots
	// AlarmMetrics are the metrics the template's alarms read: CloudWatch
	// bills a standard alarm per metric it reads (metric math over two
	// metrics costs two).
	AlarmMetrics int
	Traced       bool // Tracing: Active
	// Estimates (not from the request counts): seconds and MB per invocation.
	RefresherSeconds, PollerSeconds, DownloaderSecondsPerFile float64
	RefresherMB, PollerMB, DownloaderMB                       float64
	LogKBPerInvocation                                        float64
	// ESMIdleReceives are the SQS long polls of Lambda's event source on an
	// idle queue per month (AWS: a few pollers, 20 s long polls).
	ESMIdleReceives float64
	StateTableGB    float64
}

// ReadmeWorkload is README's load: 10 packages × 100 files/day of 20 MB.
func ReadmeWorkload(name string) Workload {
	return Workload{Name: name, Packages: 10, FilesPerDay: 1000, FileMB: 20, MonthDays: 30.4,
		RefreshEvery: time.Minute, TokenLife: 10 * time.Minute, RefreshMargin: 2 * time.Minute, PollEvery: 15 * time.Minute,
		BatchSize: 4, DownloaderEnvs: 2, ReaderSkew: 30 * time.Second, Secrets: 4, AlarmMetrics: 4, Traced: true,
		RefresherSeconds: 0.2, PollerSeconds: 5, DownloaderSecondsPerFile: 3,
		RefresherMB: 128, PollerMB: 256, DownloaderMB: 1024, LogKBPerInvocation: 3,
		ESMIdleReceives: 5 * 3 * 60 * 24 * 30.4, StateTableGB: 0.1}
}

// Row is one line of the cost table.
type Row struct {
	Service, Arithmetic string
	USD                 float64
}

// Table is a month's running cost (storage of the files not included).
type Table struct {
	Workload Workload
	Rows     []Row
}

// Total is the sum of the rows.
func (t Table) Total() float64 {
	var s float64
	for _, r := range t.Rows {
		s += r.USD
	}
	return s
}

// Markdown renders the table, amounts rounded to cents.
func (t Table) Markdown() string {
	var b strings.Builder
	b.WriteString("| service | arithmetic (counts per month) | $/month |\n|---|---|---|\n")
	for _, r := range t.Rows {
		fmt.Fprintf(&b, "| %s | %s | %.2f |\n", r.Service, r.Arithmetic, r.USD)
	}
	fmt.Fprintf(&b, "| **total** | running cost, without storage of the files | **%.2f** |\n", t.Total())
	return b.String()
}

// n formats a count with thousands separators.
func n(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// Defaults is README's load with the template's current defaults (checked
// against template.yaml by a test).
func Defaults() Workload {
	w := ReadmeWorkload("after")
	w.AlarmMetrics = 6
	w.Traced = false
	w.WarmRingReads = true
	w.DownloaderMB = 256
	return w
}
