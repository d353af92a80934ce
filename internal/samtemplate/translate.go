package samtemplate

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

//go:embed sam_translate.py
var translateScript string

// LocalCodeBucket is the placeholder bucket Translate puts into local CodeUri
// paths, as `sam package` would after uploading the code.
const LocalCodeBucket = "cfsync-local-code"

var (
	pythonOnce sync.Once
	pythonPath string
	pythonErr  error
)

// Python returns a python3 interpreter that can import aws-sam-translator:
// $CFSYNC_PYTHON, else the repository's .venv (make tools), else python3 on PATH.
func Python() (string, error) {
	pythonOnce.Do(func() { pythonPath, pythonErr = findPython() })
	return pythonPath, pythonErr
}

func findPython() (string, error) {
	var candidates []string
	if p := os.Getenv("CFSYNC_PYTHON"); p != "" {
		candidates = append(candidates, p)
	}
	if tp, err := Path(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(tp), ".venv", "bin", "python3"))
	}
	candidates = append(candidates, "python3")
	var tried []string
	for _, c := range candidates {
		p, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		if err := exec.Command(p, "-c", "import samtranslator").Run(); err != nil {
			tried = append(tried, p)
			continue
		}
		return p, nil
	}
	return "", fmt.Errorf("no python3 with aws-sam-translator (tried %s): run `make tools` or `pip install cfn-lint`", strings.Join(tried, ", "))
}

// Translate expands the SAM transform of a SAM template into plain
// CloudFormation with aws-sam-translator, the library behind `sam deploy`'s
// server-side transform and cfn-lint. Local CodeUri paths are first replaced
// by s3://LocalCodeBucket/<path>.zip, as `sam package` does after uploading.
// params are parameter values (pseudo parameters included); the translator
// uses them for the few properties it must resolve itself.
func Translate(ctx context.Context, sam Template, params map[string]string) (Template, error) {
	py, err := Python()
	if err != nil {
		return nil, err
	}
	in := sam.Clone()
	for _, f := range in.Functions() {
		if uri, ok := f.Properties["CodeUri"].(string); ok && !strings.HasPrefix(uri, "s3://") {
			f.Properties["CodeUri"] = "s3://" + LocalCodeBucket + "/" + strings.Trim(filepath.ToSlash(uri), "/") + ".zip"
		}
	}
	body, err := ToJSON(map[string]any(in))
	if err != nil {
		return nil, err
	}
	pj, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("sam transform: marshal parameters: %w", err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, py, "-c", translateScript, string(pj))
	cmd.Stdin = bytes.NewReader(body)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("sam transform: %s", msg)
	}
	var out map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("sam transform: decode output: %w", err)
	}
	if out == nil {
		return nil, errors.New("sam transform: empty output")
	}
	return Template(normalizeNumbers(out).(map[string]any)), nil
}

// normalizeNumbers turns whole float64 values (encoding/json's numbers) into
// int64, matching what ParseYAML produces.
func normalizeNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeNumbers(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalizeNumbers(e)
		}
		return x
	case float64:
		if x == float64(int64(x)) {
			return int64(x)
		}
		return x
	default:
		return v
	}
}
