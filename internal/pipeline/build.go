package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// The functions, by the name of their directory under functions/ (and of
// their binary's directory: bin/<name>/bootstrap).
const (
	Refresher  = "token-refresher"
	Poller     = "fileset-poller"
	Downloader = "downloader"
	// Reader is the optional fourth function: the stack has it when the
	// template parameter Notifications is "true" (see Optional).
	Reader = "notification-reader"
)

// Functions lists the functions every stack has.
var Functions = []string{Refresher, Poller, Downloader}

// Optional maps each optional function to the template parameter that
// adds it when "true".
var Optional = map[string]string{Reader: "Notifications"}

// logicalIDs maps function names to their logical ids in template.yaml.
var logicalIDs = map[string]string{
	Refresher:  "TokenRefresherFunction",
	Poller:     "FilesetPollerFunction",
	Downloader: "DownloaderFunction",
	Reader:     "NotificationReaderFunction",
}

// Deployed lists the functions a stack deployed with the template
// parameter values params has: Functions, then the optional ones their
// parameter turns on.
func Deployed(params map[string]string) []string {
	out := slices.Clone(Functions)
	for _, f := range slices.Sorted(maps.Keys(Optional)) {
		if params[Optional[f]] == "true" {
			out = append(out, f)
		}
	}
	return out
}

// BuildFunctions builds the named functions (default: Functions) as
// `make build` does (CGO_ENABLED=0, this machine's OS/arch) with one
// `go build` run, into outDir/<name>/bootstrap. With trimpath the flags are
// exactly make build's; without it the build shares the go build cache of
// `go run`/`go build ./...` (on a cold cache about 25 s instead of 65 s on 2
// cores) and the binaries differ only in the file paths they embed. It
// returns the binaries' paths by function name.
func BuildFunctions(ctx context.Context, root, outDir string, trimpath bool, names ...string) (map[string]string, error) {
	if len(names) == 0 {
		names = Functions
	}
	tmp, err := os.MkdirTemp(outDir, ".build-")
	if err != nil {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return nil, fmt.Errorf("build functions: %w", err)
		}
		if tmp, err = os.MkdirTemp(outDir, ".build-"); err != nil {
			return nil, fmt.Errorf("build functions: %w", err)
		}
	}
	defer os.RemoveAll(tmp)
	args := []string{"build"}
	if trimpath {
		args = append(args, "-trimpath")
	}
	args = append(args, "-o", tmp+string(filepath.Separator))
	for _, n := range names {
		args = append(args, "./functions/"+n)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("build functions (go %s): %w\n%s", strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	bins := map[string]string{}
	for _, n := range names {
		dir := filepath.Join(outDir, n)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("build functions: %w", err)
		}
		dst := filepath.Join(dir, "bootstrap")
		if err := os.Rename(filepath.Join(tmp, n), dst); err != nil {
			return nil, fmt.Errorf("build functions: %w", err)
		}
		abs, err := filepath.Abs(dst)
		if err != nil {
			return nil, fmt.Errorf("build functions: %w", err)
		}
		bins[n] = abs
	}
	return bins, nil
}
