// Command echo is the test function of package lambdarun: one Lambda whose
// event says what to do. It is built by the package's TestMain.
//
// Init behaviour (before lambda.Start) comes from the environment:
// ECHO_INIT=exit (exit 3), post (POST /runtime/init/error, then exit 1),
// hang (never start), sleep:<duration> (slow init); ECHO_INIT_FAIL_FILE=<path>
// exits at init while that file exists.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Action string          `json:"action"`
	Echo   json.RawMessage `json:"echo,omitempty"`
	Msg    string          `json:"msg,omitempty"`
	Sleep  string          `json:"sleep,omitempty"`
	Code   int             `json:"code,omitempty"`
	Vars   []string        `json:"vars,omitempty"`
	Lines  int             `json:"lines,omitempty"`
	Size   int             `json:"size,omitempty"`
	Dir    string          `json:"dir,omitempty"`
}

type customError struct{ msg string }

func (e *customError) Error() string { return e.msg }

type info struct {
	PID         int               `json:"pid"`
	RequestID   string            `json:"requestId,omitempty"`
	ARN         string            `json:"arn,omitempty"`
	RemainingMs int64             `json:"remainingMs,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	ChildPID    int               `json:"childPid,omitempty"`
}

func handle(ctx context.Context, ev event) (any, error) {
	switch ev.Action {
	case "echo":
		return ev.Echo, nil
	case "error":
		return nil, &customError{msg: ev.Msg}
	case "sleep": // ignores ctx: a stuck function
		d, err := time.ParseDuration(ev.Sleep)
		if err != nil {
			return nil, err
		}
		time.Sleep(d)
		return info{PID: os.Getpid()}, nil
	case "panic":
		panic(ev.Msg)
	case "exit":
		fmt.Fprintln(os.Stderr, "exiting with", ev.Code)
		os.Exit(ev.Code)
	case "info":
		out := info{PID: os.Getpid(), Env: map[string]string{}}
		if lc, ok := lambdacontext.FromContext(ctx); ok {
			out.RequestID, out.ARN = lc.AwsRequestID, lc.InvokedFunctionArn
		}
		if dl, ok := ctx.Deadline(); ok {
			out.RemainingMs = time.Until(dl).Milliseconds()
		}
		for _, v := range ev.Vars {
			out.Env[v] = os.Getenv(v)
		}
		return out, nil
	case "log":
		for i := range ev.Lines {
			if i%2 == 0 {
				fmt.Printf("%s %d\n", ev.Msg, i)
			} else {
				fmt.Fprintf(os.Stderr, "%s %d\n", ev.Msg, i)
			}
		}
		if ev.Size > 0 {
			fmt.Println(strings.Repeat("x", ev.Size))
		}
		return "logged", nil
	case "big":
		return strings.Repeat("x", ev.Size), nil
	case "spawn": // a grandchild that never ends on its own
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), "ECHO_INIT=hang")
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return info{PID: os.Getpid(), ChildPID: cmd.Process.Pid}, nil
	case "rendezvous": // announce, then wait until the test says go
		if err := os.WriteFile(fmt.Sprintf("%s/started-%d", ev.Dir, os.Getpid()), nil, 0o600); err != nil {
			return nil, err
		}
		for {
			if _, err := os.Stat(ev.Dir + "/go"); err == nil {
				return info{PID: os.Getpid()}, nil
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil, fmt.Errorf("unknown action %q", ev.Action)
}

func initialise() {
	if f := os.Getenv("ECHO_INIT_FAIL_FILE"); f != "" {
		if _, err := os.Stat(f); err == nil {
			fmt.Fprintln(os.Stderr, "init failed: fail file present")
			os.Exit(4)
		}
	}
	mode := os.Getenv("ECHO_INIT")
	switch {
	case mode == "exit":
		fmt.Fprintln(os.Stderr, "init failed: ECHO_INIT=exit")
		os.Exit(3)
	case mode == "post":
		body := `{"errorMessage":"bad config: ECHO_INIT","errorType":"ConfigError"}`
		url := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/init/error"
		resp, err := http.Post(url, "application/json", bytes.NewBufferString(body))
		if err == nil {
			resp.Body.Close()
		}
		os.Exit(1)
	case mode == "hang":
		for {
			time.Sleep(time.Hour)
		}
	case strings.HasPrefix(mode, "sleep:"):
		d, err := time.ParseDuration(strings.TrimPrefix(mode, "sleep:"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		time.Sleep(d)
	}
}

func main() {
	initialise()
	fmt.Println("init done")
	lambda.Start(handle)
}
