package rdptest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The /_sim/ control endpoints (Options.Admin, for out-of-process use through cmd/rdpsim). They
// need no token, are not counted and never fault:
//
//	GET    /_sim/counters                  Counters
//	POST   /_sim/counters/reset            ResetCounters
//	GET    /_sim/auth-log                  AuthLog
//	GET    /_sim/ground-truth              GroundTruth
//	GET    /_sim/file-sets                 FileSets
//	POST   /_sim/file-sets                 AddFileSet (body: FileSetSpec JSON) -> FileSet
//	POST   /_sim/file-sets/{id}/touch      TouchFileSet
//	POST   /_sim/file-sets/{id}/status     SetFileSetStatus (body: the status, e.g. READY)
//	DELETE /_sim/file-sets/{id}            DeleteFileSet
//	GET    /_sim/faults                    PendingFaults
//	POST   /_sim/faults                    Inject (body: one ParseFault spec per line)
//	DELETE /_sim/faults                    ClearFaults
//	POST   /_sim/users/{username}/revoke   RevokeSessions
//	POST   /_sim/expire-access-tokens      ExpireAccessTokens
//	POST   /_sim/expire-session-tokens     ExpireSessionTokens (presigned URLs answer 400 ExpiredToken)
//	POST   /_sim/claims/remove             RemoveClaim (body: the bucket; empty: the whole file store)
//	POST   /_sim/claims/restore            RestoreClaim (body: the bucket)
const adminPrefix = "/_sim/"

func (s *Server) registerAdmin(mux *http.ServeMux) {
	ok := func(w http.ResponseWriter) { writeJSON(w, http.StatusOK, map[string]bool{"ok": true}) }
	// guard turns the panics of the helpers (unknown ids, bad specs) into 400s.
	guard := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprint(v)})
				}
			}()
			h(w, r)
		}
	}
	mux.HandleFunc("GET /_sim/counters", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.Counters()) })
	mux.HandleFunc("POST /_sim/counters/reset", func(w http.ResponseWriter, r *http.Request) { s.ResetCounters(); ok(w) })
	mux.HandleFunc("GET /_sim/auth-log", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.AuthLog()) })
	mux.HandleFunc("GET /_sim/ground-truth", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.GroundTruth()) })
	mux.HandleFunc("GET /_sim/file-sets", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.FileSets()) })
	mux.HandleFunc("POST /_sim/file-sets", guard(func(w http.ResponseWriter, r *http.Request) {
		var spec FileSetSpec
		if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "file-set spec: " + err.Error()})
			return
		}
		writeJSON(w, 200, s.AddFileSet(spec))
	}))
	mux.HandleFunc("POST /_sim/file-sets/{id}/touch", guard(func(w http.ResponseWriter, r *http.Request) {
		s.TouchFileSet(r.PathValue("id"))
		ok(w)
	}))
	mux.HandleFunc("POST /_sim/file-sets/{id}/status", guard(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 64))
		s.SetFileSetStatus(r.PathValue("id"), strings.TrimSpace(string(b)))
		ok(w)
	}))
	mux.HandleFunc("DELETE /_sim/file-sets/{id}", guard(func(w http.ResponseWriter, r *http.Request) {
		s.DeleteFileSet(r.PathValue("id"))
		ok(w)
	}))
	mux.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.PendingFaults()) })
	mux.HandleFunc("POST /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		var faults []Fault
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line == "" {
				continue
			}
			f, err := ParseFault(line)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
				return
			}
			faults = append(faults, f)
		}
		s.Inject(faults...)
		ok(w)
	})
	mux.HandleFunc("DELETE /_sim/faults", func(w http.ResponseWriter, r *http.Request) { s.ClearFaults(); ok(w) })
	mux.HandleFunc("POST /_sim/users/{username}/revoke", guard(func(w http.ResponseWriter, r *http.Request) {
		s.RevokeSessions(r.PathValue("username"))
		ok(w)
	}))
	mux.HandleFunc("POST /_sim/expire-access-tokens", func(w http.ResponseWriter, r *http.Request) { s.ExpireAccessTokens(); ok(w) })
	mux.HandleFunc("POST /_sim/expire-session-tokens", func(w http.ResponseWriter, r *http.Request) { s.ExpireSessionTokens(); ok(w) })
	mux.HandleFunc("POST /_sim/claims/{op}", s.adminClaims)
}

// ParseFault parses a fault spec: "kind[,key=value...]" with keys times, host (api|s3), path
// (a path prefix), every (fire on every Nth match), file (a file id), retry-after and stall (Go durations) and after (bytes).
// Example: "503,times=2,path=/file-store/v1/file-sets" or "truncate,file=4a2b-...,after=1024".
func ParseFault(spec string) (Fault, error) {
	parts := strings.Split(strings.TrimSpace(spec), ",")
	f := Fault{Kind: FaultKind(strings.TrimSpace(parts[0]))}
	known := false
	for _, k := range FaultKinds {
		known = known || k == f.Kind
	}
	if !known {
		return Fault{}, fmt.Errorf("fault %q: unknown kind %q (want one of %v)", spec, f.Kind, FaultKinds)
	}
	for _, kv := range parts[1:] {
		k, v, found := strings.Cut(strings.TrimSpace(kv), "=")
		if !found {
			return Fault{}, fmt.Errorf("fault %q: %q is not key=value", spec, kv)
		}
		var err error
		switch k {
		case "times":
			f.Times, err = strconv.Atoi(v)
		case "every":
			f.Every, err = strconv.Atoi(v)
		case "host":
			f.Host = FaultHost(v)
			if f.Host != HostAPI && f.Host != HostS3 {
				err = fmt.Errorf("want api or s3")
			}
		case "path":
			f.PathPrefix = v
		case "file":
			f.FileID = v
		case "retry-after":
			f.RetryAfter, err = time.ParseDuration(v)
		case "stall":
			f.StallFor, err = time.ParseDuration(v)
		case "after":
			f.After, err = strconv.ParseInt(v, 10, 64)
		default:
			err = fmt.Errorf("unknown key")
		}
		if err != nil {
			return Fault{}, fmt.Errorf("fault %q: %s: %w", spec, k, err)
		}
	}
	return f, nil
}

// adminClaims serves POST /_sim/claims/remove and /_sim/claims/restore (body: the bucket).
func (s *Server) adminClaims(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<10))
	switch bucket := strings.TrimSpace(string(b)); r.PathValue("op") {
	case "remove":
		s.RemoveClaim(bucket)
	case "restore":
		s.RestoreClaim(bucket)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "want /_sim/claims/remove or /_sim/claims/restore"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}
