// Package randid makes random identifiers for the local stand-ins (the RDP
// simulator, the Lambda runner, tests): one copy of the UUID and hex shapes.
package randid

import (
	"crypto/rand"
	"encoding/hex"
)

// Hex is n random bytes in hex (2n digits).
func Hex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b)
}

// UUID is a random (version 4, RFC 9562) UUID in its 8-4-4-4-12 form.
func UUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
