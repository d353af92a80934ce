package queue

import "testing"

func TestRefuses(t *testing.T) {
	for _, tt := range []struct {
		body string
		bad  bool
	}{
		{"plain", false}, {"tab\tnl\ncr\r", false}, {"é€😀", false}, {"\ufffd", false},
		{"\uffff", true}, {"\ufffe", true}, {"\x01", true}, {"a\xffb", true},
	} {
		if got := Refuses(tt.body) != ""; got != tt.bad {
			t.Errorf("Refuses(%+q) = %v, want %v", tt.body, got, tt.bad)
		}
	}
}
