package rdptest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestAdminEndpoints(t *testing.T) {
	e := newEnv(t, Options{Admin: true})
	call := func(method, path, body string) resp {
		t.Helper()
		req, _ := http.NewRequest(method, e.s.URL()+"/_sim/"+path, strings.NewReader(body))
		return e.do(req)
	}
	r := call("POST", "file-sets", `{"Bucket":"bulk-ESG","PackageID":"P","Name":"n","Status":"PENDING","Files":[{"Name":"a: b","Size":5}]}`)
	var fs FileSet
	if err := json.Unmarshal(r.body, &fs); r.status != 200 || err != nil || fs.ID == "" || len(fs.Files) != 1 {
		t.Fatalf("add file-set: %d %s", r.status, r.body)
	}
	var gt []File
	_ = json.Unmarshal(call("GET", "ground-truth", "").body, &gt)
	if len(gt) != 0 {
		t.Fatalf("PENDING set in ground truth: %+v", gt)
	}
	if r := call("POST", "file-sets/"+fs.ID+"/status", "READY"); r.status != 200 {
		t.Fatalf("status: %d %s", r.status, r.body)
	}
	_ = json.Unmarshal(call("GET", "ground-truth", "").body, &gt)
	if len(gt) != 1 || gt[0].Name != "a: b" || gt[0].MD5 != "" /* no md5 by default */ {
		t.Fatalf("ground truth %+v", gt)
	}
	if r := call("POST", "file-sets/nope/touch", ""); r.status != 400 {
		t.Fatalf("unknown set: %d", r.status)
	}
	if r := call("POST", "faults", "503,times=2\nboom"); r.status != 400 || len(e.s.PendingFaults()) != 0 {
		t.Fatalf("bad fault spec: %d, %d pending", r.status, len(e.s.PendingFaults()))
	}
	if r := call("POST", "faults", "503,times=2\n\n429,path=/auth/"); r.status != 200 || len(e.s.PendingFaults()) != 2 {
		t.Fatalf("faults: %d %s", r.status, r.body)
	}
	if r := call("DELETE", "faults", ""); r.status != 200 || len(e.s.PendingFaults()) != 0 {
		t.Fatal("clear faults")
	}
	at, _ := e.login()
	if r := call("POST", "users/"+DefaultUser+"/revoke", ""); r.status != 200 || e.fileStoreOK(at) {
		t.Fatal("revoke via admin")
	}
	var c Counters
	_ = json.Unmarshal(call("GET", "counters", "").body, &c)
	if c.PasswordGrants != 1 || c.Requests["other"] != 0 {
		t.Fatalf("counters %+v (admin calls must not be counted)", c)
	}
	var log []AuthRecord
	_ = json.Unmarshal(call("GET", "auth-log", "").body, &log)
	if len(log) != 1 || log[0].Grant != "password" {
		t.Fatalf("auth log %+v", log)
	}
	call("POST", "counters/reset", "")
	if e.s.Counters().PasswordGrants != 0 || len(e.s.AuthLog()) != 0 {
		t.Fatal("reset")
	}
	// Without Options.Admin the endpoints do not exist.
	plain := newEnv(t, Options{})
	if r := plain.get("/_sim/counters", ""); r.status != 404 {
		t.Fatalf("admin without Options.Admin: %d", r.status)
	}
}

func TestHelpers(t *testing.T) {
	e := newEnv(t, Options{})
	f := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 10)[0].Files[0]
	if r := e.s3("GET", e.s.PresignedURL(f.ID)); r.status != 200 || len(r.body) != 10 || e.s.Counters().StreamURLs != 0 {
		t.Fatalf("PresignedURL: %d", r.status)
	}
	if got, ok := e.s.LookupFile(f.ID); !ok || got != f {
		t.Fatalf("LookupFile %+v", got)
	}
	at := e.s.IssueServiceToken("svc")
	if !e.fileStoreOK(at) {
		t.Fatal("IssueServiceToken token rejected")
	}
	if len(e.s.AuthLog()) != 0 {
		t.Fatal("helper logged an auth request")
	}
}
