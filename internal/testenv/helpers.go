package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/repo"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writers (a log the test
// reads while the code under test writes).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Metric returns every value of the CloudWatch embedded-metric-format
// metric name in emf (one JSON object a line) whose dimensions include dims
// (name, value pairs). A line that is not JSON fails the test.
func Metric(t testing.TB, emf, name string, dims ...string) []float64 {
	t.Helper()
	var out []float64
	sc := bufio.NewScanner(strings.NewReader(emf))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("bad EMF line %q: %v", sc.Text(), err)
		}
		match := true
		for i := 0; i+1 < len(dims); i += 2 {
			match = match && rec[dims[i]] == dims[i+1]
		}
		if !match {
			continue
		}
		switch v := rec[name].(type) {
		case float64:
			out = append(out, v)
		case []any:
			for _, x := range v {
				f, _ := x.(float64)
				out = append(out, f)
			}
		}
	}
	return out
}

// RepoPath is the path of rel (slash-separated, e.g. "docs/cost.md") in the
// repository the test runs in (see repo.Root).
func RepoPath(t testing.TB, rel string) string {
	t.Helper()
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, filepath.FromSlash(rel))
}

// RepoFile is the content of the repository's file rel (see RepoPath).
func RepoFile(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(RepoPath(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// WaitUntil calls done every interval until it returns true or timeout has
// passed, and reports whether it returned true (see [Poll]).
func WaitUntil(timeout, interval time.Duration, done func() bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return Poll(ctx, interval, done) == nil
}

// Poll calls done at once and then every interval until it returns true (nil)
// or ctx ends (ctx's error).
func Poll(ctx context.Context, interval time.Duration, done func() bool) error {
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
	return nil
}
