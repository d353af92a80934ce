package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every variable a function reads is documented in README.md's configuration
// table, so the documentation cannot fall behind the code.
func TestEveryVariableIsDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, cfg := range []any{Refresher{}, Poller{}, Downloader{}} {
		for _, name := range EnvNames(cfg) {
			if !strings.Contains(readme, "| `"+name+"`") && !strings.Contains(readme, "`"+name+"`, `") && !strings.Contains(readme, ", `"+name+"` |") {
				t.Errorf("%T reads %s, which README.md's configuration table does not list", cfg, name)
			}
		}
	}
}
