package landing

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkLandingRequests reports the AWS requests the landing step adds:
// per file (every successful message) and per file-set (its publication),
// for a file-set of 10 files in a package whose index already lists others.
func BenchmarkLandingRequests(b *testing.B) {
	const files = 10
	var ddb, s3req, events, sets int
	for i := 0; i < b.N; i++ {
		e := newEnv(b)
		for k := 0; k < 3; k++ { // an index with entries
			prev := e.fileSet(fmt.Sprintf("old%d", k), "ESG-Delta", 1, k)
			e.land(fmt.Sprintf("old%d", k), prev[0])
			if _, err := e.l.FileLanded(context.Background(), prev[0]); err != nil {
				b.Fatal(err)
			}
		}
		d0, g0, p0, ev0 := e.state.calls, e.s3.gets, total(e.s3.puts), len(e.events.all())
		ids := e.fileSet("fs", "ESG-Delta", files, 5)
		for _, id := range ids {
			e.land("fs", id)
			if _, err := e.l.FileLanded(context.Background(), id); err != nil {
				b.Fatal(err)
			}
		}
		ddb += e.state.calls - d0
		s3req += e.s3.gets - g0 + total(e.s3.puts) - p0
		events += len(e.events.all()) - ev0
		sets++
	}
	b.ReportMetric(float64(ddb)/float64(sets*files), "ddb-req/file")
	b.ReportMetric(float64(ddb)/float64(sets), "ddb-req/file-set")
	b.ReportMetric(float64(s3req)/float64(sets), "s3-req/file-set")
	b.ReportMetric(float64(events)/float64(sets), "events/file-set")
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
