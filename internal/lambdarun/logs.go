package lambdarun

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxLogLine splits longer lines (CloudWatch's event limit is 256 KiB too).
const maxLogLine = 256 << 10

// flushMarker is what the runner writes into a process's log pipe (after the
// process answered) to learn when the reader has consumed everything before it.
var flushMarker = []byte("\x00lambdarun-flush ")

// logSink is the in-memory log of a Runner (or of a Pool's Runners).
type logSink struct {
	mu    sync.Mutex
	lines []string
	w     io.Writer
}

func newLogSink(w io.Writer) *logSink { return &logSink{w: w} }

func (s *logSink) add(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, line)
	if s.w != nil {
		_, _ = io.WriteString(s.w, line+"\n") // a failing tee must not stall the function
	}
}

func (s *logSink) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lines)
}

// logReader turns one process's output pipe into lines.
type logReader struct {
	sink   *logSink
	onLine func(string) bool // optional: sees every line; false keeps it out of the sink
	seq    atomic.Uint64     // last flush marker written
	acked  atomic.Uint64     // last flush marker read
	ack    chan struct{}     // cap 1: nudges a waiting flush
	done   chan struct{}     // closed at EOF
}

func newLogReader(sink *logSink) *logReader {
	return &logReader{sink: sink, ack: make(chan struct{}, 1), done: make(chan struct{})}
}

func (l *logReader) run(r io.ReadCloser) {
	defer close(l.done)
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		line = append(line, chunk...)
		if err != nil {
			if len(line) > 0 {
				l.emit(string(line))
			}
			return
		}
		if isPrefix {
			if len(line) >= maxLogLine {
				l.emit(string(line))
				line = line[:0]
			}
			continue
		}
		if i := bytes.LastIndex(line, flushMarker); i >= 0 {
			if seq, err := strconv.ParseUint(string(line[i+len(flushMarker):]), 10, 64); err == nil {
				// Text before the marker is a line the process has not finished:
				// keep it pending.
				line = line[:i]
				l.acked.Store(seq)
				select {
				case l.ack <- struct{}{}:
				default:
				}
				continue
			}
		}
		l.emit(string(line))
		line = line[:0]
	}
}

func (l *logReader) emit(line string) {
	if l.onLine == nil || l.onLine(line) {
		l.sink.add(line)
	}
}

// flush waits (at most timeout) until every byte written to the pipe before
// this call has been turned into log lines. Pipes are FIFO and the marker is
// one atomic write, so once the reader sees it, it has seen everything before.
func (l *logReader) flush(w *os.File, timeout time.Duration) {
	seq := l.seq.Add(1)
	deadline := time.Now().Add(timeout)
	_ = w.SetWriteDeadline(deadline)
	if _, err := fmt.Fprintf(w, "%s%d\n", flushMarker, seq); err != nil {
		return
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for l.acked.Load() < seq {
		select {
		case <-l.ack:
		case <-l.done:
			return
		case <-t.C:
			return
		}
	}
}
