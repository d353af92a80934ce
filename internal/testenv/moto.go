// Package testenv starts the local stand-ins integration tests run against:
// moto_server for AWS (Secrets Manager, DynamoDB, SQS, S3, CloudFormation).
//
// Tests that need moto call [Moto]; under `go test -short` or when moto_server
// is not installed and CFSYNC_REQUIRE_MOTO is unset, they are skipped. CI sets
// CFSYNC_REQUIRE_MOTO=1 (via make test) so a missing emulator fails loudly.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
)

// MotoServer is a running moto_server process.
type MotoServer struct {
	Endpoint string // http://127.0.0.1:PORT
	cmd      *exec.Cmd
	log      *bytes.Buffer
}

// motoBinary finds moto_server on PATH or in the repository's .venv.
func motoBinary() (string, error) {
	if p := os.Getenv("MOTO_SERVER"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("moto_server"); err == nil {
		return p, nil
	}
	if root, err := RepoRoot(); err == nil {
		p := filepath.Join(root, ".venv", "bin", "moto_server")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("moto_server not found (run `make tools`)")
}

// RepoRoot returns the directory holding go.mod.
func RepoRoot() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found")
		}
		dir = parent
	}
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartMoto starts a moto_server on a free port and waits until it answers.
func StartMoto() (*MotoServer, error) {
	bin, err := motoBinary()
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	var log bytes.Buffer
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.Env = append(os.Environ(), "MOTO_ALLOW_NONEXISTENT_REGION=true")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	m := &MotoServer{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd, log: &log}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(m.Endpoint + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return m, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	m.Stop()
	return nil, fmt.Errorf("moto_server did not start: %s", log.String())
}

// Stop kills the server.
func (m *MotoServer) Stop() {
	if m.cmd.Process != nil {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
	}
}

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
	m, err := StartMoto()
	if err != nil {
		if os.Getenv("CFSYNC_REQUIRE_MOTO") != "" {
			t.Fatalf("moto: %v", err)
		}
		t.Skipf("moto unavailable: %v", err)
	}
	t.Cleanup(m.Stop)
	return m
}

// AWSEnv returns the environment a child process (a built bootstrap) needs to
// reach this moto server with dummy credentials.
func (m *MotoServer) AWSEnv() []string {
	return []string{
		"AWS_ENDPOINT_URL=" + m.Endpoint,
		"AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=testing",
		"AWS_SECRET_ACCESS_KEY=testing",
		"AWS_SESSION_TOKEN=testing",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// AWSConfig returns an SDK config pointed at this moto server.
func (m *MotoServer) AWSConfig(ctx context.Context) (aws.Config, error) {
	return config.LoadDefaultConfig(ctx,
		config.WithRegion("us-east-1"),
		config.WithBaseEndpoint(m.Endpoint),
		config.WithCredentialsProvider(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "testing", SecretAccessKey: "testing", SessionToken: "testing", Source: "testenv"}, nil
		})),
	)
}
