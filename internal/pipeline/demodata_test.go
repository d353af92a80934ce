package pipeline

import (
	"testing"

	"github.com/cfsync/cfsync/internal/config"
	"github.com/cfsync/cfsync/internal/credentials"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

func TestSeedDemo(t *testing.T) {
	tests := []struct {
		sets, wantFiles int
	}{
		{20, 40}, {1, 2}, {7, 14},
	}
	for _, tt := range tests {
		sim := rdptest.NewServer(rdptest.Options{})
		files := SeedDemo(sim, tt.sets)
		sim.Close()
		if len(files) != tt.wantFiles {
			t.Errorf("SeedDemo(%d): %d files, want %d", tt.sets, len(files), tt.wantFiles)
		}
		var largest int64
		for _, f := range files {
			largest = max(largest, f.Size)
			if f.PackageID == DemoPackages[3].ID {
				t.Errorf("unsubscribed package file %s in the expected files", f.Name)
			}
		}
		if tt.sets == 20 {
			if limit := config.Defaults[config.Downloader]().SinglePutMax; largest <= limit {
				t.Errorf("largest demo file %d bytes: no multipart upload (files up to SINGLE_PUT_MAX %d take one PutObject)", largest, limit)
			}
			if all := len(sim.GroundTruth()); all != tt.wantFiles+4 {
				t.Errorf("ground truth %d files, want the expected %d plus the unsubscribed package's 4", all, tt.wantFiles)
			}
		}
	}
}

func TestSubscribedFiles(t *testing.T) {
	files := []rdptest.File{
		{ID: "1", Bucket: "bulk-ESG", PackageID: "a"},
		{ID: "2", Bucket: "bulk-ESG", PackageID: "b"},
		{ID: "3", Bucket: "bulk-Funds", PackageID: "c"},
	}
	tests := []struct {
		subs []string
		want string
	}{
		{[]string{"bulk-ESG/a"}, "1"},
		{[]string{"BULK-esg/*"}, "12"},
		{[]string{"bulk-ESG/a", "bulk-Funds/*"}, "13"},
		{[]string{"other/*"}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		got := ""
		for _, f := range SubscribedFiles(files, tt.subs) {
			got += f.ID
		}
		if got != tt.want {
			t.Errorf("SubscribedFiles(%v) = %q, want %q", tt.subs, got, tt.want)
		}
	}
}

func TestExpectedKey(t *testing.T) {
	f := rdptest.File{Bucket: "bulk-ESG", PackageID: "p", FileSetID: "s", Name: "RFT: a b.csv"}
	tests := []struct{ prefix, want string }{
		{"", "bulk-ESG/p/s/RFT_ a b.csv"},
		{"cfs/", "cfs/bulk-ESG/p/s/RFT_ a b.csv"},
	}
	for _, tt := range tests {
		if got := ExpectedKey(tt.prefix, f); got != tt.want {
			t.Errorf("ExpectedKey(%q) = %q, want %q", tt.prefix, got, tt.want)
		}
	}
}

// TestAddSimUser: the secret is the user's, in the credentials secret's
// format, and each user gets its own password and app key.
func TestAddSimUser(t *testing.T) {
	sim := rdptest.NewServer(rdptest.Options{})
	t.Cleanup(sim.Close)
	a, b := AddSimUser(sim, "a@example.com"), AddSimUser(sim, "b@example.com")
	c, err := credentials.Parse([]byte(a.Secret))
	if err != nil || c.Kind != credentials.Password || c.Username != a.Username || c.Password != a.Password || c.ClientID != a.AppKey || !c.TakeExclusive {
		t.Errorf("secret %s parses to %v, %v; want user %s's password credentials with exclusive sign-on", a.Secret, c, err, a.Username)
	}
	if a.Password == b.Password || a.AppKey == b.AppKey || a.Password == "" || a.AppKey == "" {
		t.Errorf("users share or lack a password or app key: %+v %+v", a, b)
	}
}
