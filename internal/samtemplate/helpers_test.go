package samtemplate

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// loadRepoTemplate loads template.yaml from the repository root.
func loadRepoTemplate(t *testing.T) Template {
	t.Helper()
	p, err := Path()
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

func repoRoot(t *testing.T) string {
	t.Helper()
	p, err := Path()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(p)
}

// needTool skips the test under -short, or when the tool is missing and
// CFSYNC_REQUIRE_MOTO is unset (make test sets it, so CI fails loudly instead).
func needTool(t *testing.T, what string, find func() (string, error)) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s (skipped with -short)", what)
	}
	p, err := find()
	if err != nil {
		if os.Getenv("CFSYNC_REQUIRE_MOTO") != "" {
			t.Fatalf("%s: %v", what, err)
		}
		t.Skipf("%s unavailable: %v", what, err)
	}
	return p
}

func needPython(t *testing.T) {
	t.Helper()
	needTool(t, "python3 with aws-sam-translator", Python)
}

func needCfnLint(t *testing.T) string {
	t.Helper()
	return needTool(t, "cfn-lint", func() (string, error) {
		if p, err := exec.LookPath("cfn-lint"); err == nil {
			return p, nil
		}
		p := filepath.Join(repoRoot(t), ".venv", "bin", "cfn-lint")
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("cfn-lint not on PATH nor in .venv (run make tools)")
		}
		return p, nil
	})
}

// get walks nested maps (string keys) and lists (numeric keys).
func get(v any, path ...string) any {
	for _, p := range path {
		if tpl, ok := v.(Template); ok {
			v = map[string]any(tpl)
		}
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			var i int
			if _, err := fmt.Sscanf(p, "%d", &i); err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// symbolic resolves a specialized template's values with resources shown as
// {Id} and attributes as {Id.Attr}; a reference to a resource the template
// does not create (for these parameters) is an error.
func symbolic(tpl Template, params map[string]string, conds map[string]bool) *Resolver {
	exists := func(id string) error {
		if _, ok := tpl.Resource(id); !ok {
			return fmt.Errorf("reference to %s, which is not created with these parameters", id)
		}
		return nil
	}
	return &Resolver{
		Params:     params,
		Conditions: conds,
		Ref: func(id string) (string, error) {
			return "{" + id + "}", exists(id)
		},
		GetAtt: func(id, attr string) (string, error) {
			return "{" + id + "." + attr + "}", exists(id)
		},
	}
}

// specialize applies parameter overrides to the SAM template.
func specialize(t *testing.T, tpl Template, overrides map[string]string) (Template, *Resolver) {
	t.Helper()
	params, err := tpl.ParameterValues(overrides)
	if err != nil {
		t.Fatal(err)
	}
	spec, conds, err := tpl.Specialize(params)
	if err != nil {
		t.Fatal(err)
	}
	return spec, symbolic(spec, params, conds)
}

func ringARNs(n int) string {
	var ids []string
	for i := 1; i <= n; i++ {
		ids = append(ids, fmt.Sprintf("{TokenSlot%d}", i))
	}
	return strings.Join(ids, ",")
}
