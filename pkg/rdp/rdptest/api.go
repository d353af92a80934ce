package rdptest

import (
	"net/http"
	"strings"
)

func (s *Server) newAPIMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc(EPToken, s.handleTokenV1)
	mux.HandleFunc(EPTokenV2, s.handleTokenV2)
	mux.HandleFunc(EPRevoke, s.handleRevoke)
	mux.HandleFunc(EPPackages, s.handlePackages)
	mux.HandleFunc(EPFileSets, s.handleFileSets)
	mux.HandleFunc(EPFiles, s.handleFiles)
	if s.opts.FileEndpoint {
		mux.HandleFunc(EPFile, s.handleFile)
	}
	mux.HandleFunc(EPStream, s.handleStream)
	s.registerNotifications(mux)
	if s.opts.Admin {
		s.registerAdmin(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		gatewayError(w, http.StatusNotFound, "Resource not found")
	})
	return mux
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, adminPrefix) && s.opts.Admin {
		s.apiMux.ServeHTTP(w, r)
		return
	}
	_, pattern := s.apiMux.Handler(r)
	switch pattern {
	case EPToken, EPTokenV2, EPRevoke, EPPackages, EPFileSets, EPFiles, EPFile, EPStream:
	default:
		pattern = EPOther
	}
	s.count(pattern)
	if f := s.takeFault(HostAPI, r.URL.Path, ""); f != nil {
		s.applyAPIFault(w, r, f)
		return
	}
	s.apiMux.ServeHTTP(w, r)
}
