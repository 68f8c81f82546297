package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"nightshift/internal/testsupport"
	"nightshift/mgmt"
)

// env is built once per test binary by TestMain: compiling eight programs
// per test would dominate the run time. It is written only before m.Run.
var env *Env

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	needBinaries := !testingShort() && wantsRuns()
	if needBinaries {
		dir, err := os.MkdirTemp("", "nse2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		env, err = NewEnv(ctx, dir)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
	}
	return m.Run()
}

// testingShort reads -short before m.Run parses flags for the tests.
func testingShort() bool {
	for _, a := range os.Args[1:] {
		if a == "-test.short" || a == "-test.short=true" {
			return true
		}
	}
	return false
}

// wantsRuns reports whether the -run pattern can select a test that
// launches a real run, so `-run BadInput` does not pay for a build.
func wantsRuns() bool {
	for i, a := range os.Args[1:] {
		pat, ok := strings.CutPrefix(a, "-test.run=")
		if !ok && a == "-test.run" && i+2 < len(os.Args) {
			pat, ok = os.Args[i+2], true
		}
		if ok {
			return strings.Contains(pat, "EndToEnd") || strings.Contains(pat, "Chaos") || strings.Contains(pat, "SelfHeal") || pat == "" || pat == "."
		}
	}
	return true
}

// requireRuns skips a test that launches real runs when the environment
// cannot host one, unless NIGHTSHIFT_TEST_STRICT=1 demands it.
func requireRuns(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("launches a whole run of plans/local.toml; skipped under -short")
	}
	if env == nil {
		t.Fatal("binaries were not built (the -run pattern did not select a run test in TestMain)")
	}
	for _, tool := range []string{"rabbitmq-server", "rabbitmqctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("NIGHTSHIFT_TEST_STRICT") == "1" {
				t.Fatalf("%s not found and NIGHTSHIFT_TEST_STRICT=1: the private broker cannot start", tool)
			}
			t.Skipf("%s not found: the private broker of plans/local.toml cannot start", tool)
		}
	}
}

// TestLocalPlanEndToEnd is issue 6's scenario on the real binaries: launch,
// replace a killed sitter, scale the queue pool up and down, tear down, and
// prove nothing is left; then again with the provisioner killed first.
func TestLocalPlanEndToEnd(t *testing.T) {
	requireRuns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()

	r := env.NewRun(t, "plans/local.toml", "e2e")
	r.Launch(ctx)

	// 1. Three sleepers (and the one queue worker) running, and /proc agrees.
	// Healthy means a first heartbeat arrived: before that, a dead sitter
	// is only noticed after boot_timeout (30s), not missing_timeout.
	st := mustWait(t, r, ctx, "3 sleepers and 1 worker running and healthy", 60*time.Second, atPolicy)
	assertAgrees(t, r, ctx, "after launch")
	if ws, err := r.Workers("sleeper"); err != nil || len(ws) != 3 {
		t.Errorf("want 3 sleeper worker processes under their sitters, found %v (err %v)", ws, err)
	}
	checkMetrics(t, r, ctx)

	// 2. SIGKILL one sleeper's sitter: a new instance replaces it within
	// missing_timeout (3s) + tick (1s) + boot and slack.
	before := Running(Job(st, "sleeper"))
	victim := before[0]
	sitters, err := r.Sitters()
	if err != nil {
		t.Fatal(err)
	}
	pid, ok := sitters[victim]
	if !ok {
		t.Fatalf("no live sitter process for running instance %s (sitters %v)", victim, sitters)
	}
	if err := r.Kill9("sitter of "+victim, pid); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	const replaceBound = 3*time.Second + time.Second + 12*time.Second
	st = mustWait(t, r, ctx, "killed sleeper replaced", replaceBound, func(st *mgmt.RunStatus) (bool, string) {
		now := Running(Job(st, "sleeper"))
		fresh := 0
		for _, id := range now {
			if !slices.Contains(before, id) {
				fresh++
			}
		}
		return len(now) == 3 && !slices.Contains(now, victim) && fresh == 1,
			fmt.Sprintf("running sleepers %v (killed %s)", now, victim)
	})
	t.Logf("sitter %s replaced %s after the kill", victim, time.Since(killedAt).Round(time.Millisecond))
	assertAgrees(t, r, ctx, "after replacing the killed sitter")

	// 3. Publish 200 items: the pool grows to its max of 6, then shrinks to
	// its min of 1 once the queue drains.
	if err := r.Publish(ctx, 200); err != nil {
		t.Fatal(err)
	}
	mustWait(t, r, ctx, "work pool grows to 6", 60*time.Second, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "work")
		n := len(Running(j))
		if n > 6 {
			t.Errorf("work pool has %d running workers, above max_instances 6", n)
		}
		return n == 6, jobLine(j)
	})
	assertAgrees(t, r, ctx, "at the pool's peak")
	mustWait(t, r, ctx, "queue drains and work pool shrinks to 1", 90*time.Second, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "work")
		depth := -1
		if j != nil && j.QueueDepth != nil {
			depth = *j.QueueDepth
		}
		return depth == 0 && len(Running(j)) == 1, jobLine(j)
	})
	assertAgrees(t, r, ctx, "after the pool shrank")

	// 4. Teardown exits 0 and leaves no process of the run.
	if res := r.Teardown(ctx); res.Code != 0 {
		t.Fatalf("teardown exit %d", res.Code)
	}
	r.AssertNoProcesses()
	if st, err := r.Status(ctx); err != nil || st.State != "terminated" {
		t.Errorf("after teardown: status %v, err %v; want state terminated", stateOf(st), err)
	}
	t.Logf("first run done after %s", time.Since(start).Round(time.Millisecond))

	// 5. A second run whose provisioner is SIGKILLed before teardown:
	// teardown cannot ask it to terminate the workers, so it must fall back
	// to the sweeps and still leave nothing.
	r2 := env.NewRun(t, "plans/local.toml", "e2f")
	r2.Launch(ctx)
	mustWait(t, r2, ctx, "second run: pools at policy", 60*time.Second, atPolicy)
	ppid, alive, err := r2.DaemonPID("provisioner", "provisioner")
	if err != nil || !alive {
		t.Fatalf("provisioner pid file: pid %d alive %v err %v", ppid, alive, err)
	}
	if err := r2.Kill9("provisioner", ppid); err != nil {
		t.Fatal(err)
	}
	if res := r2.Teardown(ctx); res.Code != 0 {
		t.Fatalf("teardown with the provisioner dead: exit %d", res.Code)
	}
	r2.AssertNoProcesses()
	if took := time.Since(start); took > 3*time.Minute {
		t.Errorf("end-to-end took %s, budget 3m", took.Round(time.Second))
	}
	t.Logf("end-to-end done after %s", time.Since(start).Round(time.Millisecond))
}

// atPolicy holds when plans/local.toml's pools are at rest: 3 sleepers and 1
// queue worker, all running and heartbeating.
func atPolicy(st *mgmt.RunStatus) (bool, string) {
	s, w := Healthy(Job(st, "sleeper")), Healthy(Job(st, "work"))
	return len(s) == 3 && len(w) == 1 && len(Running(Job(st, "sleeper"))) == 3 && len(Running(Job(st, "work"))) == 1,
		fmt.Sprintf("healthy sleepers %v workers %v", s, w)
}

func mustWait(t *testing.T, r *Run, ctx context.Context, what string, timeout time.Duration, cond Cond) *mgmt.RunStatus {
	t.Helper()
	st, err := r.WaitFor(ctx, what, timeout, cond)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// assertAgrees waits (bounded) until the running workers in mgmt status are
// exactly the live sitter processes in /proc. A short disagreement is
// normal while a worker is starting or stopping; a lasting one is a bug.
func assertAgrees(t *testing.T, r *Run, ctx context.Context, when string) {
	t.Helper()
	err := testsupport.PollEvery(10*time.Second, 500*time.Millisecond, func() error {
		var diffs []string
		st, err := r.Status(ctx)
		if err != nil {
			diffs = []string{err.Error()}
		} else if sitters, err := r.Sitters(); err != nil {
			diffs = []string{err.Error()}
		} else if diffs = Reconcile(st, sitters); len(diffs) == 0 {
			t.Logf("%s: status agrees with /proc: %d live sitters", when, len(sitters))
			return nil
		}
		return fmt.Errorf("status disagrees with /proc:\n  %s", strings.Join(diffs, "\n  "))
	})
	if err != nil {
		t.Errorf("%s: %v", when, err)
	}
}

func jobLine(j *mgmt.JobStatus) string {
	if j == nil {
		return "job missing from status"
	}
	depth := "n/a"
	if j.QueueDepth != nil {
		depth = fmt.Sprint(*j.QueueDepth)
	}
	reason := ""
	if j.LastDecision != nil {
		reason = j.LastDecision.Reason
	}
	return fmt.Sprintf("depth %s desired %d running %d (%s)", depth, j.Desired, len(Running(j)), reason)
}

func stateOf(st *mgmt.RunStatus) string {
	if st == nil {
		return "<none>"
	}
	return st.State
}
