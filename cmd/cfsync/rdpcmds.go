package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"iter"
	"strconv"
	"strings"

	"github.com/cfsync/cfsync/pkg/rdp"
)

func loginCommand() *command {
	return &command{
		name:    "login",
		args:    "[flags]",
		summary: "Check RDP credentials and show the token's expiry (never the token).",
		details: `A v1 password grant is sent with takeExclusiveSignOnControl=false, so that the CLI never
ends another session of the account (such as the deployed token-refresher's); if RDP answers
"Session quota is reached." use --token-ring, or --take-exclusive to end the other session.
The session the CLI opens is revoked before it exits.`,
		examples: []string{
			"RDP_USERNAME=GE-A-0123 RDP_PASSWORD=… RDP_CLIENT_ID=… cfsync login",
			"RDP_CLIENT_ID=… RDP_CLIENT_SECRET=… cfsync login --json",
			"cfsync login --credentials ./rdp-credentials.json",
			"cfsync login --credentials-secret cfsync/rdp-credentials",
			"TOKEN_SECRET_IDS=cfsync/token-0,cfsync/token-1,cfsync/token-2 cfsync login --token-ring",
		},
		rdp: true, json: true, noArgs: true,
		setup: func(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
			return func(ctx context.Context, args []string) error {
				s, err := a.signOn(ctx, &a.rdp)
				if err != nil {
					return err
				}
				revoked := s.end != nil
				s.Close(a)
				info := s.info
				if a.json {
					return writeJSON(a.stdout, struct {
						tokenInfo
						ExpiresIn      string `json:"expiresIn"`
						SessionEnded   bool   `json:"sessionEnded"`
						BaseURLHostRDP string `json:"apiHost"`
					}{info, fmtAge(info.ExpiresAt.Sub(a.now())), revoked, rdp.RedactURL(a.baseURL(&a.rdp))})
				}
				w := a.stdout
				fmt.Fprintf(w, "login OK: %s\n", info.Source)
				fmt.Fprintf(w, "  api host:      %s\n", rdp.RedactURL(a.baseURL(&a.rdp)))
				fmt.Fprintf(w, "  token type:    %s\n", info.TokenType)
				if info.Scope != "" {
					fmt.Fprintf(w, "  scope:         %s\n", info.Scope)
				}
				fmt.Fprintf(w, "  expires at:    %s (in %s)\n", fmtTime(info.ExpiresAt), fmtAge(info.ExpiresAt.Sub(a.now())))
				if info.Generation > 0 {
					fmt.Fprintf(w, "  generation:    %d\n", info.Generation)
				} else {
					fmt.Fprintf(w, "  refresh token: %s\n", yesNo(info.HasRefreshToken))
				}
				if revoked {
					fmt.Fprintf(w, "  session:       revoked again (the CLI leaves no session behind)\n")
				}
				return nil
			}
		},
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func packagesCommand() *command {
	return &command{
		name:    "packages",
		args:    "[--bucket NAME] [flags]",
		summary: "List the CFS packages the account can see (the ids SUBSCRIPTIONS needs).",
		examples: []string{
			"cfsync packages --bucket bulk-ESG",
			"cfsync packages --bucket bulk-ESG --json | jq -r '.[].packageId'",
			"cfsync packages            # every bucket",
		},
		rdp: true, json: true, noArgs: true,
		setup: func(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
			bucket := fs.String("bucket", "", "CFS bucket `NAME`, e.g. bulk-ESG (case-insensitive; empty: every bucket)")
			return func(ctx context.Context, args []string) error {
				b := strings.TrimSpace(*bucket)
				err := listRDP(ctx, a, "", func(c *rdp.Client) iter.Seq2[rdp.Package, error] { return c.Packages(ctx, b) }, 0,
					[]string{"PACKAGE ID", "NAME", "TYPE", "BUCKETS", "MODIFIED"}, func(p rdp.Package) []string {
						return []string{p.PackageID, p.PackageName, p.PackageType, strings.Join(p.BucketNames, ","), fmtTime(p.Modified)}
					}, "no packages visible"+inBucket(*bucket))
				if errors.Is(err, rdp.ErrNotFound) {
					return fmt.Errorf("no bucket %q visible to this account: %w", b, err)
				}
				return err // the client's error names the operation
			}
		},
	}
}

// listRDP signs on, lists with seq (at most limit items; 0: all), prints
// the rows (JSON with --json, else a table of headers and cells) and, when
// there are none and none is not empty, says none on stderr. op, when not
// empty, names the listing in its error.
func listRDP[T any](ctx context.Context, a *app, op string, seq func(*rdp.Client) iter.Seq2[T, error], limit int,
	headers []string, cells func(T) []string, none string) error {
	return a.withSession(ctx, &a.rdp, func(s *rdpSession) error {
		rows, err := collect(seq(s.client), limit)
		if err != nil {
			if op != "" {
				err = fmt.Errorf("%s: %w", op, err)
			}
			return err
		}
		if err := printList(a.stdout, a.json, rows, headers, cells); err != nil {
			return err
		}
		if len(rows) == 0 && none != "" {
			fmt.Fprintln(a.stderr, none)
		}
		return nil
	})
}

func inBucket(b string) string {
	if b == "" {
		return ""
	}
	return " in bucket " + strconv.Quote(b)
}

func filesetsCommand() *command {
	return &command{
		name:    "filesets",
		args:    "--bucket NAME [--package ID] [--since WHEN] [--status STATUS] [flags]",
		summary: "List file-sets of a bucket (and package), in API order (all pages).",
		examples: []string{
			"cfsync filesets --bucket bulk-ESG --package 4e94-6d63-fea034ad-9a0b-2b2e4c3a8a17",
			"cfsync filesets --bucket bulk-ESG --package 4e94-… --since 24h --status READY",
			"cfsync filesets --bucket bulk-ESG --since 2025-01-31 --json",
		},
		rdp: true, json: true, noArgs: true,
		setup: func(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
			bucket := fs.String("bucket", "", "CFS bucket `NAME` (required)")
			pkg := fs.String("package", "", "package `ID`")
			since := fs.String("since", "", "only file-sets modified since `WHEN`: RFC 3339 time, date (2025-01-31) or duration back from now (24h)")
			status := fs.String("status", "", "only file-sets with this `STATUS` (READY, PENDING)")
			limit := fs.Int("limit", 0, "stop after `N` file-sets (0: all)")
			return func(ctx context.Context, args []string) error {
				if strings.TrimSpace(*bucket) == "" {
					return usagef("--bucket is required")
				}
				if *limit < 0 {
					return usagef("--limit must not be negative")
				}
				q := rdp.FileSetQuery{Bucket: strings.TrimSpace(*bucket), PackageID: strings.TrimSpace(*pkg), Status: strings.ToUpper(strings.TrimSpace(*status))}
				if *since != "" {
					t, err := parseSince(*since, a.now())
					if err != nil {
						return usagef("%v", err)
					}
					q.ModifiedSince = t
				}
				return listRDP(ctx, a, "list file-sets", func(c *rdp.Client) iter.Seq2[rdp.FileSet, error] { return c.FileSets(ctx, q) }, *limit,
					[]string{"FILE-SET ID", "NAME", "STATUS", "FILES", "MODIFIED", "AVAILABLE TO"}, func(f rdp.FileSet) []string {
						n := f.NumFiles
						if n == 0 {
							n = len(f.Files)
						}
						return []string{f.ID, f.Name, f.Status, strconv.Itoa(n), fmtTime(f.Modified), fmtTime(f.AvailableTo)}
					}, "no file-sets match"+inBucket(q.Bucket))
			}
		},
	}
}

func filesCommand() *command {
	return &command{
		name:    "files",
		args:    "FILESET_ID [flags]",
		summary: "List the files of a file-set (ids for download).",
		examples: []string{
			"cfsync files 4a1b-2c3d-5e6f7a8b-9c0d-1e2f3a4b5c6d",
			"cfsync files 4a1b-2c3d-5e6f7a8b-9c0d-1e2f3a4b5c6d --json",
		},
		rdp: true, json: true,
		setup: func(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
			return func(ctx context.Context, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one FILESET_ID")
				}
				return listRDP(ctx, a, "list files", func(c *rdp.Client) iter.Seq2[rdp.File, error] { return c.Files(ctx, args[0]) }, 0,
					[]string{"FILE ID", "NAME", "SIZE", "MD5"}, func(f rdp.File) []string {
						return []string{f.ID, f.FileName, strconv.FormatInt(f.Size, 10), f.MD5}
					}, "")
			}
		},
	}
}

func subscriptionsCommand() *command {
	return &command{
		name:    "subscriptions",
		args:    "check [--subscriptions LIST] [flags]",
		summary: "Check SUBSCRIPTIONS entries (bucket/packageId, bucket/*) against /packages.",
		details: `Each entry is OK, "unknown bucket" (RDP lists no package in it), "unknown package"
(the bucket does not list it) or "malformed". Exit code 3 when any entry is not OK.`,
		examples: []string{
			"SUBSCRIPTIONS=bulk-ESG/4e94-…,bulk-ESG/* cfsync subscriptions check",
			"cfsync subscriptions check --subscriptions 'bulk-ESG/4e94-…,bulk-Ownership/*' --json",
		},
		rdp: true, json: true,
		setup: func(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
			subs := a.envString(fs, "subscriptions", "SUBSCRIPTIONS", "comma-separated `LIST` of bucket/packageId or bucket/*")
			return func(ctx context.Context, args []string) error {
				if len(args) != 1 || args[0] != "check" {
					if len(args) == 0 {
						return usagef("missing subcommand: want \"check\"")
					}
					return usagef("unknown subcommand %q: want \"check\"", args[0])
				}
				entries := splitList(subs.value())
				if len(entries) == 0 {
					return usagef("no subscriptions: pass --subscriptions or set SUBSCRIPTIONS")
				}
				return a.withSession(ctx, &a.rdp, func(s *rdpSession) error {
					results, err := checkSubscriptions(ctx, s.client, entries)
					if err != nil {
						return err
					}
					bad := 0
					for _, r := range results {
						if r.Result != resultOK {
							bad++
						}
					}
					err = printList(a.stdout, a.json, results, []string{"SUBSCRIPTION", "RESULT", "DETAIL"}, func(r subscriptionResult) []string {
						return []string{r.Entry, r.Result, r.Detail}
					})
					if err != nil {
						return err
					}
					if bad > 0 {
						return &checkFailed{fmt.Sprintf("%d of %d subscriptions are not valid", bad, len(results))}
					}
					return nil
				})
			}
		},
	}
}

// Subscription check results.
const (
	resultOK             = "OK"
	resultUnknownBucket  = "unknown bucket"
	resultUnknownPackage = "unknown package"
	resultMalformed      = "malformed"
)

type subscriptionResult struct {
	Entry     string `json:"entry"`
	Bucket    string `json:"bucket,omitempty"`
	PackageID string `json:"packageId,omitempty"`
	Result    string `json:"result"`
	Detail    string `json:"detail,omitempty"`
}

// checkSubscriptions checks every entry, listing each bucket's packages once.
func checkSubscriptions(ctx context.Context, c *rdp.Client, entries []string) ([]subscriptionResult, error) {
	type bucketPkgs struct {
		pkgs []rdp.Package
		gone bool // 404
	}
	cache := map[string]*bucketPkgs{}
	list := func(bucket string) (*bucketPkgs, error) {
		key := strings.ToLower(bucket)
		if b, ok := cache[key]; ok {
			return b, nil
		}
		pkgs, err := collect(c.Packages(ctx, bucket), 0)
		b := &bucketPkgs{pkgs: pkgs, gone: errors.Is(err, rdp.ErrNotFound)}
		if err != nil && !b.gone {
			return nil, fmt.Errorf("list packages of bucket %s: %w", bucket, err)
		}
		cache[key] = b
		return b, nil
	}
	var out []subscriptionResult
	for _, e := range entries {
		r := subscriptionResult{Entry: e}
		bucket, pkg, found := strings.Cut(e, "/")
		bucket, pkg = strings.TrimSpace(bucket), strings.TrimSpace(pkg)
		if !found || bucket == "" || pkg == "" || strings.Contains(pkg, "/") {
			r.Result, r.Detail = resultMalformed, "want bucket/packageId or bucket/*"
			out = append(out, r)
			continue
		}
		r.Bucket, r.PackageID = bucket, pkg
		b, err := list(bucket)
		if err != nil {
			return nil, err
		}
		switch {
		case b.gone || len(b.pkgs) == 0:
			r.Result, r.Detail = resultUnknownBucket, "RDP lists no package in this bucket for this account"
		case pkg == "*":
			r.Result, r.Detail = resultOK, fmt.Sprintf("%d package(s)", len(b.pkgs))
		default:
			r.Result = resultUnknownPackage
			r.Detail = fmt.Sprintf("not among the bucket's %d package(s)", len(b.pkgs))
			for _, p := range b.pkgs {
				if p.PackageID == pkg {
					r.Result, r.Detail = resultOK, p.PackageName
					break
				}
				if strings.EqualFold(p.PackageID, pkg) {
					r.Detail = "did you mean " + p.PackageID + "?"
				}
			}
		}
		out = append(out, r)
	}
	return out, nil
}
