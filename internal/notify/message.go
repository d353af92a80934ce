package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrMalformed: the decrypted notification is not the JSON LSEG documents,
// or lacks a field cfsync needs. Errors name the field, never its value.
var ErrMalformed = errors.New("malformed notification")

// Notification is a decrypted CFS file-store notification (the fields
// fileNotiMessages.py downloadFile reads, plus ids and status).
type Notification struct {
	MessageID string    // ecpMessageID
	SeqNo     int64     // distributionSeqNo (0 when absent)
	CurrentAt time.Time // zero when absent or unparsable
	FileSet   FileSet
}

// FileSet is the notification's file-set.
type FileSet struct {
	ID          string
	BucketName  string
	PackageID   string
	PackageName string
	Name        string
	Status      string
	NumFiles    int
	AvailableTo time.Time
	Files       []File
}

// File is one file of the notified file-set.
type File struct {
	ID       string
	FileName string
	Size     int64
}

// Ready reports whether the file-set is downloadable.
func (fs FileSet) Ready() bool { return strings.EqualFold(fs.Status, "READY") }

type wire struct {
	ECPMessageID      string      `json:"ecpMessageID"`
	DistributionSeqNo json.Number `json:"distributionSeqNo"`
	Payload           *struct {
		FileStoreNotification *struct {
			CurrentAt string `json:"currentAt"`
			FileSet   *struct {
				ID          string `json:"id"`
				BucketName  string `json:"bucketName"`
				PackageID   string `json:"packageId"`
				PackageName string `json:"packageName"`
				Name        string `json:"name"`
				Status      string `json:"status"`
				NumFiles    int    `json:"numFiles"`
				AvailableTo string `json:"availableTo"`
				Files       struct {
					Values []struct {
						ID       string `json:"id"`
						FileName string `json:"filename"`
						Size     int64  `json:"fileSizeInBytes"`
					} `json:"values"`
				} `json:"files"`
			} `json:"fileset"`
		} `json:"FileStoreNotification"`
	} `json:"payload"`
}

// Parse decodes a decrypted notification. A READY file-set must carry its
// id, bucketName, packageId and every file's id.
func Parse(plain []byte) (Notification, error) {
	var w wire
	if err := json.Unmarshal(plain, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Notification{}, fmt.Errorf("%w: field %q: want %s, got %s", ErrMalformed, te.Field, te.Type, te.Value)
		}
		return Notification{}, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	if w.Payload == nil || w.Payload.FileStoreNotification == nil || w.Payload.FileStoreNotification.FileSet == nil {
		return Notification{}, fmt.Errorf(`%w: field "payload.FileStoreNotification.fileset" is missing`, ErrMalformed)
	}
	fsn := w.Payload.FileStoreNotification
	in := fsn.FileSet
	n := Notification{MessageID: w.ECPMessageID}
	n.SeqNo, _ = w.DistributionSeqNo.Int64()
	n.CurrentAt, _ = time.Parse(time.RFC3339Nano, fsn.CurrentAt)
	fs := FileSet{ID: in.ID, BucketName: in.BucketName, PackageID: in.PackageID, PackageName: in.PackageName,
		Name: in.Name, Status: in.Status, NumFiles: in.NumFiles}
	fs.AvailableTo, _ = time.Parse(time.RFC3339Nano, in.AvailableTo)
	for i, f := range in.Files.Values {
		if strings.TrimSpace(f.ID) == "" {
			return Notification{}, fmt.Errorf(`%w: field "payload.FileStoreNotification.fileset.files.values[%d].id" is empty`, ErrMalformed, i)
		}
		fs.Files = append(fs.Files, File{ID: f.ID, FileName: f.FileName, Size: f.Size})
	}
	n.FileSet = fs
	if !fs.Ready() {
		return n, nil
	}
	for _, f := range []struct{ name, v string }{{"id", fs.ID}, {"bucketName", fs.BucketName}, {"packageId", fs.PackageID}} {
		if strings.TrimSpace(f.v) == "" {
			return Notification{}, fmt.Errorf(`%w: field "payload.FileStoreNotification.fileset.%s" is empty`, ErrMalformed, f.name)
		}
	}
	return n, nil
}
