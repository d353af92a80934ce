package rdptest

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
)

// CredentialGate stands in front of the local AWS emulator's SQS (which
// checks no credentials) and plays AWS's part for the notification queue:
// a request signed with queue credentials the simulator never handed out is
// refused with InvalidClientTokenId, one signed with expired credentials
// with 400 ExpiredToken (SQS's JSON protocol shape, with the
// x-amzn-query-error header); others are passed to the emulator unchanged.
// Point the reader's SQS client for LSEG's queue at URL.
type CredentialGate struct {
	srv *http.Server
	url string
}

var sigV4Credential = regexp.MustCompile(`Credential=([A-Z0-9]+)/`)

// StartCredentialGate starts a gate forwarding to upstream (the emulator's URL).
func (s *Server) StartCredentialGate(upstream string) (*CredentialGate, error) {
	if s.notifier() == nil {
		return nil, errNoNotifications
	}
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("rdptest: gate upstream: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("rdptest: gate listen: %w", err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	// A long poll cut short when its caller stops is no news: not logged.
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	g := &CredentialGate{url: "http://" + ln.Addr().String()}
	g.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := sigV4Credential.FindStringSubmatch(r.Header.Get("Authorization"))
		code := "MissingAuthenticationToken"
		if m != nil {
			code = s.checkCredential(m[1])
		}
		if code != "" {
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			w.Header().Set("x-amzn-query-error", code+";Sender")
			status := http.StatusForbidden
			if code == "ExpiredToken" {
				status = http.StatusBadRequest
			}
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"__type":"com.amazon.coral.service#%s","message":"The security token included in the request is invalid or expired"}`, code)
			return
		}
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = g.srv.Serve(ln) }()
	return g, nil
}

// URL is the gate's base URL.
func (g *CredentialGate) URL() string { return g.url }

// Close stops the gate.
func (g *CredentialGate) Close() error { return g.srv.Close() }
