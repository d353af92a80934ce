package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/cfsync/cfsync/internal/lambdamain"
	"github.com/cfsync/cfsync/internal/pipeline"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// watchResult is what the live loop saw.
type watchResult struct {
	last       pipeline.Progress
	firstPoll  time.Time // when the first file item appeared
	complete   bool      // every expected file DONE or FAILED, the queue drained
	elapsed    time.Duration
	transferAt time.Duration // from the first file item to the last DONE
}

// watch shows progress until every expected file is DONE or FAILED and the
// queue is drained (simulator), with -notifications also every file-set
// published and landed, or until ctx ends.
func watch(ctx context.Context, p *pipeline.Pipeline, sim *rdptest.Server, expected []rdptest.File, pub *publisher, out *liveWriter, events <-chan string) watchResult {
	var res watchResult
	start := p.Started
	total := len(expected)
	if pub != nil {
		total += pipeline.PublishFiles * pub.n
	}
	seenAuth := 0
	started := false
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		pr, err := p.Progress(ctx)
		if err == nil {
			res.last = pr
			if pr.Files > 0 && res.firstPoll.IsZero() {
				res.firstPoll = time.Now()
			}
		}
		for drained := false; !drained; {
			select {
			case ev := <-events:
				out.event("  %s", ev)
			default:
				drained = true
			}
		}
		auth := printAuth(sim, &seenAuth, out)
		published := true
		if pub != nil && err == nil {
			for _, l := range pub.step(pr, pr.Done()+pr.Failed() >= len(expected)) {
				out.event("%s", l)
			}
			published = pub.done()
		}
		res.elapsed = time.Since(start)
		xfer := time.Duration(0)
		if !res.firstPoll.IsZero() {
			end := time.Now()
			if total > 0 && pr.Done() == total && !pr.LastDone.IsZero() {
				end = pr.LastDone
			}
			xfer = end.Sub(res.firstPoll)
			res.transferAt = xfer
		}
		if err == nil {
			res.complete = total > 0 && published && pr.Done()+pr.Failed() >= total && pr.Queued == 0 && pr.InFlight == 0
			out.status(progressLine(pr, total, res.elapsed, xfer, auth), res.complete || !started)
			started = true
			if res.complete {
				return res
			}
		}
		select {
		case <-ctx.Done():
			return res
		case <-tick.C:
		}
	}
}

// printAuth prints the simulator's /auth requests since *seen and returns
// how many there were in all (-1 with the real RDP).
func printAuth(sim *rdptest.Server, seen *int, out *liveWriter) int {
	if sim == nil {
		return -1
	}
	log := sim.AuthLog()
	for _, r := range log[*seen:] {
		status := fmt.Sprint(r.Status)
		if r.Error != "" {
			status += " " + r.Error
		}
		out.event("  RDP auth: %s grant → %s (%s)", grantName(r.Grant), status, strings.TrimPrefix(r.UserAgent, lambdamain.UserAgentPrefix))
	}
	*seen = len(log)
	return len(log)
}

func grantName(g string) string {
	if g == "" {
		return "unknown"
	}
	return g
}

// summary prints the summary table and where the files are; it returns the
// exit code (0: every expected file landed and verified, and no /auth
// request came from another function than the token-refresher).
func summary(ctx context.Context, w io.Writer, p *pipeline.Pipeline, sim *rdptest.Server, expected []rdptest.File, pub *publisher, res watchResult, o options) int {
	pr, err := p.Progress(ctx)
	if err != nil {
		pr = res.last
	}
	code := 0
	fmt.Fprintln(w)
	if sim != nil {
		code = verifySummary(ctx, w, p, expected, landed(pr, expected), res)
	}
	rows := [][2]string{
		{"files", fmt.Sprintf("%d landed, %d failed, %d not finished (state table: %d items)", pr.Done(), pr.Failed(), pr.Files-pr.Done()-pr.Failed(), pr.Files)},
		{"bytes", humanBytes(pr.BytesDone)},
		{"throughput", fmt.Sprintf("%s (first file queued → last file landed: %.1fs)", rate(pr.BytesDone, res.transferAt), res.transferAt.Seconds())},
	}
	if pub != nil {
		rows = append(rows, pub.summaryRow(o))
	}
	if sim != nil {
		simRows, others := simSummaryRows(sim, o)
		rows = append(rows, simRows...)
		if len(others) > 0 {
			code = 1
		}
	} else {
		rows = append(rows, [2]string{"RDP auth calls", "see the token-refresher log (real RDP)"})
	}
	ev := pr.Events
	sched := fmt.Sprintf("token-refresher %d runs (%d failed), fileset-poller %d runs (%d failed)", pr.Refresh.Runs, pr.Refresh.Errors, pr.Poll.Runs, pr.Poll.Errors)
	if pub != nil {
		sched += fmt.Sprintf(", notification-reader %d runs (%d failed)", pr.Read.Runs, pr.Read.Errors)
	}
	rows = append(rows,
		[2]string{"schedules", sched},
		[2]string{"downloader", fmt.Sprintf("%d invocations, %d messages, %d deleted", ev.Invocations, ev.Messages, ev.Deleted)},
		[2]string{"retries", fmt.Sprintf("%d redeliveries, %d messages failed (%d whole batches)", ev.Redelivered, ev.ItemFailures, ev.BatchFailures)},
		[2]string{"DLQ", fmt.Sprintf("%d messages", pr.DLQ)},
	)
	for _, r := range rows {
		fmt.Fprintf(w, "  %-16s %s\n", r[0], r[1])
	}
	if len(expected) > 0 {
		fmt.Fprintln(w)
		packageTable(w, packageRows(pr, expected))
	}
	if pr.Failed() > 0 || pr.DLQ > 0 || (len(expected) > 0 && pr.Done() != len(expected)) {
		code = 1
	}
	fmt.Fprintf(w, "\nThe files are in s3://%s/%s (moto_server at %s). While cfsync-local runs (-keep keeps it up until Ctrl-C):\n", p.Res.Bucket, p.Res.Prefix, p.Endpoint)
	fmt.Fprintf(w, "  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \\\n    aws --endpoint-url %s s3 ls --recursive s3://%s/%s\n", p.Endpoint, p.Res.Bucket, p.Res.Prefix)
	if o.out == "" {
		fmt.Fprintln(w, "  (-out ./downloads copies them to disk)")
	}
	return code
}

// verifySummary verifies the expected files (those landed so far, when the
// run did not finish) and prints the outcome; it returns the exit code.
func verifySummary(ctx context.Context, w io.Writer, p *pipeline.Pipeline, expected, landed []rdptest.File, res watchResult) int {
	check := expected
	if !res.complete {
		check = landed
		fmt.Fprintf(w, "not finished: %d of %d files had landed\n", len(check), len(expected))
	}
	rep, err := p.Verify(ctx, check)
	switch {
	case err != nil:
		fmt.Fprintf(w, "verification failed to run: %v\n", err)
		return 1
	case rep.OK() && res.complete:
		fmt.Fprintf(w, "%d of %d files landed in %s and verified: byte-identical (MD5 of the whole object), right key and cfs-* metadata, state DONE; nothing else in the bucket\n",
			rep.Verified, rep.Files, clock(res.elapsed))
	case rep.OK():
		fmt.Fprintf(w, "the %d landed files verified: byte-identical, right key and metadata, state DONE\n", rep.Verified)
	default:
		fmt.Fprintf(w, "%d of %d files verified; %d problems:\n", rep.Verified, rep.Files, len(rep.Problems))
		for i, prob := range rep.Problems {
			if i == 20 {
				fmt.Fprintf(w, "  … and %d more\n", len(rep.Problems)-20)
				break
			}
			fmt.Fprintln(w, "  "+prob)
		}
		return 1
	}
	return 0
}

// simSummaryRows are the simulator's rows: /auth calls by grant and by
// caller, API calls, faults; others are the /auth callers other than the
// token-refresher (there must be none).
func simSummaryRows(sim *rdptest.Server, o options) (rows [][2]string, others []string) {
	log := sim.AuthLog()
	ok, failed := authByGrant(log)
	callers, others := authCallers(log)
	who := "all by the token-refresher"
	if len(others) > 0 {
		who = "NOT ONLY BY THE TOKEN-REFRESHER"
	}
	rows = append(rows,
		[2]string{"RDP auth calls", formatGrants(ok, failed) + " (" + who + "; budget 20 per 5 min)"},
		[2]string{"auth callers", callers})
	c := sim.Counters()
	rows = append(rows, [2]string{"RDP API calls", fmt.Sprintf("file-sets %d, stream URLs %d, presigned GETs %d (%d ranged), %s served",
		c.Requests[rdptest.EPFileSets], c.StreamURLs, c.S3Requests, c.RangeRequests, humanBytes(c.BytesServed))})
	if c.FaultsFired > 0 {
		rows = append(rows, [2]string{"faults fired", fmt.Sprintf("%d (of %d injected; a fault fires when a request matches it)", c.FaultsFired, o.injected)})
	}
	if o.notify {
		nc := sim.NotificationCounters()
		rows = append(rows, [2]string{"notification API", fmt.Sprintf("%d subscription, %d notifications delivered, %d queue credentials handed out, %d rejected by the gate",
			nc.Subscriptions, nc.Published, nc.CloudCredentials, nc.CredentialsDenied)})
	}
	return rows, others
}

// landed returns the expected files whose state is DONE in pr.
func landed(pr pipeline.Progress, expected []rdptest.File) []rdptest.File {
	var out []rdptest.File
	for _, f := range expected {
		if _, done := pr.DoneAt[f.ID]; done {
			out = append(out, f)
		}
	}
	return out
}

// packageRows counts the expected files by package, and those DONE in pr.
func packageRows(pr pipeline.Progress, expected []rdptest.File) []packageRow {
	byPkg := map[string]*packageRow{}
	for _, f := range expected {
		name := f.Bucket + "/" + f.PackageID
		r := byPkg[name]
		if r == nil {
			r = &packageRow{name: name}
			byPkg[name] = r
		}
		r.want++
		if _, done := pr.DoneAt[f.ID]; done {
			r.landed++
			r.bytes += f.Size
		}
	}
	var rows []packageRow
	for _, r := range byPkg {
		rows = append(rows, *r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
	return rows
}
