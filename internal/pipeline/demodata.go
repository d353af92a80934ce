package pipeline

import (
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"github.com/cfsync/cfsync/internal/credentials"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// SimUser is a password (v1) user of the simulator.
type SimUser struct {
	Username, Password, AppKey string
	// Secret is the user's credentials secret, JSON
	// (docs/configuration.md#the-credentials-secret-rdp_credentials_secret_id),
	// exclusive sign-on control on as by default.
	Secret string
}

// AddSimUser adds username to sim with a random password and app key
// (client_id).
func AddSimUser(sim *rdptest.Server, username string) SimUser {
	u := SimUser{Username: username, Password: "pw-" + rand.Text(), AppKey: rand.Text()}
	sim.AddUser(u.Username, u.Password, u.AppKey)
	// SecretJSON fails only for an unknown kind.
	b, _ := credentials.Credentials{Kind: credentials.Password, Username: u.Username, Password: u.Password, ClientID: u.AppKey, TakeExclusive: true}.SecretJSON()
	u.Secret = string(b)
	return u
}

// DemoPackage is one simulated CFS package of the demo data set.
type DemoPackage struct {
	Bucket, ID, Name string
	Subscribed       bool
	Sizes            []int64 // file sizes, cycled over the package's files
	Prefix           string  // file name prefix
}

// The demo's packages: two subscribed one by one, one through bucket/*, and
// one that is not subscribed (its files must not be downloaded). The third
// package's 33 MiB file is over SINGLE_PUT_MAX (32 MiB), so the demo shows
// one multipart upload (5 parts of 8 MiB); its 7 and 12 MiB files are
// fetched in ranges and stored with one PutObject.
var DemoPackages = []DemoPackage{
	{Bucket: "bulk-ESG", ID: "4e94-6d63-fea034dc-90e2-de33895bd4e9", Name: "Bulk-ESG-Global-Scores-Delta-v1", Subscribed: true,
		Sizes: []int64{6 << 10, 48 << 10, 180 << 10, 512 << 10, 20 << 10, 96 << 10}, Prefix: "RFT-ESG-Scores-Global-Delta"},
	{Bucket: "bulk-ESG", ID: "4c05-2e1a-9b7a5ef1-71d3-0d2a58e8c1b4", Name: "Bulk-ESG-Sustainability-Full-v2", Subscribed: true,
		Sizes: []int64{1200 << 10, 2560 << 10, 3900 << 10}, Prefix: "RFT-ESG-Sustainability-Full"},
	{Bucket: "bulk-Symbology", ID: "48d1-5a2c-7f3e9b21-a4c6-6e0b1d7f9a35", Name: "Bulk-Symbology-Cross-Reference-v1", Subscribed: true,
		Sizes: []int64{7 << 20, 12 << 20, 33 << 20, 3 << 20}, Prefix: "RFT-Symbology-CrossRef-Init"},
	{Bucket: "bulk-ESG", ID: "4a17-0c3d-55e2b7a9-3f18-9c4e2d6b8a01", Name: "Bulk-ESG-Controversies-v1", Subscribed: false,
		Sizes: []int64{64 << 10}, Prefix: "RFT-ESG-Controversies"},
}

// DemoSubscriptions is SUBSCRIPTIONS for DemoPackages: one entry per
// subscribed package, except bulk-Symbology, subscribed as bulk-Symbology/*.
func DemoSubscriptions() []string {
	var subs []string
	for _, p := range DemoPackages {
		switch {
		case !p.Subscribed:
		case p.Bucket == "bulk-Symbology":
			subs = append(subs, p.Bucket+"/*")
		default:
			subs = append(subs, p.Bucket+"/"+p.ID)
		}
	}
	return subs
}

// SeedDemo fills the simulator with the demo data: sets READY file-sets of
// two files each, spread over the subscribed packages (about half in the
// first, a third in the second, the rest, with the large files, in the
// third), plus a PENDING file-set and two file-sets of the unsubscribed
// package, which a correct sync leaves alone. Names follow LSEG's style,
// with ':' in them. It returns the files a correct sync must land.
func SeedDemo(sim *rdptest.Server, sets int) []rdptest.File {
	if sets < 1 {
		sets = 1
	}
	for _, p := range DemoPackages {
		sim.AddPackage(p.Bucket, p.ID, p.Name)
	}
	counts := []int{sets - sets/3 - sets/5, sets / 3, sets / 5}
	if counts[0] < 1 {
		counts[0] = 1
	}
	base := time.Now().UTC().Add(-time.Duration(sets) * time.Hour).Truncate(time.Hour)
	k := 0
	add := func(p DemoPackage, n int, status string) {
		for i := 0; i < n; i++ {
			k++
			ts := base.Add(time.Duration(k) * time.Hour)
			stamp := ts.Format("2006-01-02T15:04:05.000Z")
			spec := rdptest.FileSetSpec{
				Bucket: p.Bucket, PackageID: p.ID, Status: status,
				Name:       fmt.Sprintf("%s-%s", p.Prefix, ts.Format("2006-01-02T15")),
				Attributes: []rdptest.Attribute{{Name: "ContentKey", Value: fmt.Sprint(k % 7)}},
				Created:    ts, Modified: ts,
			}
			for j := 0; j < 2; j++ {
				size := p.Sizes[(2*i+j)%len(p.Sizes)]
				spec.Files = append(spec.Files, rdptest.FileSpec{
					Name: fmt.Sprintf("%s-%s-part%d.jsonl.gz", p.Prefix, stamp, j+1),
					Size: size,
				})
			}
			sim.AddFileSet(spec)
		}
	}
	for i, n := range counts {
		add(DemoPackages[i], n, "READY")
	}
	add(DemoPackages[0], 1, "PENDING")
	add(DemoPackages[3], 2, "READY")
	return SubscribedFiles(sim.GroundTruth(), DemoSubscriptions())
}

// SubscribedFiles keeps the files of the subscribed packages (entries
// "bucket/packageId" or "bucket/*"; buckets compare case-insensitively).
func SubscribedFiles(files []rdptest.File, subs []string) []rdptest.File {
	var out []rdptest.File
	for _, f := range files {
		for _, s := range subs {
			b, pkg, _ := strings.Cut(s, "/")
			if strings.EqualFold(b, f.Bucket) && (pkg == "*" || pkg == f.PackageID) {
				out = append(out, f)
				break
			}
		}
	}
	return out
}
