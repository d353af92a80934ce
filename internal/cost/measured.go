// Package cost turns measured request counts into cfsync's monthly running
// cost: the figures docs/cost.md shows. The counts come from the end-to-end
// test test/e2e/requests_test.go (every AWS request counted at a proxy in
// front of moto_server, every RDP request at the simulator), checked in as
// testdata/requests.json; the prices are AWS list prices (model.go).
package cost

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// Scenario is what one measured situation cost in requests.
type Scenario struct {
	// Units is what the counts are divided by: files, runs or polls.
	Units int `json:"units"`
	// Invocations of the function(s) in the scenario.
	Invocations int `json:"invocations"`
	// AWS counts requests by "service:Operation" (e.g. "s3:PutObject").
	AWS map[string]int `json:"aws"`
	// RDP counts RDP requests by endpoint (rdptest's EP* names).
	RDP map[string]int `json:"rdp"`
}

// PerUnit is the AWS requests of op per unit.
func (s Scenario) PerUnit(op string) float64 {
	if s.Units == 0 {
		return 0
	}
	return float64(s.AWS[op]) / float64(s.Units)
}

// Sum is the AWS requests per unit of the ops whose names start with prefix
// (e.g. "dynamodb:").
func (s Scenario) Sum(prefix string) float64 {
	var n float64
	for op := range s.AWS {
		if strings.HasPrefix(op, prefix) {
			n += s.PerUnit(op)
		}
	}
	return n
}

// Measured is testdata/requests.json.
type Measured struct {
	Date    string `json:"date"`
	Command string `json:"command"`
	Note    string `json:"note,omitempty"`
	// RefresherIdle is one refresher run that finds the ring fresh, in the
	// steady state (not the first run after a write).
	RefresherIdle Scenario `json:"refresher_idle"`
	// RefresherFirstIdle is the first run after a write that finds the ring
	// fresh.
	RefresherFirstIdle Scenario `json:"refresher_first_idle"`
	// RefresherWrite is one refresher run that refreshes a token.
	RefresherWrite Scenario `json:"refresher_write"`
	// PollIdle is one poll of one package with nothing new.
	PollIdle Scenario `json:"poll_idle"`
	// PollNew is one poll of one package with Units new files (one file-set).
	PollNew Scenario `json:"poll_new"`
	// SmallFile is the downloader landing Units files, each one PutObject,
	// delivered in batches of the template's batch size.
	SmallFile Scenario `json:"small_file"`
	// MiddleFile is the downloader landing Units files of README's average
	// size (20 MiB): fetched in MiddleRanges ranges, stored with one
	// PutObject (within SINGLE_PUT_MAX).
	MiddleFile Scenario `json:"middle_file"`
	// MiddleRanges is the number of ranges of each middle file.
	MiddleRanges int `json:"middle_ranges"`
	// MultipartFile is the downloader landing Units files over
	// SINGLE_PUT_MAX: multipart uploads of MultipartParts parts.
	MultipartFile Scenario `json:"multipart_file"`
	// MultipartParts is the number of parts of each multipart file.
	MultipartParts int `json:"multipart_parts"`
	// Metrics are the custom metrics the functions emitted, one
	// "namespace/name{dims}" per metric CloudWatch bills.
	Metrics []string `json:"metrics"`
}

// NamedScenario is a scenario with its name and, for a download, the
// ranges (or parts) K of each file.
type NamedScenario struct {
	Name string
	S    *Scenario
	K    int
}

// Scenarios names the scenarios, in a fixed order.
func (m *Measured) Scenarios() []NamedScenario {
	return []NamedScenario{
		{"refresher run, ring fresh", &m.RefresherIdle, 0}, {"refresher run, first fresh after a write", &m.RefresherFirstIdle, 0},
		{"refresher run, token written", &m.RefresherWrite, 0},
		{"poll, 1 package, nothing new", &m.PollIdle, 0}, {"poll, 1 package, new files (per file)", &m.PollNew, 0},
		{"downloader, small file (PutObject)", &m.SmallFile, 0},
		{"downloader, 20 MiB file (ranges, one PutObject)", &m.MiddleFile, m.MiddleRanges},
		{"downloader, multipart file (over SINGLE_PUT_MAX)", &m.MultipartFile, m.MultipartParts},
	}
}

// Load reads a Measured from a JSON file.
func Load(path string) (Measured, error) {
	var m Measured
	b, err := os.ReadFile(path)
	if err != nil {
		return m, fmt.Errorf("load measured requests: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("load measured requests %s: %w", path, err)
	}
	return m, nil
}

// Save writes m as indented JSON.
func (m Measured) Save(path string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("save measured requests: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("save measured requests: %w", err)
	}
	return nil
}

// OverBudget lists every AWS and RDP request kind whose count per unit in m
// is above budget's: a change that adds requests per file, run or poll.
func (m Measured) OverBudget(budget Measured) []string {
	var out []string
	have, want := m.Scenarios(), budget.Scenarios()
	for i, s := range have {
		b := want[i].S
		out = append(out, over(s.Name+" AWS", s.S.Units, s.S.AWS, b.Units, b.AWS)...)
		out = append(out, over(s.Name+" RDP", s.S.Units, s.S.RDP, b.Units, b.RDP)...)
	}
	if len(m.Metrics) > len(budget.Metrics) {
		out = append(out, fmt.Sprintf("custom metrics: %d, budget %d: %v", len(m.Metrics), len(budget.Metrics), m.Metrics))
	}
	return out
}

func over(name string, units int, have map[string]int, bunits int, budget map[string]int) []string {
	var out []string
	for _, op := range slices.Sorted(maps.Keys(have)) {
		got, lim := float64(have[op])/float64(max(units, 1)), float64(budget[op])/float64(max(bunits, 1))
		if got > lim+1e-9 {
			out = append(out, fmt.Sprintf("%s: %s %.3g per unit, budget %.3g", name, op, got, lim))
		}
	}
	return out
}
