package rdptest

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests for the simulator's RDP-faithful defaults (docs/rdp.md), one per behaviour, each with
// the option that restores the old behaviour where one exists.

// defaultAndOption runs check on the simulator's defaults (subtest "default") and with opts
// (subtest name); withOpt says which.
func defaultAndOption(t *testing.T, name string, opts Options, check func(t *testing.T, e *env, at string, withOpt bool)) {
	for _, withOpt := range []bool{false, true} {
		sub, o := "default", Options{}
		if withOpt {
			sub, o = name, opts
		}
		t.Run(sub, func(t *testing.T) {
			e, at := newTokenEnv(t, o)
			check(t, e, at, withOpt)
		})
	}
}

func TestNoFileEndpointByDefault(t *testing.T) {
	defaultAndOption(t, "FileEndpoint", Options{FileEndpoint: true}, func(t *testing.T, e *env, at string, withOpt bool) {
		f := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 10)[0].Files[0]
		r := e.get("/file-store/v1/files/"+f.ID, at)
		want := 404
		if withOpt {
			want = 200
		}
		if r.status != want {
			t.Fatalf("GET /files/{id}: %d %s", r.status, r.body)
		}
		if !withOpt && r.gatewayMessage(t) != "Resource not found" {
			t.Fatalf("not the gateway's generic 404: %s", r.body)
		}
	})
}

func TestFileListingFields(t *testing.T) {
	defaultAndOption(t, "MD5", Options{MD5: true}, func(t *testing.T, e *env, at string, withOpt bool) {
		fs := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 10)[0]
		items := e.get("/file-store/v1/files?filesetId="+fs.ID, at).items(t)
		if len(items) != 1 {
			t.Fatalf("items %v", items)
		}
		var keys []string
		for k := range items[0] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		want := []string{"created", "fileSizeInBytes", "filename", "filesetId", "id", "modified"}
		if withOpt {
			want = []string{"created", "fileSizeInBytes", "filename", "filesetId", "id", "md5", "modified"}
		}
		if !slices.Equal(keys, want) {
			t.Fatalf("fields %v, want %v", keys, want)
		}
	})
}

func TestWrongPasswordInvalidGrantOption(t *testing.T) {
	e := newEnv(t, Options{WrongPasswordInvalidGrant: true})
	r := e.post("/auth/oauth2/v1/token", passwordFormWith("password", "nope"), "", "")
	if code, desc := oauthErr(t, r); r.status != 400 || code != "invalid_grant" || desc != "Invalid username or password." {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

// TestNotFoundBodies: unknown bucket, file-set and file answer RDP's 404 body with a numeric status.
func TestNotFoundBodies(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 10)
	tests := []struct{ path, code, what string }{
		{"/file-store/v1/file-sets?bucket=nope", "EDS.CFS.NoBucketFound", "nope"},
		{"/file-store/v1/packages?bucketName=nope", "EDS.CFS.NoBucketFound", "nope"},
		{"/file-store/v1/files?filesetId=nofs", "EDS.CFS.NoFilesetFound", "nofs"},
		{"/file-store/v1/files/nof/stream?doNotRedirect=true", "EDS.CFS.NoFileFound", "nof"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			r := e.with(t).get(tc.path, at)
			body, _ := r.json(t)["error"].(map[string]any)
			if r.status != 404 || body["code"] != tc.code || body["status"] != float64(404) ||
				body["message"] != "No resource found for: "+tc.what || body["id"] == "" {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
}

// TestMissingClaim: RemoveClaim makes the file store answer the flat 403 body.
func TestMissingClaim(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	fs := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 10)[0]
	other := e.s.AddFileSet(FileSetSpec{Bucket: "bulk-Other", PackageID: "P9", Name: "o", Files: []FileSpec{{Name: "o.csv", Size: 1}}})
	e.s.RemoveClaim(strings.ToUpper(DefaultBucket))
	for _, p := range []string{
		"/file-store/v1/file-sets?bucket=" + DefaultBucket,
		"/file-store/v1/packages?bucketName=" + DefaultBucket,
		"/file-store/v1/files?filesetId=" + fs.ID,
		"/file-store/v1/files/" + fs.Files[0].ID + "/stream?doNotRedirect=true",
	} {
		r := e.with(t).get(p, at)
		m := r.json(t)
		if r.status != 403 || m["status"] != float64(403) || m["message"] != "Access denied: Insufficient claims to access this resource" {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
	}
	if r := e.get("/file-store/v1/files/"+other.Files[0].ID+"/stream?doNotRedirect=true", at); r.status != 200 {
		t.Fatalf("another bucket: %d", r.status)
	}
	e.s.RestoreClaim(DefaultBucket)
	if r := e.get("/file-store/v1/files?filesetId="+fs.ID, at); r.status != 200 {
		t.Fatalf("restored: %d", r.status)
	}
	e.s.RemoveClaim("")
	if r := e.get("/file-store/v1/packages", at); r.status != 403 {
		t.Fatalf("whole file store: %d", r.status)
	}
}

// TestPresignedURLShape: RDP's path and query layout, 6 h expiry, signature last.
func TestPresignedURLShape(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	e.s.AddPackage(DefaultBucket, "4e94-6d63-fea034dc-90e2-de33895bd4e9", "ESG Bulk")
	fs := e.s.AddFileSet(FileSetSpec{Bucket: DefaultBucket, PackageID: "4e94-6d63-fea034dc-90e2-de33895bd4e9", Name: "s",
		Files: []FileSpec{{Name: "ESG Delta 2025-01-06T09:00:00.000Z.jsonl.gz", Size: 3}}})
	u := e.streamURL(fs.Files[0].ID, at)
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(e.s.S3URL()) +
		`/ESG%20Bulk/\d{4}/\d{2}/\d{2}/ESG%20Delta%202025-01-06T09%3A00%3A00\.000Z\.jsonl\.gz` +
		`\?x-request-Id=[0-9a-f-]{36}&X-Amz-Security-Token=[A-Za-z0-9%]+&X-Amz-Algorithm=AWS4-HMAC-SHA256` +
		`&X-Amz-Date=\d{8}T\d{6}Z&X-Amz-SignedHeaders=host&X-Amz-Expires=21600` +
		`&X-Amz-Credential=ASIA[0-9A-F]+%2F\d{8}%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=[0-9a-f]{64}$`)
	if !re.MatchString(u) {
		t.Fatalf("URL shape:\n%s", u)
	}
	if r := e.s3("GET", u); r.status != 200 || len(r.body) != 3 {
		t.Fatalf("%d", r.status)
	}
	// Two files with the same name on the same day in the same package get distinct keys.
	twin := e.s.AddFileSet(FileSetSpec{Bucket: DefaultBucket, PackageID: "4e94-6d63-fea034dc-90e2-de33895bd4e9", Name: "t",
		Files: []FileSpec{{Name: "ESG Delta 2025-01-06T09:00:00.000Z.jsonl.gz", Size: 5}}})
	if r := e.s3("GET", e.streamURL(twin.Files[0].ID, at)); r.status != 200 || len(r.body) != 5 {
		t.Fatalf("twin: %d %d bytes", r.status, len(r.body))
	}
	e.clock.Advance(6*time.Hour - time.Second)
	if r := e.s3("GET", u, "Range", "bytes=0-0"); r.status != 206 {
		t.Fatalf("just before 6 h: %d", r.status)
	}
	e.clock.Advance(time.Second)
	if r := e.s3("GET", u); r.status != 403 || !strings.Contains(string(r.body), "Request has expired") {
		t.Fatalf("after 6 h: %d %s", r.status, r.body)
	}
}

// TestExpiredSessionToken: a URL whose session token ended answers 400 ExpiredToken before its
// X-Amz-Expires; a new /stream URL works.
func TestExpiredSessionToken(t *testing.T) {
	t.Run("ExpireSessionTokens", func(t *testing.T) {
		e, at := newTokenEnv(t, Options{})
		f := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 10)[0].Files[0]
		u := e.streamURL(f.ID, at)
		e.s.ExpireSessionTokens()
		if r := e.s3("GET", u); r.status != 400 || s3Code(r) != "ExpiredToken" {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if r := e.s3("GET", e.streamURL(f.ID, at)); r.status != 200 {
			t.Fatalf("new URL: %d", r.status)
		}
		if e.s.Counters().S3ExpiredTokens != 1 {
			t.Fatal("S3ExpiredTokens")
		}
	})
	t.Run("SessionTokenTTL", func(t *testing.T) {
		e, at := newTokenEnv(t, Options{SessionTokenTTL: time.Hour})
		f := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 10)[0].Files[0]
		u := e.streamURL(f.ID, at)
		e.clock.Advance(time.Hour)
		if r := e.s3("GET", u); r.status != 400 || s3Code(r) != "ExpiredToken" {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("fault on /stream", func(t *testing.T) {
		e, at := newTokenEnv(t, Options{})
		f := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 10)[0].Files[0]
		e.s.Inject(Fault{Kind: FaultExpiredToken, Host: HostAPI})
		if r := e.s3("GET", e.streamURL(f.ID, at)); r.status != 400 || s3Code(r) != "ExpiredToken" {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
}

func TestS3Throttle429Option(t *testing.T) {
	e, at := newTokenEnv(t, Options{S3Throttle429: true})
	f := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 10)[0].Files[0]
	e.s.Inject(Fault{Kind: FaultTooManyRequests, Host: HostS3})
	if r := e.s3("GET", e.streamURL(f.ID, at)); r.status != 429 || s3Code(r) != "SlowDown" {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

// TestRevokeClientIDInBody: revoke takes the app key as Basic "appkey:" or client_id in the body.
func TestRevokeClientIDInBody(t *testing.T) {
	e := newEnv(t, Options{})
	at, _ := e.login()
	r := e.post("/auth/oauth2/v1/revoke", url.Values{"token": {at}, "client_id": {DefaultAppKey}}, "", "")
	if r.status != 200 || e.fileStoreOK(at) {
		t.Fatalf("revoke with client_id in the body: %d %s", r.status, r.body)
	}
	if r := e.post("/auth/oauth2/v1/revoke", url.Values{"token": {at}, "client_id": {"bogus"}}, "", ""); r.status != 401 {
		t.Fatalf("unknown client_id: %d", r.status)
	}
}

// TestAvailableTo: a file-set past availableTo drops out of the listing and its files can no
// longer be listed or downloaded; ListExpired keeps the old behaviour.
func TestAvailableTo(t *testing.T) {
	defaultAndOption(t, "ListExpired", Options{ListExpired: true}, func(t *testing.T, e *env, at string, withOpt bool) {
		short := e.s.AddFileSet(FileSetSpec{Bucket: DefaultBucket, PackageID: DefaultPackageID, Name: "short",
			AvailableTo: e.clock.Now().Add(time.Hour), Files: []FileSpec{{Name: "a.csv", Size: 1}}})
		e.s.AddFileSet(FileSetSpec{Bucket: DefaultBucket, PackageID: DefaultPackageID, Name: "long"})
		list := "/file-store/v1/file-sets?bucket=" + DefaultBucket
		if n := len(e.get(list, at).items(t)); n != 2 {
			t.Fatalf("before availableTo: %d", n)
		}
		e.clock.Advance(time.Hour)
		at, _ = e.s.IssueTokens(DefaultUser, DefaultAppKey)
		items := e.get(list, at).items(t)
		files := e.get("/file-store/v1/files?filesetId="+short.ID, at)
		stream := e.get("/file-store/v1/files/"+short.Files[0].ID+"/stream?doNotRedirect=true", at)
		if withOpt == (len(items) == 1) || withOpt == (files.status == 404) || withOpt == (stream.status == 404) {
			t.Fatalf("after availableTo: %d listed, files %d, stream %d", len(items), files.status, stream.status)
		}
	})
}

// TestAdminFidelityEndpoints: the new hooks are reachable out of process (cmd/rdpsim).
func TestAdminFidelityEndpoints(t *testing.T) {
	e, at := newTokenEnv(t, Options{Admin: true})
	f := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 10)[0].Files[0]
	u := e.streamURL(f.ID, at)
	post := func(path, body string) {
		t.Helper()
		req, _ := http.NewRequest("POST", e.s.URL()+"/_sim/"+path, strings.NewReader(body))
		if r := e.do(req); r.status != 200 {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
	}
	post("expire-session-tokens", "")
	if r := e.s3("GET", u); r.status != 400 || s3Code(r) != "ExpiredToken" {
		t.Fatalf("after expire-session-tokens: %d", r.status)
	}
	post("claims/remove", DefaultBucket)
	if r := e.get("/file-store/v1/file-sets?bucket="+DefaultBucket, at); r.status != 403 {
		t.Fatalf("after claims/remove: %d", r.status)
	}
	post("claims/restore", DefaultBucket)
	if r := e.get("/file-store/v1/file-sets?bucket="+DefaultBucket, at); r.status != 200 {
		t.Fatalf("after claims/restore: %d", r.status)
	}
}

// TestETags: a plain MD5 up to 256 MiB, S3's multipart ETag above (verifiable from the content
// and the part size), none above ETagMaxSize; If-Match pins the object.
func TestETags(t *testing.T) {
	e, at := newTokenEnv(t, Options{ETagMaxSize: 300 << 20})
	fs := e.s.AddFileSet(FileSetSpec{Bucket: DefaultBucket, PackageID: DefaultPackageID, Name: "e", Files: []FileSpec{
		{Name: "small", Size: 1000}, {Name: "multipart", Size: 260 << 20}, {Name: "huge", Size: 301 << 20},
	}})
	small, multi, huge := fs.Files[0], fs.Files[1], fs.Files[2]
	etagOf := func(f File) string {
		r := e.s3("GET", e.streamURL(f.ID, at), "Range", "bytes=0-0")
		if r.status != 206 {
			t.Fatalf("%s: %d", f.Name, r.status)
		}
		return r.header.Get("ETag")
	}
	if got := etagOf(small); got != `"`+ContentMD5(small.ID, small.Size)+`"` {
		t.Fatalf("small: %s", got)
	}
	// 260 MiB in 8 MiB parts: 33 parts, the last one 4 MiB.
	want := `"` + MultipartETag(multi.ID, multi.Size, MultipartPartSize) + `"`
	if got := etagOf(multi); got != want || !strings.HasSuffix(got, `-33"`) {
		t.Fatalf("multipart: %s, want %s", got, want)
	}
	if got := etagOf(huge); got != "" {
		t.Fatalf("over ETagMaxSize: %q", got)
	}
	u := e.streamURL(small.ID, at)
	if r := e.s3("GET", u, "If-Match", `"`+ContentMD5(small.ID, small.Size)+`"`); r.status != 200 {
		t.Fatalf("If-Match current: %d", r.status)
	}
	if r := e.s3("GET", u, "If-Match", `"0123"`); r.status != 412 || s3Code(r) != "PreconditionFailed" {
		t.Fatalf("If-Match stale: %d", r.status)
	}
}
