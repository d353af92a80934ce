package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every variable a function reads is documented in docs/configuration.md's
// table, so the documentation cannot fall behind the code.
func TestEveryVariableIsDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, cfg := range []any{Refresher{}, Poller{}, Downloader{}, NotificationReader{}} {
		for _, name := range EnvNames(cfg) {
			if !strings.Contains(doc, "| `"+name+"`") && !strings.Contains(doc, "`"+name+"`, `") && !strings.Contains(doc, ", `"+name+"` |") {
				t.Errorf("%T reads %s, which docs/configuration.md's table does not list", cfg, name)
			}
		}
	}
}
