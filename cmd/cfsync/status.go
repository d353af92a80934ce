package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/cfsync/cfsync/internal/state"
)

func statusCommand() *command {
	return &command{
		name:    "status",
		args:    "[--table NAME] [flags]",
		summary: "Summarise the state table: counts by status, oldest pending file, failures, files nearing availableTo.",
		details: `"Pending" is any status other than DONE and FAILED. "Expiring" lists files that are not DONE
and whose file-set leaves the file store (availableTo) within --window (or already has).
With --check the exit code is 3 when there are failures or expiring files (for cron/alarms).`,
		examples: []string{
			"STATE_TABLE=cfsync-state cfsync status",
			"cfsync status --table cfsync-state --json",
			"cfsync status --check --window 48h || echo 'cfsync needs attention'",
		},
		noArgs: true,
		setup: func(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
			table := a.envString(fs, "table", "STATE_TABLE", "DynamoDB state table `NAME`")
			window := fs.Duration("window", 24*time.Hour, "list files not DONE whose availableTo is within `DURATION`")
			limit := fs.Int("limit", 20, "show at most `N` failures and expiring files in text output (0: all)")
			check := fs.Bool("check", false, "exit 3 if there are failures or expiring files")
			asJSON := fs.Bool("json", false, "print JSON (every failure and expiring file)")
			return func(ctx context.Context, args []string) error {
				name, err := table.required()
				if err != nil {
					return err
				}
				if *window < 0 || *limit < 0 {
					return usagef("--window and --limit must not be negative")
				}
				cfg, err := a.aws(ctx)
				if err != nil {
					return err
				}
				t := state.New(dynamodb.NewFromConfig(cfg), name)
				t.Now = a.now
				rep, err := buildStatus(ctx, t, a.now(), *window)
				if err != nil {
					return err
				}
				if *asJSON {
					if err := writeJSON(a.stdout, rep); err != nil {
						return err
					}
				} else if err := rep.print(a, *limit); err != nil {
					return err
				}
				if *check && (len(rep.Failures) > 0 || len(rep.Expiring) > 0) {
					return &checkFailed{fmt.Sprintf("%d failed file(s), %d file(s) nearing availableTo", len(rep.Failures), len(rep.Expiring))}
				}
				return nil
			}
		},
	}
}

type statusReport struct {
	Table         string            `json:"table"`
	Now           time.Time         `json:"now"`
	Window        string            `json:"window"`
	Total         int               `json:"total"`
	Counts        map[string]int    `json:"counts"`
	OldestPending *state.FileItem   `json:"oldestPending"`
	Failures      []*state.FileItem `json:"failures"`
	Expiring      []*state.FileItem `json:"expiring"`
}

// statusOrder is the display order of the known statuses.
var statusOrder = []string{state.StatusClaimed, state.StatusQueued, state.StatusDownloading, state.StatusDone, state.StatusFailed}

func buildStatus(ctx context.Context, t *state.Table, now time.Time, window time.Duration) (*statusReport, error) {
	rep := &statusReport{Table: t.Name, Now: now.UTC(), Window: shortDuration(window), Counts: map[string]int{}, Failures: []*state.FileItem{}, Expiring: []*state.FileItem{}}
	for _, s := range statusOrder {
		rep.Counts[s] = 0
	}
	err := t.ScanFiles(ctx, func(it *state.FileItem) error {
		rep.Total++
		rep.Counts[it.Status]++
		switch it.Status {
		case state.StatusDone:
			return nil
		case state.StatusFailed:
			rep.Failures = append(rep.Failures, it)
		default:
			if rep.OldestPending == nil || it.CreatedAt.Before(rep.OldestPending.CreatedAt) ||
				(it.CreatedAt.Equal(rep.OldestPending.CreatedAt) && it.FileID < rep.OldestPending.FileID) {
				rep.OldestPending = it
			}
		}
		if !it.AvailableTo.IsZero() && it.AvailableTo.Sub(now) <= window {
			rep.Expiring = append(rep.Expiring, it)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(rep.Failures, func(i, j int) bool {
		a, b := rep.Failures[i], rep.Failures[j]
		if !a.UpdatedAt.Equal(b.UpdatedAt) {
			return a.UpdatedAt.After(b.UpdatedAt) // newest first
		}
		return a.FileID < b.FileID
	})
	sort.Slice(rep.Expiring, func(i, j int) bool {
		a, b := rep.Expiring[i], rep.Expiring[j]
		if !a.AvailableTo.Equal(b.AvailableTo) {
			return a.AvailableTo.Before(b.AvailableTo) // soonest first
		}
		return a.FileID < b.FileID
	})
	return rep, nil
}

func (rep *statusReport) print(a *app, limit int) error {
	w := a.stdout
	fmt.Fprintf(w, "state table %s at %s: %d file(s)\n\n", rep.Table, fmtTime(rep.Now), rep.Total)
	t := newTable(w, "STATUS", "FILES")
	for _, s := range statusOrder {
		t.row(s, strconv.Itoa(rep.Counts[s]))
	}
	for _, s := range slices.Sorted(maps.Keys(rep.Counts)) {
		if !isKnownStatus(s) {
			t.row(s, strconv.Itoa(rep.Counts[s]))
		}
	}
	if err := t.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	if p := rep.OldestPending; p != nil {
		fmt.Fprintf(w, "oldest pending: %s (%s for %s, attempts %d) file-set %s %s/%s\n", p.FileID, p.Status,
			fmtAge(rep.Now.Sub(p.CreatedAt)), p.Attempts, nameOr(p.FileSetName, p.FileSetID), p.Bucket, p.PackageID)
	} else {
		fmt.Fprintln(w, "oldest pending: none")
	}

	fmt.Fprintf(w, "\nfailures: %d\n", len(rep.Failures))
	if len(rep.Failures) > 0 {
		t := newTable(w, "FILE ID", "FILE-SET", "ATTEMPTS", "UPDATED", "REASON")
		for i, f := range rep.Failures {
			if limit > 0 && i == limit {
				break
			}
			t.row(f.FileID, nameOr(f.FileSetName, f.FileSetID), strconv.Itoa(f.Attempts), fmtTime(f.UpdatedAt), truncate(f.Reason, 120))
		}
		if err := t.flush(); err != nil {
			return err
		}
		more(w, len(rep.Failures), limit)
	}

	fmt.Fprintf(w, "\nnearing availableTo (within %s, not DONE): %d\n", rep.Window, len(rep.Expiring))
	if len(rep.Expiring) > 0 {
		t := newTable(w, "FILE ID", "STATUS", "FILE-SET", "AVAILABLE TO", "LEFT")
		for i, f := range rep.Expiring {
			if limit > 0 && i == limit {
				break
			}
			left := f.AvailableTo.Sub(rep.Now)
			l := fmtAge(left)
			if left <= 0 {
				l = "expired"
			}
			t.row(f.FileID, f.Status, nameOr(f.FileSetName, f.FileSetID), fmtTime(f.AvailableTo), l)
		}
		if err := t.flush(); err != nil {
			return err
		}
		more(w, len(rep.Expiring), limit)
	}
	return nil
}

func more(w io.Writer, n, limit int) {
	if limit > 0 && n > limit {
		fmt.Fprintf(w, "… and %d more (--limit 0 or --json for all)\n", n-limit)
	}
}

func isKnownStatus(s string) bool {
	for _, k := range statusOrder {
		if k == s {
			return true
		}
	}
	return false
}

func nameOr(name, id string) string {
	if name != "" {
		return name
	}
	return id
}

// shortDuration is d.String() without trailing zero units: 24h, 1h30m, 90s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
