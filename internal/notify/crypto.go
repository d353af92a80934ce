// Package notify turns CFS file-store notifications (LSEG's push of READY
// file-sets to an AWS SQS queue) into download-queue messages: it decrypts
// and parses a queue message, and hands the file-set's files to the same
// claim-then-queue path as the poller, so a file is queued once whichever
// path sees it first (docs/design.md#notifications).
//
// The protocol is the one LSEG's FileNoti sample shows
// (github.com/LSEG-API-Samples/FileNoti.Message.Distribution.Tools,
// msg_dist_tools/sqsQueue.py and fileNotiMessages.py).
package notify

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Layout of a decoded message body (sqsQueue.py decrypt): the first 16 bytes
// are authenticated data whose last 12 bytes are the GCM nonce; the last 16
// bytes are the tag; what lies between is the cipher text.
const (
	aadLen   = 16
	nonceLen = 12
	tagLen   = 16
)

// ErrUndecryptable: the message body is not a notification sealed with the
// subscription's key (bad base64, too short, wrong key, tampered). The error
// never carries the body.
var ErrUndecryptable = errors.New("notification cannot be decrypted")

// ParseKey decodes a subscription's cryptographyKey (base64 of an AES key).
// The error names the field, never the value.
func ParseKey(b64 string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, errors.New(`field "cryptographyKey": not base64`)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf(`field "cryptographyKey": %d bytes, want an AES key of 16, 24 or 32`, len(k))
}

// Decrypt opens one SQS message body (base64 text) with key. Any failure
// wraps ErrUndecryptable and says why without quoting the body.
func Decrypt(key []byte, body string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(body))
	if err != nil {
		return nil, fmt.Errorf("%w: body is not base64", ErrUndecryptable)
	}
	if len(raw) < aadLen+tagLen {
		return nil, fmt.Errorf("%w: body is %d bytes, shorter than authenticated data and tag (%d)", ErrUndecryptable, len(raw), aadLen+tagLen)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: key: %d bytes is not an AES key size", ErrUndecryptable, len(key))
	}
	gcm, err := cipher.NewGCM(block) // 12-byte nonce, 16-byte tag
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUndecryptable, err)
	}
	aad := raw[:aadLen]
	nonce := aad[aadLen-nonceLen:]
	plain, err := gcm.Open(nil, nonce, raw[aadLen:], aad) // cipher text || tag
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed (wrong key, truncated or altered message)", ErrUndecryptable)
	}
	return plain, nil
}
