package cost

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the tables in docs/cost.md")

const docPath = "docs/cost.md"

// Before is README's old estimate's setting, with the counts measured on
// the code before the request cuts.
func beforeWorkload() Workload { return ReadmeWorkload("before") }

// tables are docs/cost.md's generated blocks by marker name.
func tables(t *testing.T) map[string]string {
	t.Helper()
	before, err := Load("testdata/requests-before.json")
	if err != nil {
		t.Fatal(err)
	}
	after, err := Load("testdata/requests.json")
	if err != nil {
		t.Fatal(err)
	}
	tb, ta := Estimate(before, beforeWorkload(), ListPrices), Estimate(after, Defaults(), ListPrices)
	return map[string]string{
		"before": tb.Markdown(), "after": ta.Markdown(),
		"requests": RequestsMarkdown(before, after),
		"summary": fmt.Sprintf("Prices: AWS list prices, us-east-1, without free tiers, as of %s. Running cost before: **$%.2f/month**; after: **$%.2f/month**.\n",
			ListPrices.Date, tb.Total(), ta.Total()),
	}
}

// TestCostTableMatchesDocs recomputes docs/cost.md's tables from the list
// prices and the measured request counts; -update rewrites them.
func TestCostTableMatchesDocs(t *testing.T) {
	text := testenv.RepoFile(t, docPath)
	for name, want := range tables(t) {
		re := regexp.MustCompile(`(?s)(<!-- generated:` + name + ` -->\n).*?(<!-- end:` + name + ` -->)`)
		m := re.FindStringSubmatch(text)
		if m == nil {
			t.Errorf("%s: no <!-- generated:%s --> … <!-- end:%s --> block", docPath, name, name)
			continue
		}
		if got := strings.TrimPrefix(strings.TrimSuffix(m[0], m[2]), m[1]); got != want {
			if !*update {
				t.Errorf("%s block %q drifted from the measured counts and prices (go test ./internal/cost -update):\n got:\n%s\nwant:\n%s", docPath, name, got, want)
			}
			text = re.ReplaceAllLiteralString(text, m[1]+want+m[2])
		}
	}
	if *update {
		if err := os.WriteFile(testenv.RepoPath(t, docPath), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDefaultsFollowTemplate: the "after" workload is the template's defaults.
func TestDefaultsFollowTemplate(t *testing.T) {
	tpl := testenv.RepoFile(t, "template.yaml")
	param := func(name string) string {
		m := regexp.MustCompile(`(?m)^  ` + name + `:\n(?:    .*\n)*?    Default: (.*)$`).FindStringSubmatch(tpl)
		if m == nil {
			t.Fatalf("template.yaml: no Default for parameter %s", name)
		}
		return strings.Trim(m[1], `"`)
	}
	rate := func(expr string) time.Duration {
		m := regexp.MustCompile(`^rate\((\d+) (minute|minutes|hour|hours)\)$`).FindStringSubmatch(expr)
		if m == nil {
			t.Fatalf("schedule %q is not rate(N minutes|hours)", expr)
		}
		v, _ := strconv.Atoi(m[1])
		if strings.HasPrefix(m[2], "hour") {
			return time.Duration(v) * time.Hour
		}
		return time.Duration(v) * time.Minute
	}
	w := Defaults()
	slots, _ := strconv.Atoi(param("TokenSlots"))
	batch := regexp.MustCompile(`(?m)^\s+BatchSize: (\d+)$`).FindStringSubmatch(tpl)
	memory := regexp.MustCompile(`(?s)CodeUri: functions/downloader\n.*?MemorySize: (\d+)`).FindStringSubmatch(tpl)
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"refresh schedule", w.RefreshEvery, rate(param("RefreshSchedule"))},
		{"poll schedule", w.PollEvery, rate(param("PollSchedule"))},
		{"secrets (credentials + TokenSlots)", w.Secrets, slots + 1},
		{"alarm metrics (unconditional alarms)", w.AlarmMetrics, unconditionalAlarmMetrics(tpl)},
		{"tracing", w.Traced, param("Tracing") == "Active"},
		{"batch size", strconv.Itoa(w.BatchSize), batch[1]},
		{"downloader environments", strconv.Itoa(w.DownloaderEnvs), param("DownloaderMaxConcurrency")},
		{"downloader memory", fmt.Sprint(w.DownloaderMB), memory[1]},
	} {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("cost model's %s is %v, template.yaml's default %v", c.what, c.got, c.want)
		}
	}
}

// unconditionalAlarmMetrics counts the metrics read by the template's
// alarms without a Condition (those with one, such as NotificationsOn, are
// off by default): one per alarm on a metric, one per MetricStat of a
// metric-math alarm (CloudWatch bills an alarm per metric it reads).
func unconditionalAlarmMetrics(tpl string) int {
	n := 0
	for _, res := range regexp.MustCompile(`(?m)^  [A-Za-z0-9]+:\n`).Split(tpl, -1) {
		if strings.Contains(res, "Type: AWS::CloudWatch::Alarm") && !strings.Contains(res, "\n    Condition:") {
			n += max(1, strings.Count(res, "MetricStat:"))
		}
	}
	return n
}

// TestAlarmMetricsCounted: a metric-math alarm over two metrics counts two.
func TestAlarmMetricsCounted(t *testing.T) {
	tpl := `Resources:
  A:
    Type: AWS::CloudWatch::Alarm
    Properties:
      MetricName: Errors
  B:
    Type: AWS::CloudWatch::Alarm
    Properties:
      Metrics:
        - Id: x
          MetricStat: {}
        - Id: y
          MetricStat: {}
  C:
    Type: AWS::CloudWatch::Alarm
    Condition: NotificationsOn
  D:
    Type: AWS::SNS::Topic
`
	if got := unconditionalAlarmMetrics(tpl); got != 3 {
		t.Errorf("alarm metrics = %d, want 3", got)
	}
}

// TestReadmeCostLine: README's cost line and the operations guide's cost
// paragraph state the "now" total of docs/cost.md (the same model, counts and
// prices), so they cannot drift.
func TestReadmeCostLine(t *testing.T) {
	after, err := Load("testdata/requests.json")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("**$%.2f a month**", Estimate(after, Defaults(), ListPrices).Total())
	for _, doc := range []string{"README.md", "docs/operations.md"} {
		if !strings.Contains(testenv.RepoFile(t, doc), want) {
			t.Errorf("%s's cost line does not say %s (docs/cost.md's total; go test ./internal/cost -update does not edit it)", doc, want)
		}
	}
}
