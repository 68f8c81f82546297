package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"

	"nightshift/bootlevel"
	"nightshift/internal/app"
	"nightshift/internal/ec2"
	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
	"nightshift/internal/service/ec2service"
	"nightshift/internal/ssmparams"
	"nightshift/internal/termtext"
	"nightshift/keeper"
	"nightshift/launchplan"
	"nightshift/mgmt"
	"nightshift/mgmt/mgmtbus"
)

const mgmtUsage = `usage: mgmt [--home DIR] COMMAND [flags] [RUN]

commands:
  list                         list runs
  status [--json] [--verify] [--watch] RUN
                               levels, services and pools of a run
  history [--json] RUN         the run's event history
  repair [--max-restarts N] RUN
                               re-verify every service and restart failed ones
  teardown [--dry-run] RUN     stop pools, terminate levels in reverse, sweep,
                               and prove nothing is left
  logs [-f] [-n N] [--raw] RUN SERVICE
                               print a service's log (escaped unless --raw;
                               secrets are redacted either way)
  reconfigure RUN JOB key=value...
                               change a pool's policy live (validated by its engine);
                               JOB @alerts changes alert thresholds and sinks
  alerts [--json] [--recent D] RUN
                               alerts firing now and resolved recently (docs/alerts.md)
  decisions [--limit N] RUN JOB
                               a pool's decisions with their reasons, newest first
  dashboard [--addr 127.0.0.1:0] RUN
                               serve a read-only web page of the run (levels,
                               pools, decisions, plots) and print its URL
  plot RUN JOB [--since 1h] -o FILE.svg
                               draw a pool's desired size, running workers and queue
                               depth over time, each decision marked (hover: reason)
  keep RUN                     the run's keeper (launch starts it; teardown stops it):
                               restarts the broker node and daemons when they die
`

// Mgmt runs the mgmt command and returns its exit code.
func Mgmt(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	top := flag.NewFlagSet("mgmt", flag.ContinueOnError)
	top.SetOutput(stderr)
	top.Usage = func() { fmt.Fprint(stderr, mgmtUsage) }
	home := top.String("home", "", "home directory for runs (default $NIGHTSHIFT_HOME or ~/.nightshift)")
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return app.ExitOK
		}
		return app.ExitUsage
	}
	if top.NArg() == 0 {
		top.Usage()
		return app.ExitUsage
	}
	cmd, rest := top.Arg(0), top.Args()[1:]
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	m := &mgmtCmd{stdout: stdout, stderr: stderr, homeFlag: *home}
	var err error
	switch cmd {
	case "list":
		err = m.list(ctx, rest)
	case "status":
		err = m.status(ctx, rest)
	case "history":
		err = m.history(ctx, rest)
	case "repair":
		err = m.repair(ctx, rest)
	case "teardown":
		err = m.teardown(ctx, rest)
	case "logs":
		err = m.logs(ctx, rest)
	case "reconfigure":
		err = m.reconfigure(ctx, rest)
	case "decisions":
		err = m.decisions(ctx, rest)
	case "alerts":
		err = m.alerts(ctx, rest)
	case "keep":
		err = m.keep(ctx, rest)
	case "dashboard":
		err = m.dashboard(ctx, rest)
	case "plot":
		err = m.plot(ctx, rest)
	case "help":
		top.Usage()
		return app.ExitOK
	default:
		err = app.Usagef("unknown command %q (see mgmt help)", cmd)
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "mgmt %s: %s\n", termtext.Line(cmd), termtext.Text(m.red.String(err.Error())))
		}
		return app.ExitCode(err)
	}
	return app.ExitOK
}

type mgmtCmd struct {
	stdout, stderr io.Writer
	homeFlag       string
	home           string
	// red knows the secrets of the run a command works on, once it has
	// one; everything printed passes through it (nil-safe before then).
	red *redact.Redactor
}

// learn loads the redactor of run, for everything the command prints after.
func (m *mgmtCmd) learn(ctx context.Context, a *app.App, run string) {
	red, err := a.Redactor(ctx, run)
	if err != nil {
		fmt.Fprintf(m.stderr, "note: %s\n", termtext.Line(red.String(err.Error())))
	}
	m.red = red
}

// line is how one value is shown to a person: redacted, then escaped.
func (m *mgmtCmd) line(s string) string { return termtext.Line(m.red.String(s)) }

// json prints v for programs: exact, apart from the run's secrets.
func (m *mgmtCmd) json(v any) error { return m.red.EncodeJSON(m.stdout, v) }

func (m *mgmtCmd) open(ctx context.Context) (*app.App, error) {
	home, err := app.ResolveHome(m.homeFlag)
	if err != nil {
		return nil, err
	}
	m.home = home
	if _, err := os.Stat(runlayout.DB(home)); err != nil {
		return nil, fmt.Errorf("no runs in %s (nothing was launched with this home)", home)
	}
	log, _, err := newLogger(runlayout.MgmtLog(home), 0, nil)
	if err != nil {
		return nil, err
	}
	return app.Open(ctx, home, log)
}

// flags parses a subcommand's flags and wants exactly nargs positionals.
func (m *mgmtCmd) flags(name string, args []string, nargs int, define func(*flag.FlagSet)) (*flag.FlagSet, error) {
	fs := flag.NewFlagSet("mgmt "+name, flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	if define != nil {
		define(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &app.UsageError{Err: err}
	}
	if fs.NArg() != nargs {
		return nil, app.Usagef("want %d argument(s), got %d (see mgmt help)", nargs, fs.NArg())
	}
	// Every subcommand's first argument is a run: a bad one must never
	// make a path.
	if nargs > 0 {
		if err := launchplan.CheckRunName(fs.Arg(0)); err != nil {
			return nil, &app.UsageError{Err: err}
		}
	}
	return fs, nil
}

func (m *mgmtCmd) list(ctx context.Context, args []string) error {
	if _, err := m.flags("list", args, 0, nil); err != nil {
		return err
	}
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	runs, err := a.Store.ListRuns(ctx)
	if err != nil {
		return err
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].Created.Before(runs[j].Created) })
	tw := tabwriter.NewWriter(m.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTATE\tCREATED\tPLAN")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.line(r.Name), m.line(string(r.State)), r.Created.Local().Format(time.DateTime), m.line(r.PlanPath))
	}
	return tw.Flush()
}

func (m *mgmtCmd) status(ctx context.Context, args []string) error {
	var asJSON, verify, watch *bool
	var every *time.Duration
	fs, err := m.flags("status", args, 1, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print JSON")
		verify = fs.Bool("verify", false, "run every ready check now and show the result")
		watch = fs.Bool("watch", false, "refresh in place until interrupted")
		every = fs.Duration("interval", 2*time.Second, "refresh interval for --watch")
	})
	if err != nil {
		return err
	}
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	run := fs.Arg(0)
	show := func() error {
		// Again on every refresh of --watch: services export new secrets.
		m.learn(ctx, a, run)
		var verified map[string]bool
		if *verify {
			rep, err := a.Engine.Verify(ctx, run)
			if err != nil && rep == nil {
				return err
			}
			verified = map[string]bool{}
			for _, s := range rep.Services {
				verified[s.Name] = s.State == bootlevel.ServiceReady
			}
		}
		var jobs mgmt.JobSource
		var note string
		if livePools(ctx, a, run) {
			conn, err := mgmtbus.Dial(ctx, a.Store, m.home, run, 3*time.Second)
			if err != nil {
				note = "pools unavailable: " + err.Error()
			} else {
				defer conn.Close()
				jobs = conn
			}
		}
		st, err := runStatus(ctx, a, m.home, run, jobs, note)
		if err != nil {
			return err
		}
		for i := range st.Levels {
			for j := range st.Levels[i].Services {
				s := &st.Levels[i].Services[j]
				if ok, has := verified[s.Name]; has {
					s.Verified = &ok
				}
			}
		}
		if *asJSON {
			return m.json(st)
		}
		clean, err := mgmt.Redact(st, m.red)
		if err != nil {
			return err
		}
		return mgmt.WriteTable(m.stdout, clean)
	}
	if !*watch {
		return show()
	}
	t := time.NewTicker(*every)
	defer t.Stop()
	for {
		if isTerminal(m.stdout) {
			fmt.Fprint(m.stdout, "\x1b[H\x1b[2J")
		}
		if err := show(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (m *mgmtCmd) history(ctx context.Context, args []string) error {
	var asJSON *bool
	fs, err := m.flags("history", args, 1, func(fs *flag.FlagSet) { asJSON = fs.Bool("json", false, "print JSON") })
	if err != nil {
		return err
	}
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	if _, err := a.Store.GetRun(ctx, fs.Arg(0)); err != nil {
		return err
	}
	m.learn(ctx, a, fs.Arg(0))
	evs, err := a.Store.Events(ctx, fs.Arg(0), 0)
	if err != nil {
		return err
	}
	if *asJSON {
		return m.json(evs)
	}
	for _, e := range evs {
		e.Message = m.red.String(e.Message)
		fmt.Fprintln(m.stdout, historyLine(e))
	}
	return nil
}

// historyLine shows one event on one line, escaped; the caller has redacted
// its message with the run's secrets.
func historyLine(e bootlevel.Event) string {
	s := fmt.Sprintf("%5d %s", e.Seq, e.Time.Local().Format("2006-01-02 15:04:05.000"))
	if e.Level > 0 {
		s += fmt.Sprintf(" L%d", e.Level)
	}
	if e.Service != "" {
		s += " " + e.Service
	}
	s += " " + e.Kind
	if e.Step != "" {
		s += " step=" + string(e.Step)
	}
	if e.State != "" {
		s += " state=" + e.State
	}
	if e.Message != "" {
		s += ": " + redact.String(e.Message)
	}
	return termtext.Line(s)
}

func (m *mgmtCmd) repair(ctx context.Context, args []string) error {
	var max *int
	fs, err := m.flags("repair", args, 1, func(fs *flag.FlagSet) {
		max = fs.Int("max-restarts", 2, "restart a failed service at most this many times")
	})
	if err != nil {
		return err
	}
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	if _, err := a.Store.GetRun(ctx, fs.Arg(0)); err != nil {
		return err
	}
	m.learn(ctx, a, fs.Arg(0))
	release, err := app.LockRun(m.home, fs.Arg(0), "mgmt repair")
	if err != nil {
		return err
	}
	defer release()
	os.Setenv(app.HomeEnv, m.home)
	rep, err := a.Engine.Repair(ctx, fs.Arg(0), *max)
	if rep != nil {
		for _, f := range rep.Failures {
			fmt.Fprintln(m.stderr, "  "+indent(termtext.Text(m.red.String(f.Error()))))
		}
		fmt.Fprintf(m.stdout, "run %s is %s\n", m.line(rep.Run), rep.State)
	}
	return err
}

func (m *mgmtCmd) teardown(ctx context.Context, args []string) error {
	var dry, asJSON *bool
	fs, err := m.flags("teardown", args, 1, func(fs *flag.FlagSet) {
		dry = fs.Bool("dry-run", false, "list what would be destroyed, destroy nothing")
		asJSON = fs.Bool("json", false, "print the report as JSON")
	})
	if err != nil {
		return err
	}
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	run := fs.Arg(0)
	td := &mgmt.Teardown{
		Engine: a.Engine,
		Store:  a.Store,
		Sweepers: []mgmt.Sweeper{
			mgmtbus.WorkerSweeper{Home: m.home},
			mgmt.ProcessSweeper{Home: m.home},
			mgmtbus.BrokerUserSweeper{Store: a.Store},
		},
	}
	if !*asJSON {
		td.Out = m.stdout
	}
	r, err := a.Store.GetRun(ctx, run)
	if err != nil {
		return err
	}
	m.learn(ctx, a, run)
	if !*dry {
		// The keepers go first: nothing may restart what this tears down.
		if err := keeper.Stop(ctx, m.home, run, 5*time.Second); err != nil {
			return err
		}
		release, err := app.LockRun(m.home, run, "mgmt teardown")
		if err != nil {
			return err
		}
		defer release()
	}
	sws, err := ec2Sweepers(ctx, r)
	if err != nil {
		fmt.Fprintf(m.stderr, "note: EC2 sweep incomplete: %s\n", m.line(err.Error()))
	}
	td.Sweepers = append(td.Sweepers, sws...)
	if !*dry && r.State != bootlevel.RunTerminated && hasPools(ctx, a, run) {
		conn, err := mgmtbus.Dial(ctx, a.Store, m.home, run, 3*time.Second)
		if err != nil {
			fmt.Fprintf(m.stdout, "pools unreachable (%s); the sweep will find their workers\n", m.line(err.Error()))
		} else {
			defer conn.Close()
			td.Pools = conn
		}
	}
	rep, err := td.Run(ctx, run, *dry)
	if rep == nil {
		return err
	}
	m.teardownAlert(ctx, a, run, rep)
	if *asJSON {
		if jerr := m.json(rep); jerr != nil {
			return jerr
		}
		return err
	}
	verb := "destroyed"
	if rep.DryRun {
		verb = "would destroy"
	}
	fmt.Fprintf(m.stdout, "%s %d:\n", verb, len(rep.Destroyed))
	for _, d := range rep.Destroyed {
		fmt.Fprintf(m.stdout, "  %s\n", m.line(d))
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(m.stdout, "note: %s\n", m.line(n))
	}
	if !rep.DryRun {
		fmt.Fprintf(m.stdout, "remaining %d:\n", len(rep.Remaining))
		for _, r := range rep.Remaining {
			fmt.Fprintf(m.stdout, "  %s\n", m.line(r))
		}
	}
	return err
}

func (m *mgmtCmd) logs(ctx context.Context, args []string) error {
	var follow, raw *bool
	var lines *int
	fs, err := m.flags("logs", args, 2, func(fs *flag.FlagSet) {
		follow = fs.Bool("f", false, "follow: keep printing what is appended")
		lines = fs.Int("n", 200, "start with the last N lines of each file (0: whole file)")
		raw = fs.Bool("raw", false, "print lines as written, without escaping control characters (secrets are still redacted)")
	})
	if err != nil {
		return err
	}
	if name := fs.Arg(1); name == "" || name != filepath.Base(name) || name == "." || name == ".." || strings.ContainsFunc(name, unicode.IsControl) {
		return app.Usagef("service or worker name %s cannot be a file name", strconv.Quote(name))
	}
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	run, name := fs.Arg(0), fs.Arg(1)
	m.learn(ctx, a, run)
	files, err := logFiles(ctx, a, m.home, run, name)
	if err != nil {
		return err
	}
	return mgmt.ShowLogs(ctx, m.stdout, files, mgmt.LogOptions{Lines: *lines, Follow: *follow, Redactor: m.red, Raw: *raw})
}

// logFiles finds the logs of a service (its step log, and a daemon's own
// log) or of a worker instance (the sitter's output and its tasks' logs).
func logFiles(ctx context.Context, a *app.App, home, run, name string) ([]string, error) {
	recs, err := a.Store.Services(ctx, run)
	if err != nil {
		return nil, err
	}
	for _, s := range recs {
		if s.Name != name {
			continue
		}
		var files []string
		if s.LogPath != "" {
			files = append(files, s.LogPath)
		}
		if l := s.Attributes["log"]; l != "" {
			files = append(files, l) // a built-in daemon's own log
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("service %s has no log yet", name)
		}
		return files, nil
	}
	dir := runlayout.Of(home, run).Instance(name)
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		files := []string{filepath.Join(dir, "stderr"), filepath.Join(dir, "stdout")}
		more, _ := filepath.Glob(filepath.Join(dir, runlayout.SitterDir, "logs", "*.log"))
		return append(files, more...), nil
	}
	return nil, app.Usagef("run %s has no service or worker %q (see mgmt status %s)", run, name, run)
}

// hasPools reports whether a run has worker pools that status should
// show and teardown must stop first: a service recorded that it runs a
// controller or a provisioner (mgmt.HasPools).
func hasPools(ctx context.Context, a *app.App, run string) bool {
	recs, err := a.Store.Services(ctx, run)
	return err == nil && mgmt.HasPools(recs)
}

func (m *mgmtCmd) reconfigure(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mgmt reconfigure", flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	if err := fs.Parse(args); err != nil {
		return &app.UsageError{Err: err}
	}
	if fs.NArg() < 3 {
		return app.Usagef("want RUN JOB key=value... (see mgmt help)")
	}
	run, job := fs.Arg(0), fs.Arg(1)
	if err := launchplan.CheckRunName(run); err != nil {
		return &app.UsageError{Err: err}
	}
	values := map[string]any{}
	for _, kv := range fs.Args()[2:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return app.Usagef("want key=value, got %q", kv)
		}
		values[k] = parseValue(v)
	}
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	m.learn(ctx, a, run)
	conn, err := mgmtbus.Dial(ctx, a.Store, m.home, run, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Reconfigure(ctx, job, values); err != nil {
		return err
	}
	fmt.Fprintf(m.stdout, "job %s reconfigured: %s\n", m.line(job), m.line(strings.Join(fs.Args()[2:], " ")))
	return nil
}

// parseValue gives numbers and booleans their type, so an engine checks
// n=5 as a number; anything else (durations included) stays a string.
func parseValue(v string) any {
	if i, err := strconv.ParseInt(v, 10, 64); err == nil {
		return i
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return f
	}
	if b, err := strconv.ParseBool(v); err == nil {
		return b
	}
	return v
}

func (m *mgmtCmd) decisions(ctx context.Context, args []string) error {
	var limit *int
	var asJSON *bool
	fs, err := m.flags("decisions", args, 2, func(fs *flag.FlagSet) {
		limit = fs.Int("limit", 20, "how many decisions")
		asJSON = fs.Bool("json", false, "print JSON")
	})
	if err != nil {
		return err
	}
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	m.learn(ctx, a, fs.Arg(0))
	conn, err := mgmtbus.Dial(ctx, a.Store, m.home, fs.Arg(0), 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	ds, err := conn.Decisions(ctx, fs.Arg(1), *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		return m.json(ds)
	}
	return mgmt.WriteDecisions(m.stdout, ds, m.line)
}

// ec2Sweepers returns a tag sweeper and an SSM parameter sweeper for every
// region and endpoint any service or job of the run names (mgmt.EC2Places),
// so teardown looks everywhere the run may have gone, with its provisioner
// dead too.
func ec2Sweepers(ctx context.Context, r bootlevel.Run) ([]mgmt.Sweeper, error) {
	p, err := bootlevel.LoadRunPlan(r)
	if err != nil {
		return nil, nil
	}
	var out []mgmt.Sweeper
	for _, pl := range mgmt.EC2Places(p, os.Getenv("AWS_ENDPOINT_URL")) {
		c, err := ec2.New(ctx, ec2.Config{Region: pl.Region, EndpointURL: pl.EndpointURL})
		if err != nil {
			return out, fmt.Errorf("%s: %w", pl, err)
		}
		out = append(out, ec2service.Sweeper{Client: c, Place: pl.String()})
		s, err := ssmparams.New(ctx, ssmparams.Config{Region: pl.Region, EndpointURL: pl.EndpointURL})
		if err != nil {
			return out, fmt.Errorf("%s: %w", pl, err)
		}
		out = append(out, ssmparams.Sweeper{Store: s, Place: pl.String()})
	}
	return out, nil
}

// processes looks at the run's watched services on this host (pid file and
// /proc: cheap and certain) and adds the keeper's account of how each last
// ended; nil when the run is not live.
func processes(ctx context.Context, a *app.App, home, run string) map[string]mgmt.Process {
	r, err := a.Store.GetRun(ctx, run)
	if err != nil || r.State == bootlevel.RunTerminated {
		return nil
	}
	recs, err := a.Store.Services(ctx, run)
	if err != nil {
		return nil
	}
	plan, err := bootlevel.LoadRunPlan(r)
	if err != nil {
		return nil
	}
	ws := keeper.WatchList(home, run, plan, recs, a.Engine.Types)
	views := keeper.ReadState(home, run)
	out := map[string]mgmt.Process{}
	for _, o := range keeper.Look(ws) {
		p := mgmt.Process{PID: o.PID, Alive: o.Alive}
		if v, ok := views[o.Service]; ok {
			p.LastExit = v.LastExit
		}
		if !o.Alive && p.LastExit == "" {
			p.LastExit = "process gone"
			if o.PID > 0 {
				p.LastExit = fmt.Sprintf("pid %d gone", o.PID)
			}
		}
		out[o.Service] = p
	}
	return out
}

// keep runs the run's keeper until teardown stops it (see package keeper).
func (m *mgmtCmd) keep(ctx context.Context, args []string) error {
	fs, err := m.flags("keep", args, 1, nil)
	if err != nil {
		return err
	}
	home, err := app.ResolveHome(m.homeFlag)
	if err != nil {
		return err
	}
	m.home = home
	run := fs.Arg(0)
	// The keeper's own output is its log (keeper.log, opened 0600 by
	// whoever started it); the engine's steps log there too.
	log := slog.New(slog.NewTextHandler(m.stderr, nil)).With("keeper", os.Getpid())
	a, err := app.Open(ctx, home, log)
	if err != nil {
		return err
	}
	defer a.Close()
	if _, err := a.Store.GetRun(ctx, run); err != nil {
		return err
	}
	os.Setenv(app.HomeEnv, home)
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	d := &keeper.Daemon{
		Home: home, Run: run, Store: a.Store, Engine: a.Engine, Log: log,
		Lock:    func() (func(), error) { return app.LockRun(home, run, "keeper") },
		Command: []string{exe, "--home", home, "keep", run},
	}
	return d.Serve(ctx)
}
