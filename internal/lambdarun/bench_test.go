package lambdarun

import (
	"testing"
	"time"
)

// BenchmarkInvoke measures one warm invocation round trip (event in, small
// response out) through the Runtime API.
func BenchmarkInvoke(b *testing.B) {
	r, err := Start(b.Context(), Options{Binary: echoBin})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ev := []byte(`{"action":"echo","echo":{"fileId":"4a1c-9f2e","bucket":"bulk-ESG"}}`)
	for b.Loop() {
		res, err := r.Invoke(b.Context(), ev)
		if err != nil || res.Err != nil {
			b.Fatal(err, res.Err)
		}
	}
}

// BenchmarkColdStart measures Start (process start to the first /next call,
// plus the runner's set-up) and Close of the test function.
func BenchmarkColdStart(b *testing.B) {
	var total time.Duration
	for b.Loop() {
		r, err := Start(b.Context(), Options{Binary: echoBin})
		if err != nil {
			b.Fatal(err)
		}
		total += r.ColdStart()
		r.Close()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "init-µs/op")
}
