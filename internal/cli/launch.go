package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"nightshift/bootlevel"
	"nightshift/internal/app"
	"nightshift/internal/envelope"
	"nightshift/internal/progress"
	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
	"nightshift/internal/service/builtin"
	"nightshift/internal/termtext"
	"nightshift/keeper"
	"nightshift/launchplan"
)

const launchUsage = `usage: launch [flags] PLAN.toml

Boots a launch plan level by level and records the run. Launching a plan whose
run already exists resumes it: ready levels are re-verified and skipped.

flags:
`

// Launch runs the launch command and returns its exit code.
func Launch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("launch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, launchUsage); fs.PrintDefaults() }
	name := fs.String("name", "", "run name (default: the plan's name)")
	home := fs.String("home", "", "home directory for runs (default $NIGHTSHIFT_HOME or ~/.nightshift)")
	dry := fs.Bool("dry-run", false, "validate the plan, print levels, services and references, launch nothing")
	onFailure := fs.String("on-failure", "keep", "what to do with started services when a level fails: keep or rollback")
	parallel := fs.Int("parallelism", 0, "at most this many services boot at once per level (0: no bound)")
	allowChange := fs.Bool("allow-plan-change", false, "resume a run even though its plan file changed")
	plain := fs.Bool("plain", false, "one line per event even on a terminal")
	logLevel := fs.String("log-level", "info", "level of the run's log file: debug, info, warn, error")
	globals := kvFlag{}
	var globalFiles listFlag
	fs.Var(globals, "g", "set a global: -g key=value (repeatable; overrides -G and [globals])")
	fs.Var(&globalFiles, "G", "read globals from the [globals] table of a TOML file (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return app.ExitOK
		}
		return app.ExitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "launch: want exactly one plan file")
		fs.Usage()
		return app.ExitUsage
	}
	policy := bootlevel.FailurePolicy(*onFailure)
	if policy != bootlevel.FailKeep && policy != bootlevel.FailRollback {
		fmt.Fprintf(stderr, "launch: --on-failure must be keep or rollback, not %q\n", *onFailure)
		return app.ExitUsage
	}
	level, err := parseLevel(*logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "launch:", termtext.Text(redact.String(err.Error())))
		return app.ExitUsage
	}
	// Before anything else: the run name makes the run's directory, secret,
	// lock and log paths.
	if *name != "" {
		if err := launchplan.CheckRunName(*name); err != nil {
			fmt.Fprintln(stderr, "launch: --name:", err)
			return app.ExitUsage
		}
	}

	plan, err := launchplan.Load(fs.Arg(0), launchplan.Options{GlobalFiles: globalFiles, Globals: globals, Types: builtin.Names()})
	if err != nil {
		fmt.Fprintf(stderr, "launch: invalid plan:\n%s\n", termtext.Text(err.Error()))
		return app.ExitUsage
	}
	run := *name
	if run == "" {
		run = plan.Name
	}
	if err := launchplan.CheckRunName(run); err != nil {
		fmt.Fprintln(stderr, "launch:", err)
		return app.ExitUsage
	}
	if *dry {
		printDryRun(stdout, plan, run)
		for _, ph := range plan.Placeholders {
			fmt.Fprintf(stderr, "launch: warning: %s\n", termtext.Line(ph.String()))
		}
		return app.ExitOK
	}
	// A site value left at its placeholder (ami-CHANGE-ME) would fail only
	// later, on the cloud's side, after services were already paid for.
	if err := plan.PlaceholderError(); err != nil {
		fmt.Fprintf(stderr, "launch: invalid plan:\n%s\n", termtext.Text(err.Error()))
		return app.ExitUsage
	}

	if err := checkLocalWorkers(plan, run); err != nil {
		fmt.Fprintf(stderr, "launch: invalid plan:\n%v\n", err)
		return app.ExitUsage
	}

	homeDir, err := app.ResolveHome(*home)
	if err != nil {
		fmt.Fprintln(stderr, "launch:", termtext.Text(redact.String(err.Error())))
		return app.ExitUsage
	}
	// Every program the run starts inherits these, which is how teardown's
	// process sweep recognises the run's stragglers.
	os.Setenv(app.HomeEnv, homeDir)
	lay := runlayout.Of(homeDir, run)
	runDir := lay.Dir()
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		fmt.Fprintln(stderr, "launch:", termtext.Text(redact.String(err.Error())))
		return app.ExitFailed
	}
	release, err := app.LockRun(homeDir, run, "launch")
	if err != nil {
		fmt.Fprintln(stderr, "launch:", termtext.Text(redact.String(err.Error())))
		return app.ExitFailed
	}
	defer release()
	// The run's secret signs destructive commands between its components;
	// it exists before any of them starts.
	if _, err := envelope.LoadOrCreateSecret(runlayout.Of(homeDir, run).Secret()); err != nil {
		fmt.Fprintln(stderr, "launch:", termtext.Text(redact.String(err.Error())))
		return app.ExitFailed
	}
	// One redactor for everything this launch writes: the engine adds the
	// secrets it learns while booting, and the log, the progress and the
	// failure report below leave them out.
	red, err := builtin.RunRedactor(homeDir, run)
	if err != nil {
		fmt.Fprintln(stderr, "launch: note:", termtext.Line(red.String(err.Error())))
	}
	log, closeLog, err := newLogger(lay.LaunchLog(), level, red)
	if err != nil {
		fmt.Fprintln(stderr, "launch:", termtext.Text(red.String(err.Error())))
		return app.ExitFailed
	}
	defer closeLog()

	// A lost terminal (SIGHUP) stops the launch like Ctrl-C or SIGTERM: the
	// run is recorded as interrupted where it was, and a later launch
	// resumes it. Left to its default, SIGHUP killed the launch and the run
	// stayed "booting" forever.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// With the terminal gone, a write to a closed pipe on stdout must fail
	// the write rather than kill the launch before it records where it was.
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE)
	defer signal.Stop(pipe)
	a, err := app.Open(ctx, homeDir, log)
	if err != nil {
		fmt.Fprintln(stderr, "launch:", termtext.Text(red.String(err.Error())))
		return app.ExitFailed
	}
	defer a.Close()
	seed := a.Engine.Secrets
	a.Engine.Secrets = func(r string) *redact.Redactor {
		if r == run {
			return red
		}
		return seed(r)
	}
	live := isTerminal(stdout) && !*plain
	pr := progress.New(stdout, live, red)
	a.Engine.OnEvent = pr.Event
	a.Engine.Parallelism = *parallel

	show := func(s string) string { return termtext.Line(red.String(s)) }
	if prev, err := a.Store.GetRun(ctx, run); err == nil && prev.State == bootlevel.RunTerminated {
		// A relaunch starts afresh: the daemons' databases would otherwise
		// bring back the torn-down run's frozen pools and stale records.
		if err := freshStart(runDir); err != nil {
			fmt.Fprintln(stderr, "launch:", termtext.Text(red.String(err.Error())))
			return app.ExitFailed
		}
	}
	fmt.Fprintf(stdout, "launching run %s from %s (home %s)\n", show(run), show(plan.Path), show(homeDir))
	rep, err := a.Engine.Launch(ctx, plan, bootlevel.LaunchOptions{Run: run, OnFailure: policy, AllowPlanChange: *allowChange})
	var ie *bootlevel.InterruptedError
	if errors.As(err, &ie) {
		fmt.Fprintf(stderr, "launch: %s\n", redact.String(ie.Error()))
		if rep != nil {
			for _, f := range rep.Failures {
				fmt.Fprintf(stderr, "  %s\n", indent(redact.String(f.Error())))
			}
		}
		same := ""
		if len(globals) > 0 || len(globalFiles) > 0 {
			same = " (with the same -g and -G)"
		}
		fmt.Fprintf(stderr, "resume: launch --home %s --name %s %s%s\n", homeDir, run, plan.Path, same)
		return app.ExitFailed
	}
	if err != nil {
		fmt.Fprintf(stderr, "launch: run %s failed: %s\n", show(run), termtext.Text(red.String(err.Error())))
		if rep != nil {
			for _, f := range rep.Failures {
				fmt.Fprintf(stderr, "  %s\n", indent(termtext.Text(red.String(f.Error()))))
			}
		}
		fmt.Fprintf(stderr, "inspect: mgmt status --home %s %s; logs under %s\n", show(homeDir), show(run), show(lay.Logs()))
		return app.ExitCode(err)
	}
	fmt.Fprintf(stdout, "run %s is %s: %d services in %d levels\n", show(run), rep.State, len(rep.Services), len(plan.Levels))
	if len(keeper.WatchList(homeDir, run, plan, rep.Services, a.Engine.Types)) > 0 {
		startKeeper(ctx, stdout, stderr, homeDir, run)
	}
	fmt.Fprintf(stdout, "next: mgmt status %s   |   mgmt teardown %s\n", show(run), show(run))
	return app.ExitOK
}

// startKeeper starts the run's keepers, which restart its broker node and
// daemons when they die. A run without them still works, so a failure is
// reported but does not fail the launch.
func startKeeper(ctx context.Context, stdout, stderr io.Writer, home, run string) {
	mgmtBin, err := builtin.FindBinary(app.BinDir(), "mgmt")
	if err == nil {
		var pid int
		pid, err = keeper.Start(ctx, home, run, []string{mgmtBin, "--home", home, "keep", run})
		if err == nil {
			fmt.Fprintf(stdout, "keeper: pid %d restarts the broker node and daemons if they die (log %s)\n",
				pid, termtext.Line(filepath.Join(keeper.Dir(home, run), keeper.LogFile)))
			return
		}
	}
	fmt.Fprintf(stderr, "launch: warning: run %s has no keeper, so nothing restarts a daemon that dies: %s\n",
		termtext.Line(run), termtext.Text(redact.String(err.Error())))
}

// freshStart removes what a torn-down run's components kept on disk (the
// daemons' working directories and databases, the workers' directories and
// the keepers' files); the run's logs and secret stay.
func freshStart(runDir string) error {
	for _, name := range []string{"work", "instances", "keeper", "provisioner.db", "provisioner.db-wal", "provisioner.db-shm"} {
		if err := os.RemoveAll(filepath.Join(runDir, name)); err != nil {
			return fmt.Errorf("start run afresh: %w", err)
		}
	}
	return nil
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n  ") }

// printDryRun shows the plan as loaded; every value from the plan file is
// escaped (termtext.Line) and secret-named globals are redacted.
func printDryRun(w io.Writer, p *launchplan.Plan, run string) {
	q := termtext.Line
	fmt.Fprintf(w, "plan %s (run name %s)\n", q(p.Path), q(run))
	fmt.Fprintf(w, "hash %s\n", p.Hash)
	if len(p.Globals) > 0 {
		keys := make([]string, 0, len(p.Globals))
		for k := range p.Globals {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintln(w, "globals:")
		for _, k := range keys {
			fmt.Fprintf(w, "  %s = %s\n", q(k), q(redact.Value(k, p.Globals[k])))
		}
	}
	for _, l := range p.Levels {
		fmt.Fprintf(w, "level %d (%d services", l.Index, len(l.Services))
		if l.Parallelism > 0 {
			fmt.Fprintf(w, ", at most %d at once", l.Parallelism)
		}
		fmt.Fprintln(w, ")")
		for _, s := range l.Services {
			kind := s.Driver
			if s.Type != "" {
				kind = s.Type + " on " + s.Driver
			}
			fmt.Fprintf(w, "  %s [%s]\n", q(s.Name), q(kind))
			for _, st := range []struct {
				name string
				p    *launchplan.Program
			}{{"boot", s.Boot}, {"ready", s.Ready}, {"terminate", s.Terminate}} {
				if st.p != nil {
					fmt.Fprintf(w, "    %-9s %s %s\n", st.name, q(st.p.Path), q(redact.String(strings.Join(st.p.Args, " "))))
				}
			}
		}
	}
	edges := p.Graph()
	if len(edges) > 0 {
		fmt.Fprintln(w, "references:")
		for _, e := range edges {
			fmt.Fprintf(w, "  %s -> %s (%s)\n", q(e.From), q(e.To), q(e.Ref))
		}
	}
	if len(p.Jobs) > 0 {
		fmt.Fprintln(w, "jobs:")
		for _, j := range p.Jobs {
			fmt.Fprintf(w, "  %s\n", q(j.Name))
		}
	}
	fmt.Fprintln(w, "dry run: nothing launched")
}
