package samtemplate

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// samSchemaPath is AWS's SAM JSON schema (Apache-2.0). The project's shared
// data beside the repository holds the authoritative copy (CI clones the
// repository with shared/ next to it); testdata/sam-schema holds a copy of it
// with its licence, so a clone on its own runs the test too.
func samSchemaPath(t *testing.T) string {
	t.Helper()
	shared := filepath.Join(repoRoot(t), "..", "shared", "data", "sam.schema.json")
	if _, err := os.Stat(shared); err == nil {
		return shared
	}
	p := filepath.Join(repoRoot(t), "internal", "samtemplate", "testdata", "sam-schema", "sam.schema.json")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("SAM schema: %v", err)
	}
	return p
}

var (
	schemaOnce sync.Once
	schema     *jsonschema.Schema
	schemaErr  error
)

func compiledSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	p := samSchemaPath(t)
	schemaOnce.Do(func() {
		f, err := os.Open(p)
		if err != nil {
			schemaErr = err
			return
		}
		defer f.Close()
		doc, err := jsonschema.UnmarshalJSON(f)
		if err != nil {
			schemaErr = fmt.Errorf("decode %s: %w", p, err)
			return
		}
		c := jsonschema.NewCompiler()
		c.UseRegexpEngine(lookaheadRegexp)
		const url = "https://cfsync.invalid/sam.schema.json"
		if err := c.AddResource(url, doc); err != nil {
			schemaErr = err
			return
		}
		schema, schemaErr = c.Compile(url)
	})
	if schemaErr != nil {
		t.Fatalf("compile SAM schema: %v", schemaErr)
	}
	return schema
}

// lookaheadRegexp is Go's regexp plus the one construct the SAM schema uses
// that RE2 lacks: a leading negative lookahead on a literal, as in
// "^(?!AWS::Serverless::).+$" (any resource type that is not a SAM one).
func lookaheadRegexp(pattern string) (jsonschema.Regexp, error) {
	if re, err := regexp.Compile(pattern); err == nil {
		return re, nil
	}
	rest, ok := strings.CutPrefix(pattern, "^(?!")
	lit, tail, found := strings.Cut(rest, ")")
	if !ok || !found || regexp.QuoteMeta(lit) != lit {
		return nil, fmt.Errorf("unsupported regexp %q", pattern)
	}
	re, err := regexp.Compile("^" + tail)
	if err != nil {
		return nil, err
	}
	return notPrefixRegexp{pattern: pattern, prefix: lit, re: re}, nil
}

type notPrefixRegexp struct {
	pattern, prefix string
	re              *regexp.Regexp
}

func (r notPrefixRegexp) String() string { return r.pattern }
func (r notPrefixRegexp) MatchString(s string) bool {
	return !strings.HasPrefix(s, r.prefix) && r.re.MatchString(s)
}

// validateSAM validates a decoded template against the SAM schema.
func validateSAM(t *testing.T, tpl Template) error {
	t.Helper()
	body, err := ToJSON(map[string]any(tpl))
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return compiledSchema(t).Validate(inst)
}

func TestTemplateMatchesSAMSchema(t *testing.T) {
	tpl := loadRepoTemplate(t)
	if err := validateSAM(t, tpl); err != nil {
		t.Fatalf("template.yaml does not match the SAM schema:\n%v", err)
	}
}

// TestSAMSchemaRejectsMistakes proves the schema check has teeth: each
// mutation of template.yaml must fail validation.
func TestSAMSchemaRejectsMistakes(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(Template)
	}{
		{"misspelt global property", func(tpl Template) {
			get(tpl, "Globals", "Function").(map[string]any)["Runtim"] = "provided.al2023"
		}},
		{"unknown event type", func(tpl Template) {
			get(tpl, "Resources", Downloader, "Properties", "Events", "Downloads").(map[string]any)["Type"] = "SQSQueue"
		}},
		{"misspelt function property", func(tpl Template) {
			get(tpl, "Resources", TokenRefresher, "Properties").(map[string]any)["Timout"] = 60
		}},
		{"SQS event without its queue", func(tpl Template) {
			delete(get(tpl, "Resources", Downloader, "Properties", "Events", "Downloads", "Properties").(map[string]any), "Queue")
		}},
		{"misspelt schedule property", func(tpl Template) {
			get(tpl, "Resources", FilesetPoller, "Properties", "Events", "Schedule", "Properties").(map[string]any)["ScheduleExpresion"] = "rate(1 minute)"
		}},
		{"resource without a type", func(tpl Template) {
			delete(get(tpl, "Resources", "StateTable").(map[string]any), "Type")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tpl := loadRepoTemplate(t)
			tt.mutate(tpl)
			if err := validateSAM(t, tpl); err == nil {
				t.Fatal("mutated template passed the SAM schema")
			}
		})
	}
}

func TestCfnLint(t *testing.T) {
	bin := needCfnLint(t)
	root := repoRoot(t)
	broken, err := os.ReadFile(filepath.Join(root, FileName))
	if err != nil {
		t.Fatal(err)
	}
	// A deliberately broken copy must fail, proving the lint run can fail.
	broken = bytes.Replace(broken, []byte("Timeout: 300\n"), []byte("Timeout: 3000\n"), 1)
	brokenPath := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(brokenPath, broken, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		wantOK     bool
	}{
		{"template.yaml", filepath.Join(root, FileName), true},
		{"timeout above 900 s", brokenPath, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(bin, "--", tt.path)
			out, err := cmd.CombinedOutput()
			if tt.wantOK && err != nil {
				t.Fatalf("cfn-lint %s: %v\n%s", tt.path, err, out)
			}
			if !tt.wantOK && (err == nil || !strings.Contains(string(out), "900")) {
				t.Fatalf("cfn-lint accepted a broken template (err %v):\n%s", err, out)
			}
		})
	}
}
