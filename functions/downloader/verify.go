package main

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strings"
)

// verifyMD5 checks the downloaded file's MD5 against the message's md5 (an
// API gave one: a mismatch is permanent) or else the source's ETag where it
// tells the MD5 (see etagCheck). As nothing public says how the source
// objects are stored, an ETag that differs is not trusted at once: the file
// is downloaded again, and when the new download has the same MD5 as the
// first, the ETag is not an MD5 (e.g. SSE-KMS) and the file lands (size and
// per-part CRC32C verified); a transfer fault would give another MD5. ok
// false: the returned outcome ends this attempt.
func (j *job) verifyMD5(sum []byte) (outcome, bool) {
	if j.wantMD5 != nil {
		if !bytes.Equal(sum, j.wantMD5) {
			return failed("md5-mismatch", fmt.Errorf("md5 mismatch: the message says %x, downloaded %x", j.wantMD5, sum)), false
		}
		j.md5OK = true
		return outcome{}, true
	}
	etag := j.pin.get()
	verifiable, match := etagCheck(etag, sum)
	switch {
	case !verifiable:
		return outcome{}, true
	case match:
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

// etagCheck compares a file's MD5 with its S3 ETag where the ETag tells the
// MD5: a single-part ETag is the MD5 itself; a one-part multipart ETag
// ("<hex>-1") is the MD5 of that MD5. Other multipart ETags ("…-N", N > 1:
// the MD5 of the part MD5s, for part boundaries not known here), weak or
// empty ones are not verifiable.
func etagCheck(etag string, sum []byte) (verifiable, match bool) {
	e := strings.Trim(etag, `"`)
	h, onePart := strings.CutSuffix(e, "-1")
	want, err := hex.DecodeString(h)
	if err != nil || len(want) != md5.Size {
		return false, false
	}
	if onePart {
		s := md5.Sum(sum)
		sum = s[:]
	}
	return true, bytes.Equal(want, sum)
}

// hashUseless reports whether the download's MD5 can verify nothing: no md5
// was given and the source's (known) ETag does not tell the MD5.
func (j *job) hashUseless() bool {
	if j.wantMD5 != nil {
		return false
	}
	etag := j.pin.get()
	if etag == "" {
		return false // not known yet
	}
	verifiable, _ := etagCheck(etag, make([]byte, md5.Size))
	return !verifiable
}
