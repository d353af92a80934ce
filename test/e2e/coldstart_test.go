package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/lambdarun"
	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// BenchmarkColdStart measures, per function, a cold start as Lambda has it:
// from starting the execution environment (the Runtime Interface Emulator
// and the bootstrap, built exactly as make build does, with -trimpath) to the
// first invocation served, against moto_server and the simulator. One op =
// one new environment + one invocation. Metrics:
//
//	ns/op          environment start → first response
//	init-ms        the function's init as the emulator reports it (Go init + config + clients)
//	invoke-ms      the first invocation as the caller sees it (init included: it is lazy)
//	binary-MiB     size of the bootstrap
//
// Run: go test -run '^$' -bench ColdStart -benchtime 20x ./test/e2e/
func BenchmarkColdStart(b *testing.B) {
	moto := testenv.Moto(b).Endpoint // skips under -short or without moto_server
	functionBinaries(b)              // finds the repository root
	ctx := context.Background()
	dir := b.TempDir()
	bins, err := pipeline.BuildFunctions(ctx, repoRoot, dir, true)
	if err != nil {
		b.Fatal(err)
	}
	sim := rdptest.NewServer(rdptest.Options{})
	defer sim.Close()
	sim.AddFileSets("bulk-ESG", pkgESG, 5, 2, 10<<10)
	p, err := pipeline.Start(ctx, pipeline.Config{
		Root: repoRoot, MotoEndpoint: moto, Binaries: bins, StackName: "bench",
		Credentials:   pipeline.AddSimUser(sim, "bench2@example.com").Secret,
		Params:        pipeline.StackParams(sim.URL(), "bulk-ESG/"+pkgESG),
		CommonEnv:     readerEnv, // refresherEnv's margin must exceed the readers' skew
		Env:           map[string][]string{pipeline.Refresher: refresherEnv},
		NoEventSource: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	// A token in the ring and a first poll, so the measured invocations do
	// their steady-state work (refresher: token fresh; poller: incremental).
	waitRefresherToken(b, func() (lambdarun.Result, error) { return p.Invoke(ctx, pipeline.Refresher, []byte(`{}`)) })
	if res, err := p.Invoke(ctx, pipeline.Poller, []byte(`{}`)); err != nil || res.Err != nil {
		b.Fatalf("first poll: %s %v", res.Payload, err)
	}

	events := map[string]string{
		pipeline.Refresher:  `{}`,
		pipeline.Poller:     `{}`,
		pipeline.Downloader: `{"Records":[]}`,
	}
	for _, fn := range pipeline.Functions {
		b.Run(fn, func(b *testing.B) {
			st, err := os.Stat(bins[fn])
			if err != nil {
				b.Fatal(err)
			}
			opts := p.FunctionOptions(fn)
			opts.LogWriter = nil
			var initTotal, invokeTotal time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r, err := lambdarun.Start(ctx, opts)
				if err != nil {
					b.Fatal(err)
				}
				res, err := r.Invoke(ctx, []byte(events[fn]))
				if err != nil || res.Err != nil {
					b.Fatalf("first invocation: %s %v", res.Payload, err)
				}
				initTotal += r.ColdStart()
				invokeTotal += res.Duration
				b.StopTimer()
				r.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(initTotal.Microseconds())/1000/float64(b.N), "init-ms")
			b.ReportMetric(float64(invokeTotal.Microseconds())/1000/float64(b.N), "invoke-ms")
			b.ReportMetric(float64(st.Size())/(1<<20), "binary-MiB")
		})
	}
}
