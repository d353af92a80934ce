package lambdarun

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build runs one `go build` of pkgs in dir ("": the working directory) as
// `make build` does: CGO_ENABLED=0, this machine's OS and architecture, and
// -trimpath when trimpath. out is go build's -o: a file for one package, a
// directory (ending in a path separator) for several.
func Build(ctx context.Context, dir string, trimpath bool, out string, pkgs ...string) error {
	args := []string{"build"}
	if trimpath {
		args = append(args, "-trimpath")
	}
	args = append(append(args, "-o", out), pkgs...)
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, bytes.TrimSpace(output.Bytes()))
	}
	return nil
}

// BuildFunction builds the Go package pkgPath (an import path, or a path
// relative to the working directory such as ./functions/downloader) into
// outDir/bootstrap with Build, -trimpath included. It returns the binary's
// path.
func BuildFunction(ctx context.Context, pkgPath, outDir string) (string, error) {
	out, err := filepath.Abs(filepath.Join(outDir, "bootstrap"))
	if err != nil {
		return "", fmt.Errorf("build %s: %w", pkgPath, err)
	}
	if err := Build(ctx, "", true, out, pkgPath); err != nil {
		return "", fmt.Errorf("build %s: %w", pkgPath, err)
	}
	return out, nil
}
