package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"nightshift/bootlevel"
	"nightshift/internal/app"
	"nightshift/internal/clikit"
	"nightshift/keeper"
	"nightshift/mgmt"
	"nightshift/mgmt/mgmtbus"
)

func init() { registerMgmt(newStatusCmd) }

type statusOptions struct {
	verify, watch bool
	interval      time.Duration
}

func newStatusCmd(m *mgmtCmd) *cobra.Command {
	var o statusOptions
	c := &cobra.Command{
		Use:   "status RUN",
		Short: "levels, services and pools of a run",
		Example: `  mgmt status hello
  mgmt status hello --json
  mgmt status hello --verify
  mgmt status hello --watch --interval 5s`,
		Args: clikit.Args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			run, err := runArg(args[0])
			if err != nil {
				return err
			}
			return m.status(cmd.Context(), run, o)
		},
	}
	c.Flags().BoolVar(&o.verify, "verify", false, "run every ready check now and show the result")
	c.Flags().BoolVar(&o.watch, "watch", false, "refresh in place until interrupted")
	c.Flags().DurationVar(&o.interval, "interval", 2*time.Second, "refresh interval for --watch")
	return c
}

func (m *mgmtCmd) status(ctx context.Context, run string, o statusOptions) error {
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	show := func() error {
		// Again on every refresh of --watch: services export new secrets.
		m.learn(ctx, a, run)
		var verified map[string]bool
		if o.verify {
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
		if r, err := a.Store.GetRun(ctx, run); err == nil && r.State != bootlevel.RunTerminated && hasPools(ctx, a, run) {
			conn, err := mgmtbus.Dial(ctx, a.Store, m.home, run, 3*time.Second)
			if err != nil {
				note = "pools unavailable: " + err.Error()
			} else {
				defer conn.Close()
				jobs = conn
			}
		}
		st, err := mgmt.Status(ctx, a.Store, run, jobs)
		if err != nil && jobs != nil {
			// The controller may be down: still show the levels.
			note = "pools unavailable: " + err.Error()
			st, err = mgmt.Status(ctx, a.Store, run, nil)
		}
		if err != nil {
			return err
		}
		if note != "" {
			st.Notes = append(st.Notes, note)
		}
		if procs := processes(ctx, a, m.home, run); procs != nil {
			mgmt.MarkProcesses(st, procs)
		}
		for i := range st.Levels {
			for j := range st.Levels[i].Services {
				s := &st.Levels[i].Services[j]
				if ok, has := verified[s.Name]; has {
					s.Verified = &ok
				}
			}
		}
		if m.asJSON {
			return m.json(st)
		}
		clean, err := mgmt.Redact(st, m.red)
		if err != nil {
			return err
		}
		return mgmt.WriteTable(m.stdout, clean)
	}
	if !o.watch {
		return show()
	}
	t := time.NewTicker(o.interval)
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
