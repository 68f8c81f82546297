package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"nightshift/bootlevel"
	"nightshift/internal/app"
	"nightshift/internal/clikit"
	"nightshift/internal/envelope"
	"nightshift/internal/progress"
	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
	"nightshift/internal/service/builtin"
	"nightshift/internal/termtext"
	"nightshift/internal/workeruser"
	"nightshift/keeper"
	"nightshift/launchplan"
)

// launchOptions are launch's flags.
type launchOptions struct {
	name, home, onFailure, logLevel string
	dry, allowChange, plain, asJSON bool
	parallel                        int
	globals                         kvFlag
	globalFiles                     []string
}

// Launch runs the launch command and returns its exit code.
func Launch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return clikit.Execute(ctx, newLaunchRoot(stdout, stderr), args, stderr, app.ExitCode, nil)
}

func newLaunchRoot(stdout, stderr io.Writer) *cobra.Command {
	var o launchOptions
	root := &cobra.Command{
		Use:   "launch PLAN.toml",
		Short: "boot a launch plan level by level and record the run",
		Long: `launch boots a launch plan level by level and records the run. Launching a
plan whose run already exists resumes it: ready levels are re-verified and
skipped. An interrupted launch (Ctrl-C, SIGTERM, or a lost terminal's
SIGHUP) records where it stopped; launching again resumes there.

Flags go anywhere: before or after the plan file.`,
		Example: `  launch examples/hello/plan.toml
  launch --dry-run examples/hello/plan.toml
  launch plan.toml --name staging -g region=eu-west-1 -G globals.toml
  launch plan.toml --on-failure rollback --plain`,
		Args:              clikit.Args(1, 1),
		ValidArgsFunction: planFiles,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := runLaunch(cmd.Context(), o, args[0], stdout, stderr); code != app.ExitOK {
				return clikit.Exit(code)
			}
			return nil
		},
	}
	f := root.Flags()
	f.StringVar(&o.name, "name", "", "run name (default: the plan's name)")
	f.StringVar(&o.home, "home", "", "home directory for runs (default $NIGHTSHIFT_HOME or ~/.nightshift)")
	f.BoolVar(&o.dry, "dry-run", false, "validate the plan, print levels, services and references, launch nothing")
	f.StringVar(&o.onFailure, "on-failure", "keep", "what to do with started services when a level fails: keep or rollback")
	f.IntVar(&o.parallel, "parallelism", 0, "at most this many services boot at once per level (0: no bound)")
	f.BoolVar(&o.allowChange, "allow-plan-change", false, "resume a run even though its plan file changed")
	f.BoolVar(&o.plain, "plain", false, "one line per event even on a terminal")
	f.BoolVar(&o.asJSON, "json", false, "with --dry-run: print the plan as JSON")
	f.StringVar(&o.logLevel, "log-level", "info", "level of the run's log file: debug, info, warn, error")
	o.globals = kvFlag{}
	f.VarP(o.globals, "global", "g", "set a global: -g key=value (repeatable; overrides -G and [globals])")
	f.StringArrayVarP(&o.globalFiles, "globals-file", "G", nil, "read globals from the [globals] table of a TOML file (repeatable)")
	// With a completion command, launch has a subcommand, and cobra's own
	// help command makes `launch help` help rather than a plan named help.
	clikit.AddCompletion(root)
	clikit.Prepare(root, stdout, stderr)
	return root
}

// planFiles completes a plan file.
func planFiles(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return []cobra.Completion{"toml"}, cobra.ShellCompDirectiveFilterFileExt
}

// runLaunch is the launch command proper, once its flags are parsed.
func runLaunch(ctx context.Context, o launchOptions, planFile string, stdout, stderr io.Writer) int {
	name, home, dry, onFailure, parallel, allowChange, plain, logLevel := &o.name, &o.home, &o.dry, &o.onFailure, &o.parallel, &o.allowChange, &o.plain, &o.logLevel
	globals, globalFiles := o.globals, o.globalFiles
	if o.asJSON && !*dry {
		fmt.Fprintln(stderr, "launch: --json goes with --dry-run (a launch reports progress as it goes)")
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

	plan, err := launchplan.Load(planFile, planOptions(globalFiles, globals))
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
		// A dry run shows the plan even with placeholders left in it, so it
		// warns (on stderr, which --json leaves alone) rather than refusing.
		for _, ph := range plan.Placeholders {
			fmt.Fprintf(stderr, "launch: warning: %s\n", termtext.Line(ph.String()))
		}
		if o.asJSON {
			var red *redact.Redactor // nil: URL passwords only; globals are redacted by name
			if err := red.EncodeJSON(stdout, dryRunOf(plan, run)); err != nil {
				fmt.Fprintln(stderr, "launch:", termtext.Text(redact.String(err.Error())))
				return app.ExitFailed
			}
			return app.ExitOK
		}
		printDryRun(stdout, plan, run)
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
	if note := localWorkersShareUser(plan, workeruser.IsRoot(), workeruser.Current()); note != "" {
		fmt.Fprintln(stderr, "launch: warning:", termtext.Line(note))
	}
	sitterBin, _ := builtin.FindBinary(app.BinDir(), "sitter")
	for _, w := range workersCannotReach(plan, run, workeruser.IsRoot(), sitterBin) {
		fmt.Fprintln(stderr, "launch: warning:", termtext.Line(w))
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
	a.PlaceSteps(ctx, run, plan)
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
	fmt.Fprintf(stdout, "run %s is %s: %d services in %d levels in %s\n", show(run), rep.State, len(rep.Services), len(plan.Levels), progress.Round(pr.Elapsed()))
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
	if dns := planDNSNames(p, run); len(dns) > 0 {
		fmt.Fprintln(w, "dns names (Route 53):")
		for _, d := range dns {
			if d.Error != "" {
				fmt.Fprintf(w, "  %s: %s\n", q(d.Job), q(d.Error))
				continue
			}
			fmt.Fprintf(w, "  %s in zone %s: %s", q(d.Job), q(d.Zone), q(strings.Join(d.Names, ", ")))
			if len(d.Names) == maxDryNames {
				fmt.Fprint(w, ", ...")
			}
			if d.Pool != "" {
				fmt.Fprintf(w, "; pool %s", q(d.Pool))
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w, "dry run: nothing launched")
}

// dryRun is what `launch --dry-run --json` prints: the plan as loaded, for
// programs. Secret-named globals are redacted by name.
type dryRun struct {
	Run        string            `json:"run"`
	Plan       string            `json:"plan"`
	Hash       string            `json:"hash"`
	Globals    map[string]string `json:"globals"`
	Levels     []dryLevel        `json:"levels"`
	References []launchplan.Edge `json:"references"`
	Jobs       []string          `json:"jobs"`
	DNS        []dryDNS          `json:"dns,omitempty"`
}

type dryLevel struct {
	Index       int          `json:"index"`
	Parallelism int          `json:"parallelism,omitempty"`
	Services    []dryService `json:"services"`
}

type dryService struct {
	Name      string              `json:"name"`
	Driver    string              `json:"driver"`
	Type      string              `json:"type,omitempty"`
	Boot      *launchplan.Program `json:"boot,omitempty"`
	Ready     *launchplan.Program `json:"ready,omitempty"`
	Terminate *launchplan.Program `json:"terminate,omitempty"`
}

func dryRunOf(p *launchplan.Plan, run string) dryRun {
	d := dryRun{Run: run, Plan: p.Path, Hash: p.Hash, Globals: map[string]string{}, References: p.Graph(), Jobs: []string{}}
	for k, v := range p.Globals {
		d.Globals[k] = redact.Value(k, v)
	}
	if d.References == nil {
		d.References = []launchplan.Edge{}
	}
	prog := func(p *launchplan.Program) *launchplan.Program {
		if p == nil {
			return nil
		}
		c := *p
		c.Args = make([]string, len(p.Args))
		for i, a := range p.Args {
			c.Args[i] = redact.String(a)
		}
		return &c
	}
	for _, l := range p.Levels {
		dl := dryLevel{Index: l.Index, Parallelism: l.Parallelism, Services: []dryService{}}
		for _, s := range l.Services {
			dl.Services = append(dl.Services, dryService{Name: s.Name, Driver: s.Driver, Type: s.Type,
				Boot: prog(s.Boot), Ready: prog(s.Ready), Terminate: prog(s.Terminate)})
		}
		d.Levels = append(d.Levels, dl)
	}
	for _, j := range p.Jobs {
		d.Jobs = append(d.Jobs, j.Name)
	}
	d.DNS = planDNSNames(p, run)
	return d
}

// planOptions are the loader's options wherever the command line reads a
// plan (launch, mgmt rollout --from-plan), so both accept and refuse the
// same plans: the built-in types, their replicas and their config checks.
func planOptions(globalFiles []string, globals map[string]string) launchplan.Options {
	return launchplan.Options{GlobalFiles: globalFiles, Globals: globals, Types: builtin.Names(),
		Replicas: builtin.Replicas, TypeCheck: builtin.CheckConfig}
}
