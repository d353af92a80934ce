package rdp

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// ParseMD5 decodes a file's md5 (File.MD5) as the file store or an S3 ETag
// may give it: 32 hex digits or the base64 of the 16-byte digest. It returns
// nil when s is neither (empty included), so the caller knows it cannot
// verify the file by it.
func ParseMD5(s string) []byte {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == md5.Size {
		return b
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == md5.Size {
		return b
	}
	return nil
}
