package rdptest

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// listAll follows @nextLink from path and returns every item and the number of pages.
func (e *env) listAll(path, at string) ([]map[string]any, int) {
	e.t.Helper()
	var items []map[string]any
	pages := 0
	for path != "" {
		r := e.get(path, at)
		if r.status != 200 {
			e.t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		pages++
		m := r.json(e.t)
		for _, v := range m["value"].([]any) {
			items = append(items, v.(map[string]any))
		}
		path = ""
		if next, ok := m["@nextLink"].(string); ok {
			if !strings.HasPrefix(next, "/file-store/v1/") {
				e.t.Fatalf("@nextLink %q is not a path relative to the API host", next)
			}
			path = next
		}
		if pages > 1000 {
			e.t.Fatal("paging does not end")
		}
	}
	return items, pages
}

func ids(items []map[string]any) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it["id"].(string)
	}
	return out
}

func TestFileSetPaging(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	sets := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 60, 2, 10)
	want := make([]string, len(sets))
	for i, fs := range sets {
		want[i] = fs.ID
	}
	slices.Sort(want) // RDP lists file-sets in ascending id order
	tests := []struct {
		query     string
		wantPages int
	}{
		{"", 3}, // default page size 25
		{"&pageSize=25", 3},
		{"&pageSize=7", 9},
		{"&pageSize=100", 1},
		{"&pageSize=60", 1},
		{"&pageSize=59", 2},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			items, pages := e.with(t).listAll("/file-store/v1/file-sets?bucket=bulk-ESG&packageId="+DefaultPackageID+tc.query, at)
			if pages != tc.wantPages {
				t.Fatalf("%d pages, want %d", pages, tc.wantPages)
			}
			if got := ids(items); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("ids not in ascending id order:\n got %v\nwant %v", got, want)
			}
		})
	}
	// @nextLink is a path relative to the API host; its skipToken is base64("filesetId=<last id>").
	r := e.get("/file-store/v1/file-sets?bucket=bulk-ESG&pageSize=50", at)
	next := r.json(t)["@nextLink"].(string)
	u, err := url.Parse(next)
	if err != nil || u.IsAbs() || u.Path != "/file-store/v1/file-sets" {
		t.Fatalf("@nextLink %q is not a relative path", next)
	}
	if tok, _ := base64.RawURLEncoding.DecodeString(u.Query().Get("skipToken")); string(tok) != "filesetId="+want[49] {
		t.Fatalf("skipToken decodes to %q, want filesetId=%s", tok, want[49])
	}
	// A file-set published behind the cursor while a client pages is not in the rest of that
	// listing; the next listing has it.
	late := e.s.PublishBehindCursor(1, FileSetSpec{Bucket: DefaultBucket, PackageID: DefaultPackageID, Name: "late"})
	rest, _ := e.listAll(next, at)
	fs := <-late
	if got := ids(rest); len(got) != 10 || slices.Contains(got, fs.ID) || fs.ID > want[49] {
		t.Fatalf("rest %v; late %s (cursor %s)", got, fs.ID, want[49])
	}
	if all, _ := e.listAll("/file-store/v1/file-sets?bucket=bulk-ESG", at); len(all) != 61 || !slices.Contains(ids(all), fs.ID) {
		t.Fatal("the next listing misses the late file-set")
	}
}

// TestFileSetPagingCreationOrder: Options.CreationOrder keeps the old listing, where a file-set
// created between pages shows up on a later page, once.
func TestFileSetPagingCreationOrder(t *testing.T) {
	e, at := newTokenEnv(t, Options{CreationOrder: true})
	sets := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 60, 1, 10)
	r := e.get("/file-store/v1/file-sets?bucket=bulk-ESG&pageSize=50", at)
	if got := ids(r.items(t)); got[0] != sets[0].ID || got[49] != sets[49].ID {
		t.Fatalf("not in creation order: %v", got)
	}
	next := r.json(t)["@nextLink"].(string)
	late := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 1)[0]
	rest, _ := e.listAll(next, at)
	if got := ids(rest); len(got) != 11 || got[10] != late.ID {
		t.Fatalf("after insert: %v", got)
	}
}

func TestFileSetItemShape(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	fs := e.s.AddFileSet(FileSetSpec{
		Bucket: "bulk-ESG", PackageID: DefaultPackageID, Name: "ESG-Init-2025",
		Attributes: []Attribute{{"ContentKey", "Scores"}},
		Files:      []FileSpec{{Name: "a: b.csv", Size: 3}, {Name: "c.csv", Size: 4}},
	})
	r := e.get("/file-store/v1/file-sets?bucket=BULK-esg", at)
	items := r.json(t)["value"].([]any)
	if len(items) != 1 {
		t.Fatalf("items %v", items)
	}
	it := items[0].(map[string]any)
	now := e.clock.Now().Format(jsonTimeFmt)
	checks := map[string]any{
		"id": fs.ID, "name": "ESG-Init-2025", "bucketName": "bulk-ESG", "packageId": DefaultPackageID,
		"numFiles": float64(2), "status": "READY", "created": now, "modified": now, "availableFrom": now,
	}
	for k, v := range checks {
		if it[k] != v {
			t.Errorf("%s = %#v, want %#v", k, it[k], v)
		}
	}
	if got := fmt.Sprint(it["files"]); got != fmt.Sprintf("[%s %s]", fs.Files[0].ID, fs.Files[1].ID) {
		t.Errorf("files %s", got)
	}
	if got := fmt.Sprint(it["attributes"]); got != "[map[name:ContentKey value:Scores]]" {
		t.Errorf("attributes %s", got)
	}
	if _, ok := it["availableTo"].(string); !ok {
		t.Error("availableTo missing")
	}
	if _, ok := r.json(t)["@nextLink"]; ok {
		t.Error("@nextLink on the last page")
	}
}

// TestListingValidation: every listing answers a bad query with the gateway's 400 naming the
// first problem (404 for an unknown bucket), and EmptyForUnknown lists nothing instead.
func TestListingValidation(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	set := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 10)[0]
	const fileSets, files = "/file-store/v1/file-sets?", "/file-store/v1/files?"
	tests := []struct {
		path   string
		status int
		want   string // in the gateway message
	}{
		{fileSets + "bucket=bulk-ESG&pageSize=100", 200, ""},
		{fileSets + "bucket=bulk-ESG&pageSize=101", 400, "pageSize must be at most 100"},
		{fileSets + "bucket=bulk-ESG&pageSize=0", 400, "pageSize must be a positive integer"},
		{fileSets + "bucket=bulk-ESG&pageSize=x", 400, "pageSize must be a positive integer"},
		{fileSets + "pageSize=10", 400, "bucket is required"},
		{fileSets + "bucket=bulk-ESG&modifiedSince=yesterday", 400, "modifiedSince"},
		{fileSets + "bucket=bulk-ESG&createdSince=2025-01-01", 400, "createdSince"},
		{fileSets + "bucket=bulk-ESG&attributes=novalue", 400, "attributes must be name:value"},
		{fileSets + "bucket=bulk-ESG&skipToken=%21%21", 400, "invalid skipToken"},
		{fileSets + "bucket=no-such-bucket", 404, "No resource found"},
		{"/file-store/v1/packages?skipToken=%21%21", 400, "invalid skipToken"},
		{"/file-store/v1/packages?pageSize=0&skipToken=%21%21", 400, "pageSize"},
		{files + "skipToken=%21%21", 400, "filesetId is required"},
		{files + "pageSize=101", 400, "pageSize"},
		{files + "filesetId=" + set.ID + "&skipToken=%21%21", 400, "invalid skipToken"},
		{files + "filesetId=" + set.ID + "&skipToken=" + encodeSetCursor(set.ID), 400, "invalid skipToken"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			r := e.with(t).get(tc.path, at)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status == 200 {
				return
			}
			if msg := r.gatewayMessage(t); !strings.Contains(msg, tc.want) {
				t.Errorf("message %q, want it to name %q", msg, tc.want)
			}
		})
	}
	t.Run("EmptyForUnknown", func(t *testing.T) {
		e, at := newTokenEnv(t, Options{EmptyForUnknown: true})
		if r := e.get("/file-store/v1/file-sets?bucket=nope", at); r.status != 200 || len(r.items(t)) != 0 {
			t.Fatalf("unknown bucket: %d %s", r.status, r.body)
		}
		if r := e.get("/file-store/v1/files?filesetId=nope", at); r.status != 200 || len(r.items(t)) != 0 {
			t.Fatalf("unknown file-set: %d %s", r.status, r.body)
		}
	})
}

func TestFileSetFilters(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	t0 := e.clock.Now()
	a := e.s.AddFileSet(FileSetSpec{Bucket: "bulk-ESG", PackageID: "P1", Name: "a", Attributes: []Attribute{{"k", "1"}}})
	e.clock.Advance(time.Hour)
	t1 := e.clock.Now()
	b := e.s.AddFileSet(FileSetSpec{Bucket: "bulk-ESG", PackageID: "P1", Name: "b", Status: "PENDING", Attributes: []Attribute{{"k", "2"}}})
	c := e.s.AddFileSet(FileSetSpec{Bucket: "bulk-ESG", PackageID: "P2", Name: "c", Attributes: []Attribute{{"k", "1"}, {"x", "y"}}})
	d := e.s.AddFileSet(FileSetSpec{Bucket: "other-bucket", PackageID: "P1", Name: "d"})
	e.clock.Advance(time.Hour)
	t2 := e.clock.Now()
	e.s.TouchFileSet(a.ID)
	at, _ = e.s.IssueTokens(DefaultUser, DefaultAppKey)
	tests := []struct {
		name, query string
		want        []string
	}{
		{"bucket only", "bucket=bulk-esg", []string{a.ID, b.ID, c.ID}},
		{"package", "bucket=bulk-ESG&packageId=P1", []string{a.ID, b.ID}},
		{"other bucket", "bucket=OTHER-bucket", []string{d.ID}},
		{"status READY", "bucket=bulk-ESG&status=READY", []string{a.ID, c.ID}},
		{"status pending", "bucket=bulk-ESG&status=pending", []string{b.ID}},
		{"createdSince t1 (inclusive)", "bucket=bulk-ESG&createdSince=" + url.QueryEscape(t1.Format(time.RFC3339)), []string{b.ID, c.ID}},
		{"createdSince t0", "bucket=bulk-ESG&createdSince=" + url.QueryEscape(t0.Format(time.RFC3339)), []string{a.ID, b.ID, c.ID}},
		{"modifiedSince t2 (touched)", "bucket=bulk-ESG&modifiedSince=" + url.QueryEscape(t2.Format(time.RFC3339Nano)), []string{a.ID}},
		{"modifiedSince after all", "bucket=bulk-ESG&modifiedSince=" + url.QueryEscape(t2.Add(time.Second).Format(time.RFC3339)), []string{}},
		{"attribute", "bucket=bulk-ESG&attributes=k:1", []string{a.ID, c.ID}},
		{"two attributes", "bucket=bulk-ESG&attributes=k:1,x:y", []string{c.ID}},
		{"attributes and package", "bucket=bulk-ESG&attributes=k:1&packageId=P1", []string{a.ID}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			items, _ := e.with(t).listAll("/file-store/v1/file-sets?"+tc.query, at)
			slices.Sort(tc.want) // listed in ascending id order
			if got := ids(items); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPackages(t *testing.T) {
	e, at := newTokenEnv(t, Options{})
	e.s.AddPackage("bulk-ESG", "P2", "Second")
	e.s.AddPackage("bulk-Other", "P2", "Second")
	for i := 0; i < 30; i++ {
		e.s.AddPackage("bulk-Many", fmt.Sprintf("M%02d", i), "")
	}
	items, _ := e.listAll("/file-store/v1/packages?bucketName=BULK-esg", at)
	if got := ids2(items, "packageId"); got != DefaultPackageID+",P2" {
		t.Fatalf("packages %s", got)
	}
	p2 := items[1]
	if p2["packageName"] != "Second" || p2["packageType"] != "bulk" || fmt.Sprint(p2["bucketNames"]) != "[bulk-ESG bulk-Other]" {
		t.Fatalf("package %v", p2)
	}
	many, pages := e.listAll("/file-store/v1/packages?bucketName=bulk-Many", at)
	if len(many) != 30 || pages != 2 {
		t.Fatalf("%d packages in %d pages", len(many), pages)
	}
	if r := e.get("/file-store/v1/packages?bucketName=x&pageSize=101", at); r.status != 400 {
		t.Fatalf("pageSize 101: %d", r.status)
	}
}

func ids2(items []map[string]any, key string) string {
	var out []string
	for _, it := range items {
		out = append(out, it[key].(string))
	}
	return strings.Join(out, ",")
}

func TestFiles(t *testing.T) {
	e, at := newTokenEnv(t, Options{MD5: true, MD5MaxSize: 1000, FileEndpoint: true})
	fs := e.s.AddFileSet(FileSetSpec{Bucket: DefaultBucket, PackageID: DefaultPackageID, Name: "set", Files: []FileSpec{
		{Name: "small: one.csv", Size: 1000},
		{Name: "big.csv", Size: 1001},
		{Name: "nomd5.csv", Size: 5, NoMD5: true},
		{Name: "lying.csv", Size: 5, MD5: "00000000000000000000000000000000"},
	}})
	tests := []struct {
		idx     int
		wantMD5 string
	}{
		{0, ContentMD5(fs.Files[0].ID, 1000)},
		{1, ""},
		{2, ""},
		{3, "00000000000000000000000000000000"},
	}
	for _, tc := range tests {
		f := fs.Files[tc.idx]
		t.Run(f.Name, func(t *testing.T) {
			r := e.with(t).get("/file-store/v1/files/"+f.ID, at)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			m := r.json(t)
			if m["id"] != f.ID || m["filename"] != f.Name || m["filesetId"] != fs.ID || m["fileSizeInBytes"] != float64(f.Size) {
				t.Fatalf("file %v", m)
			}
			if got, _ := m["md5"].(string); got != tc.wantMD5 || f.MD5 != tc.wantMD5 {
				t.Fatalf("md5 %q (File.MD5 %q), want %q", got, f.MD5, tc.wantMD5)
			}
			if _, ok := m["href"]; ok {
				t.Fatalf("href %v: no public sample shows one", m["href"])
			}
		})
	}
	items, pages := e.listAll("/file-store/v1/files?filesetId="+fs.ID+"&pageSize=3", at)
	if pages != 2 || ids2(items, "filename") != "small: one.csv,big.csv,nomd5.csv,lying.csv" {
		t.Fatalf("%d pages: %s", pages, ids2(items, "filename"))
	}
	if r := e.get("/file-store/v1/files?pageSize=3", at); r.status != 400 {
		t.Fatalf("no filesetId: %d", r.status)
	}
	r := e.get("/file-store/v1/files/nope", at)
	if r.status != 404 || r.gatewayMessage(t) == "" {
		t.Fatalf("unknown file: %d %s", r.status, r.body)
	}
	e.s.DeleteFile(fs.Files[0].ID)
	if r := e.get("/file-store/v1/files/"+fs.Files[0].ID, at); r.status != 404 {
		t.Fatalf("deleted file: %d", r.status)
	}
	if r := e.get("/file-store/v1/files/"+fs.Files[0].ID+"/stream", at); r.status != 404 {
		t.Fatalf("deleted file stream: %d", r.status)
	}
}

func TestGroundTruth(t *testing.T) {
	e := newEnv(t, Options{})
	ready := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 3, 2, 100)
	pending := e.s.AddFileSet(FileSetSpec{Bucket: DefaultBucket, PackageID: DefaultPackageID, Name: "p", Status: "PENDING", Files: []FileSpec{{Name: "x", Size: 1}}})
	e.s.DeleteFileSet(ready[1].ID)
	gt := e.s.GroundTruth()
	if len(gt) != 4 || gt[0].FileSetID != ready[0].ID || gt[2].FileSetID != ready[2].ID {
		t.Fatalf("ground truth %+v", gt)
	}
	for _, f := range gt {
		if f.MD5 != "" || f.Bucket != DefaultBucket || f.PackageID != DefaultPackageID || f.FileSetName == "" {
			t.Fatalf("file %+v", f)
		}
		if !strings.Contains(f.Name, ":") || !strings.Contains(f.Name, " ") || strings.Contains(f.DestName(), ":") {
			t.Fatalf("generated names should exercise ':' and ' ': %q / %q", f.Name, f.DestName())
		}
	}
	e.s.SetFileSetStatus(pending.ID, "READY")
	if len(e.s.GroundTruth()) != 5 {
		t.Fatal("a file-set turned READY is not in the ground truth")
	}
	if len(e.s.FileSets()) != 3 {
		t.Fatalf("FileSets: %d", len(e.s.FileSets()))
	}
	// Names are unique across calls.
	more := e.s.AddFileSets(DefaultBucket, DefaultPackageID, 1, 1, 1)
	for _, fs := range ready {
		if fs.Name == more[0].Name || fs.Files[0].Name == more[0].Files[0].Name {
			t.Fatal("AddFileSets reused a name")
		}
	}
}
