package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cfsync/cfsync/internal/backoff"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// Download retry limits.
const (
	// maxStalledAttempts: consecutive failed ranges without a byte of progress.
	maxStalledAttempts = 5
	// maxURLRenewals: new presigned URLs after 403s.
	maxURLRenewals = 5
)

// downloadBackoff spaces the retries of a stalled transfer: full jitter
// under 1s, 2s, 4s, 8s (see internal/backoff).
var downloadBackoff = backoff.Policy{Base: time.Second, Max: 8 * time.Second}

func downloadCommand() *command {
	return &command{
		name:    "download",
		args:    "FILE_ID [-o DIR] [flags]",
		summary: "Download one CFS file to a local directory (resumable, verified).",
		details: `The file is written to DIR/NAME.part and renamed to DIR/NAME once its size (and md5, when
the API gives one) is verified; NAME is LSEG's file name (':' becomes '_'). Run the command
again after an interruption: it resumes from the .part file's size with HTTP Range requests.
A 403 from the download host (an expired presigned URL) gets a new URL. The progress bar
goes to stderr when stderr is a terminal, or with --progress.`,
		examples: []string{
			"cfsync download 4a1b-2c3d-5e6f7a8b-9c0d-1e2f3a4b5c6d",
			"cfsync download 4a1b-2c3d-5e6f7a8b-9c0d-1e2f3a4b5c6d -o /data/esg --progress",
		},
		rdp: true,
		setup: func(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
			dir := fs.String("o", ".", "write the file into `DIR`")
			force := fs.Bool("force", false, "download again even if DIR/NAME exists")
			progress := fs.Bool("progress", false, "show a progress bar on stderr even when it is not a terminal (--progress=false: never)")
			return func(ctx context.Context, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one FILE_ID")
				}
				show := a.isTerminal(a.stderr)
				fs.Visit(func(f *flag.Flag) {
					if f.Name == "progress" {
						show = *progress
					}
				})
				return a.withSession(ctx, &a.rdp, func(s *rdpSession) error {
					d := &downloader{a: a, c: s.client, showProgress: show}
					return d.run(ctx, args[0], *dir, *force)
				})
			}
		},
	}
}

type downloader struct {
	a            *app
	c            *rdp.Client
	showProgress bool
	renewals     int // URLs renewed before the transfer (by probe)
}

func (d *downloader) run(ctx context.Context, id, dir string, force bool) error {
	meta, presigned, dest, err := d.target(ctx, id, dir)
	if err != nil {
		return err
	}
	part := dest + ".part"
	if done, err := d.checkExisting(dest, part, id, meta, force); done || err != nil {
		return err
	}
	f, h, off, err := d.openPart(part, meta.Size)
	if err != nil {
		return err
	}
	defer f.Close()
	name := filepath.Base(dest)
	fmt.Fprintf(d.a.stderr, "downloading %s (%s) from %s\n", name, fmtBytes(meta.Size), hostOnly(presigned))
	bar := newProgressBar(d.a.stderr, name, meta.Size, off, d.showProgress)
	renewals, err := d.transfer(ctx, id, presigned, f, h, bar, off, meta.Size)
	renewals += d.renewals
	bar.finish()
	if err != nil {
		return err
	}
	sum, err := finishPart(f, part, dest, id, meta, h)
	if err != nil {
		return err
	}
	d.report(dest, id, meta, sum, off, renewals)
	return nil
}

// target resolves a file id to its metadata, a presigned URL and the local
// path it is written to (dir/NAME, dir created). It asks the file store only
// for the stream URL (no public sample uses GET /files/{id}): the size comes
// from a one-byte range's Content-Range, and a plain-MD5 ETag (S3 single-part
// objects) stands in for the md5 no public API gives.
func (d *downloader) target(ctx context.Context, id, dir string) (*rdp.File, string, string, error) {
	presigned, err := d.c.StreamURL(ctx, id)
	if errors.Is(err, rdp.ErrNotFound) {
		return nil, "", "", fmt.Errorf("file %s: not found (deleted, or not visible to this account): %w", id, err)
	}
	if err != nil {
		return nil, "", "", fmt.Errorf("get download url of %s: %w", id, err)
	}
	meta, presigned, err := d.probe(ctx, id, presigned)
	if err != nil {
		return nil, "", "", err
	}
	name, err := rdp.FileNameFromURL(presigned)
	if err == nil {
		err = checkLocalName(name)
	}
	if err != nil {
		return nil, "", "", fmt.Errorf("file %s: %w", id, err)
	}
	meta.FileName = name
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", "", fmt.Errorf("create output directory: %w", err)
	}
	return meta, presigned, filepath.Join(dir, name), nil
}

// probe reads the first byte of the object to learn its size and ETag,
// with the same URL renewal and retries as the transfer. It returns the
// (possibly renewed) URL.
func (d *downloader) probe(ctx context.Context, id, presigned string) (*rdp.File, string, error) {
	r := retrier{d: d, id: id, presigned: presigned, note: func(s string) { fmt.Fprintln(d.a.stderr, s) }}
	for {
		meta, err := d.probeOnce(ctx, id, r.presigned)
		if err == nil {
			d.renewals = r.renewals
			return meta, r.presigned, nil
		}
		if err := r.recover(ctx, err, "before the first byte"); err != nil {
			return nil, "", err
		}
	}
}

func (d *downloader) probeOnce(ctx context.Context, id, presigned string) (*rdp.File, error) {
	r, err := d.c.GetRange(ctx, presigned, 0, 1)
	if err != nil {
		return nil, err
	}
	defer r.Body.Close()
	_, _ = io.Copy(io.Discard, r.Body)
	if r.TotalSize < 0 {
		return nil, &rdp.PresignedError{Host: hostOnly(presigned), StatusCode: 200, Message: "no Content-Range total: the object's size is unknown"}
	}
	meta := &rdp.File{ID: id, Size: r.TotalSize}
	if etag := strings.Trim(r.ETag, `"`); len(etag) == 32 && isHex(etag) {
		meta.MD5 = etag // S3's ETag of a single-part object is its MD5
	}
	return meta, nil
}

func isHex(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// checkExisting handles a dest that is already there: done when it is the
// complete file; an error when it differs and force is off; with force, the
// partial file is removed so that the download starts over.
func (d *downloader) checkExisting(dest, part, id string, meta *rdp.File, force bool) (done bool, err error) {
	st, err := os.Stat(dest)
	if err != nil {
		return false, nil
	}
	if force {
		if err := os.Remove(part); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("remove partial file: %w", err)
		}
		return false, nil
	}
	if st.Size() == meta.Size {
		sum, err := md5File(dest)
		if err != nil {
			return false, err
		}
		if meta.MD5 == "" || md5Equal(meta.MD5, sum) {
			fmt.Fprintf(d.a.stdout, "%s is already complete (%d bytes%s)\n", dest, st.Size(), md5Note(meta.MD5))
			return true, nil
		}
	}
	return false, fmt.Errorf("%s exists and differs from file %s (size or md5): use --force to download it again", dest, id)
}

// openPart opens (or creates) the partial file positioned at its end, with
// the md5 of what it holds; one larger than the file starts over.
func (d *downloader) openPart(part string, size int64) (*os.File, hash.Hash, int64, error) {
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("open partial file: %w", err)
	}
	h, off, err := d.resumePart(f, part, size)
	if err != nil {
		f.Close()
		return nil, nil, 0, err
	}
	return f, h, off, nil
}

func (d *downloader) resumePart(f *os.File, part string, size int64) (hash.Hash, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("stat partial file: %w", err)
	}
	off := st.Size()
	h := md5.New()
	if off > size {
		fmt.Fprintf(d.a.stderr, "%s is larger than the file (%d > %d bytes): starting over\n", part, off, size)
		if err := f.Truncate(0); err != nil {
			return nil, 0, fmt.Errorf("truncate partial file: %w", err)
		}
		off = 0
	}
	if off > 0 {
		fmt.Fprintf(d.a.stderr, "resuming %s at %d of %d bytes\n", part, off, size)
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, off)); err != nil {
			return nil, 0, fmt.Errorf("read partial file: %w", err)
		}
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, 0, fmt.Errorf("seek partial file: %w", err)
	}
	return h, off, nil
}

// transfer downloads [off, size) with Range requests: a 403 gets a new
// presigned URL (at most maxURLRenewals), other transient failures are
// retried with downloadBackoff while they make progress. It returns the
// number of URL renewals.
func (d *downloader) transfer(ctx context.Context, id, presigned string, f *os.File, h hash.Hash, bar *progressBar, off, size int64) (int, error) {
	r := retrier{d: d, id: id, presigned: presigned, note: bar.note}
	for off < size {
		n, err := d.copyRange(ctx, r.presigned, f, h, bar, off, size)
		off += n
		if n > 0 {
			r.stalled = 0
		}
		if err == nil {
			continue
		}
		if err := r.recover(ctx, err, fmt.Sprintf("at %d of %d bytes", off, size)); err != nil {
			return r.renewals, err
		}
	}
	return r.renewals, nil
}

// retrier decides, after a failed request to the download host, whether to
// get a new URL (403 / 400 ExpiredToken), give up (permanent, or too many
// attempts without progress) or wait and try again.
type retrier struct {
	d                 *downloader
	id, presigned     string
	stalled, renewals int
	note              func(string)
}

// recover returns nil when the caller should try again (after a new URL or a
// wait), else the error to return; where says where the transfer stands.
func (r *retrier) recover(ctx context.Context, err error, where string) error {
	if ctx.Err() != nil {
		return fmt.Errorf("download %s interrupted %s (run again to resume): %w", r.id, where, ctx.Err())
	}
	switch {
	case errors.Is(err, rdp.ErrURLExpired):
		if r.renewals >= maxURLRenewals {
			return fmt.Errorf("download %s: still refused after %d new URLs: %w", r.id, r.renewals, err)
		}
		r.renewals++
		r.note(fmt.Sprintf("download host answered 403 (URL expired): getting a new URL (%d/%d)", r.renewals, maxURLRenewals))
		if r.presigned, err = r.d.c.StreamURL(ctx, r.id); err != nil {
			return fmt.Errorf("get a new download url of %s: %w", r.id, err)
		}
		return nil
	case permanent(err):
		return fmt.Errorf("download %s: %w", r.id, err)
	}
	r.stalled++
	if r.stalled >= maxStalledAttempts {
		return fmt.Errorf("download %s: giving up %s after %d attempts without progress (run again to resume): %w", r.id, where, r.stalled, err)
	}
	wait := downloadBackoff.Delay(r.stalled)
	r.note(fmt.Sprintf("transfer failed %s (%v): retrying in %s", where, err, wait.Round(time.Millisecond)))
	if err := r.d.a.sleep(ctx, wait); err != nil {
		return fmt.Errorf("download %s interrupted %s (run again to resume): %w", r.id, where, err)
	}
	return nil
}

// finishPart syncs and checks the partial file (size, md5 when the API gives
// one) and renames it to dest. It returns the file's md5 (hex).
func finishPart(f *os.File, part, dest, id string, meta *rdp.File, h hash.Hash) (string, error) {
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("sync %s: %w", part, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("close %s: %w", part, err)
	}
	if st, err := os.Stat(part); err != nil || st.Size() != meta.Size {
		got := int64(-1)
		if err == nil {
			got = st.Size()
		}
		return "", fmt.Errorf("download %s: %s has %d bytes, want %d", id, part, got, meta.Size)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if meta.MD5 != "" && !md5Equal(meta.MD5, sum) {
		_ = os.Remove(part)
		return "", fmt.Errorf("download %s: md5 mismatch (got %s, the API says %s): removed %s, run again to download from scratch", id, sum, meta.MD5, part)
	}
	if err := os.Rename(part, dest); err != nil {
		return "", fmt.Errorf("rename %s: %w", part, err)
	}
	return sum, nil
}

func (d *downloader) report(dest, id string, meta *rdp.File, sum string, resumedAt int64, renewals int) {
	out := d.a.stdout
	fmt.Fprintf(out, "downloaded %s\n", dest)
	fmt.Fprintf(out, "  file id: %s\n", id)
	fmt.Fprintf(out, "  size:    %d bytes\n", meta.Size)
	if meta.MD5 != "" {
		fmt.Fprintf(out, "  md5:     %s (verified against the source's ETag)\n", sum)
	} else {
		fmt.Fprintf(out, "  md5:     %s (not verified: the source's ETag is not a plain MD5)\n", sum)
	}
	if resumedAt > 0 {
		fmt.Fprintf(out, "  resumed: at %d bytes\n", resumedAt)
	}
	if renewals > 0 {
		fmt.Fprintf(out, "  renewed: %d download URL(s) after 403\n", renewals)
	}
}

// checkLocalName refuses file names that would leave the output directory
// (the URL's last segment may hold a percent-encoded '/').
func checkLocalName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`+"\x00") {
		return fmt.Errorf("file name %q from the download URL is not a plain file name", name)
	}
	return nil
}

// copyRange downloads [off, size) into f (at its current position) and h,
// returning the bytes written.
func (d *downloader) copyRange(ctx context.Context, presigned string, f *os.File, h hash.Hash, bar *progressBar, off, size int64) (int64, error) {
	rr, err := d.c.GetRange(ctx, presigned, off, -1)
	if err != nil {
		return 0, err
	}
	defer rr.Body.Close()
	if rr.TotalSize >= 0 && rr.TotalSize != size {
		return 0, &sizeMismatch{api: size, host: rr.TotalSize}
	}
	n, err := io.Copy(io.MultiWriter(f, h, bar), io.LimitReader(rr.Body, size-off))
	if err == nil && off+n < size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

type sizeMismatch struct{ api, host int64 }

func (e *sizeMismatch) Error() string {
	return fmt.Sprintf("size mismatch: the API says %d bytes, the download host %d", e.api, e.host)
}

// permanent reports errors a retry cannot fix.
func permanent(err error) bool {
	var sm *sizeMismatch
	if errors.As(err, &sm) || errors.Is(err, rdp.ErrNotFound) {
		return true
	}
	var pe *rdp.PresignedError
	return errors.As(err, &pe) && !pe.Temporary()
}

func md5File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// md5Equal compares the API's md5 (hex, or base64 as S3 sometimes gives) with a hex sum.
func md5Equal(api, hexSum string) bool {
	b := rdp.ParseMD5(api)
	return b != nil && hex.EncodeToString(b) == hexSum
}

func md5Note(apiMD5 string) string {
	if apiMD5 == "" {
		return ""
	}
	return ", md5 verified"
}

// hostOnly is scheme://host of a URL: presigned URLs carry credentials.
func hostOnly(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(download host)"
	}
	return u.Scheme + "://" + u.Host
}

// progressBar draws "name [=====     ]  45%  1.2 MiB / 2.6 MiB  3.1 MiB/s" on one line.
type progressBar struct {
	w       io.Writer
	name    string
	total   int64
	done    int64
	base    int64 // bytes already there when the bar started
	start   time.Time
	last    time.Time
	enabled bool
	drawn   bool
}

func newProgressBar(w io.Writer, name string, total, done int64, enabled bool) *progressBar {
	return &progressBar{w: w, name: truncate(name, 32), total: total, done: done, base: done, start: time.Now(), enabled: enabled}
}

func (p *progressBar) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if p.enabled && time.Since(p.last) >= 200*time.Millisecond {
		p.draw()
	}
	return len(b), nil
}

func (p *progressBar) draw() {
	pct := int64(100)
	if p.total > 0 {
		pct = p.done * 100 / p.total
	}
	const width = 30
	filled := int(pct * width / 100)
	rate := 0.0
	if el := time.Since(p.start).Seconds(); el > 0 {
		rate = float64(p.done-p.base) / el
	}
	fmt.Fprintf(p.w, "\r%s [%s%s] %3d%% %10s / %-10s %10s/s ", p.name, strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
		pct, fmtBytes(p.done), fmtBytes(p.total), fmtBytes(int64(rate)))
	p.last = time.Now()
	p.drawn = true
}

// note prints a message on its own line, keeping the bar below it.
func (p *progressBar) note(msg string) {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
	fmt.Fprintln(p.w, msg)
}

func (p *progressBar) finish() {
	if !p.enabled {
		return
	}
	p.draw()
	fmt.Fprintln(p.w)
	p.drawn = false
	p.enabled = false
}
