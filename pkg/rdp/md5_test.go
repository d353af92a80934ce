package rdp

import (
	"encoding/hex"
	"testing"
)

func TestParseMD5(t *testing.T) {
	const empty = "d41d8cd98f00b204e9800998ecf8427e" // md5 of no bytes
	tests := []struct {
		in   string
		want string // hex; "" for nil
	}{
		{empty, empty},
		{"D41D8CD98F00B204E9800998ECF8427E", empty},
		{" " + empty + "\n", empty},
		{"1B2M2Y8AsgTpgAmY7PhCfg==", empty},
		{"", ""},
		{"00", ""},
		{empty[:30], ""},
		{"not-a-digest", ""},
		{"AAAA", ""}, // base64, but not 16 bytes
	}
	for _, tt := range tests {
		got := ParseMD5(tt.in)
		if (got == nil) != (tt.want == "") || (got != nil && hex.EncodeToString(got) != tt.want) {
			t.Errorf("ParseMD5(%q) = %x, want %q", tt.in, got, tt.want)
		}
	}
}
