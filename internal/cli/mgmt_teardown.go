package cli

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"nightshift/bootlevel"
	"nightshift/internal/app"
	"nightshift/internal/clikit"
	"nightshift/internal/progress"
	"nightshift/internal/runlayout"
	"nightshift/internal/store/pgdb"
	"nightshift/keeper"
	"nightshift/launchplan"
	"nightshift/mgmt"
	"nightshift/mgmt/mgmtbus"
)

func init() { registerMgmt(newTeardownCmd) }

func newTeardownCmd(m *mgmtCmd) *cobra.Command {
	var dry bool
	c := &cobra.Command{
		Use:   "teardown RUN",
		Short: "stop pools, terminate levels in reverse, sweep, and prove nothing is left",
		Long: `teardown stops the run's keepers and pools, terminates its levels in reverse
order, sweeps for anything left (workers, processes, broker users, EC2
instances by tag, the daemons' PostgreSQL schemas) and reports what it
destroyed and what remains. It is
idempotent: a second teardown finds nothing to do and succeeds. It exits
non-zero, listing them, when anything remains.

--json prints one object: run, dry_run, destroyed and remaining as lists of
items {kind, id, where, detail} (kind is worker, service, process,
broker-user, ec2, ssm-parameter or pg-schema; where is the region and
endpoint, or the database, a sweep looked in), and notes.`,
		Example: `  mgmt teardown hello
  mgmt teardown hello --dry-run
  mgmt teardown hello --json | jq -r '.remaining[] | "\(.kind) \(.id) \(.where)"'`,
		Args: clikit.Args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			run, err := runArg(args[0])
			if err != nil {
				return err
			}
			return m.teardown(cmd.Context(), run, dry)
		},
	}
	c.Flags().BoolVar(&dry, "dry-run", false, "list what would be destroyed, destroy nothing")
	return c
}

func (m *mgmtCmd) teardown(ctx context.Context, run string, dry bool) error {
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	td := &mgmt.Teardown{
		Engine: a.Engine,
		Store:  a.Store,
		Sweepers: []mgmt.Sweeper{
			mgmtbus.WorkerSweeper{Home: m.home},
			mgmt.ProcessSweeper{Home: m.home},
			mgmtbus.BrokerUserSweeper{Store: a.Store},
		},
	}
	var pr *progress.Printer
	if !m.asJSON {
		td.Out = m.stdout
		// Per-service progress, one line each: teardown also says what it
		// does between levels, which a redrawn view would overwrite.
		pr = progress.New(m.stdout, false, m.red)
		a.Engine.OnEvent = pr.Event
	}
	r, err := a.Store.GetRun(ctx, run)
	if err != nil {
		return err
	}
	m.learn(ctx, a, run)
	if !dry {
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
		fmt.Fprintf(m.stderr, "note: cloud sweep incomplete (EC2, SSM, Route 53): %s\n", m.line(err.Error()))
	}
	td.Sweepers = append(td.Sweepers, sws...)
	// Last: the daemons are stopped by then (levels go first), so nothing
	// writes to the schemas while they are dropped.
	td.Sweepers = append(td.Sweepers, pgSweepers(m.home, r)...)
	if !dry && r.State != bootlevel.RunTerminated && hasPools(ctx, a, run) {
		conn, err := mgmtbus.Dial(ctx, a.Store, m.home, run, 3*time.Second)
		if err != nil {
			fmt.Fprintf(m.stdout, "pools unreachable (%s); the sweep will find their workers\n", m.line(err.Error()))
		} else {
			defer conn.Close()
			td.Pools = conn
		}
	}
	rep, err := td.Run(ctx, run, dry)
	if rep == nil {
		return err
	}
	m.teardownAlert(ctx, a, run, rep)
	if m.asJSON {
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
		fmt.Fprintf(m.stdout, "  %s\n", m.line(d.String()))
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(m.stdout, "note: %s\n", m.line(n))
	}
	if !rep.DryRun {
		fmt.Fprintf(m.stdout, "remaining %d (teardown took %s):\n", len(rep.Remaining), progress.Round(pr.Elapsed()))
		for _, r := range rep.Remaining {
			fmt.Fprintf(m.stdout, "  %s\n", m.line(r.String()))
		}
	}
	return err
}

// pgSweepers returns a schema sweeper (pgdb.Sweeper) for every PostgreSQL
// database the run's daemons kept their stores in, found two ways: the
// store-url files the daemons were started with (exact, whatever the
// launch's -g or environment made of the plan), and the stored plan's
// provisioner and controller `store` values expanded against its globals,
// so a run whose directory is gone is still swept. The home's run store
// (NIGHTSHIFT_STORE) is not among them: it is the home's, and the run's
// rows in it go with `mgmt rm`.
func pgSweepers(home string, r bootlevel.Run) []mgmt.Sweeper {
	var urls []string
	add := func(u string) {
		if u = strings.TrimSpace(u); pgdb.IsURL(u) && !slices.Contains(urls, u) {
			urls = append(urls, u)
		}
	}
	work := runlayout.Of(home, r.Name).Work("")
	_ = filepath.WalkDir(work, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // an unreadable corner hides no store-url of ours
		}
		if d.IsDir() && strings.Count(strings.TrimPrefix(p, work), string(filepath.Separator)) > 3 {
			return filepath.SkipDir // services keep it at work/SERVICE/COMPONENT/store-url
		}
		if !d.IsDir() && d.Name() == "store-url" {
			if b, err := os.ReadFile(p); err == nil {
				add(string(b))
			}
		}
		return nil
	})
	if p, err := bootlevel.LoadRunPlan(r); err == nil {
		// Globals only: another service's export or this shell's
		// environment may not be what the launch saw.
		scope := launchplan.Scope{Globals: p.Globals, Getenv: func(string) (string, bool) { return "", false }}
		for _, l := range p.Levels {
			for _, s := range l.Services {
				if v, ok := s.TypeConfig["store"].(string); ok && (s.Type == "provisioner" || s.Type == "controller") {
					if x, err := scope.Expand(v); err == nil {
						add(x)
					}
				}
			}
		}
	}
	out := make([]mgmt.Sweeper, 0, len(urls))
	for _, u := range urls {
		out = append(out, pgdb.Sweeper{URL: u})
	}
	return out
}
