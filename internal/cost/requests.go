package cost

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Minimum is the fewest requests per unit the design needs, by service
// ("rdp" for RDP), for each scenario (Measured.Scenarios order): see
// docs/cost.md for the reasoning of each figure.
var Minimum = []map[string]float64{
	// refresher, ring fresh: the ring state (has anything been written since
	// the last read?) and the newest token's reader reports.
	{"dynamodb": 2},
	// first fresh run after a write: the same (the writer keeps the ring
	// its write left, keyed on the ring state).
	{"dynamodb": 2},
	// refresher writing: ring read, one token grant, one slot write; a lease
	// (conditional write + release) so two runs never both sign on.
	{"secretsmanager": 2, "dynamodb": 2, "rdp": 1},
	// idle poll of a package: one page, the watermark read and written.
	{"rdp": 1, "dynamodb": 2},
	// per new file: one conditional state write; one tenth of a SendMessageBatch.
	{"dynamodb": 1, "sqs": 0.1},
	// small file: /stream + one presigned GET; one PutObject; claim + done.
	{"rdp": 2, "s3": 1, "dynamodb": 2},
	// 20 MiB file of k ranges: /stream + k ranged GETs (fetched in
	// parallel, docs/design.md#single-putobject); one PutObject; claim + done.
	{"rdp": -1, "s3": 1, "dynamodb": 2},
	// multipart file of k parts: /stream + k ranged GETs; create + k parts +
	// complete; claim + done.
	{"rdp": -1, "s3": -2, "dynamodb": 2},
}

// minimum resolves Minimum's per-range figures (-1: 1 + k, -2: 2 + k) for
// scenario i whose files have k ranges or parts.
func minimum(i int, svc string, k int) float64 {
	v := Minimum[i][svc]
	switch v {
	case -1:
		return float64(1 + k)
	case -2:
		return float64(2 + k)
	}
	return v
}

func byService(s Scenario) map[string]float64 {
	out := map[string]float64{}
	for op := range s.AWS {
		svc, _, _ := strings.Cut(op, ":")
		out[svc] += s.PerUnit(op)
	}
	for _, c := range s.RDP {
		out["rdp"] += float64(c) / float64(max(s.Units, 1))
	}
	return out
}

// RequestsMarkdown compares the requests per unit before and after, by
// service against the minimum, then by operation. A scenario not measured
// before (no units) shows "–" there.
func RequestsMarkdown(before, after Measured) string {
	var b strings.Builder
	b.WriteString("| scenario (per unit) | service | before | after | minimum |\n|---|---|---|---|---|\n")
	bs, as := before.Scenarios(), after.Scenarios()
	for i := range bs {
		sb, sa := byService(*bs[i].S), byService(*as[i].S)
		keys := map[string]bool{}
		for _, m := range []map[string]float64{sb, sa, Minimum[i]} {
			for k := range m {
				keys[k] = true
			}
		}
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			fmt.Fprintf(&b, "| %s | %s | %s | %.3g | %.3g |\n", as[i].Name, k, cell(*bs[i].S, sb[k]), sa[k], minimum(i, k, as[i].K))
		}
	}
	b.WriteString("\n| scenario (per unit) | request | before | after |\n|---|---|---|---|\n")
	for i := range bs {
		ops := map[string][2]float64{}
		for j, s := range []*Scenario{bs[i].S, as[i].S} {
			for op := range s.AWS {
				v := ops[op]
				v[j] = s.PerUnit(op)
				ops[op] = v
			}
			for op, c := range s.RDP {
				v := ops["rdp "+op]
				v[j] = float64(c) / float64(max(s.Units, 1))
				ops["rdp "+op] = v
			}
		}
		for _, op := range slices.Sorted(maps.Keys(ops)) {
			fmt.Fprintf(&b, "| %s | %s | %s | %.3g |\n", as[i].Name, op, cell(*bs[i].S, ops[op][0]), ops[op][1])
		}
	}
	return b.String()
}

// cell formats a per-unit figure of s, or "–" when s was not measured.
func cell(s Scenario, v float64) string {
	if s.Units == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3g", v)
}
