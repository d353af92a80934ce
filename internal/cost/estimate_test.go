package cost

import (
	"math"
	"testing"
	"time"
)

// TestEstimateArithmetic checks rows against figures worked by hand.
func TestEstimateArithmetic(t *testing.T) {
	m := Measured{
		RefresherIdle:      Scenario{Units: 1, Invocations: 1, AWS: map[string]int{"dynamodb:GetItem": 2}},
		RefresherFirstIdle: Scenario{Units: 1, Invocations: 1, AWS: map[string]int{"secretsmanager:BatchGetSecretValue": 1, "dynamodb:GetItem": 2}},
		RefresherWrite:     Scenario{Units: 1, Invocations: 1, AWS: map[string]int{"secretsmanager:PutSecretValue": 1}},
		PollIdle:           Scenario{Units: 1, Invocations: 1, AWS: map[string]int{"dynamodb:UpdateItem": 1}},
		PollNew:            Scenario{Units: 2, Invocations: 1, AWS: map[string]int{"dynamodb:UpdateItem": 3, "sqs:SendMessageBatch": 1}},
		SmallFile:          Scenario{Units: 4, Invocations: 2, AWS: map[string]int{"s3:PutObject": 4, "s3:HeadObject": 4, "dynamodb:PutItem": 8}},
		MultipartFile:      Scenario{Units: 1, Invocations: 1, AWS: map[string]int{"s3:UploadPart": 3}},
		Metrics:            []string{"a", "b"},
	}
	// 30 days of 100 small files; refresh every 10 min with 20-min tokens,
	// margin 5 min: 4,320 runs, 2,880 of them writes, so each of the 1,440
	// fresh runs is the first after a write; poll hourly, 2 packages.
	w := Workload{Packages: 2, FilesPerDay: 100, SmallShare: 1, MonthDays: 30, RefreshEvery: 10 * time.Minute, TokenLife: 20 * time.Minute,
		RefreshMargin: 5 * time.Minute, PollEvery: time.Hour, BatchSize: 4, Secrets: 4, AlarmMetrics: 3}
	rows := map[string]float64{}
	for _, r := range Estimate(m, w, ListPrices).Rows {
		rows[r.Service] = r.USD
	}
	files := 3000.0
	for _, c := range []struct {
		row  string
		want float64
	}{
		// 3,000 PutObject (PUT class) + 3,000 HeadObject (GET class).
		{"S3 requests", files*0.005/1000 + files*0.0004/1000},
		// 4 secrets; ring reads: 1,440 idle runs + 720 polls + 1,500 downloader invocations, × 3 slots; 2,880 writes.
		{"Secrets Manager", 4*0.40 + ((1440+720+1500)*3+2880)*0.05/10000},
		// writes: 2 per file (downloader) + 720 polls × 2 packages + 1 per new file (3−1)/2;
		// reads: 2 per idle refresher run.
		{"DynamoDB on demand", (2*files+1440+files)*0.625/1e6 + 2*1440*0.125/1e6},
		// 2 metrics, 3 alarms, no logs.
		{"CloudWatch", 2*0.30 + 3*0.10},
		// functions: 1 SendMessageBatch per 2 new files; event source: 2 per invocation.
		{"SQS", (files/2 + 2*1500) * 0.40 / 1e6},
	} {
		if math.Abs(rows[c.row]-c.want) > 1e-9 {
			t.Errorf("%s: $%.6f, want $%.6f", c.row, rows[c.row], c.want)
		}
	}
}

// TestWarmRingReads: with WarmRingReads the downloader's ring reads are at
// most DownloaderEnvs × the measured reads of one burst per poll, plus one
// per shortest cache life (margin − schedule − skew) of busy time, and never
// more than one per invocation.
func TestWarmRingReads(t *testing.T) {
	m := Measured{SmallFile: Scenario{Units: 4, Invocations: 2, AWS: map[string]int{"secretsmanager:BatchGetSecretValue": 1}}}
	// 30 days × 1,000 files, 2 per invocation: 15,000 invocations; hourly
	// polls: 720; 3 s per file: 1,500 busy minutes; cache ≥ 2m − 1m − 30s.
	w := Workload{FilesPerDay: 1000, SmallShare: 1, MonthDays: 30, RefreshEvery: time.Minute, TokenLife: 10 * time.Minute, RefreshMargin: 2 * time.Minute,
		PollEvery: time.Hour, DownloaderEnvs: 2, ReaderSkew: 30 * time.Second, DownloaderSecondsPerFile: 3, WarmRingReads: true}
	for _, c := range []struct {
		name string
		w    func(Workload) Workload
		want float64
	}{
		{"warm", func(w Workload) Workload { return w }, 720*2*1 + 1500/0.5},
		{"one per invocation", func(w Workload) Workload { w.WarmRingReads = false; return w }, 15000},
		{"no cache life left", func(w Workload) Workload { w.ReaderSkew = time.Minute; return w }, 15000},
		{"capped at one per invocation", func(w Workload) Workload { w.FilesPerDay = 50; return w }, 750},
	} {
		if got := newMonth(m, c.w(w)).downloaderRingReads; math.Abs(got-c.want) > 1e-6 {
			t.Errorf("%s: %v ring reads, want %v", c.name, got, c.want)
		}
	}
}

// TestFileMix: files are priced as the small, middle (20 MiB) and
// multipart scenarios by the workload's shares; README's 20 MB files are
// all the middle file.
func TestFileMix(t *testing.T) {
	m := Measured{
		SmallFile:     Scenario{Units: 1, Invocations: 1, AWS: map[string]int{"s3:PutObject": 1}},
		MiddleFile:    Scenario{Units: 1, Invocations: 1, AWS: map[string]int{"s3:PutObject": 2}},
		MultipartFile: Scenario{Units: 1, Invocations: 2, AWS: map[string]int{"s3:UploadPart": 5}},
	}
	for _, c := range []struct {
		name                 string
		small, multipart     float64
		wantPuts, wantInvoke float64 // per file
	}{
		{"README: all middle", 0, 0, 2, 1},
		{"all small", 1, 0, 1, 1},
		{"all multipart", 0, 1, 5, 2},
		{"a quarter each small and multipart", 0.25, 0.25, 0.25*1 + 0.5*2 + 0.25*5, 1.25},
	} {
		w := Workload{FilesPerDay: 100, MonthDays: 30, RefreshEvery: time.Minute, TokenLife: 10 * time.Minute,
			PollEvery: time.Hour, SmallShare: c.small, MultipartShare: c.multipart}
		mo := newMonth(m, w)
		puts := mo.sum(service("s3:")) / mo.files
		if math.Abs(puts-c.wantPuts) > 1e-9 || math.Abs(mo.downloaderInv/mo.files-c.wantInvoke) > 1e-9 {
			t.Errorf("%s: %.3f S3 requests and %.3f invocations per file, want %.3f and %.3f",
				c.name, puts, mo.downloaderInv/mo.files, c.wantPuts, c.wantInvoke)
		}
	}
}
