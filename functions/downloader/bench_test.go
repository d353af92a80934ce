package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfsync/cfsync/internal/childproc"
	"github.com/cfsync/cfsync/internal/lambdarun"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// The benchmarks run the BUILT bootstrap under internal/lambdarun (one fresh
// process per download) against the RDP simulator, with DynamoDB, SQS and
// Secrets Manager in moto_server and the target S3 in versitygw (posix
// backend on disk; moto would hold multi-GiB objects in memory). Peak memory
// is the bootstrap process's VmHWM from /proc/<pid>/status (Linux), read
// after the invocation. Without versitygw they fall back to moto for files up
// to 256 MiB and skip the larger ones; without moto_server they skip.
//
//	make bench        (or)
//	go test -run '^$' -bench . -benchtime 1x ./functions/downloader

// benchEnv is dlEnv plus versitygw and the built bootstrap.
type benchEnv struct {
	*dlEnv
	bin        string
	s3Endpoint string // versitygw, or moto when versitygw is missing
	versity    bool
	versityPID int
	memoryMB   int // the bootstrap's AWS_LAMBDA_FUNCTION_MEMORY_SIZE (0: 1024)
}

const (
	benchKey    = "testing" // moto's and versitygw's access key and secret
	benchRegion = "us-east-1"
)

// versitygwBinary finds versitygw on PATH, in $GOBIN or in $GOPATH/bin
// ("" if none).
func versitygwBinary() string {
	p, _ := lambdarun.FindTool("versitygw", "")
	return p
}

// startVersitygw runs versitygw on a free port over a temporary directory
// and returns its endpoint and process id.
func startVersitygw(b *testing.B, bin string) (string, int) {
	b.Helper()
	port, err := childproc.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	root := b.TempDir()
	// --sidecar: metadata in files, not xattrs. On ext4 a file's xattrs share
	// one 4 KB block, and Complete stores the part offsets there (~5 B a
	// part, gzipped): 768 parts failed with ENOSPC, answered as a 500, 384
	// did not (BENCHMARKS.md, "Huge files").
	cmd := exec.Command(bin, "--access", benchKey, "--secret", benchKey, "--region", benchRegion, "--port", addr, "--quiet", "posix", "--sidecar", b.TempDir(), root)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatalf("start versitygw: %v", err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if b.Failed() { // versitygw's errors (a 500 says nothing more)
			o := out.String()
			b.Logf("versitygw output (last 4 KB):\n%s", o[max(0, len(o)-4096):])
		}
	})
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "http://" + addr, cmd.Process.Pid
		}
	}
	b.Fatalf("versitygw did not start: %s", out.String())
	return "", 0
}

func newBenchEnv(b *testing.B, opts rdptest.Options) *benchEnv {
	b.Helper()
	e := newDLEnv(b, opts)
	be := &benchEnv{dlEnv: e, s3Endpoint: e.Moto.Endpoint}
	if bin := versitygwBinary(); bin != "" {
		be.s3Endpoint, be.versityPID = startVersitygw(b, bin)
		be.versity = true
		e.s3 = s3.NewFromConfig(e.Config, func(o *s3.Options) {
			o.BaseEndpoint = aws.String(be.s3Endpoint)
			o.Credentials = credentials.NewStaticCredentialsProvider(benchKey, benchKey, "") // versitygw refuses session tokens
			o.UsePathStyle = true
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		})
		if _, err := e.s3.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(itDest)}); err != nil {
			b.Fatalf("create bucket in versitygw: %v", err)
		}
	} else {
		b.Log("versitygw not found (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0): S3 is moto, files > 256 MiB are skipped")
	}
	bin, err := lambdarun.BuildFunction(context.Background(), ".", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	be.bin = bin
	return be
}

// vmHWM returns a process's peak resident set size in bytes (Linux).
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// cpuSeconds returns a process's user + system CPU time (Linux, 100 Hz ticks).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // after "pid (comm) "
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(fields[11], 10, 64)
	st, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	return float64(ut+st) / 100, nil
}

// download lands f through a fresh bootstrap process and returns the time of
// the invocation, the process's peak RSS and the CPU time it used. The
// benchmark timer runs only around the invocation.
func (be *benchEnv) download(b *testing.B, f rdptest.File, env ...string) (time.Duration, int64, float64) {
	b.Helper()
	ctx := context.Background()
	b.StopTimer()
	env = append(be.bootstrapEnv(env...), "AWS_ENDPOINT_URL_S3="+be.s3Endpoint, "AWS_SESSION_TOKEN=", "LOG_LEVEL=warn")
	r, err := lambdarun.Start(ctx, lambdarun.Options{Binary: be.bin, Timeout: 15 * time.Minute, MemoryMB: cmp.Or(be.memoryMB, 1024), Env: env})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	payload, _ := json.Marshal(sqsEvent(itMsg(f)))
	b.StartTimer()
	start := time.Now()
	res, err := r.Invoke(ctx, payload)
	d := time.Since(start)
	b.StopTimer()
	if err != nil || res.Err != nil {
		b.Fatalf("invoke: %v %v\n%s", err, res.Err, strings.Join(r.Logs(), "\n"))
	}
	if !strings.Contains(string(res.Payload), `"batchItemFailures":[]`) {
		b.Fatalf("download failed: %s\n%s", res.Payload, strings.Join(r.Logs(), "\n"))
	}
	var hwm int64
	var cpu float64
	if runtime.GOOS == "linux" {
		if hwm, err = vmHWM(r.PID()); err != nil {
			b.Fatal(err)
		}
		if cpu, err = cpuSeconds(r.PID()); err != nil {
			b.Fatal(err)
		}
	}
	head, err := be.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(itDest), Key: aws.String(itKey(f))})
	if err != nil || aws.ToInt64(head.ContentLength) != f.Size {
		b.Fatalf("object %s: %v, %d bytes, want %d", itKey(f), err, aws.ToInt64(head.ContentLength), f.Size)
	}
	_, _ = be.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(itDest), Key: aws.String(itKey(f))})
	b.StartTimer()
	return d, hwm, cpu
}

// peer lands the same file with `curl URL | aws s3 cp - s3://…` and returns
// the time it took (0 and a reason when curl or the aws CLI is missing).
func (be *benchEnv) peer(b *testing.B, f rdptest.File) (time.Duration, string) {
	b.Helper()
	for _, tool := range []string{"curl", "aws", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			return 0, tool + " not installed"
		}
	}
	dst := "s3://" + itDest + "/peer/" + f.ID
	cmd := exec.Command("bash", "-o", "pipefail", "-c", `curl -sS --fail "$SRC" | aws s3 cp - "$DST" --endpoint-url "$EP" --only-show-errors`)
	cmd.Env = append(os.Environ(), "SRC="+be.Sim.PresignedURL(f.ID), "DST="+dst, "EP="+be.s3Endpoint,
		"AWS_ACCESS_KEY_ID="+benchKey, "AWS_SECRET_ACCESS_KEY="+benchKey, "AWS_SESSION_TOKEN=", "AWS_DEFAULT_REGION="+benchRegion)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		// The output may quote the presigned URL: say only that it failed.
		return 0, fmt.Sprintf("curl | aws s3 cp failed (%v, %d bytes of output)", err, len(out))
	}
	ctx := context.Background()
	head, err := be.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(itDest), Key: aws.String("peer/" + f.ID)})
	if err != nil || aws.ToInt64(head.ContentLength) != f.Size {
		return 0, fmt.Sprintf("peer object: %v", err)
	}
	_, _ = be.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(itDest), Key: aws.String("peer/" + f.ID)})
	return d, ""
}

// warmETag makes the simulator compute f's ETag (a multipart ETag above
// 256 MiB reads the whole content once) outside any timing: otherwise the
// first download of the file pays it.
func (be *benchEnv) warmETag(b *testing.B, f rdptest.File) {
	b.Helper()
	req, err := http.NewRequest(http.MethodGet, be.Sim.PresignedURL(f.ID), nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Range", "bytes=0-0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal("warm the simulator's ETag: request failed") // the error would quote the presigned URL
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func mbps(size int64, d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }

// BenchmarkDownload: peak RSS and throughput of the download path for a
// 256 MiB and a 2 GiB file (defaults: PARALLEL_RANGES=4, part size chosen =
// 8 MiB), with the curl | aws s3 cp - peer on the same file as a ratio.
func BenchmarkDownload(b *testing.B) {
	be := newBenchEnv(b, rdptest.Options{})
	for _, size := range []int64{256 * MiB, 2 * GiB} {
		b.Run(fmt.Sprintf("size=%dMiB", size/MiB), func(b *testing.B) {
			if !be.versity && size > 256*MiB {
				b.Skip("needs versitygw: moto keeps objects in memory")
			}
			b.SetBytes(size)
			var peak int64
			var total time.Duration
			var cpu float64
			var last rdptest.File
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				last = be.addFile(fmt.Sprintf("bench %d %d.bin", size, i), size)
				be.warmETag(b, last) // the simulator's ETag of the file, outside the timing
				b.StartTimer()
				d, hwm, c := be.download(b, last)
				total += d
				cpu += c
				peak = max(peak, hwm)
			}
			b.StopTimer()
			ours := mbps(size*int64(b.N), total)
			b.ReportMetric(float64(peak)/float64(MiB), "peak-RSS-MiB")
			b.ReportMetric(cpu/(float64(size*int64(b.N))/float64(GiB)), "cpu-s/GiB")
			if d, why := be.peer(b, last); why != "" {
				b.Logf("peer not measured: %s", why)
			} else {
				b.ReportMetric(mbps(size, d), "peer-MB/s")
				b.ReportMetric(ours/mbps(size, d), "x-peer")
			}
		})
	}
}

// BenchmarkDownloadParallel: throughput for PARALLEL_RANGES = 1, 2, 4, 8 with
// the simulator's bandwidth capped at 8 MiB/s per connection (a 64 MiB file
// in 8 MiB parts).
func BenchmarkDownloadParallel(b *testing.B) {
	const perConn = 8 << 20
	const size = 64 * MiB
	be := newBenchEnv(b, rdptest.Options{BandwidthPerConn: perConn})
	for _, p := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("P=%d", p), func(b *testing.B) {
			b.SetBytes(size)
			var peak int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				f := be.addFile(fmt.Sprintf("parallel %d %d.bin", p, i), size)
				be.Sim.LookupFile(f.ID)
				b.StartTimer()
				_, hwm, _ := be.download(b, f, "PARALLEL_RANGES="+strconv.Itoa(p), "PART_SIZE="+strconv.Itoa(int(8*MiB)))
				peak = max(peak, hwm)
			}
			b.ReportMetric(float64(peak)/float64(MiB), "peak-RSS-MiB")
			b.ReportMetric(float64(p*perConn)/1e6, "cap-MB/s")
		})
	}
}
