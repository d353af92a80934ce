package lambdarun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/testenv"
)

// echoBin is the test function (testdata/echo), built once by TestMain.
var echoBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lambdarun-echo-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	echoBin, err = BuildFunction(ctx, "./testdata/echo", filepath.Join(dir, "echo"))
	cancel()
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func startEcho(t *testing.T, opts Options) *Runner {
	t.Helper()
	opts.Binary = echoBin
	r, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func invoke(t *testing.T, r *Runner, ev map[string]any) Result {
	t.Helper()
	res, err := r.Invoke(t.Context(), mustJSON(t, ev))
	if err != nil {
		t.Fatalf("Invoke(%v): %v", ev, err)
	}
	return res
}

// echoInfo is the "info" action's answer.
type echoInfo struct {
	PID         int               `json:"pid"`
	RequestID   string            `json:"requestId"`
	ARN         string            `json:"arn"`
	RemainingMs int64             `json:"remainingMs"`
	Env         map[string]string `json:"env"`
	ChildPID    int               `json:"childPid"`
}

func decodeInfo(t *testing.T, res Result) echoInfo {
	t.Helper()
	if res.Err != nil {
		t.Fatalf("function error: %v", res.Err)
	}
	var in echoInfo
	if err := json.Unmarshal(res.Payload, &in); err != nil {
		t.Fatalf("decode %q: %v", res.Payload, err)
	}
	return in
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for Alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wantFunctionError fails the test unless res is a function error of type
// typ whose message contains msg.
func wantFunctionError(t *testing.T, res Result, typ, msg string) {
	t.Helper()
	if res.Err == nil || res.Err.Type != typ || !strings.Contains(res.Err.Message, msg) {
		t.Fatalf("error = %+v, want %s containing %q", res.Err, typ, msg)
	}
}

// wantRestarted checks that r answers again after its process first ended,
// from a new process.
func wantRestarted(t *testing.T, r *Runner, first int) {
	t.Helper()
	for i := range 2 {
		res := invoke(t, r, map[string]any{"action": "echo", "echo": i})
		if res.Err != nil || string(res.Payload) != strconv.Itoa(i) {
			t.Fatalf("invocation %d after the process ended: %s, %v", i, res.Payload, res.Err)
		}
	}
	if pid := r.PID(); pid == first || pid == 0 {
		t.Errorf("PID after restart = %d, first was %d", pid, first)
	}
}

func TestInvoke(t *testing.T) {
	r := startEcho(t, Options{
		Name:     "echo-fn",
		Timeout:  5 * time.Second,
		MemoryMB: 256,
		Env:      []string{"CFSYNC_TEST_VAR=hello", "AWS_REGION=eu-west-1", "AWS_ENDPOINT_URL=http://127.0.0.1:1"},
	})
	tests := []struct {
		name    string
		event   map[string]any
		payload string         // expected payload, when no error
		err     *FunctionError // expected error
	}{
		{name: "echo object", event: map[string]any{"action": "echo", "echo": map[string]any{"a": 1, "b": []string{"x"}}}, payload: `{"a":1,"b":["x"]}`},
		{name: "echo string", event: map[string]any{"action": "echo", "echo": "héllo"}, payload: `"héllo"`},
		{name: "function error", event: map[string]any{"action": "error", "msg": "bad input: field x"}, err: &FunctionError{Type: "customError", Message: "bad input: field x"}},
		{name: "unknown action", event: map[string]any{"action": "nope"}, err: &FunctionError{Type: "errorString", Message: `unknown action "nope"`}},
		{name: "not json", event: nil, err: &FunctionError{Type: "UnmarshalTypeError"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			payload := mustJSON(t, tc.event)
			if tc.event == nil {
				payload = []byte(`[1,2]`)
			}
			res, err := r.Invoke(t.Context(), payload)
			if err != nil {
				t.Fatal(err)
			}
			if res.RequestID == "" {
				t.Error("empty RequestID")
			}
			if tc.err == nil {
				if res.Err != nil {
					t.Fatalf("unexpected error %v", res.Err)
				}
				if string(res.Payload) != tc.payload {
					t.Errorf("payload = %s, want %s", res.Payload, tc.payload)
				}
				return
			}
			if res.Err == nil {
				t.Fatalf("no error; payload %s", res.Payload)
			}
			if res.Err.Type != tc.err.Type || (tc.err.Message != "" && res.Err.Message != tc.err.Message) {
				t.Errorf("error = %+v, want %+v", res.Err, tc.err)
			}
			var doc FunctionError
			if err := json.Unmarshal(res.Payload, &doc); err != nil || doc.Type != res.Err.Type || doc.Message != res.Err.Message {
				t.Errorf("error payload = %s (%v), want the error document", res.Payload, err)
			}
		})
	}

	t.Run("environment and context", func(t *testing.T) {
		vars := []string{"CFSYNC_TEST_VAR", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_LAMBDA_FUNCTION_NAME",
			"AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_TIMEOUT", "AWS_LAMBDA_FUNCTION_VERSION",
			"_HANDLER", "LAMBDA_TASK_ROOT", "AWS_LAMBDA_RUNTIME_API", "AWS_ACCESS_KEY_ID", "HOME"}
		res := invoke(t, r, map[string]any{"action": "info", "vars": vars})
		in := decodeInfo(t, res)
		want := map[string]string{
			"CFSYNC_TEST_VAR":                 "hello",
			"AWS_REGION":                      "eu-west-1",
			"AWS_ENDPOINT_URL":                "http://127.0.0.1:1",
			"AWS_LAMBDA_FUNCTION_NAME":        "echo-fn",
			"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
			"AWS_LAMBDA_FUNCTION_TIMEOUT":     "5",
			"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
			"_HANDLER":                        "bootstrap",
			"LAMBDA_TASK_ROOT":                filepath.Dir(echoBin),
			"AWS_ACCESS_KEY_ID":               "test",
			"HOME":                            "", // the parent's environment is not inherited
		}
		for k, v := range want {
			if in.Env[k] != v {
				t.Errorf("%s = %q, want %q", k, in.Env[k], v)
			}
		}
		if !strings.HasPrefix(in.Env["AWS_LAMBDA_RUNTIME_API"], "127.0.0.1:") {
			t.Errorf("AWS_LAMBDA_RUNTIME_API = %q", in.Env["AWS_LAMBDA_RUNTIME_API"])
		}
		if in.RequestID != res.RequestID {
			t.Errorf("request id in function %q, in result %q", in.RequestID, res.RequestID)
		}
		// The emulator fixes region and account in the ARN (us-east-1, 012345678912).
		if !strings.HasPrefix(in.ARN, "arn:aws:lambda:") || !strings.HasSuffix(in.ARN, ":function:echo-fn") {
			t.Errorf("ARN = %q, want a function ARN naming echo-fn", in.ARN)
		}
		if in.PID != r.PID() {
			t.Errorf("function pid %d, Runner.PID %d", in.PID, r.PID())
		}
	})
}

func TestDeadlineHeader(t *testing.T) {
	for _, timeout := range []time.Duration{time.Second, 2 * time.Second} {
		t.Run(timeout.String(), func(t *testing.T) {
			r := startEcho(t, Options{Timeout: timeout})
			in := decodeInfo(t, invoke(t, r, map[string]any{"action": "info"}))
			got := time.Duration(in.RemainingMs) * time.Millisecond
			if got > timeout || got < timeout-300*time.Millisecond {
				t.Errorf("remaining time in function = %v, want just under %v", got, timeout)
			}
		})
	}
}

func TestTimeoutKillsAndRestarts(t *testing.T) {
	r := startEcho(t, Options{Timeout: time.Second})
	first := decodeInfo(t, invoke(t, r, map[string]any{"action": "info"})).PID

	res := invoke(t, r, map[string]any{"action": "sleep", "sleep": "10s"})
	wantFunctionError(t, res, ErrorTypeTimeout, "Task timed out after 1.00 seconds")
	if !strings.Contains(res.Err.Message, res.RequestID) {
		t.Errorf("message %q, want the request id %s", res.Err.Message, res.RequestID)
	}
	if res.Duration < time.Second || res.Duration > 4*time.Second {
		t.Errorf("duration %v, want about the timeout", res.Duration)
	}
	waitGone(t, first)
	if pid := r.PID(); pid != 0 {
		t.Errorf("PID after timeout = %d, want 0 until the next invocation", pid)
	}
	wantRestarted(t, r, first)
}

func TestCrashRestarts(t *testing.T) {
	tests := []struct {
		name    string
		event   map[string]any
		errType string
		errMsg  string
	}{
		{name: "os.Exit", event: map[string]any{"action": "exit", "code": 7}, errType: ErrorTypeExit, errMsg: "Runtime exited with error: exit status 7"},
		{name: "panic", event: map[string]any{"action": "panic", "msg": "boom"}, errType: "string", errMsg: "boom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := startEcho(t, Options{})
			first := decodeInfo(t, invoke(t, r, map[string]any{"action": "info"})).PID
			wantFunctionError(t, invoke(t, r, tc.event), tc.errType, tc.errMsg)
			waitGone(t, first)
			wantRestarted(t, r, first)
		})
	}
}

func TestInitError(t *testing.T) {
	tests := []struct {
		name    string
		env     string
		errType string
		errMsg  string
		log     string
	}{
		{name: "exit before lambda.Start", env: "ECHO_INIT=exit", errType: ErrorTypeExit, errMsg: "Runtime exited without providing a reason", log: "init failed: ECHO_INIT=exit"},
		{name: "posted init error", env: "ECHO_INIT=post", errType: "ConfigError", errMsg: "bad config: ECHO_INIT"},
		{name: "init timeout", env: "ECHO_INIT=hang", errType: ErrorTypeTimeout, errMsg: "Task timed out after 1.00 seconds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := startEcho(t, Options{Env: []string{tc.env}, Timeout: time.Second})
			wantFunctionError(t, invoke(t, r, map[string]any{"action": "echo", "echo": 1}), tc.errType, tc.errMsg)
			if tc.log != "" && !slices.Contains(r.Logs(), tc.log) {
				t.Errorf("logs %q lack %q", r.Logs(), tc.log)
			}
		})
	}
}

func TestReinitErrorIsReported(t *testing.T) {
	failFile := filepath.Join(t.TempDir(), "fail")
	r := startEcho(t, Options{Env: []string{"ECHO_INIT_FAIL_FILE=" + failFile}})
	if err := os.WriteFile(failFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wantFunctionError(t, invoke(t, r, map[string]any{"action": "exit", "code": 1}), ErrorTypeExit, "")
	// The emulator reports an exit during init without its status.
	wantFunctionError(t, invoke(t, r, map[string]any{"action": "echo", "echo": 1}), ErrorTypeExit, "")
	if !slices.Contains(r.Logs(), "init failed: fail file present") {
		t.Error("the failed re-init's output is not in the logs")
	}
	if err := os.Remove(failFile); err != nil {
		t.Fatal(err)
	}
	if res := invoke(t, r, map[string]any{"action": "echo", "echo": 2}); res.Err != nil || string(res.Payload) != "2" {
		t.Fatalf("after init recovers: %s, %v", res.Payload, res.Err)
	}
}

// syncBuffer is a LogWriter the test can read while the runner writes.
type syncBuffer = testenv.SyncBuffer

func TestLogsCaptured(t *testing.T) {
	var tee syncBuffer
	r := startEcho(t, Options{LogWriter: &tee})
	invoke(t, r, map[string]any{"action": "echo", "echo": 0})
	if got := r.Logs(); !slices.Contains(got, "init done") {
		t.Errorf("init log missing: %q", got)
	}
	for round := range 3 { // each round's lines must be there when Invoke returns
		before := len(r.Logs())
		msg := fmt.Sprintf("round-%d", round)
		res := invoke(t, r, map[string]any{"action": "log", "msg": msg, "lines": 50, "size": 100_000})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		got := functionLines(r.Logs()[before:])
		var want []string
		for i := range 50 {
			want = append(want, fmt.Sprintf("%s %d", msg, i))
		}
		want = append(want, strings.Repeat("x", 100_000))
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: got %d lines, want %d (stdout and stderr, in order, long line intact)", round, len(got), len(want))
		}
	}
	if want := strings.Join(r.Logs(), "\n") + "\n"; tee.String() != want {
		t.Errorf("LogWriter got %d bytes, want %d (the same lines)", len(tee.String()), len(want))
	}

	// A crash's last words are captured too.
	res := invoke(t, r, map[string]any{"action": "exit", "code": 5})
	if res.Err == nil {
		t.Fatal("no crash")
	}
	if !slices.Contains(r.Logs(), "exiting with 5") {
		t.Errorf("crash log missing: %q", r.Logs()[max(0, len(r.Logs())-3):])
	}
}

// functionLines drops the emulator's START, END and REPORT lines.
func functionLines(lines []string) []string {
	return slices.DeleteFunc(slices.Clone(lines), func(l string) bool {
		return strings.HasPrefix(l, "START RequestId: ") || strings.HasPrefix(l, "END RequestId: ") || strings.HasPrefix(l, "REPORT RequestId: ")
	})
}

func TestColdStart(t *testing.T) {
	fast := startEcho(t, Options{})
	slow := startEcho(t, Options{Env: []string{"ECHO_INIT=sleep:300ms"}})
	if d := fast.ColdStart(); d != 0 {
		t.Errorf("cold start before the first invocation = %v, want 0", d)
	}
	invoke(t, fast, map[string]any{"action": "echo", "echo": 1})
	invoke(t, slow, map[string]any{"action": "echo", "echo": 1})
	if d := fast.ColdStart(); d <= 0 || d > 5*time.Second {
		t.Errorf("fast cold start = %v", d)
	}
	if d := slow.ColdStart(); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("slow cold start = %v, want ≥ 300ms", d)
	}
}

func TestCloseKillsProcessTree(t *testing.T) {
	r := startEcho(t, Options{})
	in := decodeInfo(t, invoke(t, r, map[string]any{"action": "spawn"}))
	if !Alive(in.PID) || !Alive(in.ChildPID) {
		t.Fatalf("function %d or its child %d not running", in.PID, in.ChildPID)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if Alive(in.PID) {
		t.Errorf("function process %d alive after Close", in.PID)
	}
	waitGone(t, in.ChildPID) // reparented to init before being reaped
	if _, err := r.Invoke(t.Context(), []byte(`{}`)); !errors.Is(err, ErrClosed) {
		t.Errorf("Invoke after Close: %v, want ErrClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseDuringInvoke(t *testing.T) {
	r := startEcho(t, Options{Timeout: time.Minute})
	pid := decodeInfo(t, invoke(t, r, map[string]any{"action": "info"})).PID
	errc := make(chan error, 1)
	go func() {
		_, err := r.Invoke(context.Background(), []byte(`{"action":"sleep","sleep":"1m"}`))
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond) // let the invocation start (Close must work either way)
	r.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("Invoke during Close: %v, want ErrClosed", err)
	}
	if Alive(pid) {
		t.Errorf("process %d alive after Close", pid)
	}
}

func TestContextCancellation(t *testing.T) {
	t.Run("Start's ctx closes the runner", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		r, err := Start(ctx, Options{Binary: echoBin})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		res, err := r.Invoke(t.Context(), []byte(`{"action":"info"}`))
		if err != nil {
			t.Fatal(err)
		}
		pid := decodeInfo(t, res).PID
		cancel()
		waitGone(t, pid)
		if _, err := r.Invoke(t.Context(), []byte(`{"action":"echo"}`)); !errors.Is(err, ErrClosed) {
			t.Errorf("Invoke after cancel: %v, want ErrClosed", err)
		}
	})
	t.Run("Invoke's ctx kills a running invocation", func(t *testing.T) {
		r := startEcho(t, Options{Timeout: time.Minute})
		pid := decodeInfo(t, invoke(t, r, map[string]any{"action": "info"})).PID
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		_, err := r.Invoke(ctx, []byte(`{"action":"sleep","sleep":"1m"}`))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
		waitGone(t, pid)
		if res := invoke(t, r, map[string]any{"action": "echo", "echo": 1}); res.Err != nil || string(res.Payload) != "1" {
			t.Fatalf("after cancel: %s, %v", res.Payload, res.Err)
		}
	})
}

func TestConcurrentInvokeIsSerialized(t *testing.T) {
	r := startEcho(t, Options{})
	const workers, each = 6, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				want := fmt.Sprintf(`"w%d-%d"`, w, i)
				res, err := r.Invoke(t.Context(), []byte(`{"action":"echo","echo":`+want+`}`))
				switch {
				case err != nil:
					errs <- err
				case res.Err != nil:
					errs <- res.Err
				case string(res.Payload) != want:
					errs <- fmt.Errorf("got %s, want %s", res.Payload, want)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPoolRunsConcurrently(t *testing.T) {
	var tee syncBuffer
	p, err := StartPool(t.Context(), Options{Binary: echoBin, Timeout: 10 * time.Second, LogWriter: &tee}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dir := t.TempDir()
	ev := []byte(`{"action":"rendezvous","dir":` + strconv.Quote(dir) + `}`)
	pids := make(chan int, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			res, err := p.Invoke(t.Context(), ev)
			if err != nil || res.Err != nil {
				t.Errorf("invoke: %v %v", err, res.Err)
				pids <- 0
				return
			}
			var in echoInfo
			_ = json.Unmarshal(res.Payload, &in)
			pids <- in.PID
		})
	}
	// Both invocations must be running at once before either may finish.
	deadline := time.Now().Add(10 * time.Second)
	for {
		started, _ := filepath.Glob(filepath.Join(dir, "started-*"))
		if len(started) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 2 invocations started: the pool does not run them concurrently", len(started))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	a, b := <-pids, <-pids
	if a == b {
		t.Errorf("both invocations ran in process %d", a)
	}
	if got := strings.Count(strings.Join(p.Logs(), "\n"), "init done"); got != 2 {
		t.Errorf("pool log has %d init lines, want 2", got)
	}
	runners := p.Runners()
	p.Close()
	for _, r := range runners {
		if r.PID() != 0 {
			t.Errorf("runner still has process %d after Pool.Close", r.PID())
		}
	}
	if _, err := p.Invoke(t.Context(), ev); !errors.Is(err, ErrClosed) {
		t.Errorf("Invoke after Close: %v", err)
	}
}

func TestResponseTooLarge(t *testing.T) {
	r := startEcho(t, Options{})
	wantFunctionError(t, invoke(t, r, map[string]any{"action": "big", "size": MaxPayload + 10}), ErrorTypeTooLarge, "")
	if res := invoke(t, r, map[string]any{"action": "echo", "echo": 1}); res.Err != nil {
		t.Fatalf("after oversized response: %v", res.Err)
	}
	if _, err := r.Invoke(t.Context(), make([]byte, MaxPayload+1)); err == nil {
		t.Error("oversized request accepted")
	}
}

func TestClassify(t *testing.T) {
	const id = "req-1"
	tests := []struct {
		name    string
		status  int
		body    string
		payload string // want, for a success
		want    *FunctionError
	}{
		{name: "response", status: 200, body: `{"a":1}`, payload: `{"a":1}`},
		{name: "response with an errorType field among others", status: 200, body: `{"errorType":"x","errorMessage":"y","more":1}`, payload: `{"errorType":"x","errorMessage":"y","more":1}`},
		{name: "function error", status: 200, body: `{"errorMessage":"m","errorType":"T"}`, want: &FunctionError{Message: "m", Type: "T"}},
		{name: "panic", status: 502, body: `{"errorMessage":"m","errorType":"string","stackTrace":[]}`, want: &FunctionError{Message: "m", Type: "string"}},
		{name: "timeout", status: 200, body: `Task timed out after 3.00 seconds`, want: &FunctionError{Type: ErrorTypeTimeout, Message: "RequestId: req-1 Error: Task timed out after 3.00 seconds"}},
		{name: "exit without reason", status: 502, body: ``, want: &FunctionError{Type: ErrorTypeExit, Message: "RequestId: req-1 Error: Runtime exited without providing a reason"}},
		{name: "untyped error", status: 502, body: `oops`, want: &FunctionError{Type: ErrorTypeUnknown, Message: "oops"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := classify(id, tc.status, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if res.Err != nil || string(res.Payload) != tc.payload {
					t.Errorf("got %s, %v; want payload %s", res.Payload, res.Err, tc.payload)
				}
				return
			}
			if res.Err == nil || res.Err.Type != tc.want.Type || res.Err.Message != tc.want.Message {
				t.Fatalf("error = %+v, want %+v", res.Err, tc.want)
			}
			var doc FunctionError
			if json.Unmarshal(res.Payload, &doc) != nil || doc.Type != tc.want.Type {
				t.Errorf("payload %s is not the error document", res.Payload)
			}
		})
	}
	if _, err := classify(id, 400, []byte("busy")); err == nil {
		t.Error("a 400 from the emulator is not an error")
	}
}

func TestStartValidation(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{name: "no binary", opts: Options{}, want: "Binary is required"},
		{name: "missing binary", opts: Options{Binary: filepath.Join(t.TempDir(), "bootstrap")}, want: "no such file"},
		{name: "directory", opts: Options{Binary: t.TempDir()}, want: "is a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Start(t.Context(), tc.opts)
			if err == nil {
				r.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

func TestBuildFunctionError(t *testing.T) {
	_, err := BuildFunction(t.Context(), "./testdata/does-not-exist", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "build ./testdata/does-not-exist") {
		t.Fatalf("err = %v", err)
	}
}

func TestFindEmulator(t *testing.T) {
	t.Run("override", func(t *testing.T) {
		t.Setenv(EmulatorEnv, "/opt/rie/aws-lambda-rie")
		if got, err := FindEmulator(); err != nil || got != "/opt/rie/aws-lambda-rie" {
			t.Errorf("FindEmulator() = %q, %v; want the override", got, err)
		}
	})
	t.Run("GOPATH/bin", func(t *testing.T) {
		gopath := t.TempDir()
		bin := filepath.Join(gopath, "bin", "aws-lambda-rie")
		if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, nil, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv(EmulatorEnv, "")
		t.Setenv("PATH", t.TempDir())
		t.Setenv("GOBIN", "")
		t.Setenv("GOPATH", gopath)
		if got, err := FindEmulator(); err != nil || got != bin {
			t.Errorf("FindEmulator() = %q, %v; want %s", got, err, bin)
		}
	})
	t.Run("missing", func(t *testing.T) {
		t.Setenv(EmulatorEnv, "")
		t.Setenv("PATH", t.TempDir())
		t.Setenv("GOBIN", "")
		t.Setenv("GOPATH", t.TempDir())
		if _, err := FindEmulator(); err == nil || !strings.Contains(err.Error(), "make tools") {
			t.Errorf("err = %v, want one saying to run make tools", err)
		}
		_, err := Start(t.Context(), Options{Binary: echoBin})
		if err == nil || !strings.Contains(err.Error(), "aws-lambda-rie not found") {
			t.Errorf("Start: %v, want the emulator named", err)
		}
	})
	t.Run("another tool, no variable, in GOBIN", func(t *testing.T) {
		gobin := t.TempDir()
		bin := filepath.Join(gobin, "sometool")
		if err := os.WriteFile(bin, nil, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PATH", t.TempDir())
		t.Setenv("GOBIN", gobin)
		t.Setenv("GOPATH", t.TempDir())
		if got, err := FindTool("sometool", ""); err != nil || got != bin {
			t.Errorf("FindTool = %q, %v; want %s", got, err, bin)
		}
		if _, err := FindTool("othertool", ""); err == nil || !strings.Contains(err.Error(), "othertool not found") {
			t.Errorf("FindTool(othertool) err = %v, want one naming it", err)
		}
	})
}
