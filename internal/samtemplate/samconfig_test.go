package samtemplate

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// splitOverrides parses SAM CLI's parameter_overrides string:
// Name=value pairs separated by spaces, values optionally in double quotes.
func splitOverrides(s string) (map[string]string, error) {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		name, rest, ok := strings.Cut(s, "=")
		if !ok || name == "" || strings.ContainsAny(name, " \"") {
			return nil, fmt.Errorf("bad pair at %q", s)
		}
		var val string
		if strings.HasPrefix(rest, `"`) {
			end := strings.Index(rest[1:], `"`)
			if end < 0 {
				return nil, fmt.Errorf("unterminated quote for %s", name)
			}
			val, s = rest[1:1+end], rest[2+end:]
		} else {
			val, s, _ = strings.Cut(rest, " ")
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s given twice", name)
		}
		out[name] = val
	}
	return out, nil
}

func TestSplitOverrides(t *testing.T) {
	got, err := splitOverrides(`A="x y" B=z C=""`)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "map[A:x y B:z C:]" {
		t.Errorf("got %v", got)
	}
	for _, bad := range []string{`A="x`, `=x`, `A=1 A=2`} {
		if _, err := splitOverrides(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestSamconfig: both environments exist, deploy with IAM capability into
// different stacks, and their parameter_overrides are valid for template.yaml.
func TestSamconfig(t *testing.T) {
	tpl := loadRepoTemplate(t)
	var cfg map[string]any
	if _, err := toml.DecodeFile(filepath.Join(repoRoot(t), "samconfig.toml"), &cfg); err != nil {
		t.Fatal(err)
	}
	stacks := map[string]bool{}
	for _, env := range []string{"default", "prod"} {
		t.Run(env, func(t *testing.T) {
			deploy, _ := get(cfg, env, "deploy", "parameters").(map[string]any)
			if deploy == nil {
				t.Fatalf("no [%s.deploy.parameters]", env)
			}
			if !strings.Contains(fmt.Sprint(deploy["capabilities"]), "CAPABILITY_IAM") {
				t.Errorf("capabilities = %v, want CAPABILITY_IAM", deploy["capabilities"])
			}
			stack, _ := get(cfg, env, "global", "parameters", "stack_name").(string)
			if stack == "" || stacks[stack] {
				t.Errorf("stack_name %q empty or shared", stack)
			}
			stacks[stack] = true
			po, _ := deploy["parameter_overrides"].(string)
			overrides, err := splitOverrides(po)
			if err != nil {
				t.Fatal(err)
			}
			if len(overrides) == 0 {
				t.Fatal("no parameter_overrides example")
			}
			if _, err := tpl.ParameterValues(overrides); err != nil {
				t.Errorf("parameter_overrides: %v", err)
			}
		})
	}
}
