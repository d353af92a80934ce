// Package childproc holds what the tests and the local demo need to run a
// helper process beside them (moto_server, aws-lambda-rie): a free loopback
// port to give it, a process group so that stopping it also ends whatever it
// started, and the tail of its output for error messages.
package childproc

import (
	"net"
	"strings"
	"sync"
)

// FreePort returns a free TCP port on 127.0.0.1 (reserved, then released for
// the child to listen on).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// TailBuffer keeps the last Max bytes written to it. It is safe for
// concurrent use.
type TailBuffer struct {
	Max int

	mu sync.Mutex
	b  []byte
}

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.Max; over > 0 {
		t.b = t.b[over:]
	}
	return len(p), nil
}

// String is the kept tail without leading or trailing white space.
func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
