// Package docs holds the tests that keep the repository's Markdown
// documentation (README.md, BENCHMARKS.md, docs/*.md) and the references to
// it from Go code consistent: README.md stays short, every relative link and
// heading anchor resolves, and every docs/*.md reference in code exists.
package docs
