package rdp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"

	"golang.org/x/oauth2"

	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// exampleSim is a simulator with one user and one file-set of two files.
func exampleSim() *rdptest.Server {
	sim := rdptest.NewServer(rdptest.Options{})
	sim.AddUser("GE-A-0001", "s3cret", "my-app-key")
	sim.AddFileSet(rdptest.FileSetSpec{
		ID: "4a1b-2c3d-5e6f7a8b-9c0d-000000000001", Bucket: "bulk-ESG", PackageID: "4e94-6d63-fea034dc-90e2-de33895bd4e9",
		Name: "ESG-Scores-2025-01-31",
		Files: []rdptest.FileSpec{
			{ID: "f001", Name: "ESG Scores 2025-01-31T00:00:00.000Z part 1.jsonl.gz", Size: 1000},
			{ID: "f002", Name: "ESG Scores 2025-01-31T00:00:00.000Z part 2.jsonl.gz", Size: 20},
		},
	})
	return sim
}

// signedIn returns a client whose file-store calls carry the token of a
// password grant, and the token (for the caller to revoke).
func signedIn(ctx context.Context, base string) (*rdp.Client, *rdp.Token) {
	auth, err := rdp.NewClient(rdp.WithBaseURL(base))
	if err != nil {
		log.Fatal(err)
	}
	tok, err := auth.PasswordGrant(ctx, rdp.PasswordGrant{Username: "GE-A-0001", Password: "s3cret", ClientID: "my-app-key"})
	if err != nil {
		log.Fatal(err)
	}
	hc := &http.Client{Transport: &oauth2.Transport{Source: oauth2.StaticTokenSource(tok.OAuth2())}}
	c, err := rdp.NewClient(rdp.WithBaseURL(base), rdp.WithHTTPClient(hc))
	if err != nil {
		log.Fatal(err)
	}
	return c, tok
}

// Sign on with a v1 password grant (without ending another session of the
// account), then revoke the session.
func ExampleClient_PasswordGrant() {
	sim := exampleSim()
	defer sim.Close()
	ctx := context.Background()
	c, err := rdp.NewClient(rdp.WithBaseURL(sim.URL()))
	if err != nil {
		log.Fatal(err)
	}
	tok, err := c.PasswordGrant(ctx, rdp.PasswordGrant{Username: "GE-A-0001", Password: "s3cret", ClientID: "my-app-key"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("token lives", tok.ExpiresIn(), "- refresh token:", tok.RefreshToken != "")
	fmt.Println("printed token reveals it:", strings.Contains(fmt.Sprint(tok), tok.AccessToken))
	if err := c.Revoke(ctx, "my-app-key", tok.RefreshToken); err != nil {
		log.Fatal(err)
	}

	_, err = c.PasswordGrant(ctx, rdp.PasswordGrant{Username: "GE-A-0001", Password: "wrong", ClientID: "my-app-key"})
	fmt.Println("wrong password:", errors.Is(err, rdp.ErrInvalidCredentials), errors.Is(err, rdp.ErrInvalidGrant))
	// Output:
	// token lives 10m0s - refresh token: true
	// printed token reveals it: false
	// wrong password: true false
}

// List the file-sets of a package; the iterator follows @nextLink.
func ExampleClient_FileSets() {
	sim := exampleSim()
	defer sim.Close()
	ctx := context.Background()
	c, _ := signedIn(ctx, sim.URL())
	q := rdp.FileSetQuery{Bucket: "bulk-ESG", PackageID: "4e94-6d63-fea034dc-90e2-de33895bd4e9", Status: rdp.StatusReady}
	for fs, err := range c.FileSets(ctx, q) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(fs.Name, fs.NumFiles, "files")
	}
	// Output:
	// ESG-Scores-2025-01-31 2 files
}

// List a file-set's files: the listing gives each file's name and size.
func ExampleClient_Files() {
	sim := exampleSim()
	defer sim.Close()
	ctx := context.Background()
	c, _ := signedIn(ctx, sim.URL())
	for f, err := range c.Files(ctx, "4a1b-2c3d-5e6f7a8b-9c0d-000000000001") {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(f.ID, f.Size, f.FileName)
	}
	// Output:
	// f001 1000 ESG Scores 2025-01-31T00:00:00.000Z part 1.jsonl.gz
	// f002 20 ESG Scores 2025-01-31T00:00:00.000Z part 2.jsonl.gz
}

// Download a file in ranges: the first range tells the size and the ETag,
// later ranges are pinned to that ETag with If-Match.
func ExampleClient_GetRangeIfMatch() {
	sim := exampleSim()
	defer sim.Close()
	ctx := context.Background()
	c, _ := signedIn(ctx, sim.URL())
	u, err := c.StreamURL(ctx, "f001") // carries credentials: never log it
	if err != nil {
		log.Fatal(err)
	}
	first, err := c.GetRange(ctx, u, 0, 600)
	if err != nil {
		log.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, first.Body)
	first.Body.Close()
	fmt.Println("read", n, "of", first.TotalSize, "bytes")
	rest, err := c.GetRangeIfMatch(ctx, u, n, first.TotalSize-n, first.ETag)
	if err != nil {
		log.Fatal(err)
	}
	m, _ := io.Copy(io.Discard, rest.Body)
	rest.Body.Close()
	fmt.Println("read", m, "more")

	_, err = c.GetRangeIfMatch(ctx, u, 0, 1, `"another-version"`)
	fmt.Println("changed source:", errors.Is(err, rdp.ErrSourceChanged))
	// Output:
	// read 600 of 1000 bytes
	// read 400 more
	// changed source: true
}

// Typed errors keep RDP's code and message; sentinels say what to do.
func ExampleAPIError() {
	sim := exampleSim()
	defer sim.Close()
	ctx := context.Background()
	c, _ := signedIn(ctx, sim.URL())
	_, err := c.StreamURL(ctx, "no-such-file")
	var ae *rdp.APIError
	if errors.As(err, &ae) {
		fmt.Println(ae.StatusCode, ae.Code, errors.Is(err, rdp.ErrNotFound))
	}
	sim.RemoveClaim("bulk-ESG")
	_, err = c.StreamURL(ctx, "f001")
	fmt.Println(errors.Is(err, rdp.ErrForbidden), err.(*rdp.APIError).Message)
	// Output:
	// 404 EDS.CFS.NoFileFound true
	// true Access denied: Insufficient claims to access this resource
}
