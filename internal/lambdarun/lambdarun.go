// Package lambdarun runs a built Lambda bootstrap (runtime provided.al2023,
// e.g. a Go binary calling aws-lambda-go's lambda.Start) under AWS's Lambda
// Runtime Interface Emulator (aws-lambda-rie, the emulator inside AWS's base
// images and `sam local`), so that end-to-end tests and the local demo invoke
// the real function binaries the way Lambda does, without AWS.
//
// A [Runner] is one execution environment: one emulator process with its own
// Runtime API address (--runtime-api-address) and invoke address
// (--runtime-interface-emulator-address), so several run side by side.
// The emulator starts the bootstrap on the first invocation (as on-demand
// Lambda does), enforces the function timeout (it kills the process and
// re-initialises on the next invocation) and restarts a crashed function.
// A [Pool] holds several Runners for concurrent invocations.
//
// What the emulator lacks, this package adds: capturing the function's
// output line by line (Logs, Options.LogWriter), the process id of the
// running bootstrap (PID), a bound on an emulator that does not answer, and
// killing the whole process tree at Close. How local runs work and what the
// emulator costs are in docs/local.md#running-the-lambda-binaries.
package lambdarun

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cfsync/cfsync/internal/randid"
)

// MaxPayload is the largest request or response payload, as for
// synchronous Lambda invocations (6 MB).
const MaxPayload = 6 << 20

// Defaults applied by [Start] to zero [Options] fields.
const (
	DefaultTimeout  = 3 * time.Second // Lambda's default function timeout
	DefaultMemoryMB = 128
	DefaultRegion   = "us-east-1"
)

// Error types of failures (Lambda's names).
const (
	ErrorTypeTimeout  = "Sandbox.Timedout"              // function timeout
	ErrorTypeExit     = "Runtime.ExitError"             // the process exited
	ErrorTypeTooLarge = "Function.ResponseSizeTooLarge" // response over the limit
	ErrorTypeUnknown  = "Runtime.Unknown"               // an error body without a type
)

// ErrClosed is returned (wrapped) by Invoke on a closed Runner or Pool.
var ErrClosed = errors.New("lambdarun: closed")

// Options configure one function's execution environment.
type Options struct {
	// Name is AWS_LAMBDA_FUNCTION_NAME; default: the name of Binary's directory
	// (bin/downloader/bootstrap → "downloader").
	Name string
	// Binary is the path of the bootstrap executable (required). It runs with
	// its directory as working directory and LAMBDA_TASK_ROOT.
	Binary string
	// Env holds extra "KEY=value" entries for the function (AWS_ENDPOINT_URL,
	// the function's configuration, credentials). They override the defaults
	// (AWS_REGION, dummy AWS credentials, …). The parent's environment is NOT
	// inherited, apart from PATH.
	Env []string
	// Timeout is the function timeout (default 3s), rounded up to whole
	// seconds: AWS_LAMBDA_FUNCTION_TIMEOUT, which the emulator enforces for
	// init and for each invocation.
	Timeout time.Duration
	// MemoryMB is AWS_LAMBDA_FUNCTION_MEMORY_SIZE (default 128; not enforced).
	MemoryMB int
	// LogWriter, when set, also receives every captured log line (with "\n").
	// Writes are serialised per Runner (per Pool for a Pool).
	LogWriter io.Writer
	// Emulator is the aws-lambda-rie executable; default: [FindEmulator].
	Emulator string
}

func (o Options) withDefaults() (Options, error) {
	if o.Binary == "" {
		return o, errors.New("options: Binary is required")
	}
	abs, err := filepath.Abs(o.Binary)
	if err != nil {
		return o, fmt.Errorf("options: binary: %w", err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return o, fmt.Errorf("options: binary: %w", err)
	}
	if st.IsDir() {
		return o, fmt.Errorf("options: binary %s is a directory", abs)
	}
	o.Binary = abs
	if o.Name == "" {
		o.Name = filepath.Base(filepath.Dir(abs))
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	o.Timeout = time.Duration(max(1, math.Ceil(o.Timeout.Seconds()))) * time.Second
	if o.MemoryMB <= 0 {
		o.MemoryMB = DefaultMemoryMB
	}
	if o.Emulator == "" {
		if o.Emulator, err = FindEmulator(); err != nil {
			return o, fmt.Errorf("options: %w", err)
		}
	}
	return o, nil
}

func lookupEnv(env []string, key string) (string, bool) {
	val, found := "", false
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			val, found = v, true // last one wins, as in exec.Cmd
		}
	}
	return val, found
}

func (o Options) region() string {
	if v, ok := lookupEnv(o.Env, "AWS_REGION"); ok && v != "" {
		return v
	}
	return DefaultRegion
}

// environ is the emulator's environment, which it hands on to the function:
// Lambda's reserved variables, then the caller's Env.
func (o Options) environ() []string {
	dir := filepath.Dir(o.Binary)
	region := o.region()
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	env := []string{
		"PATH=" + path,
		"TZ=:UTC",
		"LANG=en_US.UTF-8",
		"AWS_LAMBDA_FUNCTION_NAME=" + o.Name,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=" + strconv.Itoa(o.MemoryMB),
		"AWS_LAMBDA_FUNCTION_TIMEOUT=" + strconv.Itoa(int(o.Timeout.Seconds())),
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_INITIALIZATION_TYPE=on-demand",
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/" + o.Name,
		"AWS_LAMBDA_LOG_STREAM_NAME=" + time.Now().UTC().Format("2006/01/02") + "/[$LATEST]" + randid.Hex(8),
		"AWS_REGION=" + region,
		"AWS_DEFAULT_REGION=" + region,
		"AWS_ACCESS_KEY_ID=test", // dummy credentials: never the developer's
		"AWS_SECRET_ACCESS_KEY=test",
		"_HANDLER=bootstrap",
		"LAMBDA_TASK_ROOT=" + dir,
		"LAMBDA_RUNTIME_DIR=" + dir,
	}
	return append(env, o.Env...)
}

// FunctionError is a failed invocation as Lambda reports it: the function's
// own error, a timeout, a crash or an init failure.
type FunctionError struct {
	Message    string          `json:"errorMessage"`
	Type       string          `json:"errorType"`
	StackTrace json.RawMessage `json:"stackTrace,omitempty"`
}

func (e *FunctionError) Error() string { return e.Type + ": " + e.Message }

// Result is one invocation's outcome.
type Result struct {
	RequestID string
	// Payload is the function's response; when Err is set it holds the error
	// document Lambda would return ({"errorMessage","errorType"}).
	Payload []byte
	// Err is set when the invocation failed (function error, timeout, crash,
	// init failure, oversized response).
	Err *FunctionError
	// Duration runs from sending the event to the emulator to its answer; on
	// a cold start it includes init (see [Runner.ColdStart]).
	Duration time.Duration
}

// classify turns the emulator's answer into a Result. The emulator answers
// 200 both for a response and for the function's own error (it sets no
// X-Amz-Function-Error header), so an answer shaped exactly like Lambda's
// error document ({"errorMessage","errorType"[,"stackTrace"]}) is taken for
// an error; 502 carries crash and init failures; a timeout is a 200 with
// the text "Task timed out after N.00 seconds".
func classify(id string, status int, body []byte) (Result, error) {
	res := Result{RequestID: id}
	switch {
	case status == 200 && strings.HasPrefix(string(body), "Task timed out after "):
		res.Err = &FunctionError{Type: ErrorTypeTimeout, Message: "RequestId: " + id + " Error: " + string(body)}
	case status == 200 && isErrorDocument(body):
		res.Err = parseFunctionError(body)
	case status == 200 && len(body) > MaxPayload: // the emulator has no limit; Lambda has
		res.Err = &FunctionError{Type: ErrorTypeTooLarge, Message: fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", MaxPayload)}
	case status == 200:
		res.Payload = body
		return res, nil
	case status == 502 && len(body) == 0:
		res.Err = &FunctionError{Type: ErrorTypeExit, Message: "RequestId: " + id + " Error: Runtime exited without providing a reason"}
	case status == 502:
		res.Err = parseFunctionError(body)
	default:
		return res, fmt.Errorf("emulator answered %d: %.200s", status, body)
	}
	res.Payload, _ = json.Marshal(res.Err)
	return res, nil
}

func isErrorDocument(body []byte) bool {
	var doc map[string]json.RawMessage
	if json.Unmarshal(body, &doc) != nil {
		return false
	}
	_, hasType := doc["errorType"]
	_, hasMsg := doc["errorMessage"]
	_, hasTrace := doc["stackTrace"]
	n := 2
	if hasTrace {
		n = 3
	}
	return hasType && hasMsg && len(doc) == n
}

func parseFunctionError(body []byte) *FunctionError {
	var fe FunctionError
	if err := json.Unmarshal(body, &fe); err == nil && (fe.Type != "" || fe.Message != "") {
		if fe.Type == "" {
			fe.Type = ErrorTypeUnknown
		}
		return &fe
	}
	return &FunctionError{Type: ErrorTypeUnknown, Message: string(body)}
}
