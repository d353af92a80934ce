package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Moto is a moto_server process the pipeline started.
type Moto struct {
	Endpoint string // http://127.0.0.1:PORT
	Port     int
	PID      int
	cmd      *exec.Cmd
	out      *tailBuffer
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
func StartMoto(ctx context.Context, root string) (*Moto, error) {
	bin, err := MotoBinary(root)
	if err != nil {
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	out := &tailBuffer{max: 16 << 10}
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "MOTO_ALLOW_NONEXISTENT_REGION=true")
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	m := &Moto{
		Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), Port: port, PID: cmd.Process.Pid,
		cmd: cmd, out: out, exited: make(chan struct{}),
	}
	go func() { _ = cmd.Wait(); close(m.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(m.Endpoint + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return m, nil
		}
		select {
		case <-m.exited:
			return nil, fmt.Errorf("start moto_server: it exited: %s", strings.TrimSpace(out.String()))
		case <-ctx.Done():
			m.Stop()
			return nil, fmt.Errorf("start moto_server: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.Stop()
			return nil, fmt.Errorf("start moto_server: no answer on %s after 60s: %s", m.Endpoint, strings.TrimSpace(out.String()))
		}
	}
}

// Stop terminates moto_server and its process group (SIGTERM, then SIGKILL
// after 3 s) and waits for it.
func (m *Moto) Stop() {
	m.stopOnce.Do(func() {
		terminateGroup(m.PID)
		select {
		case <-m.exited:
		case <-time.After(3 * time.Second):
		}
		killGroup(m.PID)
		<-m.exited
	})
}

// Output is the tail of moto_server's output.
func (m *Moto) Output() string { return m.out.String() }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
