// Package repo finds the cfsync repository's root directory, for the tools
// and tests that build or read files from the source tree.
package repo

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
)

// Root is the nearest directory holding both go.mod and template.yaml,
// searched upwards from the working directory and then from this source
// file (so that a test binary run from anywhere still finds its tree).
func Root() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		if root, ok := rootAbove(dir); ok {
			return root, nil
		}
	}
	return "", errors.New("find repository root: no directory with go.mod and template.yaml above the working directory")
}

func rootAbove(dir string) (string, bool) {
	for {
		if isFile(filepath.Join(dir, "go.mod")) && isFile(filepath.Join(dir, "template.yaml")) {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
