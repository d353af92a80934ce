package lambdarun

import (
	"testing"
	"time"
)

// BenchmarkInvoke measures one warm invocation round trip (event in, small
// response out) through the emulator.
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

// BenchmarkColdStart measures a cold execution environment: Start, the
// first invocation (which initialises the function) and Close. init-µs is
// the function's init as the emulator reports it.
func BenchmarkColdStart(b *testing.B) {
	var total time.Duration
	ev := []byte(`{"action":"echo","echo":1}`)
	for b.Loop() {
		r, err := Start(b.Context(), Options{Binary: echoBin})
		if err != nil {
			b.Fatal(err)
		}
		if res, err := r.Invoke(b.Context(), ev); err != nil || res.Err != nil {
			b.Fatal(err, res.Err)
		}
		total += r.ColdStart()
		r.Close()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "init-µs/op")
}
