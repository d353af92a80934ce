// Package testenv starts the local stand-ins integration tests run against:
// moto_server for AWS (Secrets Manager, DynamoDB, SQS, S3, CloudFormation).
//
// Tests that need moto call [Moto]; under `go test -short` or when moto_server
// is not installed and CFSYNC_REQUIRE_MOTO is unset, they are skipped. CI sets
// CFSYNC_REQUIRE_MOTO=1 (via make test) so a missing emulator fails loudly.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/cfsync/cfsync/internal/childproc"
	"github.com/cfsync/cfsync/internal/repo"
)

// Reset wipes every resource (moto's reset API).
func (m *MotoServer) Reset() error {
	resp, err := http.Post(m.Endpoint+"/moto-api/reset", "application/json", nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Moto starts a moto_server for the test and stops it at cleanup. It skips the
// test under -short, or when moto_server is missing and CFSYNC_REQUIRE_MOTO is unset.
func Moto(t testing.TB) *MotoServer {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs moto_server (skipped with -short)")
	}
	m, err := StartMoto(context.Background(), "")
	if err != nil {
		if os.Getenv("CFSYNC_REQUIRE_MOTO") != "" {
			t.Fatalf("moto: %v", err)
		}
		t.Skipf("moto unavailable: %v", err)
	}
	t.Cleanup(m.Stop)
	return m
}

// Region is the AWS region of the local stand-ins (moto's default).
const Region = "us-east-1"

// AWSConfig is an SDK configuration for the moto_server at endpoint, in
// region, with dummy credentials.
func AWSConfig(endpoint, region string) aws.Config {
	return aws.Config{
		Region:       region,
		BaseEndpoint: aws.String(endpoint),
		Credentials: aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "testing", SecretAccessKey: "testing", Source: "testenv"}, nil
		})),
	}
}

// AWSEnv is the environment a child process (a built bootstrap) needs to
// reach the moto_server at endpoint, in region, with dummy credentials.
func AWSEnv(endpoint, region string) []string {
	return []string{
		"AWS_ENDPOINT_URL=" + endpoint,
		"AWS_REGION=" + region,
		"AWS_DEFAULT_REGION=" + region,
		"AWS_ACCESS_KEY_ID=testing",
		"AWS_SECRET_ACCESS_KEY=testing",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// AWSEnv is the environment a child process needs to reach this moto server
// (see [AWSEnv]).
func (m *MotoServer) AWSEnv() []string { return AWSEnv(m.Endpoint, Region) }

// AWSConfig is an SDK configuration pointed at this moto server (see
// [AWSConfig]).
func (m *MotoServer) AWSConfig() aws.Config { return AWSConfig(m.Endpoint, Region) }

// MotoServer is a running moto_server process.
type MotoServer struct {
	Endpoint string // http://127.0.0.1:PORT
	Port     int
	PID      int
	cmd      *exec.Cmd
	out      *childproc.TailBuffer
	exited   chan struct{}
	stopOnce sync.Once
}

// MotoBinary finds moto_server: $MOTO_SERVER, then PATH, then root/.venv/bin
// (where `make tools` installs it).
func MotoBinary(root string) (string, error) {
	if p := os.Getenv("MOTO_SERVER"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("moto_server"); err == nil {
		return p, nil
	}
	if root != "" {
		p := filepath.Join(root, ".venv", "bin", "moto_server")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("moto_server not found on PATH or in .venv (run `make tools`, or pip install \"moto[server]\")")
}

// StartMoto starts moto_server on a free loopback port, in its own process
// group and (on Linux) with a parent-death signal, and waits until it answers.
func StartMoto(ctx context.Context, root string) (*MotoServer, error) {
	if root == "" {
		root, _ = repo.Root()
	}
	bin, err := MotoBinary(root)
	if err != nil {
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	port, err := childproc.FreePort()
	if err != nil {
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	out := &childproc.TailBuffer{Max: 16 << 10}
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "MOTO_ALLOW_NONEXISTENT_REGION=true")
	// Its own process group, so that a Ctrl-C in the terminal reaches only the
	// demo, which then stops moto_server itself; on Linux it dies with us.
	cmd.SysProcAttr = childproc.Attr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	m := &MotoServer{
		Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), Port: port, PID: cmd.Process.Pid,
		cmd: cmd, out: out, exited: make(chan struct{}),
	}
	go func() { _ = cmd.Wait(); close(m.exited) }()
	if err := m.waitUp(ctx); err != nil {
		m.Stop()
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	return m, nil
}

// waitUp polls moto_server until it answers; it fails when moto_server exits,
// ctx ends or 60 s pass.
func (m *MotoServer) waitUp(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	exited := false
	err := Poll(wctx, 100*time.Millisecond, func() bool {
		if resp, err := client.Get(m.Endpoint + "/moto-api/"); err == nil {
			resp.Body.Close()
			return true
		}
		select {
		case <-m.exited:
			exited = true
		default:
		}
		return exited
	})
	switch {
	case exited:
		return fmt.Errorf("it exited: %s", m.out.String())
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("no answer on %s after 60s: %s", m.Endpoint, m.out.String())
	}
	return nil
}

// Stop terminates moto_server and its process group (SIGTERM, then SIGKILL
// after 3 s) and waits for it.
func (m *MotoServer) Stop() {
	m.stopOnce.Do(func() {
		childproc.TerminateGroup(m.PID)
		select {
		case <-m.exited:
		case <-time.After(3 * time.Second):
		}
		childproc.KillGroup(m.PID)
		<-m.exited
	})
}

// Output is the tail of moto_server's output.
func (m *MotoServer) Output() string { return m.out.String() }

// MotoConfig starts a moto_server for the test (see [Moto]) and returns it
// with an SDK config pointed at it.
func MotoConfig(t testing.TB) (*MotoServer, aws.Config) {
	t.Helper()
	m := Moto(t)
	return m, m.AWSConfig()
}
