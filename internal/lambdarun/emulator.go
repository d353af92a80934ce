package lambdarun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cfsync/cfsync/internal/childproc"
)

// EmulatorEnv names the variable that overrides where aws-lambda-rie is.
const EmulatorEnv = "CFSYNC_LAMBDA_RIE"

const (
	emulatorName = "aws-lambda-rie"
	// emulatorReadyWait bounds waiting for a new emulator's invoke address.
	emulatorReadyWait = 10 * time.Second
	// answerGrace is how long past the function timeout an emulator may take
	// to answer before it is taken for hung and killed.
	answerGrace = 10 * time.Second
	// logReaderDrainWait bounds waiting for a process's output to be read.
	logReaderDrainWait = 2 * time.Second
	// stopWait is how long Close lets the emulator stop its function after
	// SIGTERM before killing what is left.
	stopWait = 2 * time.Second
)

// FindEmulator returns the aws-lambda-rie executable: $CFSYNC_LAMBDA_RIE,
// else as FindTool finds it (`make tools` installs it).
func FindEmulator() (string, error) {
	p, err := FindTool(emulatorName, EmulatorEnv)
	if err != nil {
		return "", fmt.Errorf("%w: run `make tools`", err)
	}
	return p, nil
}

// FindTool returns the executable name: $envVar when envVar names a set
// variable, else name on PATH, else in $GOBIN or $(go env GOPATH)/bin,
// where `go install` puts it.
func FindTool(name, envVar string) (string, error) {
	if p := os.Getenv(envVar); envVar != "" && p != "" {
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	dirs := []string{os.Getenv("GOBIN")} // where go install puts it when set
	for _, dir := range filepath.SplitList(gopath) {
		dirs = append(dirs, filepath.Join(dir, "bin"))
	}
	for _, dir := range dirs {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); dir != "" && err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if envVar != "" {
		return "", fmt.Errorf("%s not found on PATH, in $GOBIN, in $GOPATH/bin or in $%s", name, envVar)
	}
	return "", fmt.Errorf("%s not found on PATH, in $GOBIN or in $GOPATH/bin", name)
}

// emulator is one aws-lambda-rie process serving one function.
type emulator struct {
	pid     int
	url     string // the invoke endpoint
	logw    *os.File
	logs    *logReader
	stderr  *childproc.TailBuffer
	initDur atomic.Int64  // the latest init's duration, from the emulator's log
	exited  chan struct{} // closed after the process is reaped
	waitErr error         // written before exited is closed

	shutdownOnce sync.Once
}

// freeAddr reserves a loopback address and releases it for the emulator.
func freeAddr() (string, error) {
	port, err := childproc.FreePort()
	return "127.0.0.1:" + strconv.Itoa(port), err
}

// spawn starts an emulator for opts and waits until it accepts invocations.
func spawn(opts Options, sink *logSink) (*emulator, error) {
	apiAddr, err := freeAddr()
	if err != nil {
		return nil, fmt.Errorf("runtime api address: %w", err)
	}
	invokeAddr, err := freeAddr()
	if err != nil {
		return nil, fmt.Errorf("invoke address: %w", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("log pipe: %w", err)
	}
	e := &emulator{
		url:    "http://" + invokeAddr + "/2015-03-31/functions/function/invocations",
		logw:   pw,
		logs:   newLogReader(sink),
		stderr: &childproc.TailBuffer{Max: 4 << 10},
		exited: make(chan struct{}),
	}
	cmd := exec.Command(opts.Emulator, "--log-level", "info",
		"--runtime-api-address", apiAddr, "--runtime-interface-emulator-address", invokeAddr, opts.Binary)
	cmd.Dir = filepath.Dir(opts.Binary)
	cmd.Env = opts.environ()
	// The emulator hands its stdout on to the function (for stdout and
	// stderr); its own log goes to the same pipe so that one flush covers
	// both, and is sorted out line by line (emulatorLine).
	cmd.Stdout, cmd.Stderr = pw, pw
	// Its own process group; on Linux it dies with the test binary (e.g. when
	// `go test -timeout` panics), and the function, losing its Runtime API, exits.
	cmd.SysProcAttr = childproc.Attr()
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("exec %s: %w", opts.Emulator, err)
	}
	e.pid = cmd.Process.Pid
	e.logs.onLine = e.functionLine
	go e.logs.run(pr)
	go func() {
		e.waitErr = cmd.Wait()
		close(e.exited)
	}()
	if err := e.waitReady(invokeAddr); err != nil {
		e.shutdown()
		return nil, err
	}
	return e, nil
}

func (e *emulator) waitReady(addr string) error {
	deadline := time.Now().Add(emulatorReadyWait)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-e.exited:
			return fmt.Errorf("%s exited: %v: %s", emulatorName, e.waitErr, e.stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not listen on %s within %v: %s", emulatorName, addr, emulatorReadyWait, e.stderr.String())
		}
	}
}

// invoke posts one event and returns the emulator's status and body. A hung
// emulator (no answer within timeout + answerGrace) is an error.
func (e *emulator) invoke(ctx context.Context, id string, payload []byte, timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout+answerGrace)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(payload))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("X-Amzn-RequestId", id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("read answer: %w", err)
	}
	return resp.StatusCode, body, nil
}

// functionPIDs are the emulator's child processes (the bootstrap).
func (e *emulator) functionPIDs() []int { return childPIDs(e.pid) }

// shutdown stops the emulator and its function, reaps them and drains the
// remaining output. Safe to call concurrently and repeatedly.
func (e *emulator) shutdown() {
	e.shutdownOnce.Do(func() {
		fns := e.functionPIDs()
		childproc.Terminate(e.pid) // the emulator stops its runtime on SIGTERM
		select {
		case <-e.exited:
		case <-time.After(stopWait):
		}
		for _, pid := range fns { // the runtime has its own process group
			childproc.KillGroup(pid)
		}
		childproc.KillGroup(e.pid)
		<-e.exited
		e.logw.Close()
		// The reader ends when every holder of the pipe is gone; a process
		// that escaped could hold it forever, so do not wait long.
		select {
		case <-e.logs.done:
		case <-time.After(logReaderDrainWait):
		}
	})
}

// functionLine sorts a captured line: the emulator's own log lines
// ("05 Dec 2026 03:49:30,003 [INFO] (rapid) …") go to its tail buffer and
// give the init duration; the rest is the function's.
func (e *emulator) functionLine(line string) bool {
	_, msg, ok := strings.Cut(line, "] (rapid) ")
	if !ok || !strings.Contains(line[:min(len(line), 40)], " [") {
		return true
	}
	_, _ = e.stderr.Write([]byte(line + "\n"))
	if d, ok := initDuration(msg); ok {
		e.initDur.Store(int64(d))
	}
	return false
}

// initDuration parses the emulator's "INIT REPORT(durationMs: 12.147000)".
func initDuration(msg string) (time.Duration, bool) {
	rest, ok := strings.CutPrefix(msg, "INIT REPORT(durationMs: ")
	if !ok {
		return 0, false
	}
	ms, _, _ := strings.Cut(rest, ")")
	f, err := strconv.ParseFloat(ms, 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(f * float64(time.Millisecond)), true
}

var errHung = errors.New("the emulator did not answer in time")
