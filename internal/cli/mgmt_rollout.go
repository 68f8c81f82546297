package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"nightshift/controller"
	"nightshift/internal/app"
	"nightshift/internal/clikit"
	"nightshift/mgmt/mgmtbus"
)

func init() { registerMgmt(newRolloutCmd) }

type rolloutFlags struct {
	set              []string
	maxSurge         int
	maxUnavailable   int
	minReady         time.Duration
	failureThreshold int
	undo, status     bool
}

func newRolloutCmd(m *mgmtCmd) *cobra.Command {
	var f rolloutFlags
	c := &cobra.Command{
		Use:   "rollout RUN JOB",
		Short: "replace a pool's workers by a new revision of its worker spec, in batches, rolling back when they fail",
		Example: `  mgmt rollout local work --set env.VERSION=2
  mgmt rollout local work --set env.VERSION=2 --max-surge 2 --min-ready 30s
  mgmt rollout local work --status
  mgmt rollout local work --undo`,
		Args:              clikit.Args(2, 2),
		ValidArgsFunction: m.completeArgs(runNames, jobNames),
		RunE: func(cmd *cobra.Command, args []string) error {
			run, err := runArg(args[0])
			if err != nil {
				return err
			}
			return m.rollout(cmd.Context(), run, args[1], f)
		},
	}
	fl := c.Flags()
	fl.StringArrayVar(&f.set, "set", nil, "change the worker spec in force: env.NAME=VALUE, instance.KEY=VALUE or a worker KEY=VALUE (JSON when it parses); repeatable")
	fl.IntVar(&f.maxSurge, "max-surge", controller.DefaultMaxSurge, "workers above the pool's size while it rolls")
	fl.IntVar(&f.maxUnavailable, "max-unavailable", controller.DefaultMaxUnavailable, "workers below the pool's size that may be unavailable")
	fl.DurationVar(&f.minReady, "min-ready", controller.DefaultMinReady, "how long a new worker must pass its probes before the next batch")
	fl.IntVar(&f.failureThreshold, "failure-threshold", controller.DefaultRolloutFailures, "new workers that may fail before it rolls back by itself")
	fl.BoolVar(&f.undo, "undo", false, "roll the job's rollout back to the revision it came from")
	fl.BoolVar(&f.status, "status", false, "show the job's rollout and its workers' revisions")
	return c
}

func (m *mgmtCmd) rollout(ctx context.Context, run, job string, f rolloutFlags) error {
	modes := 0
	for _, on := range []bool{len(f.set) > 0, f.undo, f.status} {
		if on {
			modes++
		}
	}
	if modes != 1 {
		return app.Usagef("give one of --set, --undo or --status")
	}
	set := map[string]string{}
	for _, kv := range f.set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return app.Usagef("--set: want key=value, got %q", kv)
		}
		set[k] = v
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
	if f.status {
		jobs, err := conn.JobStatus(ctx, job)
		if err != nil {
			return err
		}
		if m.asJSON {
			return m.json(jobs)
		}
		for _, j := range jobs {
			writeRollout(m.stdout, j, m.line)
		}
		return nil
	}
	action, req := controller.RolloutStart, controller.RolloutRequest{Set: set, Config: controller.RolloutConfig{
		MaxSurge: f.maxSurge, MaxUnavailable: f.maxUnavailable, MinReady: f.minReady, FailureThreshold: f.failureThreshold}}
	if f.undo {
		action, req = controller.RolloutUndo, controller.RolloutRequest{}
	}
	ro, err := conn.Rollout(ctx, job, action, req)
	if err != nil {
		return err
	}
	if m.asJSON {
		return m.json(ro)
	}
	if f.undo {
		fmt.Fprintf(m.stdout, "job %s: rolling back to revision %d\n", m.line(job), ro.From)
		return nil
	}
	fmt.Fprintf(m.stdout, "job %s: rolling out revision %d (from %d); follow it with mgmt rollout %s %s --status\n",
		m.line(job), ro.To, ro.From, m.line(run), m.line(job))
	return nil
}

// writeRollout prints a job's rollout and how many workers run each
// revision.
func writeRollout(w io.Writer, j controller.JobStatus, q func(string) string) {
	r := j.Rollout
	if r == nil {
		fmt.Fprintf(w, "job %s: no rollout\n", q(j.Name))
		return
	}
	fmt.Fprintf(w, "job %s: rollout %d -> %d %s (by %s, started %s)\n", q(j.Name), r.From, r.To, r.Phase, q(r.Who), r.Started.Format(time.RFC3339))
	if r.Reason != "" {
		fmt.Fprintf(w, "  %s\n", q(r.Reason))
	}
	byRev := map[int]int{}
	for _, wk := range j.Workers {
		byRev[wk.Revision]++
	}
	fmt.Fprintf(w, "  workers: %d at revision %d, %d at revision %d", byRev[r.To], r.To, byRev[r.From], r.From)
	if others := len(j.Workers) - byRev[r.To] - byRev[r.From]; others > 0 {
		fmt.Fprintf(w, ", %d other", others)
	}
	fmt.Fprintln(w)
	if j.LastDecision != nil {
		fmt.Fprintf(w, "  last decision %s: %s\n", j.LastDecision.Time.Format(time.RFC3339), q(j.LastDecision.Reason))
	}
}
