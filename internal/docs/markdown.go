package docs

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// A Link is a Markdown link target found in a document.
type Link struct {
	Line   int    // 1-based line of the link
	Target string // as written, e.g. "design.md#the-token-ring"
}

var (
	inlineCode = regexp.MustCompile("`[^`]*`")
	linkRE     = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	headingRE  = regexp.MustCompile(`^#{1,6}\s+(.+?)\s*#*\s*$`)
	htmlAnchor = regexp.MustCompile(`<a\s+(?:id|name)="([^"]+)"`)
)

// proseLines calls fn for each line outside fenced code blocks.
func proseLines(md string, fn func(n int, line string)) {
	fence := ""
	for i, line := range strings.Split(md, "\n") {
		t := strings.TrimSpace(line)
		if fence == "" && (strings.HasPrefix(t, "```") || strings.HasPrefix(t, "~~~")) {
			fence = t[:3]
			continue
		}
		if fence != "" {
			if strings.HasPrefix(t, fence) {
				fence = ""
			}
			continue
		}
		fn(i+1, line)
	}
}

// Links returns the link targets of a Markdown document, ignoring code
// blocks and inline code.
func Links(md string) []Link {
	var out []Link
	proseLines(md, func(n int, line string) {
		line = inlineCode.ReplaceAllString(line, "")
		for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
			out = append(out, Link{Line: n, Target: m[1]})
		}
	})
	return out
}

// Anchors returns the anchors a Markdown document defines: GitHub's slug of
// every heading (with -1, -2, … for repeats) and explicit <a id="…">.
func Anchors(md string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	proseLines(md, func(_ int, line string) {
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			out[m[1]] = true
		}
		m := headingRE.FindStringSubmatch(line)
		if m == nil {
			return
		}
		s := Slug(m[1])
		if n := seen[s]; n > 0 {
			out[s+"-"+strconv.Itoa(n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	})
	return out
}

// Slug is GitHub's anchor for a heading: lower case, letters, digits, "-"
// and "_" kept, spaces turned into "-", everything else dropped.
func Slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}
