package rdp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// File-store endpoints.
const (
	PackagesPath = "/file-store/v1/packages"
	FileSetsPath = "/file-store/v1/file-sets"
	FilesPath    = "/file-store/v1/files"
)

// Package is a CFS package: a product the account is entitled to, whose
// file-sets are published in one or more buckets.
type Package struct {
	PackageID   string `json:"packageId"`
	PackageName string `json:"packageName"` // in LSEG's example, its presigned URLs' first path segment
	// BucketNames are the buckets its file-sets are in: a FileSetQuery.Bucket.
	BucketNames []string  `json:"bucketNames"`
	PackageType string    `json:"packageType"` // e.g. "bulk"
	Created     time.Time `json:"created"`
	Modified    time.Time `json:"modified"`
}

// Attribute is a name/value pair on a file-set.
type Attribute struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// FileSet is a CFS file-set: a group of files published together.
type FileSet struct {
	ID            string      `json:"id"`
	Name          string      `json:"name"`
	BucketName    string      `json:"bucketName"`
	PackageID     string      `json:"packageId"`
	Attributes    []Attribute `json:"attributes"`
	Files         []string    `json:"files"` // the ids of its files (Client.Files lists their details)
	NumFiles      int         `json:"numFiles"`
	AvailableFrom time.Time   `json:"availableFrom"`
	// AvailableTo ends the file-set's life: after it the file store no
	// longer lists it to the account (docs/rdp.md#file-store).
	AvailableTo time.Time `json:"availableTo"`
	Status      string    `json:"status"` // StatusReady when its files can be downloaded
	Created     time.Time `json:"created"`
	Modified    time.Time `json:"modified"`
}

// StatusReady is the status of a file-set whose files can be downloaded.
const StatusReady = "READY"

// File is one CFS file, as /files lists it (docs/rdp.md#file-store).
type File struct {
	ID string `json:"id"`
	// FileName is the listed name. It may contain ':'; FileNameFromURL's
	// name for the same file, from its presigned URL, has '_' there.
	FileName  string `json:"filename"`
	FileSetID string `json:"filesetId"`
	Size      int64  `json:"fileSizeInBytes"` // bytes
	// MD5 is the content's MD5 when the file store gives one (ParseMD5
	// decodes it). No public sample shows it: expect "" and verify the size.
	MD5 string `json:"md5"`
	// Href is a link to the file where an answer carries one; no public
	// /files sample shows it: usually "".
	Href     string    `json:"href"`
	Created  time.Time `json:"created"`
	Modified time.Time `json:"modified"`
}

// MaxPageSize is the largest pageSize the file store accepts.
const MaxPageSize = 100

// FileSetQuery selects file-sets. Bucket is required.
type FileSetQuery struct {
	Bucket        string
	PackageID     string
	PageSize      int // 1..MaxPageSize; 0 means MaxPageSize
	ModifiedSince time.Time
	CreatedSince  time.Time
	Status        string            // e.g. "READY"
	Attributes    map[string]string // name → value filters
}

func (q FileSetQuery) path() (string, error) {
	if q.Bucket == "" {
		return "", errors.New("bucket is required")
	}
	if q.PageSize < 0 || q.PageSize > MaxPageSize {
		return "", fmt.Errorf("pageSize %d out of range 1..%d", q.PageSize, MaxPageSize)
	}
	ps := q.PageSize
	if ps == 0 {
		ps = MaxPageSize
	}
	v := url.Values{"bucket": {q.Bucket}, "pageSize": {strconv.Itoa(ps)}}
	if q.PackageID != "" {
		v.Set("packageId", q.PackageID)
	}
	if !q.ModifiedSince.IsZero() {
		v.Set("modifiedSince", q.ModifiedSince.UTC().Format(time.RFC3339))
	}
	if !q.CreatedSince.IsZero() {
		v.Set("createdSince", q.CreatedSince.UTC().Format(time.RFC3339))
	}
	if q.Status != "" {
		v.Set("status", q.Status)
	}
	if len(q.Attributes) > 0 {
		var attrs []string
		for k, val := range q.Attributes {
			attrs = append(attrs, k+":"+val)
		}
		// deterministic order
		slices.Sort(attrs)
		v.Set("attributes", strings.Join(attrs, ","))
	}
	return FileSetsPath + "?" + v.Encode(), nil
}

// page is one page of a listing.
type page[T any] struct {
	Value    []T    `json:"value"`
	NextLink string `json:"@nextLink"`
}

// DecodePage parses one listing page (exported for fuzzing).
func DecodePage[T any](body []byte) ([]T, string, error) {
	var p page[T]
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, "", err
	}
	return p.Value, p.NextLink, nil
}

// Page is one page of a listing: its items and the @nextLink to the page
// after it ("" on the last page). NextLink is a path relative to the API host
// carrying an opaque cursor (skipToken); it holds no credentials, so a caller
// may persist it and resume the listing from it later.
type Page[T any] struct {
	Items    []T
	NextLink string
}

// Errors that end a listing whose @nextLink cannot be followed (see
// docs/rdp.md#file-set-paging).
var (
	// ErrRepeatedLink is yielded when an @nextLink repeats: paging stops there.
	ErrRepeatedLink = errors.New("rdp: repeated @nextLink")
	// ErrForeignLink is yielded when an @nextLink points at another host.
	ErrForeignLink = errors.New("rdp: @nextLink points to another host")
)

// pages follows @nextLink from first, yielding every page. It stops with
// ErrForeignLink on a link to another host and ErrRepeatedLink on a link it
// already followed.
func pages[T any](ctx context.Context, c *Client, op, first string) iter.Seq2[Page[T], error] {
	return func(yield func(Page[T], error) bool) {
		seen := map[string]bool{}
		link := first
		for link != "" {
			u, err := c.resolve(link)
			if err != nil {
				yield(Page[T]{}, fmt.Errorf("%s: %w", op, err))
				return
			}
			key := u.String()
			if seen[key] {
				yield(Page[T]{}, fmt.Errorf("%s: %w after %d pages", op, ErrRepeatedLink, len(seen)))
				return
			}
			seen[key] = true
			var p page[T]
			if err := c.getJSON(ctx, op, key, &p); err != nil {
				yield(Page[T]{}, err)
				return
			}
			if !yield(Page[T]{Items: p.Value, NextLink: p.NextLink}, nil) {
				return
			}
			link = p.NextLink
		}
	}
}

// paginate is pages flattened into items. onPage, if set, is called once per
// fetched page.
func paginate[T any](ctx context.Context, c *Client, op, first string, onPage func()) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		for p, err := range pages[T](ctx, c, op, first) {
			if err != nil {
				yield(zero, err)
				return
			}
			if onPage != nil {
				onPage()
			}
			for _, it := range p.Items {
				if !yield(it, nil) {
					return
				}
			}
		}
	}
}

// Packages lists the packages of a bucket the account can see.
func (c *Client) Packages(ctx context.Context, bucket string) iter.Seq2[Package, error] {
	q := url.Values{}
	if bucket != "" {
		q.Set("bucketName", bucket)
	}
	ref := PackagesPath
	if len(q) > 0 {
		ref += "?" + q.Encode()
	}
	return paginate[Package](ctx, c, "list packages", ref, nil)
}

// FileSets lists file-sets matching q, following @nextLink across pages.
func (c *Client) FileSets(ctx context.Context, q FileSetQuery) iter.Seq2[FileSet, error] {
	return c.FileSetsWithPages(ctx, q, nil)
}

// FileSetsWithPages is FileSets calling onPage once per page fetched (for metrics).
func (c *Client) FileSetsWithPages(ctx context.Context, q FileSetQuery, onPage func()) iter.Seq2[FileSet, error] {
	ref, err := q.path()
	if err != nil {
		return func(yield func(FileSet, error) bool) { yield(FileSet{}, fmt.Errorf("list file-sets: %w", err)) }
	}
	return paginate[FileSet](ctx, c, "list file-sets", ref, onPage)
}

// FileSetPages lists file-sets matching q page by page. With from set (an
// @nextLink saved from an earlier page of the same query) the listing
// resumes there instead of at the first page.
func (c *Client) FileSetPages(ctx context.Context, q FileSetQuery, from string) iter.Seq2[Page[FileSet], error] {
	ref, err := q.path()
	if err != nil {
		return func(yield func(Page[FileSet], error) bool) {
			yield(Page[FileSet]{}, fmt.Errorf("list file-sets: %w", err))
		}
	}
	if from != "" {
		ref = from
	}
	return pages[FileSet](ctx, c, "list file-sets", ref)
}

// Files lists the files of a file-set.
func (c *Client) Files(ctx context.Context, fileSetID string) iter.Seq2[File, error] {
	if fileSetID == "" {
		return func(yield func(File, error) bool) { yield(File{}, errors.New("list files: file-set id is required")) }
	}
	v := url.Values{"filesetId": {fileSetID}, "pageSize": {strconv.Itoa(MaxPageSize)}}
	return paginate[File](ctx, c, "list files", FilesPath+"?"+v.Encode(), nil)
}

// File returns one file's metadata.
func (c *Client) File(ctx context.Context, id string) (*File, error) {
	if err := checkID(id); err != nil {
		return nil, fmt.Errorf("get file: %w", err)
	}
	var f File
	if err := c.getJSON(ctx, "get file", FilesPath+"/"+url.PathEscape(id), &f); err != nil {
		return nil, err
	}
	if f.ID == "" {
		return nil, &DecodeError{Endpoint: "get file", Err: errors.New("id missing")}
	}
	return &f, nil
}

// StreamURL returns the presigned download URL of a file
// (GET /files/{id}/stream?doNotRedirect=true). The URL carries credentials:
// never log it (see RedactURL).
func (c *Client) StreamURL(ctx context.Context, id string) (string, error) {
	if err := checkID(id); err != nil {
		return "", fmt.Errorf("get stream url: %w", err)
	}
	var r struct {
		URL string `json:"url"`
	}
	if err := c.getJSON(ctx, "get stream url", FilesPath+"/"+url.PathEscape(id)+"/stream?doNotRedirect=true", &r); err != nil {
		return "", err
	}
	u, err := url.Parse(r.URL)
	if r.URL == "" || err != nil || !u.IsAbs() || (u.Scheme != "https" && u.Scheme != "http") {
		return "", &DecodeError{Endpoint: "get stream url", Err: errors.New("url missing or not an absolute http(s) URL")}
	}
	return r.URL, nil
}

func checkID(id string) error {
	if id == "" {
		return errors.New("id is required")
	}
	if strings.ContainsAny(id, "/?#") {
		return fmt.Errorf("invalid id %q", id)
	}
	return nil
}

// FileNameFromURL derives the file name from a presigned URL by LSEG's
// convention: the last path segment, percent-decoded, with ':' replaced by '_'.
func FileNameFromURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("file name from url: %w", errors.New("unparseable url"))
	}
	seg := path.Base(u.EscapedPath())
	name, err := url.PathUnescape(seg)
	if err != nil || name == "" || name == "." || name == ".." {
		return "", errors.New("file name from url: no usable last path segment")
	}
	// An encoded '/' (%2F) would add key segments (or climb out of a local
	// directory): refuse it rather than guess.
	if strings.ContainsAny(name, "/\\\x00") {
		return "", errors.New("file name from url: last path segment decodes to a path")
	}
	return strings.ReplaceAll(name, ":", "_"), nil
}
