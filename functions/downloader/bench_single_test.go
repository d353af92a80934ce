package main

import (
	"fmt"
	"testing"

	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// BenchmarkSinglePutMemory: the bootstrap's peak RSS for files stored with
// one PutObject at the defaults (PARALLEL_RANGES 4, 8 MiB parts,
// SINGLE_PUT_MAX 32 MiB: up to 32 MiB in the four range buffers) and, for
// comparison, just over it (a multipart upload). One fresh process per file.
//
//	go test -run '^$' -bench BenchmarkSinglePutMemory -benchtime 2x ./functions/downloader
func BenchmarkSinglePutMemory(b *testing.B) {
	be := newBenchEnv(b, rdptest.Options{})
	for _, size := range []int64{1 * MiB, 20 * MiB, 32 * MiB, 32*MiB + 1} {
		b.Run(fmt.Sprintf("bytes=%d", size), func(b *testing.B) {
			files := make([]rdptest.File, b.N)
			for i := range files { // published and hashed by the simulator before the timing
				files[i] = be.addFile(fmt.Sprintf("single %d %d.bin", size, i), size)
				be.Sim.LookupFile(files[i].ID)
			}
			b.SetBytes(size)
			b.ResetTimer()
			var peak int64
			for _, f := range files {
				_, hwm, _ := be.download(b, f)
				peak = max(peak, hwm)
			}
			b.ReportMetric(float64(peak)/float64(MiB), "peak-RSS-MiB")
		})
	}
}
