package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nightshift/controller"
	"nightshift/mgmt"
)

// TestRolloutEndToEnd is issue 21's proof on the real binaries: the work
// pool of plans/local.toml (recording queueworkers, 2 s items) held at 3
// workers under load, then
//
//  1. mgmt rollout --set env.VERSION=2: every worker replaced by one of
//     revision 2, busy ones drained first; every item finishes, none is
//     lost, and no worker is stopped holding one;
//  2. a revision whose probe fails (its health URL answers 404): rolled
//     back by itself to revision 2, with the reason in the decisions;
//  3. mgmt rollout --from-plan with an edited copy of the plan (a new
//     VERSION and a linked sidecar task): its diff shown before it is
//     sent, every worker replaced by revision 4 (revision 3 rolled back
//     keeps its number), running both tasks.
func TestRolloutEndToEnd(t *testing.T) {
	requireRuns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	recFile := WorkerWritableFile(t, "rollout-records.jsonl")
	r := env.NewRun(t, scaleInPlan(t, recFile), "ro")
	r.Launch(ctx)
	reconfigure(t, r, ctx, "min_instances=3")
	mustWait(t, r, ctx, "3 work workers healthy", 2*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		w := Healthy(Job(st, "work"))
		return len(w) == 3, fmt.Sprintf("healthy workers %v", w)
	})
	const items = 30
	publish(t, r, ctx, items, "")

	res := r.Mgmt(ctx, "rollout", r.Name, "work", "--set", "env.VERSION=2", "--min-ready", "2s")
	if res.Code != 0 {
		t.Fatalf("mgmt rollout exit %d: %s", res.Code, res.Stderr)
	}
	mustWait(t, r, ctx, "the rollout to revision 2 done", 5*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "work")
		if j == nil || j.Rollout == nil {
			return false, "no rollout in status"
		}
		for _, w := range j.Workers {
			if w.State == "running" && w.Revision != 2 {
				return false, fmt.Sprintf("worker %s at revision %d; %s", w.ID, w.Revision, lastReason(j))
			}
		}
		return j.Rollout.Phase == controller.RolloutDone, fmt.Sprintf("rollout %s; %s", j.Rollout.Phase, lastReason(j))
	})
	mustWait(t, r, ctx, "every item finished", 4*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		c := countItems(readRecordsOrNil(recFile), map[int]int{items: items})
		return c.finishedItems == items, fmt.Sprintf("%d/%d items finished", c.finishedItems, items)
	})
	c := countItems(readRecordsOrNil(recFile), map[int]int{items: items})
	t.Logf("items: started %d, finished %d, redelivered %d, duplicates %d, interrupted %d, lost %d",
		c.starts, c.finishes, c.redelivered, c.duplicates, len(c.interrupted), len(c.lost))
	if len(c.lost) > 0 || len(c.interrupted) > 0 || len(c.bad) > 0 {
		t.Errorf("the rollout lost %v, interrupted %v (bad records %v)", c.lost, c.interrupted, c.bad)
	}

	res = r.Mgmt(ctx, "rollout", r.Name, "work", "--set", "health.http=http://127.0.0.1:${port}/nope",
		"--set", "health.interval=500ms", "--min-ready", "2s")
	if res.Code != 0 {
		t.Fatalf("mgmt rollout exit %d: %s", res.Code, res.Stderr)
	}
	mustWait(t, r, ctx, "the failing revision rolled back", 5*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "work")
		if j == nil || j.Rollout == nil {
			return false, "no rollout in status"
		}
		return j.Rollout.Phase == controller.RolloutRolledBack && j.Revision != nil && j.Revision.Number == 2,
			fmt.Sprintf("rollout %s; %s", j.Rollout.Phase, lastReason(j))
	})
	out := r.Mgmt(ctx, "decisions", r.Name, "work", "--limit", "200")
	if !strings.Contains(out.Stdout, "rolling back to revision 2") || !strings.Contains(out.Stdout, "HTTP 404") {
		t.Errorf("the decisions do not say why it rolled back:\n%s", out.Stdout)
	}

	// An edited plan: the job's spec from it (a new VERSION and a linked
	// sidecar task), its diff shown before it is sent, then rolled out
	// like --set's: every new worker runs both tasks.
	edited := editPlan(t, r.Plan, `NIGHTSHIFT_WORK_QUEUE = "nightshift.${.run}.work" }`,
		`NIGHTSHIFT_WORK_QUEUE = "nightshift.${.run}.work", VERSION = "3" }`)
	appendFile(t, edited, "\n[level.service.controller.config.jobs.work.worker.linked.sidecar]\ncommand = [\"sleep\", \"600\"]\n")
	res = r.Mgmt(ctx, "rollout", r.Name, "work", "--from-plan", edited, "-g", "plan_dir="+r.Env.PlanDir, "--min-ready", "2s")
	if res.Code != 0 {
		t.Fatalf("mgmt rollout --from-plan exit %d: %s", res.Code, res.Stderr)
	}
	for _, w := range []string{`- worker.env.VERSION = "2"`, `+ worker.env.VERSION = "3"`, `+ worker.linked.sidecar.command = ["sleep","600"]`,
		"rolling out revision 4 (from 2)"} {
		if !strings.Contains(res.Stdout, w) {
			t.Errorf("mgmt rollout --from-plan output lacks %q:\n%s", w, res.Stdout)
		}
	}
	mustWait(t, r, ctx, "the rollout from the plan done", 5*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "work")
		if j == nil || j.Rollout == nil || j.Rollout.To != 4 {
			return false, "no rollout to revision 4 in status"
		}
		for _, w := range j.Workers {
			if w.State == "running" && w.Revision != 4 {
				return false, fmt.Sprintf("worker %s at revision %d; %s", w.ID, w.Revision, lastReason(j))
			}
		}
		return j.Rollout.Phase == controller.RolloutDone, fmt.Sprintf("rollout %s; %s", j.Rollout.Phase, lastReason(j))
	})
	// The same plan again changes nothing, and says so.
	if res := r.Mgmt(ctx, "rollout", r.Name, "work", "--from-plan", edited, "-g", "plan_dir="+r.Env.PlanDir); res.Code != 2 || !strings.Contains(res.Stderr, "nothing to roll out") {
		t.Errorf("a second rollout of the same plan: exit %d, want 2 and nothing to roll out: %s", res.Code, res.Stderr)
	}
	if res := r.Teardown(ctx); res.Code != 0 {
		t.Fatalf("teardown exit %d", res.Code)
	}
	r.AssertNoProcesses()
}

// editPlan writes a copy of plan beside it with old replaced by new.
func editPlan(t *testing.T, plan, old, new string) string {
	t.Helper()
	b, err := os.ReadFile(plan)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s lacks %q", plan, old)
	}
	path := filepath.Join(t.TempDir(), "edited-"+filepath.Base(plan))
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}
