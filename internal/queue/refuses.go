package queue

import (
	"fmt"
	"unicode/utf8"
)

// sqsAccepts reports whether SQS accepts r in a message body: #x9 | #xA |
// #xD | #x20–#xD7FF | #xE000–#xFFFD | #x10000–#x10FFFF (Amazon SQS
// SendMessage API reference, MessageBody).
func sqsAccepts(r rune) bool {
	switch {
	case r == 0x9 || r == 0xA || r == 0xD:
		return true
	case r >= 0x20 && r <= 0xD7FF:
		return true
	case r >= 0xE000 && r <= 0xFFFD:
		return true
	default:
		return r >= 0x10000 && r <= utf8.MaxRune
	}
}

// Refuses describes the first character of body SQS would refuse, or
// returns "" when SQS accepts the whole body.
func Refuses(body string) string {
	for i, r := range body {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(body[i:]); n == 1 {
				return fmt.Sprintf("invalid UTF-8 at byte %d", i)
			}
		}
		if !sqsAccepts(r) {
			return fmt.Sprintf("%U at byte %d", r, i)
		}
	}
	return ""
}
