package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// BenchmarkOneGiB compares, in one run and on one versitygw, three ways of
// putting 1 GiB into S3; each iteration is one round of all three, in a
// rotating order:
//
//   - ours: the BUILT bootstrap (a fresh process, 512 MB as in the template,
//     defaults: PARALLEL_RANGES=4, 8 MiB parts) landing a 1 GiB file from the
//     simulator;
//   - peer: curl -sS URL | aws s3 cp - s3://… (AWS CLI v1: multipart from
//     stdin, 8 MiB chunks, 10 threads) on the same file;
//   - ceiling: aws-sdk-go-v2's S3 transfer manager (feature/s3/transfermanager,
//     the successor of the deprecated feature/s3/manager) sending 1 GiB from memory
//     with the same part size (8 MiB), parallelism (4), CRC32C and unsigned
//     payload: what the S3 server ingests when nothing has to be fetched.
//
// It reports the median MB/s of each, the ratios ours/peer and ours/ceiling
// (median of the rounds' ratios) and the bootstrap's peak RSS; every round's
// figures are logged.
//
//	make bench-big   (or)
//	go test -run '^$' -bench BenchmarkOneGiB -benchtime 3x -timeout 30m -v ./functions/downloader
func BenchmarkOneGiB(b *testing.B) {
	const size = GiB
	if versitygwBinary() == "" {
		b.Skip("needs versitygw as the S3 target (make bench-tools): moto times out completing ≥ 768 MiB")
	}
	be := newBenchEnv(b, rdptest.Options{})
	be.memoryMB = 512
	data := make([]byte, size)
	fillRandom(data)
	var ours, peer, ceil, xPeer, xCeil []float64
	var peak int64
	for i := range b.N {
		b.StopTimer()
		f := be.addFile(fmt.Sprintf("gib %d.bin", i), size)
		be.warmETag(b, f) // the simulator's ETag of the file, outside the timing
		var d, p, c time.Duration
		var cpu [3]cpuUse
		for k := range 3 {
			before := be.cpuNow()
			switch (i + k) % 3 {
			case 0:
				b.StartTimer()
				var hwm int64
				d, hwm, cpu[0].bootstrap = be.download(b, f)
				b.StopTimer()
				peak = max(peak, hwm)
			case 1:
				var why string
				if p, why = be.peer(b, f); why != "" {
					b.Fatalf("peer: %s", why)
				}
			case 2:
				c = be.ceiling(b, data)
			}
			cpu[(i+k)%3].self, cpu[(i+k)%3].versitygw = be.cpuSince(before)
		}
		b.Logf("round %d CPU seconds: ours: bootstrap %.2f, test process (simulator) %.2f, versitygw %.2f; peer: test process (simulator) %.2f, versitygw %.2f; ceiling: test process (transfer manager) %.2f, versitygw %.2f",
			i+1, cpu[0].bootstrap, cpu[0].self, cpu[0].versitygw, cpu[1].self, cpu[1].versitygw, cpu[2].self, cpu[2].versitygw)
		ours, peer, ceil = append(ours, mbps(size, d)), append(peer, mbps(size, p)), append(ceil, mbps(size, c))
		xPeer, xCeil = append(xPeer, p.Seconds()/d.Seconds()), append(xCeil, c.Seconds()/d.Seconds())
		b.Logf("round %d: ours %.1f MB/s, peer %.1f MB/s, ceiling %.1f MB/s: ours/peer %.2f, ours/ceiling %.2f", i+1, ours[i], peer[i], ceil[i], xPeer[i], xCeil[i])
	}
	for _, m := range []struct {
		name string
		v    []float64
	}{{"MB/s", ours}, {"peer-MB/s", peer}, {"ceiling-MB/s", ceil}, {"x-peer", xPeer}, {"x-ceiling", xCeil}} {
		lo, med, hi := spread(m.v)
		b.Logf("%s: min %.2f median %.2f max %.2f", m.name, lo, med, hi)
		b.ReportMetric(med, "median-"+m.name)
	}
	b.ReportMetric(float64(peak)/float64(MiB), "peak-RSS-MiB")
	b.ReportMetric(0, "ns/op")
}

// cpuUse is the CPU seconds one way of landing the file used, by process.
type cpuUse struct{ bootstrap, self, versitygw float64 }

// cpuNow is the CPU seconds so far of this process and of versitygw.
func (be *benchEnv) cpuNow() [2]float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	self := float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	v, _ := cpuSeconds(be.versityPID)
	return [2]float64{self, v}
}

// cpuSince is the CPU seconds of this process and of versitygw since before.
func (be *benchEnv) cpuSince(before [2]float64) (self, versitygw float64) {
	now := be.cpuNow()
	return now[0] - before[0], now[1] - before[1]
}

// unsignedParts sends UploadPart with an unsigned payload, as the
// downloader does.
type unsignedParts struct{ *s3.Client }

func (c unsignedParts) UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	return c.Client.UploadPart(ctx, in, append(opts, unsignedPayload)...)
}

// ceiling uploads data with the SDK's transfer manager (8 MiB parts, 4 at a
// time, CRC32C, unsigned payload, as the downloader sends its parts) and
// returns the time it took.
func (be *benchEnv) ceiling(b *testing.B, data []byte) time.Duration {
	b.Helper()
	ctx := context.Background()
	tm := transfermanager.New(unsignedParts{be.s3}, func(o *transfermanager.Options) {
		o.PartSizeBytes, o.Concurrency, o.ChecksumAlgorithm = 8*MiB, 4, tmtypes.ChecksumAlgorithmCrc32c
	})
	key := aws.String("ceiling/1GiB")
	start := time.Now()
	_, err := tm.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: aws.String(itDest), Key: key, Body: bytes.NewReader(data)})
	d := time.Since(start)
	if err != nil {
		b.Fatalf("ceiling upload: %v", err)
	}
	head, err := be.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(itDest), Key: key})
	if err != nil || aws.ToInt64(head.ContentLength) != int64(len(data)) {
		b.Fatalf("ceiling object: %v, %d bytes", err, aws.ToInt64(head.ContentLength))
	}
	_, _ = be.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(itDest), Key: key})
	return d
}

// fillRandom fills p with pseudo-random bytes (not compressible).
func fillRandom(p []byte) {
	r := rand.NewChaCha8([32]byte{1})
	_, _ = r.Read(p)
}

// spread is the minimum, median and maximum of v.
func spread(v []float64) (lo, med, hi float64) {
	s := slices.Sorted(slices.Values(v))
	return s[0], s[len(s)/2], s[len(s)-1]
}
