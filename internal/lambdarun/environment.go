package lambdarun

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// environment is one bootstrap process with its own Runtime API listener.
// A fresh listener per process means a killed process's late requests can
// never touch a later process's invocations.
type environment struct {
	pid     int
	api     string // host:port of this process's Runtime API
	started time.Time
	srv     *http.Server
	logw    *os.File // our write end of the log pipe (flush markers); closed at shutdown
	logs    *logReader
	arn     string

	work     chan *invocation    // unbuffered: a send succeeds only when the process waits in /next
	initErr  chan *FunctionError // cap 1: /runtime/init/error
	ready    chan struct{}       // closed at the first /next
	initDur  time.Duration       // written before ready is closed
	exited   chan struct{}       // closed after the process is reaped
	waitErr  error               // written before exited is closed
	stopping chan struct{}       // closed when shutdown starts

	readyOnce    sync.Once
	shutdownOnce sync.Once

	mu  sync.Mutex
	cur *invocation // the invocation in flight, until answered
}

type invocation struct {
	id         string
	payload    []byte
	timeout    time.Duration
	start      time.Time     // written by /next before dispatched is closed
	deadline   time.Time     // likewise
	dispatched chan struct{} // closed when the process has taken the event
	result     chan invResult
}

type invResult struct {
	payload []byte
	err     *FunctionError
}

func newInvocation(id string, payload []byte, timeout time.Duration) *invocation {
	return &invocation{
		id:         id,
		payload:    payload,
		timeout:    timeout,
		dispatched: make(chan struct{}),
		result:     make(chan invResult, 1),
	}
}

// spawn starts the Runtime API listener and the bootstrap process.
func spawn(opts Options, sink *logSink) (*environment, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("log pipe: %w", err)
	}
	e := &environment{
		api:      ln.Addr().String(),
		arn:      opts.functionARN(),
		logw:     pw,
		logs:     newLogReader(sink),
		work:     make(chan *invocation),
		initErr:  make(chan *FunctionError, 1),
		ready:    make(chan struct{}),
		exited:   make(chan struct{}),
		stopping: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", e.handleNext)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", e.handleResponse)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", e.handleError)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", e.handleInitError)
	e.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}

	cmd := exec.Command(opts.Binary)
	cmd.Dir = filepath.Dir(opts.Binary)
	cmd.Env = opts.environ(e.api)
	cmd.Stdout, cmd.Stderr = pw, pw // one pipe: Lambda interleaves both streams too
	cmd.SysProcAttr = procAttr()
	e.started = time.Now()
	if err := cmd.Start(); err != nil {
		ln.Close()
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("exec %s: %w", opts.Binary, err)
	}
	e.pid = cmd.Process.Pid
	// Serve only now: e is complete. The process's first connections wait in
	// the listener's backlog meanwhile.
	go e.srv.Serve(ln) //nolint:errcheck // returns ErrServerClosed at shutdown
	go e.logs.run(pr)
	go func() {
		e.waitErr = cmd.Wait()
		close(e.exited)
	}()
	return e, nil
}

// shutdown kills the process group, reaps the process, stops the listener
// and drains the remaining output. Safe to call concurrently and repeatedly:
// every caller returns once it is done.
func (e *environment) shutdown() {
	e.shutdownOnce.Do(func() {
		close(e.stopping)
		killGroup(e.pid) // also after a self-exit: takes any children along
		<-e.exited
		e.srv.Close()
		e.logw.Close()
		// The reader ends when every holder of the pipe is gone; a process
		// that escaped the group could hold it forever, so do not wait long.
		select {
		case <-e.logs.done:
		case <-time.After(logReaderDrainWait):
		}
	})
}

func (e *environment) handleNext(w http.ResponseWriter, req *http.Request) {
	e.readyOnce.Do(func() {
		e.initDur = time.Since(e.started)
		close(e.ready)
	})
	var inv *invocation
	select {
	case inv = <-e.work:
	case <-req.Context().Done():
		return
	case <-e.stopping:
		writeAPIError(w, http.StatusInternalServerError, "ServiceUnavailable", "environment is shutting down")
		return
	}
	inv.start = time.Now()
	inv.deadline = inv.start.Add(inv.timeout)
	e.mu.Lock()
	e.cur = inv
	e.mu.Unlock()
	close(inv.dispatched)

	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
	h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(inv.deadline.UnixMilli(), 10))
	h.Set("Lambda-Runtime-Invoked-Function-Arn", e.arn)
	h.Set("Lambda-Runtime-Trace-Id", newTraceID())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(inv.payload) // a failed write means the process died: await sees it exit
}

func (e *environment) handleResponse(w http.ResponseWriter, req *http.Request) {
	body, tooLarge, err := readBody(req.Body)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "InvalidRequest", "read body: "+err.Error())
		return
	}
	status := http.StatusAccepted
	var res invResult
	switch {
	case tooLarge:
		status = http.StatusRequestEntityTooLarge
		res.err = &FunctionError{
			Type:    ErrorTypeTooLarge,
			Message: fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", MaxPayload),
		}
	case req.Trailer.Get(errorTypeHeader) != "":
		// aws-lambda-go streams responses; a failed stream ends with trailers.
		res.err = trailerError(req.Trailer)
	default:
		res.payload = body
	}
	if !e.complete(req.PathValue("id"), res) {
		writeAPIError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
		return
	}
	if status != http.StatusAccepted {
		writeAPIError(w, status, res.err.Type, res.err.Message)
		return
	}
	writeJSON(w, status, map[string]string{"status": "OK"})
}

func (e *environment) handleError(w http.ResponseWriter, req *http.Request) {
	body, _, err := readBody(req.Body)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "InvalidRequest", "read body: "+err.Error())
		return
	}
	if !e.complete(req.PathValue("id"), invResult{err: parseFunctionError(body, req.Header.Get(errorTypeHeader))}) {
		writeAPIError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "OK"})
}

func (e *environment) handleInitError(w http.ResponseWriter, req *http.Request) {
	body, _, err := readBody(req.Body)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "InvalidRequest", "read body: "+err.Error())
		return
	}
	select {
	case <-e.ready:
		writeAPIError(w, http.StatusForbidden, "InvalidStateTransition", "init error after initialisation")
		return
	default:
	}
	select {
	case e.initErr <- parseFunctionError(body, req.Header.Get(errorTypeHeader)):
	default: // only the first one counts
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "OK"})
}

// complete hands res to the invocation in flight if its id matches.
func (e *environment) complete(id string, res invResult) bool {
	e.mu.Lock()
	inv := e.cur
	if inv == nil || inv.id != id {
		e.mu.Unlock()
		return false
	}
	e.cur = nil
	e.mu.Unlock()
	inv.result <- res // cap 1, sole sender
	return true
}

func readBody(r io.Reader) (body []byte, tooLarge bool, err error) {
	body, err = io.ReadAll(io.LimitReader(r, MaxPayload+1))
	if err != nil {
		return nil, false, err
	}
	if len(body) > MaxPayload {
		_, _ = io.Copy(io.Discard, r) // so that trailers and the connection stay sane
		return nil, true, nil
	}
	return body, false, nil
}

func parseFunctionError(body []byte, headerType string) *FunctionError {
	var fe FunctionError
	if err := json.Unmarshal(body, &fe); err == nil && (fe.Type != "" || fe.Message != "") {
		if fe.Type == "" {
			fe.Type = headerType
		}
		return &fe
	}
	if headerType == "" {
		headerType = ErrorTypeUnknown
	}
	return &FunctionError{Type: headerType, Message: string(body)}
}

func trailerError(tr http.Header) *FunctionError {
	typ := tr.Get(errorTypeHeader)
	if raw, err := base64.StdEncoding.DecodeString(tr.Get(errorBodyTrailer)); err == nil && len(raw) > 0 {
		return parseFunctionError(raw, typ)
	}
	return &FunctionError{Type: typ, Message: "response stream failed"}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeAPIError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, FunctionError{Type: typ, Message: msg})
}
