package landing

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/cfsync/cfsync/internal/state"
)

// Kinds of file-set (see Kind).
const (
	KindInit    = "Init"
	KindDelta   = "Delta"
	KindUnknown = "Unknown"
)

// ManifestVersion is the version of the manifest and index formats.
const ManifestVersion = 1

// Manifest describes one landed file-set. It is written to ManifestKey and is
// the detail of the "FileSet Landed" event (see docs/design.md#downstream).
type Manifest struct {
	Version     int               `json:"version"`
	FileSetID   string            `json:"fileSetId"`
	FileSetName string            `json:"fileSetName"`
	Bucket      string            `json:"bucket"`
	PackageID   string            `json:"packageId"`
	Kind        string            `json:"kind"`
	Attributes  []state.Attribute `json:"attributes"`
	// ContentFrom and ContentTo are the file-set's attributes of those names
	// (case-insensitive), when it has them.
	ContentFrom   string     `json:"contentFrom,omitempty"`
	ContentTo     string     `json:"contentTo,omitempty"`
	AvailableFrom *time.Time `json:"availableFrom,omitempty"`
	AvailableTo   *time.Time `json:"availableTo,omitempty"`
	Created       *time.Time `json:"created,omitempty"`
	// LandedAt is when the file-set's last file landed.
	LandedAt    time.Time `json:"landedAt"`
	DestBucket  string    `json:"destBucket"`
	ManifestKey string    `json:"manifestKey"`
	FileCount   int       `json:"fileCount"`
	TotalSize   int64     `json:"totalSize"`
	// Files, by key. In an event whose manifest is too large for
	// EventBridge, Files is left out and FilesOmitted is set: read the
	// manifest object.
	Files        []ManifestFile `json:"files,omitempty"`
	FilesOmitted bool           `json:"filesOmitted,omitempty"`
}

// ManifestFile is one landed object.
type ManifestFile struct {
	FileID string `json:"fileId"`
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	// ETag is the S3 object's ETag as recorded when the file landed.
	ETag string `json:"etag"`
}

// PackagePrefix is the key prefix of a package's objects.
func PackagePrefix(destPrefix, bucket, packageID string) string {
	return destPrefix + bucket + "/" + packageID + "/"
}

// ManifestKey is the key of a file-set's manifest.
func ManifestKey(destPrefix, bucket, packageID, fileSetID string) string {
	return PackagePrefix(destPrefix, bucket, packageID) + fileSetID + "/" + ManifestName
}

// IndexKey is the key of a package's index.
func IndexKey(destPrefix, bucket, packageID string) string {
	return PackagePrefix(destPrefix, bucket, packageID) + IndexName
}

// buildManifest builds the manifest of a complete file-set from its files'
// states; every file must be DONE.
func buildManifest(fs *state.FileSetItem, files map[string]*state.FileItem, destBucket, destPrefix string) (*Manifest, error) {
	m := &Manifest{
		Version: ManifestVersion, FileSetID: fs.FileSetID, FileSetName: fs.Name, Bucket: fs.Bucket, PackageID: fs.PackageID,
		Kind: Kind(fs.Name, fs.Attributes), Attributes: fs.Attributes,
		ContentFrom: attr(fs.Attributes, "contentFrom"), ContentTo: attr(fs.Attributes, "contentTo"),
		AvailableFrom: timePtr(fs.AvailableFrom), AvailableTo: timePtr(fs.AvailableTo), Created: timePtr(fs.Created),
		DestBucket: destBucket, ManifestKey: ManifestKey(destPrefix, fs.Bucket, fs.PackageID, fs.FileSetID),
	}
	if m.Attributes == nil {
		m.Attributes = []state.Attribute{}
	}
	for _, id := range fs.FileIDs {
		f := files[id]
		if f == nil || f.Status != state.StatusDone {
			return nil, fmt.Errorf("file-set %s: file %s is not DONE", fs.FileSetID, id)
		}
		m.Files = append(m.Files, ManifestFile{FileID: id, Key: f.Key, Size: f.Size, ETag: f.ETag})
		m.TotalSize += f.Size
		if f.DoneAt.After(m.LandedAt) {
			m.LandedAt = f.DoneAt.UTC()
		}
	}
	slices.SortFunc(m.Files, func(a, b ManifestFile) int { return strings.Compare(a.Key, b.Key) })
	m.FileCount = len(m.Files)
	return m, nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func attr(attrs []state.Attribute, name string) string {
	for _, a := range attrs {
		if strings.EqualFold(a.Name, name) {
			return a.Value
		}
	}
	return ""
}

// Kind tells an Init file-set from a Delta one. The value of an attribute
// whose name contains "type" or "kind" decides first, then the file-set's
// name: the first word (letters only, case-insensitive) that is "init",
// "initial" or "full" makes it Init, "delta" or "incremental" Delta.
// Anything else is Unknown (consumers should treat it as they see fit).
func Kind(name string, attrs []state.Attribute) string {
	for _, a := range attrs {
		n := strings.ToLower(a.Name)
		if strings.Contains(n, "type") || strings.Contains(n, "kind") {
			if k := kindOf(a.Value); k != "" {
				return k
			}
		}
	}
	if k := kindOf(name); k != "" {
		return k
	}
	return KindUnknown
}

func kindOf(s string) string {
	words := strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) })
	for _, w := range words {
		switch w {
		case "init", "initial", "full":
			return KindInit
		case "delta", "incremental":
			return KindDelta
		}
	}
	return ""
}

// Names of the objects the landing step writes (the manifest next to a
// file-set's files, the index at the package's root).
const (
	ManifestName = "_manifest.json"
	IndexName    = "_index.json"
)

// IsLandingObject reports whether key is a manifest or an index rather than
// a CFS file (tools that list the files skip these).
func IsLandingObject(key string) bool {
	return strings.HasSuffix(key, "/"+ManifestName) || strings.HasSuffix(key, "/"+IndexName)
}
