// Command rdpsim serves the RDP simulator (package rdptest) on fixed or random ports, seeded with
// buckets, packages, file-sets and files, for out-of-process tests and local demos.
//
// It prints one JSON line to stdout — the API and S3 base URLs, the seed, and any credentials it
// generated (only those: credentials given as flags are never printed) — then serves until
// SIGINT or SIGTERM. The /_sim/ control endpoints (counters, ground truth, faults, ...) are on
// the API host unless -admin=false. See docs/rdp-client.md#the-command.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cfsync/cfsync/internal/randid"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "rdpsim:", err)
		os.Exit(2)
	}
}

// faultFlags collects repeated -fault flags.
type faultFlags []rdptest.Fault

func (f *faultFlags) String() string { return fmt.Sprint(len(*f), " faults") }
func (f *faultFlags) Set(v string) error {
	fault, err := rdptest.ParseFault(v)
	if err != nil {
		return err
	}
	*f = append(*f, fault)
	return nil
}

// sizeFlag is a byte size such as 1MiB, 512KiB, 10GiB, 1.5GB or 1000.
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }
func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

func parseSize(v string) (int64, error) {
	t := strings.TrimSpace(v)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
		"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	}[unit]
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || f < 0 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 1000, 512KiB, 1MiB, 10GiB, 1.5GB)", v)
	}
	return int64(f * mult), nil
}

type config struct {
	apiAddr, s3Addr                 string
	buckets                         string
	packages, filesets, files, pend int
	size                            sizeFlag
	user, password, appKey          string
	clientID, clientSecret          string
	issueRefresh                    bool
	opts                            rdptest.Options
	bandwidth, md5Max               sizeFlag
	faults                          faultFlags
	shutdownTimeout                 time.Duration
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{size: 1 << 20}
	fs := flag.NewFlagSet("rdpsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: rdpsim [flags]\n\nServes the LSEG RDP simulator (auth, Client File Store, presigned S3 host).\nPrints one JSON line with the URLs, then serves until SIGINT/SIGTERM.\n\nFlags:")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.apiAddr, "api-addr", "127.0.0.1:0", "API host listen address (port 0: random)")
	fs.StringVar(&c.s3Addr, "s3-addr", "127.0.0.1:0", "presigned-URL host listen address (port 0: random)")
	fs.StringVar(&c.buckets, "buckets", rdptest.DefaultBucket, "comma-separated bucket names to seed")
	fs.IntVar(&c.packages, "packages", 1, "packages per bucket (the first bucket's first one is "+rdptest.DefaultPackageID+")")
	fs.IntVar(&c.filesets, "filesets", 10, "READY file-sets per package")
	fs.IntVar(&c.pend, "pending", 0, "additional PENDING file-sets per package")
	fs.IntVar(&c.files, "files", 2, "files per file-set")
	fs.Var(&c.size, "size", "size of each file (e.g. 1000, 512KiB, 1MiB, 10GiB)")
	fs.StringVar(&c.user, "user", rdptest.DefaultUser, "v1 username")
	fs.StringVar(&c.password, "password", "", "v1 password (generated and printed if empty)")
	fs.StringVar(&c.appKey, "appkey", "", "v1 app key / client_id (generated and printed if empty)")
	fs.StringVar(&c.clientID, "client-id", "", "v2 service account client_id (generated and printed if empty)")
	fs.StringVar(&c.clientSecret, "client-secret", "", "v2 client_secret (generated and printed if empty)")
	fs.BoolVar(&c.issueRefresh, "issue-refresh-token", false, "pre-issue a portal refresh token for the v1 user and print it")
	fs.DurationVar(&c.opts.AccessTokenTTL, "access-ttl", 600*time.Second, "v1 access token life")
	fs.DurationVar(&c.opts.RefreshTokenTTL, "refresh-ttl", 900*time.Second, "v1 refresh token life from issue")
	fs.DurationVar(&c.opts.RefreshMaxLifetime, "refresh-max", 18*time.Hour, "v1 session max life")
	fs.DurationVar(&c.opts.ServiceTokenTTL, "service-ttl", 7199*time.Second, "v2 token life")
	fs.DurationVar(&c.opts.URLExpiry, "url-expiry", 6*time.Hour, "presigned URL life (X-Amz-Expires)")
	fs.DurationVar(&c.opts.SessionTokenTTL, "session-token-ttl", 0, "life of a presigned URL's session token; after it S3 answers 400 ExpiredToken (0: outlives the URL)")
	fs.BoolVar(&c.opts.ExpiresInNumber, "expires-in-number", false, "send expires_in as a number (the real API sends a string)")
	fs.IntVar(&c.opts.PasswordGrantLimit, "password-limit", 250, "password (and client_credentials) grants per account per 5 min before 429")
	fs.IntVar(&c.opts.RefreshGrantLimit, "refresh-limit", 125, "refresh grants per account per 5 min before 429")
	fs.Var(&c.bandwidth, "bandwidth", "per-connection download bandwidth in bytes/s, e.g. 10MiB (0: unlimited)")
	fs.Var(&c.md5Max, "md5-max", "expose an md5 field (not seen from RDP) for files up to this size (0: none)")
	fs.BoolVar(&c.opts.FileEndpoint, "file-endpoint", false, "serve GET /file-store/v1/files/{id} (not seen from RDP)")
	fs.BoolVar(&c.opts.CreationOrder, "creation-order", false, "list file-sets in creation order with seq cursors (RDP: ascending id, filesetId skipToken)")
	fs.BoolVar(&c.opts.EmptyForUnknown, "empty-for-unknown", false, "answer 200 and an empty list (RDP: 404) for unknown buckets and file-sets")
	fs.BoolVar(&c.opts.ListExpired, "list-expired", false, "keep listing and serving file-sets past availableTo")
	fs.BoolVar(&c.opts.Admin, "admin", true, "serve the /_sim/ control endpoints on the API host")
	fs.Var(&c.faults, "fault", "inject a fault, repeatable: kind[,times=N][,host=api|s3][,path=PREFIX][,file=ID][,retry-after=D][,stall=D][,after=BYTES]; kinds: 401 429 500 503 reset truncate stall expired-url expired-token repeat-item")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 5*time.Second, "how long to let requests finish on SIGINT/SIGTERM")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for name, v := range map[string]int{"packages": c.packages, "filesets": c.filesets, "pending": c.pend, "files": c.files} {
		if v < 0 {
			return nil, fmt.Errorf("-%s must not be negative", name)
		}
	}
	c.opts.APIAddr, c.opts.S3Addr = c.apiAddr, c.s3Addr
	c.opts.BandwidthPerConn = int64(c.bandwidth)
	c.opts.MD5MaxSize = int64(c.md5Max)
	c.opts.MD5 = c.opts.MD5MaxSize > 0 // -md5-max 0 (the default): no md5, as from RDP
	return c, nil
}

type pkgOut struct {
	Bucket    string `json:"bucket"`
	PackageID string `json:"packageId"`
	FileSets  int    `json:"fileSets"`
}

type startLine struct {
	APIURL    string            `json:"api_url"`
	S3URL     string            `json:"s3_url"`
	Admin     string            `json:"admin_url,omitempty"`
	Username  string            `json:"username"`
	Packages  []pkgOut          `json:"packages"`
	FileSets  int               `json:"file_sets"`
	Files     int               `json:"files"`
	FileSize  int64             `json:"file_size"`
	Generated map[string]string `json:"generated_credentials,omitempty"`
	Note      string            `json:"note,omitempty"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	generated := map[string]string{}
	gen := func(dst *string, key, prefix string) {
		if *dst == "" {
			*dst = prefix + randid.Hex(16)
			generated[key] = *dst
		}
	}
	gen(&c.password, "password", "pw-")
	gen(&c.appKey, "appkey", "")
	gen(&c.clientID, "client_id", "GE-")
	gen(&c.clientSecret, "client_secret", "cs-")

	s, err := rdptest.Start(c.opts)
	if err != nil {
		return err
	}
	s.AddUser(c.user, c.password, c.appKey)
	s.AddServiceAccount(c.clientID, c.clientSecret)
	if c.issueRefresh {
		generated["refresh_token"] = s.IssueRefreshToken(c.user, c.appKey)
	}
	out := startLine{APIURL: s.URL(), S3URL: s.S3URL(), Username: c.user, FileSize: int64(c.size)}
	if c.opts.Admin {
		out.Admin = s.URL() + "/_sim/"
	}
	for bi, bucket := range strings.Split(c.buckets, ",") {
		bucket = strings.TrimSpace(bucket)
		if bucket == "" {
			continue
		}
		for i := 0; i < c.packages; i++ {
			id := rdptest.GenID("package/"+bucket, i)
			if bi == 0 && i == 0 {
				id = rdptest.DefaultPackageID
			}
			s.AddPackage(bucket, id, fmt.Sprintf("Bulk-%s-Package-%d", bucket, i+1))
			sets := s.AddFileSets(bucket, id, c.filesets, c.files, int64(c.size))
			for j := 0; j < c.pend; j++ {
				spec := rdptest.FileSetSpec{Bucket: bucket, PackageID: id, Status: "PENDING",
					Name: fmt.Sprintf("%s-Pending-%04d", id, j+1)}
				for k := 0; k < c.files; k++ {
					spec.Files = append(spec.Files, rdptest.FileSpec{Name: fmt.Sprintf("%s pending %04d part %d.jsonl.gz", id, j+1, k+1), Size: int64(c.size)})
				}
				s.AddFileSet(spec)
			}
			out.Packages = append(out.Packages, pkgOut{Bucket: bucket, PackageID: id, FileSets: len(sets) + c.pend})
			out.FileSets += len(sets) + c.pend
			out.Files += (len(sets) + c.pend) * c.files
		}
	}
	s.Inject(c.faults...)
	if len(generated) > 0 {
		out.Generated = generated
		out.Note = "generated_credentials were generated by rdpsim because their flags were empty; credentials passed as flags are never printed"
	}
	line, err := json.Marshal(out)
	if err != nil {
		s.Close()
		return fmt.Errorf("encode start line: %w", err)
	}
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		s.Close()
		return fmt.Errorf("write start line: %w", err)
	}
	fmt.Fprintf(stderr, "rdpsim: serving API on %s, presigned host on %s; SIGINT/SIGTERM to stop\n", s.URL(), s.S3URL())
	<-ctx.Done()
	fmt.Fprintln(stderr, "rdpsim: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
