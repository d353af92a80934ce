// Package samtemplate reads cfsync's AWS SAM template (template.yaml at the
// repository root): YAML with CloudFormation short-form tags into plain values,
// accessors for resources, parameters and function environments, a small
// evaluator for conditions and intrinsic functions, the SAM transform (through
// aws-sam-translator, the library `sam` and cfn-lint use), and [DeployToMoto],
// which creates the template's resources in a moto_server so tests and
// `make demo` run against exactly what a real deploy creates.
package samtemplate

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/cfsync/cfsync/internal/repo"
)

// Logical ids of the three functions in template.yaml.
const (
	TokenRefresher     = "TokenRefresherFunction"
	FilesetPoller      = "FilesetPollerFunction"
	Downloader         = "DownloaderFunction"
	NotificationReader = "NotificationReaderFunction" // only with Notifications=true
)

// FileName is the template's file name at the repository root.
const FileName = "template.yaml"

// Template is a decoded CloudFormation or SAM template.
type Template map[string]any

// Resource is one entry of a template's Resources section.
type Resource struct {
	ID         string
	Type       string
	Condition  string         // "" when unconditional
	Properties map[string]any // never nil
	Raw        map[string]any // the whole resource (Type, Properties, DependsOn, …)
}

// Parameter is one entry of a template's Parameters section.
type Parameter struct {
	Name           string
	Type           string
	Default        string
	HasDefault     bool
	AllowedValues  []string
	AllowedPattern string
	MinValue       *float64 // Number parameters
	MaxValue       *float64
}

// Parse decodes a YAML (or JSON, which is YAML) template.
func Parse(data []byte) (Template, error) {
	v, err := ParseYAML(data)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("parse template: top level is not a mapping")
	}
	return Template(m), nil
}

// Load reads and decodes the template at path.
func Load(path string) (Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read template: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Path returns the path of template.yaml: $CFSYNC_TEMPLATE if set, else the
// nearest directory holding go.mod and template.yaml, searched upwards from the
// working directory and then from this source file.
func Path() (string, error) {
	if p := os.Getenv("CFSYNC_TEMPLATE"); p != "" {
		return p, nil
	}
	root, err := repo.Root()
	if err != nil {
		return "", fmt.Errorf("find %s: %w (set CFSYNC_TEMPLATE)", FileName, err)
	}
	return filepath.Join(root, FileName), nil
}

// Clone returns a deep copy of the template.
func (t Template) Clone() Template {
	return deepCopy(map[string]any(t)).(map[string]any)
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	default:
		return v
	}
}

func (t Template) section(name string) map[string]any {
	m, _ := t[name].(map[string]any)
	return m
}

// Resources returns every resource, sorted by logical id.
func (t Template) Resources() []Resource {
	ids := SortedKeys(t.section("Resources"))
	out := make([]Resource, 0, len(ids))
	for _, id := range ids {
		if r, ok := t.Resource(id); ok {
			out = append(out, r)
		}
	}
	return out
}

// Resource returns the resource with the given logical id.
func (t Template) Resource(id string) (Resource, bool) {
	raw, ok := t.section("Resources")[id].(map[string]any)
	if !ok {
		return Resource{}, false
	}
	r := Resource{ID: id, Raw: raw}
	r.Type, _ = raw["Type"].(string)
	r.Condition, _ = raw["Condition"].(string)
	r.Properties, _ = raw["Properties"].(map[string]any)
	if r.Properties == nil {
		r.Properties = map[string]any{}
	}
	return r, true
}

// ResourcesOfType returns the resources of one type, sorted by logical id.
func (t Template) ResourcesOfType(typ string) []Resource {
	var out []Resource
	for _, r := range t.Resources() {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

// Parameters returns the Parameters section, sorted by name.
func (t Template) Parameters() []Parameter {
	sec := t.section("Parameters")
	names := SortedKeys(sec)
	out := make([]Parameter, 0, len(names))
	for _, n := range names {
		m, _ := sec[n].(map[string]any)
		p := Parameter{Name: n}
		p.Type, _ = m["Type"].(string)
		if d, ok := m["Default"]; ok {
			p.Default, p.HasDefault = scalarString(d), true
		}
		if av, ok := m["AllowedValues"].([]any); ok {
			for _, v := range av {
				p.AllowedValues = append(p.AllowedValues, scalarString(v))
			}
		}
		p.AllowedPattern, _ = m["AllowedPattern"].(string)
		p.MinValue, p.MaxValue = number(m["MinValue"]), number(m["MaxValue"])
		out = append(out, p)
	}
	return out
}

// Outputs returns the names of the Outputs section, sorted.
func (t Template) Outputs() []string {
	return SortedKeys(t.section("Outputs"))
}

// Functions returns the AWS::Serverless::Function resources of a SAM template.
func (t Template) Functions() []Resource {
	return t.ResourcesOfType("AWS::Serverless::Function")
}

// FunctionEnv returns the environment variables a SAM function sets: the
// Globals.Function variables overlaid with the function's own (SAM merges
// them the same way). Values are unresolved template expressions.
func (t Template) FunctionEnv(id string) (map[string]any, error) {
	r, ok := t.Resource(id)
	if !ok {
		return nil, fmt.Errorf("function env: no resource %s", id)
	}
	out := map[string]any{}
	if r.Type == "AWS::Serverless::Function" {
		g, _ := t.section("Globals")["Function"].(map[string]any)
		for k, v := range envVariables(g) {
			out[k] = v
		}
	}
	for k, v := range envVariables(r.Properties) {
		out[k] = v
	}
	return out, nil
}

func envVariables(props map[string]any) map[string]any {
	env, _ := props["Environment"].(map[string]any)
	vars, _ := env["Variables"].(map[string]any)
	return vars
}

// scalarString renders a scalar parameter value the way CloudFormation passes
// it: numbers and booleans as their text.
func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	case float64:
		if x == float64(int64(x)) {
			return fmt.Sprintf("%d", int64(x))
		}
		return fmt.Sprintf("%g", x)
	default:
		return fmt.Sprint(x)
	}
}

func number(v any) *float64 {
	var f float64
	switch x := v.(type) {
	case int64:
		f = float64(x)
	case float64:
		f = x
	case string:
		if _, err := fmt.Sscanf(x, "%g", &f); err != nil {
			return nil
		}
	default:
		return nil
	}
	return &f
}

// SortedKeys returns the keys of m in order.
func SortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
