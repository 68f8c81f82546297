package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"nightshift/bootlevel"
	"nightshift/controller"
	"nightshift/internal/app"
	"nightshift/internal/clikit"
	"nightshift/internal/jobspec"
	"nightshift/internal/termtext"
	"nightshift/launchplan"
	"nightshift/mgmt/mgmtbus"
)

func init() { registerMgmt(newRolloutCmd) }

type rolloutFlags struct {
	set              []string
	fromPlan         string
	globals          kvFlag
	globalFiles      []string
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
  mgmt rollout local work --from-plan plans/local.toml
  mgmt rollout local work --from-plan /tmp/local.toml -g plan_dir=$PWD/plans
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
	fl.StringVar(&f.fromPlan, "from-plan", "", "take the worker spec (instance and worker) from the job of the same name in an edited plan; --set then applies on top")
	f.globals = kvFlag{}
	fl.VarP(f.globals, "global", "g", "with --from-plan: set a global of the plan, as launch -g (give the ones the run was launched with)")
	fl.StringArrayVarP(&f.globalFiles, "globals-file", "G", nil, "with --from-plan: read globals from a TOML file's [globals] table, as launch -G")
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
	for _, on := range []bool{len(f.set) > 0 || f.fromPlan != "", f.undo, f.status} {
		if on {
			modes++
		}
	}
	if modes != 1 {
		return app.Usagef("give one of --set or --from-plan (or both), --undo or --status")
	}
	if f.fromPlan == "" && (len(f.globals) > 0 || len(f.globalFiles) > 0) {
		return app.Usagef("-g and -G go with --from-plan")
	}
	set := map[string]string{}
	for _, kv := range f.set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return app.Usagef("--set: want key=value, got %q", kv)
		}
		set[k] = v
	}
	// A bad plan is refused before anything is opened, with every
	// problem at its file, line and key, as launch refuses it.
	var plan *launchplan.Plan
	if f.fromPlan != "" {
		p, err := launchplan.Load(f.fromPlan, planOptions(f.globalFiles, f.globals))
		if err != nil {
			return app.Usagef("--from-plan: invalid plan:\n%s", termtext.Text(err.Error()))
		}
		if pj, names := findPlanJob(p, job); pj.svc == nil {
			return app.Usagef("--from-plan: %s: plan %s has no job %s on a controller service (its jobs: %s)", p.Path, p.Name, job, orNone(names))
		}
		plan = p
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
	if plan != nil {
		spec, err := m.planSpec(ctx, a, conn, plan, run, job, set)
		if err != nil {
			return err
		}
		req := controller.RolloutRequest{Spec: &spec, Config: controller.RolloutConfig{
			MaxSurge: f.maxSurge, MaxUnavailable: f.maxUnavailable, MinReady: f.minReady, FailureThreshold: f.failureThreshold}}
		ro, err := conn.Rollout(ctx, job, controller.RolloutStart, req)
		if err != nil {
			return err
		}
		if m.asJSON {
			return m.json(ro)
		}
		fmt.Fprintf(m.stdout, "job %s: rolling out revision %d (from %d); follow it with mgmt rollout %s %s --status\n",
			m.line(job), ro.To, ro.From, m.line(run), m.line(job))
		return nil
	}
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

// planSpec is the spec job takes from plan, --set applied on top, checked
// against the run as it booted and the controller runs it. The diff from
// the revision in force goes to stdout (stderr under --json) before
// anything is sent; a plan that changes nothing is refused.
func (m *mgmtCmd) planSpec(ctx context.Context, a *app.App, conn *mgmtbus.Conn, plan *launchplan.Plan, run, job string, set map[string]string) (jobspec.Spec, error) {
	jobs, err := conn.JobStatus(ctx, job)
	if err != nil {
		return jobspec.Spec{}, err
	}
	if len(jobs) != 1 {
		return jobspec.Spec{}, fmt.Errorf("job %s: the controller answered %d jobs", job, len(jobs))
	}
	js := jobs[0]
	var cur jobspec.Spec
	if js.Revision == nil || len(js.Revision.Spec) == 0 {
		return jobspec.Spec{}, fmt.Errorf("job %s: its controller does not say the spec in force (an older controller): use --set", job)
	}
	if err := json.Unmarshal(js.Revision.Spec, &cur); err != nil {
		return jobspec.Spec{}, fmt.Errorf("job %s: the spec in force: %w", job, err)
	}
	var booted *launchplan.Plan
	if r, err := a.Store.GetRun(ctx, run); err == nil {
		booted, _ = bootlevel.LoadRunPlan(r)
	}
	recs, err := a.Store.Services(ctx, run)
	if err != nil {
		return jobspec.Spec{}, err
	}
	spec, err := specFromPlan(plan, booted, recs, run, job, js.Engine, orLocal(cur.Driver))
	if err != nil {
		return jobspec.Spec{}, app.Usagef("--from-plan: %s", termtext.Text(err.Error()))
	}
	if len(set) > 0 {
		if spec, err = controller.ApplySet(spec, set); err != nil {
			return jobspec.Spec{}, app.Usagef("%s", err.Error())
		}
	}
	diff := specDiff(cur, spec)
	if len(diff) == 0 {
		return jobspec.Spec{}, app.Usagef("--from-plan: job %s: the plan's spec is revision %d's already: nothing to roll out", job, js.Revision.Number)
	}
	out := m.stdout
	if m.asJSON {
		out = m.stderr
	}
	fmt.Fprintf(out, "job %s: revision %d -> the plan's spec:\n", m.line(job), js.Revision.Number)
	for _, l := range diff {
		fmt.Fprintf(out, "  %s\n", m.line(l))
	}
	return spec, nil
}

func orLocal(driver string) string {
	if driver == "" {
		return jobspec.DriverLocal
	}
	return driver
}
