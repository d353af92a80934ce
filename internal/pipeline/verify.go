package pipeline

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cfsync/cfsync/internal/landing"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// ExpectedKey is where cfsync stores a file (docs/design.md#output-layout):
// <prefix><bucket>/<packageId>/<fileSetId>/<fileName with ':' replaced by '_'>.
func ExpectedKey(prefix string, f rdptest.File) string {
	return prefix + f.Bucket + "/" + f.PackageID + "/" + f.FileSetID + "/" + f.DestName()
}

// Report is the outcome of Verify.
type Report struct {
	Files    int   // files expected
	Verified int   // objects present, complete and byte-identical with correct metadata and state DONE
	Bytes    int64 // bytes verified
	Problems []string
}

// OK reports whether every file was verified and nothing else was found.
func (r Report) OK() bool { return len(r.Problems) == 0 && r.Verified == r.Files }

// Verify checks the destination bucket against files (the simulator's ground
// truth): one object per file at its key, of the right size and MD5 (computed
// from the simulator's deterministic content, so files too large to expose an
// md5 are checked too), with the cfs-* metadata, the file's state DONE with
// that key, and no other object under the prefix.
func (p *Pipeline) Verify(ctx context.Context, files []rdptest.File) (Report, error) {
	rep := Report{Files: len(files)}
	want := map[string]rdptest.File{}
	for _, f := range files {
		want[ExpectedKey(p.Res.Prefix, f)] = f
	}
	items := map[string]*state.FileItem{}
	if err := p.State.ScanFiles(ctx, func(it *state.FileItem) error { items[it.FileID] = it; return nil }); err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	keys, err := p.ListKeys(ctx)
	if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	have := map[string]int64{}
	for _, k := range keys {
		have[k.Key] = k.Size
		if _, ok := want[k.Key]; !ok && !landing.IsLandingObject(k.Key) {
			rep.Problems = append(rep.Problems, fmt.Sprintf("unexpected object s3://%s/%s", p.Res.Bucket, k.Key))
		}
	}
	sortedKeys := make([]string, 0, len(want))
	for k := range want {
		sortedKeys = append(sortedKeys, k)
	}
	sort.Strings(sortedKeys)
	for _, key := range sortedKeys {
		f := want[key]
		probs := p.verifyOne(ctx, key, f, have, items[f.ID])
		if len(probs) == 0 {
			rep.Verified++
			rep.Bytes += f.Size
		}
		rep.Problems = append(rep.Problems, probs...)
	}
	return rep, nil
}

func (p *Pipeline) verifyOne(ctx context.Context, key string, f rdptest.File, have map[string]int64, it *state.FileItem) []string {
	var probs []string
	bad := func(format string, a ...any) {
		probs = append(probs, fmt.Sprintf("file %s (%s): ", f.ID, key)+fmt.Sprintf(format, a...))
	}
	switch {
	case it == nil:
		bad("no state item")
	case it.Status != state.StatusDone:
		bad("state %s (reason %q), want DONE", it.Status, it.Reason)
	case it.Key != "" && it.Key != key:
		bad("state key %q", it.Key)
	}
	size, ok := have[key]
	if !ok {
		bad("object missing")
		return probs
	}
	if size != f.Size {
		bad("size %d, want %d", size, f.Size)
	}
	out, err := p.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: &p.Res.Bucket, Key: aws.String(key)})
	if err != nil {
		bad("get object: %v", err)
		return probs
	}
	defer out.Body.Close()
	h := md5.New()
	n, err := io.Copy(h, out.Body)
	if err != nil {
		bad("read object: %v", err)
		return probs
	}
	if n != f.Size {
		bad("read %d bytes, want %d", n, f.Size)
	}
	wantMD5 := f.MD5
	if wantMD5 == "" {
		wantMD5 = rdptest.ContentMD5(f.ID, f.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantMD5 {
		bad("md5 %s, want %s (content differs)", got, wantMD5)
	}
	meta := out.Metadata
	for k, v := range map[string]string{
		"cfs-file-id": f.ID, "cfs-fileset-id": f.FileSetID, "cfs-package-id": f.PackageID,
		"cfs-bucket": f.Bucket, "cfs-size": strconv.FormatInt(f.Size, 10),
	} {
		if meta[k] != v {
			bad("metadata %s=%q, want %q", k, meta[k], v)
		}
	}
	return probs
}

// Object is a key and size in the destination bucket.
type Object struct {
	Key  string
	Size int64
}

// ListKeys lists the objects under the destination prefix.
func (p *Pipeline) ListKeys(ctx context.Context) ([]Object, error) {
	var objs []Object
	pg := s3.NewListObjectsV2Paginator(p.S3, &s3.ListObjectsV2Input{Bucket: &p.Res.Bucket, Prefix: aws.String(p.Res.Prefix)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", p.Res.Bucket, p.Res.Prefix, err)
		}
		for _, o := range page.Contents {
			objs = append(objs, Object{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size)})
		}
	}
	return objs, nil
}

// CopyTo downloads every object under the destination prefix into dir
// (dir/<key>) and returns how many files it wrote.
func (p *Pipeline) CopyTo(ctx context.Context, dir string) (int, error) {
	objs, err := p.ListKeys(ctx)
	if err != nil {
		return 0, err
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return 0, fmt.Errorf("copy to %s: %w", dir, err)
	}
	n := 0
	for _, o := range objs {
		dst := filepath.Join(root, filepath.FromSlash(o.Key))
		if !strings.HasPrefix(dst, root+string(filepath.Separator)) {
			return n, fmt.Errorf("copy to %s: key %q escapes the directory", dir, o.Key)
		}
		if err := p.download(ctx, o.Key, dst); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (p *Pipeline) download(ctx context.Context, key, dst string) (err error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("copy %s: %w", key, err)
	}
	out, err := p.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: &p.Res.Bucket, Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("copy %s: %w", key, err)
	}
	defer out.Body.Close()
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("copy %s: %w", key, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("copy %s: %w", key, cerr)
		}
	}()
	if _, err := io.Copy(f, out.Body); err != nil {
		return fmt.Errorf("copy %s: %w", key, err)
	}
	return nil
}

// RingTokens returns every access and refresh token ever written to the
// token ring (all versions of every slot), for tests that check no token
// leaks into logs.
func (p *Pipeline) RingTokens(ctx context.Context) ([]string, error) {
	hist, err := p.RingHistory(ctx)
	if err != nil {
		return nil, fmt.Errorf("ring tokens: %w", err)
	}
	seen := map[string]bool{}
	var toks []string
	for _, v := range hist {
		for _, t := range []string{v.Slot.AccessToken, v.Slot.RefreshToken} {
			if t != "" && !seen[t] {
				seen[t] = true
				toks = append(toks, t)
			}
		}
	}
	return toks, nil
}

// SlotVersion is one version of a token-ring slot.
type SlotVersion struct {
	SecretID string
	Created  time.Time // GetSecretValue's CreatedDate (moto's ListSecretVersionIds reports the current time)
	Slot     tokenring.Slot
}

// RingHistory returns every version of every ring slot that holds a token;
// the template's empty placeholder is skipped (docs/design.md#slot-format).
func (p *Pipeline) RingHistory(ctx context.Context) ([]SlotVersion, error) {
	var out []SlotVersion
	for _, id := range p.Res.TokenSecretIDs {
		versions, err := p.secretVersions(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, v := range versions {
			val, err := p.Secrets.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id), VersionId: aws.String(v)})
			if err != nil {
				return nil, fmt.Errorf("ring history: read %s version %s: %w", id, v, err)
			}
			slot, err := tokenring.ParseSlot(aws.ToString(val.SecretString))
			if errors.Is(err, tokenring.ErrEmptySlot) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("ring history: %s version %s: %w", id, v, err)
			}
			out = append(out, SlotVersion{SecretID: id, Created: aws.ToTime(val.CreatedDate), Slot: slot})
		}
	}
	return out, nil
}

// secretVersions lists the version ids of secret id, deprecated ones included.
func (p *Pipeline) secretVersions(ctx context.Context, id string) ([]string, error) {
	var versions []string
	pg := secretsmanager.NewListSecretVersionIdsPaginator(p.Secrets, &secretsmanager.ListSecretVersionIdsInput{
		SecretId: aws.String(id), IncludeDeprecated: aws.Bool(true),
	})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list versions of %s: %w", id, err)
		}
		for _, v := range page.Versions {
			versions = append(versions, aws.ToString(v.VersionId))
		}
	}
	return versions, nil
}
