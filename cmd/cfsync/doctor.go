package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cfsync/cfsync/pkg/rdp"
)

// `cfsync doctor` checks, read-only, each RDP behaviour cfsync relies on
// against the user's own account (docs/rdp.md lists them with their public
// sources). It never prints a secret, a token or a presigned URL.

// Check results.
const (
	resOK         = "OK"
	resDiffers    = "differs"     // cfsync depends on it and RDP does otherwise
	resNotOffered = "not offered" // RDP does not offer it; cfsync does not need it
	resInfo       = "info"        // observed for the record; cfsync works either way
	resSkipped    = "skipped"     // an earlier check failed, or nothing to check
)

// check is one row of the report.
type check struct {
	Name       string `json:"check"`
	Assumption string `json:"assumption"`
	Observed   string `json:"observed"`
	Result     string `json:"result"`
	// Required: cfsync depends on it, so "differs" fails the doctor.
	Required bool `json:"required"`
}

// doctorReport is what `cfsync doctor --json` prints.
type doctorReport struct {
	APIHost string  `json:"apiHost"`
	Source  string  `json:"credentialSource"`
	OK      bool    `json:"ok"`
	Checks  []check `json:"checks"`
}

func (r *doctorReport) add(c check) { r.Checks = append(r.Checks, c) }

// failed lists the required checks that differ.
func (r *doctorReport) failed() []string {
	var out []string
	for _, c := range r.Checks {
		if c.Required && c.Result == resDiffers {
			out = append(out, c.Name)
		}
	}
	return out
}

func doctorCommand() *command {
	return &command{
		name:    "doctor",
		args:    "[--bucket NAME] [--package ID] [flags]",
		summary: "Check every RDP behaviour cfsync relies on against your account (read-only).",
		details: `Signs on WITHOUT exclusive sign-on control (so the deployed token-refresher's session is
left alone) and revokes its session at the end, or borrows the deployed stack's token with
--token-ring (no sign-on). It lists packages, one page of file-sets (and follows @nextLink
once), the files of one file-set, asks for one stream URL and reads the file's first byte
with a Range request. It prints assumption → observed → OK / differs / not offered; it never
prints a secret, a token or a presigned URL. Exit 3 when something cfsync depends on differs.`,
		examples: []string{
			"RDP_USERNAME=GE-A-0123 RDP_PASSWORD=… RDP_CLIENT_ID=… cfsync doctor --bucket bulk-ESG",
			"cfsync doctor --token-ring --bucket bulk-ESG --package 4e94-6d63-fea034dc-90e2-de33895bd4e9",
			"cfsync doctor --credentials ./rdp-credentials.json --json > doctor.json   # for a support ticket",
		},
		rdp: true, json: true, noArgs: true,
		setup: func(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
			var o doctorOptions
			fs.StringVar(&o.bucket, "bucket", "", "CFS bucket `NAME` to check (default: the first bucket of the first package listed)")
			fs.StringVar(&o.packageID, "package", "", "package `ID` to check (default: the first package of the bucket)")
			fs.IntVar(&o.pageSize, "page-size", 5, "file-sets per page, small so that @nextLink shows (1-100)")
			return func(ctx context.Context, args []string) error {
				if a.rdp.takeExclusive {
					return usagef("doctor never takes exclusive sign-on control: it must not end another session")
				}
				if o.pageSize < 1 || o.pageSize > rdp.MaxPageSize {
					return usagef("--page-size %d: want 1-%d", o.pageSize, rdp.MaxPageSize)
				}
				rep := a.doctor(ctx, &a.rdp, o)
				return a.printDoctor(rep, a.json)
			}
		},
	}
}

type doctorOptions struct {
	bucket, packageID string
	pageSize          int
}

// doctor runs every check; it never fails itself, failures are rows.
func (a *app) doctor(ctx context.Context, rf *rdpFlags, o doctorOptions) *doctorReport {
	rep := &doctorReport{APIHost: rdp.RedactURL(a.baseURL(rf))}
	pr := &probe{base: a.httpClient.Transport}
	saved, savedOpts := a.httpClient, a.rdpOptions
	hc := *a.httpClient
	hc.Transport = pr
	a.httpClient = &hc
	// The presigned host through the probe too (a plain client: no Authorization header).
	a.rdpOptions = append(slices.Clone(a.rdpOptions), rdp.WithDownloadHTTPClient(&http.Client{Transport: pr}))
	defer func() { a.httpClient, a.rdpOptions = saved, savedOpts }()

	s, err := a.signOn(ctx, rf)
	if err != nil {
		rep.add(check{Name: "sign-on", Assumption: "credentials sign on without exclusive sign-on control",
			Observed: signOnProblem(err), Result: resDiffers, Required: true})
		rep.add(check{Name: "file store", Assumption: "the checks below", Observed: "not run: no session", Result: resSkipped})
		return rep
	}
	rep.Source = s.info.Source
	rep.add(check{Name: "sign-on", Assumption: "credentials sign on without exclusive sign-on control",
		Observed: "signed on: " + s.info.Source + ", token for " + fmtAge(s.info.ExpiresAt.Sub(a.now())), Result: resOK, Required: true})
	rep.add(expiresInCheck(pr, s.info.Grant))
	d := &doctorRun{a: a, c: s.client, o: o, pr: pr, rep: rep}
	d.fileStore(ctx)
	rep.add(revokeCheck(s))
	return rep
}

// signOnProblem explains a failed sign-on without retrying it.
func signOnProblem(err error) string {
	switch {
	case errors.Is(err, rdp.ErrInvalidCredentials):
		return "RDP rejected the username or password (400 access_denied). Fix the credentials before the token-refresher retries them: RDP blocks accounts that keep failing. " + err.Error()
	case errors.Is(err, rdp.ErrSessionQuota):
		return "the account already has a session (most likely the deployed token-refresher's); run doctor with --token-ring. " + err.Error()
	}
	return strings.SplitN(err.Error(), "\n", 2)[0]
}

func expiresInCheck(pr *probe, grant string) check {
	c := check{Name: "expires_in", Assumption: `the token answer's expires_in is a string ("600") or a number`, Required: true}
	kind := pr.expiresIn()
	switch {
	case grant == "token-ring":
		c.Observed, c.Result = "not checked: --token-ring does not sign on", resSkipped
	case kind == "string" || kind == "number":
		c.Observed, c.Result = "a "+kind+" (both are accepted)", resOK
	default:
		c.Observed, c.Result = "neither a string nor a number: "+kind, resDiffers
	}
	return c
}

func revokeCheck(s *rdpSession) check {
	c := check{Name: "revoke", Assumption: "the session the CLI opened can be revoked (POST /auth/oauth2/v1/revoke)", Required: true}
	if s.end == nil {
		c.Observed, c.Result = "nothing to revoke ("+s.info.Grant+")", resSkipped
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.end(ctx); err != nil {
		c.Observed, c.Result = "revoke failed (the session expires by itself): "+err.Error(), resDiffers
		return c
	}
	c.Observed, c.Result = "revoked", resOK
	return c
}

// doctorRun carries the file-store checks' state.
type doctorRun struct {
	a   *app
	c   *rdp.Client
	o   doctorOptions
	pr  *probe
	rep *doctorReport

	fileSet rdp.FileSet // the READY file-set checked
	file    rdp.File    // its first file
}

// fileStore runs the file-store checks in order; each needs the one before.
func (d *doctorRun) fileStore(ctx context.Context) {
	steps := []func(context.Context) bool{d.packages, d.fileSets, d.files, d.stream}
	for i, step := range steps {
		if !step(ctx) {
			if i < len(steps)-1 {
				d.rep.add(check{Name: "file store", Assumption: "the remaining file-store checks", Observed: "not run: the check above failed", Result: resSkipped})
			}
			return
		}
	}
}

// differs records check c as differing, observed, and stops the run's
// file-store checks (false).
func (d *doctorRun) differs(c check, observed string) bool {
	c.Observed, c.Result = observed, resDiffers
	d.rep.add(c)
	return false
}

// listed collects a file-store listing for check c (at most limit items, 0:
// all); a failed listing records c as differing (ok false).
func listed[T any](d *doctorRun, c check, seq iter.Seq2[T, error], limit int) (items []T, ok bool) {
	items, err := collect(seq, limit)
	if err != nil {
		return nil, d.differs(c, apiProblem(err))
	}
	return items, true
}

// apiProblem turns a file-store error into an observation, naming a missing entitlement.
func apiProblem(err error) string {
	msg := err.Error()
	if errors.Is(err, rdp.ErrForbidden) {
		return "403 missing entitlement: ask LSEG to add the claim for this bucket or package (" + msg + ")"
	}
	return msg
}

func (d *doctorRun) packages(ctx context.Context) bool {
	c := check{Name: "packages", Assumption: "GET /file-store/v1/packages lists the account's packages", Required: true}
	pkgs, ok := listed(d, c, d.c.Packages(ctx, d.o.bucket), 0)
	if !ok {
		return false
	}
	i := slices.IndexFunc(pkgs, func(p rdp.Package) bool { return d.o.packageID == "" || p.PackageID == d.o.packageID })
	if i < 0 || (d.o.bucket == "" && len(pkgs[i].BucketNames) == 0) {
		return d.differs(c, fmt.Sprintf("%d packages, none to check (--bucket %q --package %q)", len(pkgs), d.o.bucket, d.o.packageID))
	}
	d.o.packageID = pkgs[i].PackageID
	if d.o.bucket == "" {
		d.o.bucket = pkgs[i].BucketNames[0]
	}
	c.Observed, c.Result = fmt.Sprintf("%d packages; checking %s (%s) in bucket %s", len(pkgs), pkgs[i].PackageName, pkgs[i].PackageID, d.o.bucket), resOK
	d.rep.add(c)
	return true
}

func (d *doctorRun) fileSets(ctx context.Context) bool {
	c := check{Name: "file-sets", Assumption: "GET /file-store/v1/file-sets pages with @nextLink on the API host (opaque skipToken)", Required: true}
	q := rdp.FileSetQuery{Bucket: d.o.bucket, PackageID: d.o.packageID, PageSize: d.o.pageSize}
	sets, ok := listed(d, c, d.c.FileSets(ctx, q), 2*d.o.pageSize) // two pages: @nextLink followed once
	if !ok {
		return false
	}
	pages := d.pr.fileSetPages()
	switch {
	case len(pages) < 2:
		c.Observed, c.Result = fmt.Sprintf("%d file-sets on one page (fewer than --page-size %d): paging not observed", len(sets), d.o.pageSize), resInfo
	default:
		c.Observed, c.Result = fmt.Sprintf("page 1: %d file-sets, @nextLink %s; page 2: %d file-sets", len(pages[0].ids), describeNextLink(pages[0]), len(pages[1].ids)), resOK
	}
	d.rep.add(c)
	d.rep.add(orderCheck(pages))
	i := slices.IndexFunc(sets, func(fs rdp.FileSet) bool {
		return fs.Status == rdp.StatusReady && (fs.NumFiles > 0 || len(fs.Files) > 0)
	})
	if i < 0 {
		d.rep.add(check{Name: "files", Assumption: "a READY file-set with files to check", Observed: "none on the pages read (try another --package)", Result: resSkipped})
		return false
	}
	d.fileSet = sets[i]
	return true
}

// describeNextLink says what a page's @nextLink looks like, without printing it.
func describeNextLink(p fileSetPage) string {
	u, err := url.Parse(p.next)
	if err != nil {
		return "unparseable"
	}
	where := "a path relative to the API host"
	if u.IsAbs() {
		where = "an absolute URL on " + u.Host
	}
	tok := u.Query().Get("skipToken")
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(tok, "="))
	if err != nil {
		b, err = base64.StdEncoding.DecodeString(tok)
	}
	switch {
	case tok == "":
		return where + " without skipToken"
	case err == nil && len(p.ids) > 0 && string(b) == "filesetId="+p.ids[len(p.ids)-1]:
		return where + ", skipToken = base64(filesetId=<last id>)"
	}
	return where + ", opaque skipToken"
}

func orderCheck(pages []fileSetPage) check {
	c := check{Name: "file-set order", Assumption: "none: a file-set published while cfsync pages may land behind its cursor, so the poller re-lists", Result: resInfo}
	var ids []string
	for _, p := range pages {
		ids = append(ids, p.ids...)
	}
	switch {
	case len(ids) < 2:
		c.Observed = "too few file-sets to tell"
	case slices.IsSorted(ids):
		c.Observed = "ascending file-set id"
	default:
		c.Observed = "not ascending file-set id"
	}
	return c
}

func (d *doctorRun) files(ctx context.Context) bool {
	c := check{Name: "files", Assumption: "GET /file-store/v1/files?filesetId= gives each file's id, filename and fileSizeInBytes", Required: true}
	files, ok := listed(d, c, d.c.Files(ctx, d.fileSet.ID), 0)
	if !ok {
		return false
	}
	keys, n := d.pr.fileKeys()
	var missing []string
	for _, k := range []string{"id", "filename", "fileSizeInBytes"} {
		if keys[k] < n || n == 0 {
			missing = append(missing, k)
		}
	}
	if len(files) == 0 || len(missing) > 0 {
		return d.differs(c, fmt.Sprintf("%d files in file-set %s; missing: %s", len(files), d.fileSet.ID, strings.Join(missing, ", ")))
	}
	c.Observed, c.Result = fmt.Sprintf("%d files in file-set %s, each with id, filename and fileSizeInBytes", len(files), d.fileSet.ID), resOK
	d.rep.add(c)
	md5 := check{Name: "md5", Assumption: "none: cfsync verifies size, CRC32C and the source ETag; an md5 is checked when given", Observed: "no md5 field", Result: resNotOffered}
	if keys["md5"] > 0 {
		md5.Observed, md5.Result = fmt.Sprintf("md5 on %d of %d files", keys["md5"], n), resInfo
	}
	d.rep.add(md5)
	d.file = files[0]
	d.rep.add(d.fileEndpoint(ctx))
	return true
}

// fileEndpoint looks at GET /files/{id}, which cfsync does not use.
func (d *doctorRun) fileEndpoint(ctx context.Context) check {
	c := check{Name: "GET /files/{id}", Assumption: "none: cfsync takes names and sizes from the listing", Result: resInfo}
	_, err := d.c.File(ctx, d.file.ID)
	switch {
	case err == nil:
		c.Observed = "offered"
	case errors.Is(err, rdp.ErrNotFound):
		c.Observed, c.Result = "404: not offered", resNotOffered
	default:
		c.Observed = apiProblem(err)
	}
	return c
}

func (d *doctorRun) stream(ctx context.Context) bool {
	c := check{Name: "stream URL", Assumption: "GET /files/{id}/stream?doNotRedirect=true answers a presigned URL", Required: true}
	u, err := d.c.StreamURL(ctx, d.file.ID)
	if err != nil {
		return d.differs(c, apiProblem(err))
	}
	c.Observed, c.Result = describePresigned(u), resOK
	d.rep.add(c)
	r := check{Name: "Range", Assumption: "the presigned URL, used byte-for-byte, answers a Range request with 206 and Content-Range giving the size", Required: true}
	rr, err := d.c.GetRange(ctx, u, 0, 1)
	if err != nil {
		r.Observed, r.Result = err.Error(), resDiffers
		d.rep.add(r)
		return false
	}
	n, _ := io.Copy(io.Discard, rr.Body)
	rr.Body.Close()
	status := d.pr.rangeStatus()
	switch {
	case status != http.StatusPartialContent:
		r.Observed, r.Result = fmt.Sprintf("%d: Range ignored", status), resDiffers
	case n != 1 || rr.TotalSize < 0:
		r.Observed, r.Result = fmt.Sprintf("206 with %d bytes, Content-Range total %d", n, rr.TotalSize), resDiffers
	case rr.TotalSize != d.file.Size:
		r.Observed, r.Result = fmt.Sprintf("206, Content-Range total %d bytes but fileSizeInBytes %d", rr.TotalSize, d.file.Size), resDiffers
	default:
		r.Observed, r.Result = fmt.Sprintf("206, first byte read, Content-Range total %d bytes = fileSizeInBytes", rr.TotalSize), resOK
	}
	d.rep.add(r)
	d.rep.add(etagCheck(rr.ETag))
	return true
}

// describePresigned says what a presigned URL looks like: host and lifetime only.
func describePresigned(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "unparseable URL"
	}
	s := "on " + u.Host
	if secs, err := strconv.Atoi(u.Query().Get("X-Amz-Expires")); err == nil {
		s += fmt.Sprintf(", valid for %d s (%s)", secs, time.Duration(secs)*time.Second)
	}
	if u.Query().Get("X-Amz-Security-Token") != "" {
		s += ", with a session token (the URL may die early: 400 ExpiredToken)"
	}
	return s
}

func etagCheck(etag string) check {
	c := check{Name: "ETag", Assumption: "none: a plain-MD5 or multipart ETag lets cfsync check the source and pin it with If-Match", Result: resInfo}
	t := strings.Trim(etag, `"`)
	switch {
	case etag == "":
		c.Observed, c.Result = "no ETag", resNotOffered
	case len(t) == 32 && !strings.ContainsFunc(t, func(r rune) bool { return !strings.ContainsRune("0123456789abcdef", r) }):
		c.Observed = "plain MD5 (single-part object)"
	case strings.Contains(t, "-"):
		c.Observed = "multipart (…-" + t[strings.LastIndex(t, "-")+1:] + " parts)"
	default:
		c.Observed = "opaque"
	}
	return c
}

func (a *app) printDoctor(rep *doctorReport, asJSON bool) error {
	failed := rep.failed()
	rep.OK = len(failed) == 0
	if asJSON {
		if err := writeJSON(a.stdout, rep); err != nil {
			return err
		}
	} else {
		w := a.stdout
		fmt.Fprintf(w, "cfsync doctor: %s", rep.APIHost)
		if rep.Source != "" {
			fmt.Fprintf(w, " (%s)", rep.Source)
		}
		fmt.Fprintln(w)
		for _, c := range rep.Checks {
			fmt.Fprintf(w, "\n%-14s %s\n", "["+c.Result+"]", c.Name)
			fmt.Fprintf(w, "%-14s assumes:  %s\n", "", oneLine(c.Assumption))
			fmt.Fprintf(w, "%-14s observed: %s\n", "", oneLine(c.Observed))
		}
		if rep.OK {
			fmt.Fprintln(w, "\nEvery RDP behaviour cfsync depends on is as expected.")
		}
	}
	if !rep.OK {
		return &checkFailed{msg: fmt.Sprintf("%d check(s) cfsync depends on differ: %s", len(failed), strings.Join(failed, ", "))}
	}
	return nil
}

// probe is the doctor's HTTP transport: it notes facts the rdp client does
// not expose (the JSON type of expires_in, @nextLink, listing keys, the
// presigned host's status). It keeps no token, secret or URL query.
type probe struct {
	base http.RoundTripper

	mu        sync.Mutex
	expires   string // JSON kind of expires_in in the last token answer
	pages     []fileSetPage
	keys      map[string]int // /files listing: items having each key
	items     int
	rangeCode int // status of the last presigned response
}

// fileSetPage is one /file-sets page as seen by the probe.
type fileSetPage struct {
	ids  []string
	next string // @nextLink (a path and query; no credentials)
}

func (p *probe) RoundTrip(req *http.Request) (*http.Response, error) {
	base := p.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		if err == nil && req.Header.Get("Range") != "" {
			p.note(func() { p.rangeCode = resp.StatusCode })
		}
		return resp, err
	}
	if req.Header.Get("Range") != "" {
		p.note(func() { p.rangeCode = resp.StatusCode })
		return resp, nil
	}
	path := req.URL.Path
	if !strings.HasSuffix(path, "/token") && path != rdp.FileSetsPath && path != rdp.FilesPath {
		return resp, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err == nil {
		p.record(path, body)
	}
	return resp, nil
}

func (p *probe) note(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f()
}

// record notes the facts of one JSON answer (never a value that is a secret).
func (p *probe) record(path string, body []byte) {
	var v struct {
		ExpiresIn json.RawMessage              `json:"expires_in"`
		Value     []map[string]json.RawMessage `json:"value"`
		NextLink  string                       `json:"@nextLink"`
	}
	if json.Unmarshal(body, &v) != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch path {
	case rdp.FileSetsPath:
		pg := fileSetPage{next: v.NextLink}
		for _, it := range v.Value {
			var id string
			_ = json.Unmarshal(it["id"], &id)
			pg.ids = append(pg.ids, id)
		}
		p.pages = append(p.pages, pg)
	case rdp.FilesPath:
		if p.keys == nil {
			p.keys = map[string]int{}
		}
		for _, it := range v.Value {
			p.items++
			for k := range it {
				p.keys[k]++
			}
		}
	default:
		p.expires = jsonKind(v.ExpiresIn)
	}
}

func jsonKind(raw json.RawMessage) string {
	switch t := strings.TrimSpace(string(raw)); {
	case t == "":
		return "absent"
	case t[0] == '"':
		return "string"
	case t[0] == '-' || (t[0] >= '0' && t[0] <= '9'):
		return "number"
	default:
		return "other JSON"
	}
}

func (p *probe) expiresIn() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.expires
}

func (p *probe) fileSetPages() []fileSetPage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.pages)
}

func (p *probe) fileKeys() (map[string]int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.keys))
	for k, v := range p.keys {
		out[k] = v
	}
	return out, p.items
}

func (p *probe) rangeStatus() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rangeCode
}

var _ http.RoundTripper = (*probe)(nil)
