package docs

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"Run it locally: `make demo`":        "run-it-locally-make-demo",
		"State items (the downloader's own)": "state-items-the-downloaders-own",
		"2. The RDP credentials secret":      "2-the-rdp-credentials-secret",
		"No loss, duplicates allowed":        "no-loss-duplicates-allowed",
		"Options (Go) / flags (`rdpsim`)":    "options-go--flags-rdpsim",
		"token_ring → S3":                    "token_ring--s3",
	} {
		if got := Slug(heading); got != want {
			t.Errorf("Slug(%q) = %q, want %q", heading, got, want)
		}
	}
}

func TestLinksAndAnchors(t *testing.T) {
	md := "# Title\n\nSee [a](a.md#x), `[not](code.md)` and [b](#title).\n\n" +
		"```\n# not a heading\n[no](fence.md)\n```\n\n## Title\n\n<a id=\"explicit\"></a>\n"
	got := Links(md)
	want := []Link{{Line: 3, Target: "a.md#x"}, {Line: 3, Target: "#title"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Links = %v, want %v", got, want)
	}
	anchors := Anchors(md)
	for _, a := range []string{"title", "title-1", "explicit"} {
		if !anchors[a] {
			t.Errorf("anchor %q missing from %v", a, anchors)
		}
	}
	if anchors["not-a-heading"] {
		t.Error("a line in a code block counted as a heading")
	}
}

func TestCheckLinkFindsBrokenTargets(t *testing.T) {
	dir := t.TempDir()
	doc := filepath.Join(dir, "a.md")
	if err := os.WriteFile(filepath.Join(dir, "b.md"), []byte("# B\n\n## Part two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	anchorsOf := func(path string) map[string]bool {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return Anchors(string(b))
	}
	for target, ok := range map[string]bool{
		"b.md":              true,
		"b.md#part-two":     true,
		"b.md#part-three":   false,
		"missing.md":        false,
		"https://x.test/#y": true,
	} {
		if err := checkLink(doc, target, anchorsOf); (err == "") != ok {
			t.Errorf("checkLink(%q) = %q, want ok=%v", target, err, ok)
		}
	}
	if !oldDesignRef.MatchString("see DESIGN"+" \u00a77.1") || !oldDesignRef.MatchString("DESIGN"+".md sections 1, 3") {
		t.Error("oldDesignRef misses a section citation")
	}
}
