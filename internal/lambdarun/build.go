package lambdarun

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildFunction builds the Go package pkgPath (an import path, or a path
// relative to the working directory such as ./functions/downloader) into
// outDir/bootstrap, as `make build` does: CGO_ENABLED=0, -trimpath, this
// machine's OS and architecture. It returns the binary's path.
func BuildFunction(ctx context.Context, pkgPath, outDir string) (string, error) {
	out, err := filepath.Abs(filepath.Join(outDir, "bootstrap"))
	if err != nil {
		return "", fmt.Errorf("build %s: %w", pkgPath, err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", out, pkgPath)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkgPath, err, bytes.TrimSpace(output.Bytes()))
	}
	return out, nil
}
