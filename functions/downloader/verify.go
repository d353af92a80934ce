package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
)

// verifyMD5 checks the downloaded file's MD5 against the message's md5 (an
// API gave one: a mismatch is permanent) or else the source's plain ETag:
// S3's ETag is the MD5 of an object uploaded in one part without SSE-KMS.
// As nothing public says how the source objects are stored, an ETag that
// differs is not trusted at once: the file is downloaded again, and when
// the new download has the same MD5 as the first, the ETag is not an MD5
// and the file lands (size and per-part CRC32C verified). A multipart
// ("…-N") or missing ETag verifies nothing more. ok false: the returned
// outcome ends this attempt.
func (j *job) verifyMD5(sum []byte) (outcome, bool) {
	if j.wantMD5 != nil {
		if !bytes.Equal(sum, j.wantMD5) {
			return failed("md5-mismatch", fmt.Errorf("md5 mismatch: the file store says %x, downloaded %x", j.wantMD5, sum)), false
		}
		j.md5OK = true
		return outcome{}, true
	}
	etag := j.pin.get()
	want := plainETagMD5(etag)
	if want == nil {
		return outcome{}, true
	}
	if bytes.Equal(sum, want) {
		j.md5OK = true
		return outcome{}, true
	}
	got := hex.EncodeToString(sum)
	if j.up.ETagMismatch == got {
		j.log.Warn("two downloads gave the same MD5, which differs from the source's ETag: the ETag is not an MD5 (e.g. SSE-KMS); size and CRC32C verified", "etag", etag, "md5", got)
		return outcome{}, true
	}
	j.up.ETagMismatch = got
	return outcome{kind: outRestart, reason: "etag-mismatch",
		err: fmt.Errorf("MD5 %s of the download differs from the source's ETag %s: downloading again", got, etag)}, false
}

// plainETagMD5 returns the MD5 a single-part S3 ETag holds, nil for any
// other ETag (multipart "…-N", weak, empty).
func plainETagMD5(etag string) []byte {
	e := strings.Trim(etag, `"`)
	if len(e) != 32 {
		return nil
	}
	b, err := hex.DecodeString(e)
	if err != nil {
		return nil
	}
	return b
}
