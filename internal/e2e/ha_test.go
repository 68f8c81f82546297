package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"nightshift/internal/store/pgdb"
	"nightshift/internal/store/pgdb/pgtest"
	"nightshift/internal/worker/localworker"
	"nightshift/mgmt"
)

// haStore is plans/ha.toml's store global, which the tests point at the
// test's PostgreSQL server.
const haStore = `store = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"`

// haPlan is plans/ha.toml with the test's PostgreSQL URL, and, when recFile
// is set, its queue workers recording every item they start and finish.
func haPlan(t *testing.T, pgURL, recFile string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.Root, "plans", "ha.toml"))
	if err != nil {
		t.Fatal(err)
	}
	plan := string(b)
	const worker = `queueworker", "--work", "250ms"]`
	for _, s := range []string{haStore, worker} {
		if !strings.Contains(plan, s) {
			t.Fatalf("plans/ha.toml no longer has %q; update this test", s)
		}
	}
	plan = strings.Replace(plan, haStore, fmt.Sprintf("store = %q", pgURL), 1)
	if recFile != "" {
		plan = strings.Replace(plan, worker, fmt.Sprintf(`queueworker", "--work", "250ms", "--record", %q]`, recFile), 1)
	}
	path := filepath.Join(t.TempDir(), "ha-test.toml")
	if err := os.WriteFile(path, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// replicas returns the replicas of a daemon service (NAME-0, NAME-1, …) in
// a status, and the one that is active, if exactly one is.
func replicas(st *mgmt.RunStatus, name string) (all []*mgmt.ServiceStatus, active *mgmt.ServiceStatus, saw string) {
	var roles []string
	n := 0
	for i := 0; ; i++ {
		s := Service(st, fmt.Sprintf("%s-%d", name, i))
		if s == nil {
			break
		}
		all = append(all, s)
		role := s.Attributes[mgmt.AttrRole]
		roles = append(roles, fmt.Sprintf("%s=%s/%s epoch %s", s.Name, s.State, role, s.Attributes[mgmt.AttrEpoch]))
		if role == "active" && s.State == "ready" {
			active = s
			n++
		}
	}
	if n != 1 {
		active = nil
	}
	return all, active, strings.Join(roles, " ")
}

// twoReplicasOneActive: both replicas of name run, one active, one standing by.
func twoReplicasOneActive(name string) func(st *mgmt.RunStatus) (bool, string, *mgmt.ServiceStatus) {
	return func(st *mgmt.RunStatus) (bool, string, *mgmt.ServiceStatus) {
		all, active, saw := replicas(st, name)
		standby := 0
		for _, s := range all {
			if s.State == "ready" && s.Attributes[mgmt.AttrRole] == "standby" {
				standby++
			}
		}
		return len(all) == 2 && active != nil && standby == 1, saw, active
	}
}

// sleepersAt: the sleeper pool runs exactly n healthy workers, and the work
// pool between its bounds.
func sleepersAt(n int) Cond {
	return func(st *mgmt.RunStatus) (bool, string) {
		s, w := Healthy(Job(st, "sleeper")), Healthy(Job(st, "work"))
		return len(s) == n && len(Running(Job(st, "sleeper"))) == n && len(w) >= 1 && len(w) <= 6,
			fmt.Sprintf("healthy sleepers %d, workers %d", len(s), len(w))
	}
}

// TestHAReplicasEndToEnd is issue 14 on plans/ha.toml as a user runs it:
// two replicas each of the provisioner and the controller on PostgreSQL, a
// 3-node broker cluster.
//
//  1. Status shows every replica as a service of its own, with role and
//     epoch: one active and one standby of each daemon.
//  2. kill -9 the active controller: the standby becomes active at a higher
//     epoch, and a sitter killed right after is replaced; the keeper brings
//     the dead replica back as a standby.
//  3. kill -9 the active provisioner mid-burst (sleeper n=20 from 3): the
//     standby takes over, the pool reaches 20 with no duplicate instance
//     (one live sitter per launch) and no orphan (status agrees with /proc).
//  4. kill -9 a broker node while the producer publishes: no work item is
//     lost, and the pools stay at policy.
//
// Teardown stops every replica and leaves no process.
func TestHAReplicasEndToEnd(t *testing.T) {
	requireRuns(t)
	pgURL := pgtest.Need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	recFile := WorkerWritableFile(t, "work-records.jsonl")
	r := env.NewRun(t, haPlan(t, pgURL, recFile), "har")
	t.Cleanup(func() {
		pgtest.Drop(t, pgURL, pgdb.SchemaName("ns", r.Name, "provisioner"))
		pgtest.Drop(t, pgURL, pgdb.SchemaName("ns", r.Name, "controller"))
	})
	r.Launch(ctx)

	// 1. One active and one standby of each, at policy.
	var ctl, prov *mgmt.ServiceStatus
	mustWait(t, r, ctx, "pools at policy, one active and one standby replica of each daemon", 2*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		okP, sawP, p := twoReplicasOneActive("provisioner")(st)
		okC, sawC, c := twoReplicasOneActive("controller")(st)
		okPol, sawPol := atPolicy(st)
		prov, ctl = p, c
		return okP && okC && okPol, sawP + "; " + sawC + "; " + sawPol
	})
	if res := r.Mgmt(ctx, "status", r.Name); !strings.Contains(res.Stdout, "(active, epoch ") || !strings.Contains(res.Stdout, "(standby)") {
		t.Errorf("status table shows no replica roles:\n%s", res.Stdout)
	}

	// 2. kill -9 the active controller.
	epoch, _ := strconv.Atoi(ctl.Attributes[mgmt.AttrEpoch])
	if err := r.Kill9("active controller "+ctl.Name, ctl.PID); err != nil {
		t.Fatal(err)
	}
	mustWait(t, r, ctx, "the standby controller takes over", 60*time.Second, func(st *mgmt.RunStatus) (bool, string) {
		_, active, saw := replicas(st, "controller")
		if active == nil {
			return false, saw
		}
		e, _ := strconv.Atoi(active.Attributes[mgmt.AttrEpoch])
		// A higher epoch is a takeover: the standby's, or the killed
		// replica's own if the keeper restarted it before the lease expired.
		return e > epoch, saw
	})
	sitters, err := r.Sitters()
	if err != nil {
		t.Fatal(err)
	}
	var victim string
	for id, pid := range SitterPIDsOf(sitters, "sleeper") {
		victim = id
		if err := r.Kill9("sleeper sitter "+id, pid); err != nil {
			t.Fatal(err)
		}
		break
	}
	mustWait(t, r, ctx, "the new active controller replaces the killed sitter", 90*time.Second, func(st *mgmt.RunStatus) (bool, string) {
		ok, saw := atPolicy(st)
		for _, id := range Running(Job(st, "sleeper")) {
			if id == victim {
				return false, saw + "; " + victim + " still running"
			}
		}
		return ok, saw
	})
	mustWait(t, r, ctx, "the keeper restarts the killed controller as a standby", 90*time.Second, func(st *mgmt.RunStatus) (bool, string) {
		ok, saw, _ := twoReplicasOneActive("controller")(st)
		return ok, saw
	})

	// 3. kill -9 the active provisioner mid-burst.
	if res := r.Mgmt(ctx, "reconfigure", r.Name, "sleeper", "n=20"); res.Code != 0 {
		t.Fatalf("reconfigure exit %d: %s", res.Code, res.Stderr)
	}
	// At once: the controller is launching the 17 while the provisioner dies.
	if err := r.Kill9("active provisioner "+prov.Name, prov.PID); err != nil {
		t.Fatal(err)
	}
	provEpoch, _ := strconv.Atoi(prov.Attributes[mgmt.AttrEpoch])
	mustWait(t, r, ctx, "the standby provisioner takes over and the pool reaches 20", 2*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		_, active, saw := replicas(st, "provisioner")
		ok, pol := sleepersAt(20)(st)
		if active == nil {
			return false, saw + "; " + pol
		}
		e, _ := strconv.Atoi(active.Attributes[mgmt.AttrEpoch])
		return ok && e > provEpoch, saw + "; " + pol
	})
	assertNoDuplicates(t, r, "sleeper", 20)
	assertAgrees(t, r, ctx, "after kill -9 of the active provisioner")

	// 4. kill -9 a broker node while the producer publishes.
	const first, second = 150, 151 // batch sizes tell the batches' items apart
	published := make(chan error, 1)
	go func() {
		res := r.Cmd(ctx, "producer", "--home", r.Home, "--run", r.Name, "--count", strconv.Itoa(second))
		if res.Code != 0 {
			published <- fmt.Errorf("producer exit %d: %s", res.Code, res.Stderr)
			return
		}
		published <- nil
	}()
	publish(t, r, ctx, first, "")
	pid, alive, err := readPID(filepath.Join(r.RunDir(), "work", "broker", "rabbit-2", "pid"))
	if err != nil || !alive {
		t.Fatalf("broker node 2 pid %d alive %v: %v", pid, alive, err)
	}
	if err := r.Kill9("broker node 2", pid); err != nil {
		t.Fatal(err)
	}
	if err := <-published; err != nil {
		t.Fatalf("publish while a node is lost: %v", err)
	}
	mustWait(t, r, ctx, "every item finished, pools at policy", 4*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		ok, saw := sleepersAt(20)(st)
		c := countItems(readRecordsOrNil(recFile), map[int]int{first: first, second: second})
		return ok && len(c.lost) == 0, fmt.Sprintf("%s; %d of %d items finished", saw, c.finishedItems, first+second)
	})
	c := countItems(readRecordsOrNil(recFile), map[int]int{first: first, second: second})
	if len(c.lost) > 0 || len(c.bad) > 0 {
		t.Errorf("items lost %v, unreadable %v", c.lost, c.bad)
	}
	t.Logf("items: %d finished, %d redelivered, %d duplicates", c.finishedItems, c.redelivered, c.duplicates)
	assertNoDuplicates(t, r, "sleeper", 20)

	if res := r.Teardown(ctx); res.Code != 0 {
		t.Fatalf("teardown exit %d", res.Code)
	}
	r.AssertNoProcesses()
}

// assertNoDuplicates checks the live sitters of job by their ownership
// markers: exactly n, each a distinct instance. A launch carried out twice
// (by a deposed and a new provisioner) would show as more than n, since
// the pool asked for n; a lost one as fewer.
func assertNoDuplicates(t *testing.T, r *Run, job string, n int) {
	t.Helper()
	owners, err := localworker.ListOwned(r.Home, r.Name)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	live := 0
	for _, o := range owners {
		if o.Job != job || !Alive(o.PID) {
			continue
		}
		live++
		if ids[o.InstanceID] {
			t.Errorf("instance %s runs twice", o.InstanceID)
		}
		ids[o.InstanceID] = true
	}
	if live != n {
		t.Errorf("%d live %s sitters, want %d", live, job, n)
	}
}
