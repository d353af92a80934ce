package cost

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// batchGetUnits is what one BatchGetItem is charged as: read units for a
// batch of small items (the poller's overlap page, the downloader's
// file-set rows); the counts cannot tell how many keys a batch held.
const batchGetUnits = 10

// month is a Workload's counts for one month.
type month struct {
	w                                 Workload
	files, refreshRuns, writes, polls float64
	downloaderInv                     float64
	downloaderRingReads               float64
	ops                               map[string]float64 // AWS requests by "service:Operation", all functions
}

func newMonth(m Measured, w Workload) month {
	minutes := w.MonthDays * 24 * 60
	mo := month{w: w, files: w.FilesPerDay * w.MonthDays, refreshRuns: minutes / w.RefreshEvery.Minutes(),
		polls: minutes / w.PollEvery.Minutes(), ops: map[string]float64{}}
	mo.writes = min(mo.refreshRuns, minutes/(w.TokenLife-w.RefreshMargin).Minutes())
	firstIdle := min(mo.writes, mo.refreshRuns-mo.writes) // the run after each write
	middle := 1 - w.SmallShare - w.MultipartShare
	inv := func(s Scenario) float64 { return float64(s.Invocations) / float64(max(s.Units, 1)) }
	mo.downloaderInv = mo.files * (w.SmallShare*inv(m.SmallFile) + middle*inv(m.MiddleFile) + w.MultipartShare*inv(m.MultipartFile))
	for _, c := range []struct {
		s           *Scenario
		times       float64
		withSecrets bool // the refresher's own Secrets Manager calls count; elsewhere they are ring reads, counted below
	}{
		{&m.RefresherFirstIdle, firstIdle, true}, {&m.RefresherIdle, mo.refreshRuns - mo.writes - firstIdle, true}, {&m.RefresherWrite, mo.writes, true},
		{&m.PollIdle, mo.polls * float64(w.Packages), false},
		{&m.SmallFile, mo.files * w.SmallShare, false}, {&m.MiddleFile, mo.files * middle, false}, {&m.MultipartFile, mo.files * w.MultipartShare, false},
	} {
		mo.addScenario(c.s, c.times, c.withSecrets)
	}
	// What a new file adds to a poll: the poll with new files less an idle one.
	for op := range m.PollNew.AWS {
		if d := float64(m.PollNew.AWS[op]-m.PollIdle.AWS[op]) / float64(max(m.PollNew.Units, 1)); d > 0 && !strings.HasPrefix(op, "secretsmanager:") {
			mo.ops[op] += d * mo.files
		}
	}
	// Ring reads outside the refresher: one per poll (a poll every 15
	// minutes outlives the token a warm poller read) and the downloader's.
	mo.downloaderRingReads = mo.downloaderReads(m)
	mo.ops["secretsmanager:BatchGetSecretValue"] += mo.polls + mo.downloaderRingReads
	return mo
}

// downloaderReads are the downloader's ring reads in the month. Without
// WarmRingReads: one per invocation. With it, an upper bound: an execution
// environment keeps its read while the token it read is usable (measured:
// SmallFile runs several invocations in one environment, its ring reads
// are one burst's), files reach the queue only with a poll (whose 15
// minutes outlive any token), so at most DownloaderEnvs environments read
// once per poll, plus once more per shortest cache life of busy time: the
// newest token has at least RefreshMargin − RefreshEvery left (the
// refresher writes at the first run within the margin) and a reader keeps
// it until ReaderSkew before expiry (docs/cost.md).
func (mo month) downloaderReads(m Measured) float64 {
	w := mo.w
	cache := (w.RefreshMargin - w.RefreshEvery - w.ReaderSkew).Minutes()
	if !w.WarmRingReads || cache <= 0 {
		return mo.downloaderInv
	}
	perBurst := float64(m.SmallFile.AWS["secretsmanager:BatchGetSecretValue"])
	busyMinutes := mo.files * w.DownloaderSecondsPerFile / 60
	return min(mo.downloaderInv, mo.polls*float64(w.DownloaderEnvs)*perBurst+busyMinutes/cache)
}

func (mo month) addScenario(s *Scenario, times float64, withSecrets bool) {
	for op := range s.AWS {
		if withSecrets || !strings.HasPrefix(op, "secretsmanager:") {
			mo.ops[op] += s.PerUnit(op) * times
		}
	}
}

// sum adds the month's requests of the ops whose names satisfy keep.
func (mo month) sum(keep func(op string) bool) float64 {
	var t float64
	for _, op := range slices.Sorted(maps.Keys(mo.ops)) {
		if keep(op) {
			t += mo.ops[op]
		}
	}
	return t
}

func service(prefix string) func(string) bool {
	return func(op string) bool { return strings.HasPrefix(op, prefix) }
}

// Estimate computes a month's running cost of w from the measured counts m
// and the prices p.
func Estimate(m Measured, w Workload, p Prices) Table {
	mo := newMonth(m, w)
	t := Table{Workload: w}
	t.Rows = append(t.Rows, mo.lambdaRows(p)...)
	t.Rows = append(t.Rows, mo.sqsRow(p), mo.dynamoRow(p), mo.secretsRow(p), mo.s3Row(p), mo.eventsRow(p), mo.cloudWatchRow(m, p), mo.xrayRow(p))
	return t
}

func (mo month) invocations() float64 { return mo.refreshRuns + mo.polls + mo.downloaderInv }

func (mo month) lambdaRows(p Prices) []Row {
	w := mo.w
	gbs := []float64{mo.refreshRuns * w.RefresherSeconds * w.RefresherMB / 1024, mo.polls * w.PollerSeconds * w.PollerMB / 1024,
		mo.files * w.DownloaderSecondsPerFile * w.DownloaderMB / 1024}
	total := gbs[0] + gbs[1] + gbs[2]
	return []Row{
		{"Lambda requests", fmt.Sprintf("refresher %s + poller %s + downloader %s (measured %.2f invocations per file) = %s × $0.20/1M",
			n(mo.refreshRuns), n(mo.polls), n(mo.downloaderInv), mo.downloaderInv/mo.files, n(mo.invocations())), mo.invocations() * p.LambdaRequest},
		{"Lambda compute, arm64 (durations estimated)", fmt.Sprintf("refresher %.1f s × %.0f MB; poller %.0f s × %.0f MB; downloader %.0f s × %.0f MB per file: %s GB-s × $0.0000133334",
			w.RefresherSeconds, w.RefresherMB, w.PollerSeconds, w.PollerMB, w.DownloaderSecondsPerFile, w.DownloaderMB, n(total)), total * p.LambdaGBSecondArm},
		{"EventBridge Scheduler", fmt.Sprintf("%s schedule invocations × $1/1M", n(mo.refreshRuns+mo.polls)), (mo.refreshRuns + mo.polls) * p.SchedulerInvocation},
	}
}

func (mo month) sqsRow(p Prices) Row {
	own := mo.sum(service("sqs:"))
	esm := 2 * mo.downloaderInv // one receive and one batch delete per invocation
	total := own + esm + mo.w.ESMIdleReceives
	return Row{"SQS", fmt.Sprintf("functions %s (measured) + event source %s (receive + delete per batch) + idle long polls ≈ %s = %s × $0.40/1M",
		n(own), n(esm), n(mo.w.ESMIdleReceives), n(total)), total * p.SQSRequest}
}

var dynamoWrites = map[string]float64{"PutItem": 1, "UpdateItem": 1, "DeleteItem": 1, "BatchWriteItem": 25, "TransactWriteItems": 2}
var dynamoReads = map[string]float64{"GetItem": 1, "Query": 1, "Scan": 1, "BatchGetItem": batchGetUnits, "TransactGetItems": 2}

// dynamoRow charges one unit per single-item request (cfsync's items are
// well under 1 KB) and batchGetUnits per BatchGetItem.
func (mo month) dynamoRow(p Prices) Row {
	var wru, rru float64
	for op, c := range mo.ops {
		name, ok := strings.CutPrefix(op, "dynamodb:")
		if !ok {
			continue
		}
		wru += c * dynamoWrites[name]
		rru += c * dynamoReads[name]
	}
	store := mo.w.StateTableGB * (p.DynamoStorageGB + p.DynamoPITRGB)
	return Row{"DynamoDB on demand", fmt.Sprintf("%s write units × $0.625/1M + %s read units × $0.125/1M (measured requests; BatchGetItem as %d units) + %.1f GB with PITR",
		n(wru), n(rru), batchGetUnits, mo.w.StateTableGB), wru*p.DynamoWrite + rru*p.DynamoRead + store}
}

// secretsRow charges BatchGetSecretValue as one call per ring slot it reads
// (conservative: CloudTrail logs one GetSecretValue per secret of a batch).
func (mo month) secretsRow(p Prices) Row {
	slots := float64(mo.w.Secrets - 1)
	batch := mo.ops["secretsmanager:BatchGetSecretValue"]
	calls := mo.sum(service("secretsmanager:")) - batch + batch*slots
	how := "one ring read per poller/downloader invocation"
	if mo.downloaderRingReads < mo.downloaderInv {
		how = fmt.Sprintf("one per poll; downloader %s for %s invocations: warm environments keep their read, measured, see below", n(mo.downloaderRingReads), n(mo.downloaderInv))
	}
	return Row{"Secrets Manager", fmt.Sprintf("%d secrets × $0.40 + %s calls (%s ring reads × %.0f slots; refresher measured per run, %s) × $0.05/10k",
		mo.w.Secrets, n(calls), n(batch), slots, how), float64(mo.w.Secrets)*p.Secret + calls*p.SecretCall}
}

var s3GetClass = map[string]bool{"GetObject": true, "HeadObject": true, "HeadBucket": true, "GetObjectTagging": true}
var s3Free = map[string]bool{"DeleteObject": true, "AbortMultipartUpload": true, "DeleteObjects": true}

func (mo month) s3Row(p Prices) Row {
	var put, get float64
	for op, c := range mo.ops {
		name, ok := strings.CutPrefix(op, "s3:")
		switch {
		case !ok || s3Free[name]:
		case s3GetClass[name]:
			get += c
		default:
			put += c
		}
	}
	return Row{"S3 requests", fmt.Sprintf("%s PUT-class (%.2f per file, measured) × $0.005/1k + %s GET-class × $0.0004/1k",
		n(put), put/mo.files, n(get)), put*p.S3PutClass + get*p.S3GetClass}
}

func (mo month) eventsRow(p Prices) Row {
	ev := mo.sum(service("events:"))
	return Row{"EventBridge PutEvents (file-set landed)", fmt.Sprintf("%s events (measured) × $1/1M", n(ev)), ev * p.CustomEvent}
}

func (mo month) cloudWatchRow(m Measured, p Prices) Row {
	gb := mo.invocations() * mo.w.LogKBPerInvocation / 1e6
	return Row{"CloudWatch", fmt.Sprintf("%d custom metrics (measured, EMF) × $0.30 + %d alarm metrics × $0.10 + logs %.2f GB × $0.50",
		len(m.Metrics), mo.w.AlarmMetrics, gb), float64(len(m.Metrics))*p.CustomMetric + float64(mo.w.AlarmMetrics)*p.Alarm + gb*p.LogsIngestGB}
}

func (mo month) xrayRow(p Prices) Row {
	if !mo.w.Traced {
		return Row{"X-Ray", "`Tracing: PassThrough` (the default): no traces", 0}
	}
	tr := mo.invocations()
	return Row{"X-Ray", fmt.Sprintf("%s traces (every invocation sampled at this rate) × $5/1M", n(tr)), tr * p.XRayTrace}
}
