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
