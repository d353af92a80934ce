package repo

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRootAbove(t *testing.T) {
	root := t.TempDir()
	deep := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok := rootAbove(deep); ok {
		t.Fatal("found a root in a tree without go.mod and template.yaml")
	}
	for _, f := range []string{"go.mod", "template.yaml"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A go.mod alone below (a nested module) is not the root.
	if err := os.WriteFile(filepath.Join(root, "a", "go.mod"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, ok := rootAbove(deep); !ok || got != root {
		t.Errorf("rootAbove(%s) = %q, %v; want %q", deep, got, ok, root)
	}
}

func TestRootFindsThisRepository(t *testing.T) {
	t.Chdir(t.TempDir()) // outside the tree: falls back to this file's place
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "repo", "root.go")); err != nil {
		t.Errorf("Root() = %s, which does not hold this package: %v", root, err)
	}
}
