package randid

import (
	"regexp"
	"testing"
)

func TestShapes(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 100 {
		u, h := UUID(), Hex(8)
		if !uuid.MatchString(u) {
			t.Fatalf("UUID() = %q, not a version-4 UUID", u)
		}
		if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(h) {
			t.Fatalf("Hex(8) = %q, want 16 hex digits", h)
		}
		if seen[u] || seen[h] {
			t.Fatalf("repeated value %q or %q", u, h)
		}
		seen[u], seen[h] = true, true
	}
}
