// Command cfsync is the operator CLI of cfsync: it discovers LSEG CFS
// packages and file-sets, downloads single files, inspects the pipeline's
// state table and moves failed messages from the DLQ back to the download
// queue. It is built on pkg/rdp and the functions' own state and queue
// packages.
//
// Run `cfsync help` for the commands and `cfsync COMMAND --help` for each
// command's flags and examples.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/cfsync/cfsync/internal/backoff"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// Exit codes.
const (
	exitOK          = 0
	exitError       = 1 // runtime error
	exitUsage       = 2 // bad flags or arguments
	exitCheckFailed = 3 // the command ran and found problems
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run is the whole command: tests call it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) int {
	return newApp(stdout, stderr, env).run(ctx, args)
}

// app carries what the commands share; tests replace the clock, the sleep
// and the terminal check.
type app struct {
	stdout, stderr io.Writer
	env            func(string) string
	now            func() time.Time
	// sleep waits between download retries.
	sleep func(ctx context.Context, d time.Duration) error
	// isTerminal reports whether w is an interactive terminal (progress bars).
	isTerminal func(w io.Writer) bool
	// rdpOptions are appended to every rdp.Client's options (tests: no backoff sleeps).
	rdpOptions []rdp.Option
	// httpClient is the base of every RDP HTTP client.
	httpClient *http.Client

	awsCfg *aws.Config // loaded once

	rdp  rdpFlags // the command's RDP sign-on flags (command.rdp)
	json bool     // --json (command.json)
}

func newApp(stdout, stderr io.Writer, env func(string) string) *app {
	if env == nil {
		env = func(string) string { return "" }
	}
	return &app{
		stdout:     stdout,
		stderr:     stderr,
		env:        env,
		now:        func() time.Time { return time.Now().UTC() },
		sleep:      backoff.Sleep,
		isTerminal: isTerminal,
		httpClient: &http.Client{Timeout: 60 * time.Second},
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// command is one subcommand. setup registers its flags and returns the
// function that runs it with the positional arguments.
type command struct {
	name     string
	args     string // synopsis after the name, e.g. "FILE_ID [-o DIR]"
	summary  string
	details  string
	examples []string
	// Flags and arguments the framework handles for the command: rdp
	// registers the RDP sign-on flags (into app.rdp), json registers --json
	// (app.json), noArgs rejects positional arguments.
	rdp, json, noArgs bool
	setup             func(a *app, fs *flag.FlagSet) func(ctx context.Context, args []string) error
}

// usageError is a bad flag or argument: exit 2 with the usage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// checkFailed means the command ran and found problems: exit 3. Its message
// (if any) goes to stderr.
type checkFailed struct{ msg string }

func (e *checkFailed) Error() string { return e.msg }

func commands() []*command {
	return []*command{
		loginCommand(),
		packagesCommand(),
		filesetsCommand(),
		filesCommand(),
		downloadCommand(),
		statusCommand(),
		redriveCommand(),
		subscriptionsCommand(),
		doctorCommand(),
		notificationsCommand(),
	}
}

func findCommand(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (a *app) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		a.mainUsage(a.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && args[0] == "help" {
			if c := findCommand(args[1]); c != nil {
				fs := newFlagSet(a, c)
				c.setup(a, fs)
				a.commandUsage(a.stdout, c, fs)
				return exitOK
			}
			fmt.Fprintf(a.stderr, "cfsync: unknown command %q\n\n", args[1])
			a.mainUsage(a.stderr)
			return exitUsage
		}
		a.mainUsage(a.stdout)
		return exitOK
	}
	c := findCommand(args[0])
	if c == nil {
		fmt.Fprintf(a.stderr, "cfsync: unknown command %q\n\n", args[0])
		a.mainUsage(a.stderr)
		return exitUsage
	}
	return a.runCommand(ctx, c, args[1:])
}

func newFlagSet(a *app, c *command) *flag.FlagSet {
	fs := flag.NewFlagSet("cfsync "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if c.rdp {
		a.rdp.register(fs)
	}
	if c.json {
		fs.BoolVar(&a.json, "json", false, "print JSON")
	}
	return fs
}

func (a *app) runCommand(ctx context.Context, c *command, args []string) int {
	fs := newFlagSet(a, c)
	runFn := c.setup(a, fs)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		a.commandUsage(a.stdout, c, fs)
		return exitOK
	}
	if err == nil && c.noArgs && len(pos) > 0 {
		err = usagef("unexpected argument %q", pos[0])
	}
	if err == nil {
		err = runFn(ctx, pos)
	}
	var ue *usageError
	var cf *checkFailed
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue) || isFlagError(err):
		fmt.Fprintf(a.stderr, "cfsync %s: %v\n\n", c.name, err)
		a.commandUsage(a.stderr, c, fs)
		return exitUsage
	case errors.As(err, &cf):
		if cf.msg != "" {
			fmt.Fprintf(a.stderr, "cfsync %s: %s\n", c.name, cf.msg)
		}
		return exitCheckFailed
	default:
		fmt.Fprintf(a.stderr, "cfsync %s: %v\n", c.name, err)
		return exitError
	}
}

// flagError marks an error of flag.Parse.
type flagError struct{ err error }

func (e *flagError) Error() string { return e.err.Error() }
func (e *flagError) Unwrap() error { return e.err }

func isFlagError(err error) bool {
	var fe *flagError
	return errors.As(err, &fe)
}

// parseInterspersed parses flags that may come before, between or after the
// positional arguments (`download FILE_ID -o DIR`). "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &flagError{err}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// fs.Parse consumed a "--" itself if it was the next argument; we
		// cannot tell, so look at what precedes rest in args.
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

const mainUsageText = `cfsync — operator CLI for cfsync (LSEG CFS bulk files → S3)

Usage: cfsync COMMAND [flags]

Commands:
%s
Run "cfsync COMMAND --help" for a command's flags and examples.

RDP credentials (login, packages, filesets, files, download, subscriptions), at most one flag:
  --credentials FILE          a JSON file in the credentials-secret format
  --credentials-secret ID     the deployed credentials secret (Secrets Manager)
  --token-ring                a current token from the deployed token ring (TOKEN_SECRET_IDS);
                              no sign-on: preferred against a deployed stack
  without a flag, the environment: RDP_USERNAME, RDP_PASSWORD, RDP_CLIENT_ID (v1)
                              or RDP_CLIENT_ID, RDP_CLIENT_SECRET (v2 service account)
RDP_BASE_URL selects the API host. AWS: the usual AWS_* variables; AWS_ENDPOINT_URL points
at an emulator.

Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 check failed (problems found).
`

func (a *app) mainUsage(w io.Writer) {
	var b strings.Builder
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-22s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, mainUsageText, b.String())
}

func (a *app) commandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: cfsync %s %s\n\n%s\n", c.name, c.args, c.summary)
	if c.details != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(c.details, "\n"))
	}
	if len(c.examples) > 0 {
		fmt.Fprintf(w, "\nExamples:\n")
		for _, e := range c.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	if len(flags) == 0 {
		return
	}
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	fmt.Fprintf(w, "\nFlags:\n")
	for _, f := range flags {
		name, usage := flag.UnquoteUsage(f)
		head := "  --" + f.Name
		if len(f.Name) == 1 {
			head = "  -" + f.Name
		}
		if name != "" {
			head += " " + name
		}
		if len(head) <= 26 {
			fmt.Fprintf(w, "%-28s%s", head, usage)
		} else {
			fmt.Fprintf(w, "%s\n%28s%s", head, "", usage)
		}
		def := f.DefValue
		if g, ok := f.Value.(flag.Getter); ok {
			if d, ok := g.Get().(time.Duration); ok {
				def = shortDuration(d)
			}
		}
		if def != "" && def != "false" && def != "0" && def != "0s" {
			fmt.Fprintf(w, " (default %s)", def)
		}
		fmt.Fprintln(w)
	}
}
