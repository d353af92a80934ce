package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// root is the repository root, relative to this package.
const root = "../.."

// maxReadmeLines keeps README.md an entry point; the rest lives in docs/.
const maxReadmeLines = 300

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// documents are the Markdown files whose links must resolve. docs/incoming
// holds drafts waiting to be folded in and is not checked.
func documents(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{filepath.Join(root, "README.md"), filepath.Join(root, "BENCHMARKS.md")}, docs...)
}

func TestReadmeIsShort(t *testing.T) {
	readme := read(t, filepath.Join(root, "README.md"))
	if n := strings.Count(strings.TrimRight(readme, "\n"), "\n") + 1; n > maxReadmeLines {
		t.Errorf("README.md has %d lines, want at most %d: move details into docs/", n, maxReadmeLines)
	}
	for _, want := range []string{"make demo", "make test"} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md does not mention %q", want)
		}
	}
}

// TestRelativeLinksResolve checks every relative link of README.md,
// BENCHMARKS.md and docs/*.md: the file exists and, for a Markdown file, the
// #anchor is one of its headings.
func TestRelativeLinksResolve(t *testing.T) {
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		anchors[path] = Anchors(read(t, path))
		return anchors[path]
	}
	for _, doc := range documents(t) {
		for _, l := range Links(read(t, doc)) {
			if err := checkLink(doc, l.Target, anchorsOf); err != "" {
				t.Errorf("%s:%d: link %q: %s", rel(doc), l.Line, l.Target, err)
			}
		}
	}
}

// checkLink returns why target, linked from doc, does not resolve ("" when it does).
func checkLink(doc, target string, anchorsOf func(string) map[string]bool) string {
	if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
		return ""
	}
	path, anchor, _ := strings.Cut(target, "#")
	file := doc
	if path != "" {
		file = filepath.Join(filepath.Dir(doc), filepath.FromSlash(path))
		if _, err := os.Stat(file); err != nil {
			return "no such file"
		}
	}
	if anchor == "" || !strings.HasSuffix(file, ".md") {
		return ""
	}
	if !anchorsOf(file)[anchor] {
		return "no heading with anchor #" + anchor + " in " + rel(file)
	}
	return ""
}

func rel(path string) string {
	r, err := filepath.Rel(root, path)
	if err != nil {
		return path
	}
	return filepath.ToSlash(r)
}

// citedTest is a test, benchmark or example named in a document.
var citedTest = regexp.MustCompile("`((?:Test|Benchmark|Example)[A-Z0-9][A-Za-z0-9_]*)")

// TestCitedTestsExist checks that every test, benchmark or example a document
// names in backticks (the invariants and failure modes cite them) is a
// function in some _test.go file.
func TestCitedTestsExist(t *testing.T) {
	defined := map[string]bool{}
	funcRE := regexp.MustCompile(`(?m)^func ((?:Test|Benchmark|Example)\w+)\(`)
	walkGo(t, func(path, src string) {
		if strings.HasSuffix(path, "_test.go") {
			for _, m := range funcRE.FindAllStringSubmatch(src, -1) {
				defined[m[1]] = true
			}
		}
	})
	for _, doc := range documents(t) {
		for i, line := range strings.Split(read(t, doc), "\n") {
			for _, m := range citedTest.FindAllStringSubmatch(line, -1) {
				if !defined[m[1]] {
					t.Errorf("%s:%d: names %s, which no _test.go file defines", rel(doc), i+1, m[1])
				}
			}
		}
	}
}

// walkGo calls fn with the path and content of every Go file of the
// repository, skipping hidden directories and testdata.
func walkGo(t *testing.T, fn func(path, src string)) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			fn(path, read(t, path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

var (
	// docRef is a reference from code to a document under docs/.
	docRef = regexp.MustCompile(`docs/([A-Za-z0-9_.-]+\.md)(?:#([A-Za-z0-9_-]+))?`)
	// oldDesignRef is a reference to the design contract the repository
	// does not contain (split so that this file does not match itself).
	oldDesignRef = regexp.MustCompile(`DESIGN(\.md)?\s*(` + "\u00a7" + `|[Ss]ections?\s+\d)`)
)

// TestCodeReferencesResolve checks every Go file: each docs/<name>.md#anchor it
// mentions exists, and nothing cites the design contract by section number.
func TestCodeReferencesResolve(t *testing.T) {
	anchors := map[string]map[string]bool{}
	walkGo(t, func(path, src string) { checkGoFile(t, path, src, anchors) })
}

func checkGoFile(t *testing.T, path, src string, anchors map[string]map[string]bool) {
	t.Helper()
	for i, line := range strings.Split(src, "\n") {
		where := rel(path) + ":" + strconv.Itoa(i+1)
		if oldDesignRef.MatchString(line) {
			t.Errorf("%s: cites a design section the repository does not contain; point at docs/design.md#<anchor>", where)
		}
		for _, m := range docRef.FindAllStringSubmatch(line, -1) {
			file := filepath.Join(root, "docs", m[1])
			if _, err := os.Stat(file); err != nil {
				t.Errorf("%s: docs/%s does not exist", where, m[1])
				continue
			}
			if m[2] == "" {
				continue
			}
			if anchors[file] == nil {
				anchors[file] = Anchors(read(t, file))
			}
			if !anchors[file][m[2]] {
				t.Errorf("%s: docs/%s has no heading with anchor #%s", where, m[1], m[2])
			}
		}
	}
}
