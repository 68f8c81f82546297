package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"nightshift/bootlevel"
	"nightshift/internal/app"
	"nightshift/internal/clikit"
	"nightshift/internal/leader"
	"nightshift/keeper"
	"nightshift/launchplan"
	"nightshift/mgmt"
	"nightshift/mgmt/mgmtbus"
)

func init() { registerMgmt(newStatusCmd) }

type statusOptions struct {
	verify, watch, wide bool
	interval, timeout   time.Duration
}

func newStatusCmd(m *mgmtCmd) *cobra.Command {
	var o statusOptions
	c := &cobra.Command{
		Use:   "status [RUN]",
		Short: "levels, services and pools of a run; exit 3 unless all is ready",
		Long: `status shows a run's levels, services, processes and pools. It only reads:
it never writes the run's state and never takes the run's lock, so it is
safe beside a launch or a repair and from a monitoring check every second.

It exits 0 only when the run is ready, every service's process is alive
and every pool has the workers its policy wants; 3 when it read the run
fine but something is not (the reasons go to stderr); 1 when it could not
read the run. RUN may be left out when the home holds exactly one run.

--verify also runs every service's ready check once, all at once, each cut
at --timeout, and shows which fail (exit 3 if any does).`,
		Example: `  mgmt status hello
  mgmt status --json | jq '.levels[].services[] | {name, state}'
  mgmt status hello --verify --timeout 2s || page-someone
  mgmt status hello --watch --interval 5s`,
		Args:              clikit.Args(0, 1),
		ValidArgsFunction: m.completeArgs(runNames),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				// Before anything opens: a bad name must never make a path.
				var err error
				if name, err = runArg(args[0]); err != nil {
					return err
				}
			}
			return m.status(cmd.Context(), name, o)
		},
	}
	c.Flags().BoolVar(&o.verify, "verify", false, "run every ready check once now and show the result; exit 3 if one fails")
	c.Flags().DurationVar(&o.timeout, "timeout", 5*time.Second, "with --verify: how long each ready check may take")
	c.Flags().BoolVar(&o.watch, "watch", false, "refresh in place until interrupted")
	c.Flags().DurationVar(&o.interval, "interval", 2*time.Second, "refresh interval for --watch")
	c.Flags().BoolVar(&o.wide, "wide", false, "show attributes whole on a terminal (a pipe always gets them whole)")
	return c
}

// theRun is the run a command names, or the home's only run when it names
// none.
func (m *mgmtCmd) theRun(ctx context.Context, a *app.App, name string) (string, error) {
	if name != "" {
		return runArg(name)
	}
	runs, err := a.Store.ListRuns(ctx)
	if err != nil {
		return "", err
	}
	switch len(runs) {
	case 0:
		return "", fmt.Errorf("no runs in %s", m.home)
	case 1:
		return runs[0].Name, nil
	}
	names := make([]string, len(runs))
	for i, r := range runs {
		names[i] = r.Name
	}
	sort.Strings(names)
	return "", app.Usagef("the home %s holds %d runs (%s): name one", m.home, len(runs), strings.Join(names, ", "))
}

func (m *mgmtCmd) status(ctx context.Context, name string, o statusOptions) error {
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	run, err := m.theRun(ctx, a, name)
	if err != nil {
		return err
	}
	show := func() ([]string, error) {
		// Again on every refresh of --watch: services export new secrets.
		m.learn(ctx, a, run)
		var checks []bootlevel.CheckResult
		if o.verify {
			// Read-only: the checks run once and record nothing (not
			// Engine.Verify, which retries and writes the run's state).
			if checks, err = a.Engine.Check(ctx, run, o.timeout); err != nil {
				return nil, err
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
				if !m.asJSON {
					// The table shows no more of a big pool than its
					// summary; --json keeps every worker.
					jobs = conn.Summaries()
				}
			}
		}
		st, err := runStatus(ctx, a, m.home, run, jobs, note)
		if err != nil {
			return nil, err
		}
		mgmt.MarkChecks(st, checks)
		why := mgmt.NotReady(st)
		if m.asJSON {
			return why, m.json(st)
		}
		clean, err := mgmt.Redact(st, m.red)
		if err != nil {
			return nil, err
		}
		width := 80
		if o.wide || !isTerminal(m.stdout) {
			width = 0
		}
		return why, mgmt.WriteTableWidth(m.stdout, clean, width)
	}
	verdict := func(why []string) error {
		if len(why) == 0 {
			return nil
		}
		fmt.Fprintf(m.stderr, "not ready: %s\n", m.line(strings.Join(why, "; ")))
		return clikit.Exit(clikit.ExitNotReady)
	}
	if !o.watch {
		why, err := show()
		if err != nil {
			return err
		}
		return verdict(why)
	}
	t := time.NewTicker(o.interval)
	defer t.Stop()
	for {
		if isTerminal(m.stdout) && !m.plain {
			fmt.Fprint(m.stdout, "\x1b[H\x1b[2J")
		}
		why, err := show()
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return verdict(why)
		case <-t.C:
		}
	}
}

// processes looks at the run's watched services on this host (pid file and
// /proc: cheap and certain) and adds the keeper's account of how each last
// ended; nil when the run is not live.
// leaseType is a service type whose replicas record their lease
// (builtin.Type).
type leaseType interface {
	Lease(workDir string, svc *launchplan.Service) (leader.State, bool)
}

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
	for _, w := range ws {
		lt, ok := w.Type.(leaseType)
		if !ok {
			continue
		}
		if st, ok := lt.Lease(w.WorkDir, w.Service); ok {
			p := out[w.Service.Name]
			p.Role, p.Epoch = st.Role, st.Epoch
			out[w.Service.Name] = p
		}
	}
	return out
}
