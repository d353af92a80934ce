package landing

import (
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// FileSetItem is the state item the poller records for a file-set whose
// files it is about to claim: its metadata as the API lists it and its file
// ids. ttl (Unix seconds; 0: none) matches the TTL of the files' items.
func FileSetItem(fs rdp.FileSet, bucket, packageID string, fileIDs []string, ttl int64) state.FileSetItem {
	if fs.BucketName != "" {
		bucket = fs.BucketName
	}
	if fs.PackageID != "" {
		packageID = fs.PackageID
	}
	it := state.FileSetItem{
		FileSetID: fs.ID, Name: fs.Name, Bucket: bucket, PackageID: packageID,
		AvailableFrom: fs.AvailableFrom, AvailableTo: fs.AvailableTo, Created: fs.Created, Modified: fs.Modified,
		FileIDs: dedupe(fileIDs), TTL: ttl,
	}
	for _, a := range fs.Attributes {
		it.Attributes = append(it.Attributes, state.Attribute{Name: a.Name, Value: a.Value})
	}
	return it
}

func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// maxItemBytes keeps a file-set item (its file ids twice: listed and
// landed) well inside DynamoDB's 400 KB item limit.
const maxItemBytes = 300 << 10

// Recordable reports whether a file-set's item fits in DynamoDB: a file-set
// of very many files (several thousand) does not, and gets no manifest,
// index entry or event (its files land as usual).
func Recordable(it state.FileSetItem) bool {
	n := len(it.Name) + len(it.FileSetID) + len(it.Bucket) + len(it.PackageID) + 512
	for _, a := range it.Attributes {
		n += len(a.Name) + len(a.Value) + 16
	}
	for _, id := range it.FileIDs {
		n += 2 * (len(id) + 4)
	}
	return n <= maxItemBytes
}
