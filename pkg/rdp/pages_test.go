package rdp

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestFileSetPagesResumesFromASavedLink: FileSetPages yields each page with
// its @nextLink; a listing started from a saved link fetches that page
// first, not the query's first page.
func TestFileSetPagesResumesFromASavedLink(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e"}
	var asked []string
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.URL.RawQuery)
		after := ""
		if tok := r.URL.Query().Get("skipToken"); tok != "" {
			raw, _ := base64.RawURLEncoding.DecodeString(tok)
			after = strings.TrimPrefix(string(raw), "filesetId=")
		}
		var items []string
		last := ""
		for _, id := range ids {
			if id > after && len(items) < 2 {
				items = append(items, fmt.Sprintf(`{"id":%q,"status":"READY"}`, id))
				last = id
			}
		}
		next := ""
		if last != ids[len(ids)-1] {
			next = "/file-store/v1/file-sets?bucket=b&skipToken=" + base64.RawURLEncoding.EncodeToString([]byte("filesetId="+last))
		}
		fmt.Fprintf(w, `{"value":[%s],"@nextLink":%q}`, strings.Join(items, ","), next)
	}))
	q := FileSetQuery{Bucket: "b", PageSize: 2}
	var links []string
	for p, err := range c.FileSetPages(context.Background(), q, "") {
		if err != nil {
			t.Fatal(err)
		}
		links = append(links, p.NextLink)
		if len(links) == 1 {
			break // stop after page 1, as a run out of time does
		}
	}
	if len(links) != 1 || links[0] == "" {
		t.Fatalf("first page link %v", links)
	}
	var got []string
	var last string
	for p, err := range c.FileSetPages(context.Background(), q, links[0]) {
		if err != nil {
			t.Fatal(err)
		}
		for _, fs := range p.Items {
			got = append(got, fs.ID)
		}
		last = p.NextLink
	}
	if strings.Join(got, ",") != "c,d,e" || last != "" {
		t.Errorf("resumed listing %v (last link %q), want c,d,e and no further link", got, last)
	}
	if len(asked) != 3 || !strings.Contains(asked[1], "skipToken=") {
		t.Errorf("requests %v, want page 1, then the saved link, then one more", asked)
	}
}
