//go:build chaos

package e2e

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/internal/runlayout"
	"nightshift/internal/store/pgdb"
	"nightshift/internal/store/pgdb/pgtest"
	"nightshift/internal/testsupport"
	"nightshift/mgmt"
	"nightshift/provisioner"
	"nightshift/provisioner/client"
)

var (
	chaosSeeds  = flag.Int("chaos.seeds", 1, "number of random seeds to run")
	chaosSeed   = flag.Uint64("chaos.seed", 0, "replay this one seed (overrides -chaos.seeds)")
	chaosSteps  = flag.Int("chaos.steps", len(allFaults), "faults injected per seed (the default covers every fault once)")
	chaosFaults = flag.String("chaos.faults", strings.Join(allFaults, ","), "comma-separated faults to draw from")
	chaosPlan   = flag.String("chaos.plan", "", "plan to run (default: plans/local.toml with [defaults] timeout lowered to 20s, see chaosPlanFile)")
)

// loadDrainBound is what a step's 40 published items add to its bound.
const loadDrainBound = 30 * time.Second

// allFaults are the faults a seed draws from.
var allFaults = []string{"provisioner", "controller", "pair", "keeper", "sitter", "worker", "drop-connections", "broker-restart", "broker"}

// convergeBound is how long a pool may take to return to policy after a
// fault, with nobody typing anything: the keeper restarts a dead daemon
// within a second, then missing_timeout (3s) + tick + boot. A broker
// restart costs the node's own start and the reconnections, hence more.
//
// A step that also published load waits loadDrainBound more: at policy
// means one queue worker again, so the 40 items must be worked off (10s on
// one worker) and the pool shrink back through its cooldowns, which is the
// load's time, not the fault's.
//
// Killing a queue worker (or its sitter) puts its unacknowledged
// deliveries back on the queue: load of its own, which can push the depth
// past high_water, grow the pool and shrink it back through cooldowns and
// drains (seed 59147 did: 1 -> 5 -> 1), so those faults get
// loadDrainBound too. How fast a pool recovers is nsbench's to measure.
func convergeBound(fault string) time.Duration {
	switch fault {
	case "broker-restart", "broker":
		return 30 * time.Second
	case "worker", "sitter":
		return 15*time.Second + loadDrainBound
	}
	return 15 * time.Second
}

// TestChaos launches plans/local.toml once per seed and injects random
// faults, checking after each that the pools converge back to policy with
// no instance counted twice, over max or untracked, and at the end that
// teardown leaves nothing and every database of the run is intact.
func TestChaos(t *testing.T) {
	requireRuns(t)
	seeds := make([]uint64, 0, *chaosSeeds)
	if *chaosSeed != 0 {
		seeds = append(seeds, *chaosSeed)
	} else {
		for range *chaosSeeds {
			seeds = append(seeds, rand.Uint64()%1_000_000+1)
		}
	}
	faults := strings.Split(*chaosFaults, ",")
	for _, f := range faults {
		if !slices.Contains(allFaults, f) {
			t.Fatalf("-chaos.faults: unknown fault %q, want some of %v", f, allFaults)
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Logf("seed %d; replay with: go test -tags chaos ./internal/e2e/ -run Chaos -chaos.seed=%d -chaos.faults=%s",
				seed, seed, *chaosFaults)
			chaosSeedRun(t, seed, faults, chaosPlanFile(t), false)
		})
	}
}

// haFaults are the faults TestChaosHA draws from, on plans/ha.toml: the
// active replica of a daemon, or one node of the broker cluster, killed.
var haFaults = []string{"active-controller", "active-provisioner", "broker-node"}

// TestChaosHA is TestChaos on plans/ha.toml (its defaults timeout lowered
// likewise), with the faults of a replicated run: after each the pools
// converge back to policy with the same invariants, a standby has taken
// over, and the keeper has brought the dead process back.
func TestChaosHA(t *testing.T) {
	requireRuns(t)
	pgURL := pgtest.Need(t)
	seeds := make([]uint64, 0, *chaosSeeds)
	if *chaosSeed != 0 {
		seeds = append(seeds, *chaosSeed)
	} else {
		for range *chaosSeeds {
			seeds = append(seeds, rand.Uint64()%1_000_000+1)
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Logf("seed %d; replay with: go test -tags chaos ./internal/e2e/ -run ChaosHA -chaos.seed=%d", seed, seed)
			b, err := os.ReadFile(haPlan(t, pgURL, ""))
			if err != nil {
				t.Fatal(err)
			}
			out := strings.Replace(string(b), "\ntimeout = \"2m\"\n", "\ntimeout = \"20s\"\n", 1)
			if out == string(b) {
				t.Fatal("plans/ha.toml no longer has [defaults] timeout = \"2m\"; update TestChaosHA")
			}
			path := filepath.Join(t.TempDir(), "ha-chaos.toml")
			if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			chaosSeedRun(t, seed, haFaults, path, true)
		})
	}
}

func chaosSeedRun(t *testing.T, seed uint64, faults []string, plan string, ha bool) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()

	r := env.NewRun(t, plan, "ch")
	if ha {
		pgURL := pgtest.Need(t)
		t.Cleanup(func() {
			pgtest.Drop(t, pgURL, pgdb.SchemaName("ns", r.Name, "provisioner"))
			pgtest.Drop(t, pgURL, pgdb.SchemaName("ns", r.Name, "controller"))
		})
	}
	r.Launch(ctx)
	mustWait(t, r, ctx, "pools at policy after launch", 60*time.Second, atPolicy)

	// A shuffled schedule rather than independent draws: every seed with
	// enough steps covers every fault, in its own order and timing.
	order := rng.Perm(len(faults))
	steps := *chaosSteps
	if ha {
		steps = len(faults)
	}
	for step := 1; step <= steps; step++ {
		// A random point: not always right after the pools settled.
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
		bound := 0 * time.Second
		if rng.IntN(3) == 0 {
			// Load on the queue pool during the fault; 40 items is above
			// high_water, so the pool grows while things break.
			if err := r.Publish(ctx, 40); err != nil {
				t.Logf("step %d: publish failed (the fault may be the broker): %v", step, err)
			} else {
				bound = loadDrainBound
			}
		}
		fault := faults[order[(step-1)%len(faults)]]
		t.Logf("step %d/%d: fault %s", step, steps, fault)
		injectFault(t, r, ctx, rng, fault)
		// A step that published waits until its load is worked off too:
		// the pool may not have grown yet when the fault's own damage is
		// healed, and its growing and shrinking must not spill into the
		// next step's bound.
		checkInvariants(t, r, ctx, fmt.Sprintf("step %d (%s)", step, fault), bound+convergeBound(fault), bound > 0)
		if t.Failed() {
			break
		}
	}

	if res := r.Teardown(ctx); res.Code != 0 {
		t.Errorf("teardown exit %d", res.Code)
	}
	r.AssertNoProcesses()
	checkDatabases(t, r, ha)
}

// chaosPlanFile returns the plan a chaos run uses. The shipped plan's
// [defaults] timeout of 2m bounds how long a restart retries a ready check
// that keeps failing; 20s keeps three seeds within the CI budget when a
// fault makes one fail, without changing anything else.
func chaosPlanFile(t *testing.T) string {
	if *chaosPlan != "" {
		return *chaosPlan
	}
	b, err := os.ReadFile(filepath.Join(env.Root, "plans", "local.toml"))
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Replace(string(b), "\ntimeout = \"2m\"\n", "\ntimeout = \"20s\"\n", 1)
	if out == string(b) {
		t.Fatal("plans/local.toml no longer has [defaults] timeout = \"2m\"; update chaosPlanFile")
	}
	// Beside the shipped plan's bin/ layout: plan_dir/../bin is the build.
	path := filepath.Join(env.PlanDir, "local-chaos.toml")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func injectFault(t *testing.T, r *Run, ctx context.Context, rng *rand.Rand, fault string) {
	t.Helper()
	switch fault {
	case "provisioner", "controller", "pair":
		daemons := []string{fault}
		if fault == "pair" {
			daemons = []string{"controller", "provisioner"}
		}
		old := map[string]int{}
		for _, d := range daemons {
			pid, alive, err := r.DaemonPID(d, d)
			if err != nil || !alive {
				t.Fatalf("%s pid file: pid %d alive %v err %v", d, pid, alive, err)
			}
			old[d] = pid
		}
		for _, d := range daemons {
			if err := r.Kill9(d, old[d]); err != nil {
				t.Fatal(err)
			}
		}
		// Nobody runs repair: the keeper must bring each one back.
		for _, d := range daemons {
			waitUntil(t, d+" restarted by the keeper", time.Now(), 10*time.Second, func() (bool, string) {
				pid, alive, err := r.DaemonPID(d, d)
				return err == nil && alive && pid != old[d], fmt.Sprintf("pid %d alive %v err %v", pid, alive, err)
			})
		}
	case "keeper":
		kpid, alive, err := r.KeeperPID()
		if err != nil || !alive {
			t.Fatalf("keeper pid file: pid %d alive %v err %v", kpid, alive, err)
		}
		before := daemonPIDs(t, r)
		killed := time.Now()
		if err := r.Kill9("keeper", kpid); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "keeper replaced", killed, 5*time.Second, func() (bool, string) {
			pid, alive, err := r.KeeperPID()
			return err == nil && alive && pid != kpid, fmt.Sprintf("active keeper pid %d alive %v err %v", pid, alive, err)
		})
		time.Sleep(time.Second)
		if after := daemonPIDs(t, r); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("killing the keeper restarted daemons: pids %v, before %v", after, before)
		}
	case "sitter", "worker":
		sitters, err := r.Sitters()
		if err != nil {
			t.Fatal(err)
		}
		if fault == "sitter" {
			ids := sortedKeys(sitters)
			if len(ids) == 0 {
				t.Fatal("no live sitter to kill")
			}
			id := ids[rng.IntN(len(ids))]
			if err := r.Kill9("sitter of "+id, sitters[id]); err != nil {
				t.Fatal(err)
			}
			// Converging at once would prove nothing: first see the
			// controller notice (the instance leaves the running set).
			// Before its first heartbeat a dead instance is only noticed
			// after boot_timeout (30s), hence the bound.
			_, err := r.WaitFor(ctx, "killed instance "+id+" leaves the running set", 45*time.Second,
				func(st *mgmt.RunStatus) (bool, string) {
					for _, j := range st.Jobs {
						if slices.Contains(Running(&j), id) {
							return false, fmt.Sprintf("job %s still runs %s", j.Name, id)
						}
					}
					return true, id + " no longer running"
				})
			if err != nil {
				t.Error(err)
			}
			return
		}
		var ws []int
		for _, prog := range []string{"sleeper", "queueworker"} {
			ps, err := r.Workers(prog)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				ws = append(ws, p.PID)
			}
		}
		if len(ws) == 0 {
			t.Fatal("no live worker process to kill")
		}
		sort.Ints(ws)
		if err := r.Kill9("worker", ws[rng.IntN(len(ws))]); err != nil {
			t.Fatal(err)
		}
	case "drop-connections":
		node, dataDir := brokerNode(t, r, ctx)
		// The private node has its own cookie in its data dir; this only
		// ever touches the run's own node, never the shared broker.
		cookie, err := os.ReadFile(filepath.Join(dataDir, ".erlang.cookie"))
		if err != nil {
			t.Fatalf("private node's cookie: %v", err)
		}
		cmd := exec.CommandContext(ctx, "rabbitmqctl", "-n", node, "--erlang-cookie", strings.TrimSpace(string(cookie)),
			"close_all_connections", "chaos")
		out, err := cmd.CombinedOutput()
		t.Logf("fault: rabbitmqctl -n %s close_all_connections chaos: %s", node, strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatalf("close_all_connections on %s: %v", node, err)
		}
	case "broker-restart", "broker":
		pid, alive, err := r.BrokerPID()
		if err != nil || !alive {
			t.Fatalf("broker pid file: pid %d alive %v err %v", pid, alive, err)
		}
		if fault == "broker" {
			if err := r.Kill9("private broker node", pid); err != nil {
				t.Fatal(err)
			}
		} else {
			t.Logf("fault: SIGTERM private broker node (pid %d)", pid)
			if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := testsupport.PollEvery(30*time.Second, 200*time.Millisecond, func() error {
				if Alive(pid) {
					return fmt.Errorf("broker pid %d still alive after SIGTERM", pid)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		// Nobody runs repair: the keeper restarts the node.
		waitUntil(t, "broker node restarted by the keeper", time.Now(), 30*time.Second, func() (bool, string) {
			npid, alive, err := r.BrokerPID()
			return err == nil && alive && npid != pid, fmt.Sprintf("pid %d alive %v err %v", npid, alive, err)
		})
	case "active-controller", "active-provisioner":
		role := strings.TrimPrefix(fault, "active-")
		st, err := r.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, active, saw := replicas(st, role)
		if active == nil {
			t.Fatalf("no one active %s: %s", role, saw)
		}
		epoch, _ := strconv.Atoi(active.Attributes[mgmt.AttrEpoch])
		if err := r.Kill9("active "+active.Name, active.PID); err != nil {
			t.Fatal(err)
		}
		// Nobody runs repair: a standby takes the lease, and the keeper
		// brings the dead replica back as a standby.
		mustWait(t, r, ctx, "a standby "+role+" takes over and the killed one is back", 90*time.Second, func(st *mgmt.RunStatus) (bool, string) {
			ok, saw, now := twoReplicasOneActive(role)(st)
			if !ok {
				return false, saw
			}
			e, _ := strconv.Atoi(now.Attributes[mgmt.AttrEpoch])
			// A higher epoch is a takeover; the restarted replica itself
			// may win the lease, if the keeper is quicker than its expiry.
			return e > epoch, saw
		})
	case "broker-node":
		pid, alive, err := readPID(filepath.Join(r.RunDir(), "work", "broker", "rabbit-2", "pid"))
		if err != nil || !alive {
			t.Fatalf("broker node 2 pid file: pid %d alive %v err %v", pid, alive, err)
		}
		if err := r.Kill9("broker node 2", pid); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "broker node 2 restarted by the keeper", time.Now(), 90*time.Second, func() (bool, string) {
			npid, alive, err := readPID(filepath.Join(r.RunDir(), "work", "broker", "rabbit-2", "pid"))
			return err == nil && alive && npid != pid, fmt.Sprintf("pid %d alive %v err %v", npid, alive, err)
		})
	default:
		t.Fatalf("unknown fault %q", fault)
	}
}

// queueMessages asks the run's broker node for the messages on queue,
// ready and unacknowledged, as the queue process counts them now.
func queueMessages(ctx context.Context, st *mgmt.RunStatus, queue string) (int, error) {
	var node, dataDir string
	for _, l := range st.Levels {
		for _, s := range l.Services {
			if s.Name == "broker" {
				node, dataDir = s.Attributes["node"], s.Attributes["data_dir"]
			}
		}
	}
	if node == "" {
		return -1, fmt.Errorf("status has no broker node")
	}
	cookie, err := os.ReadFile(filepath.Join(dataDir, ".erlang.cookie"))
	if err != nil {
		return -1, fmt.Errorf("private node's cookie: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, "rabbitmqctl", "-n", node, "--erlang-cookie", strings.TrimSpace(string(cookie)),
		"-q", "list_queues", "--no-table-headers", "name", "messages").Output()
	if err != nil {
		return -1, fmt.Errorf("list_queues on %s: %w", node, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == queue {
			return strconv.Atoi(f[1])
		}
	}
	return -1, fmt.Errorf("queue %s not listed on %s", queue, node)
}

func brokerNode(t *testing.T, r *Run, ctx context.Context) (node, dataDir string) {
	t.Helper()
	st, err := r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range st.Levels {
		for _, s := range l.Services {
			if s.Name == "broker" {
				return s.Attributes["node"], s.Attributes["data_dir"]
			}
		}
	}
	t.Fatal("status has no broker service")
	return "", ""
}

// checkInvariants waits for the pools to converge to policy and checks that
// no instance is counted twice or beyond max, and that status, the
// provisioner's records and /proc agree.
func checkInvariants(t *testing.T, r *Run, ctx context.Context, when string, bound time.Duration, drained bool) {
	t.Helper()
	_, err := r.WaitFor(ctx, when+": pools back at policy", bound, func(st *mgmt.RunStatus) (bool, string) {
		seen := map[string]string{}
		for _, j := range st.Jobs {
			for _, w := range j.Workers {
				if other, dup := seen[w.ID]; dup {
					t.Errorf("%s: instance %s listed twice (jobs %s and %s)", when, w.ID, other, j.Name)
				}
				seen[w.ID] = j.Name
			}
		}
		if n := len(Running(Job(st, "work"))); n > 6 {
			t.Errorf("%s: work pool has %d running workers, above max_instances 6", when, n)
		}
		ok, what := atPolicy(st)
		if drained {
			w := Job(st, "work")
			if w == nil || w.QueueDepth == nil || *w.QueueDepth != 0 {
				depth := "unknown"
				if w != nil && w.QueueDepth != nil {
					depth = fmt.Sprint(*w.QueueDepth)
				}
				return false, what + "; work queue depth " + depth
			}
			// Status's depth may come from the management API, whose
			// statistics lag by seconds: right after a publish it can still
			// say 0. Ask the queue itself (ready and unacknowledged); a
			// node that cannot answer (one a fault took down) leaves the
			// judgement to status.
			if n, err := queueMessages(ctx, st, "nightshift."+r.Name+".work"); err == nil && n != 0 {
				return false, fmt.Sprintf("%s; the broker holds %d items on the work queue", what, n)
			}
		}
		return ok, what
	})
	if err != nil {
		t.Fatal(err)
	}
	assertAgrees(t, r, ctx, when)
	checkProvisioner(t, r, ctx, when)
	checkWorkerProcesses(t, r, when)
}

// checkWorkerProcesses waits (bounded) until every live sitter has its one
// worker process again: a killed worker must be restarted by its sitter
// (restart = "always"), and no worker may outlive its sitter.
func checkWorkerProcesses(t *testing.T, r *Run, when string) {
	t.Helper()
	err := testsupport.PollEvery(20*time.Second, 500*time.Millisecond, func() error {
		sitters, err := r.Sitters()
		if err != nil {
			t.Fatal(err)
		}
		var workers int
		for _, prog := range []string{"sleeper", "queueworker"} {
			ps, err := r.Workers(prog)
			if err != nil {
				t.Fatal(err)
			}
			workers += len(ps)
		}
		if workers != len(sitters) {
			return fmt.Errorf("%d live sitters but %d worker processes", len(sitters), workers)
		}
		t.Logf("%s: %d sitters, each with its worker process", when, workers)
		return nil
	})
	if err != nil {
		t.Errorf("%s: %v", when, err)
	}
}

// checkProvisioner compares the provisioner's live records with the live
// sitter processes: nothing it recorded is untracked and nothing runs that
// it did not record.
func checkProvisioner(t *testing.T, r *Run, ctx context.Context, when string) {
	t.Helper()
	err := testsupport.PollEvery(15*time.Second, time.Second, func() error {
		status, err := describe(ctx, r)
		sitters, serr := r.Sitters()
		var diffs []string
		switch {
		case err != nil:
			diffs = append(diffs, err.Error())
		case serr != nil:
			diffs = append(diffs, serr.Error())
		default:
			live := map[string]bool{}
			for _, in := range status.Instances {
				if !in.State.Live() {
					continue
				}
				if live[in.ID] {
					diffs = append(diffs, "provisioner lists live instance "+in.ID+" twice")
				}
				live[in.ID] = true
				if _, ok := sitters[in.ID]; !ok {
					diffs = append(diffs, fmt.Sprintf("provisioner record %s (%s) has no live sitter", in.ID, in.State))
				}
			}
			for id, pid := range sitters {
				if !live[id] {
					diffs = append(diffs, fmt.Sprintf("sitter %s (pid %d) is live but the provisioner has no live record of it", id, pid))
				}
			}
			if status.Live != len(live) {
				diffs = append(diffs, fmt.Sprintf("provisioner says %d live, its records show %d", status.Live, len(live)))
			}
		}
		if len(diffs) > 0 {
			return fmt.Errorf("provisioner records disagree with /proc:\n  %s", strings.Join(diffs, "\n  "))
		}
		t.Logf("%s: provisioner records agree with /proc", when)
		return nil
	})
	if err != nil {
		t.Errorf("%s: %v", when, err)
	}
}

// describe asks the run's provisioner for its records over the run's bus,
// with the credentials the daemons themselves were given.
func describe(ctx context.Context, r *Run) (provisioner.Status, error) {
	// The controller's own broker user may ask the provisioner; the
	// provisioner's own may not command itself.
	url, err := os.ReadFile(filepath.Join(r.RunDir(), "work", "controller", "controller", "amqp-url"))
	if errors.Is(err, fs.ErrNotExist) {
		// plans/ha.toml: the first replica's (config.replicas).
		url, err = os.ReadFile(filepath.Join(r.RunDir(), "work", "controller-0", "controller", "amqp-url"))
	}
	if err != nil {
		return provisioner.Status{}, fmt.Errorf("describe: %w", err)
	}
	secret, err := envelope.LoadOrCreateSecret(runlayout.Of(r.Home, r.Name).Secret())
	if err != nil {
		return provisioner.Status{}, fmt.Errorf("describe: %w", err)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	bus, err := amqpbus.Dial(dctx, amqpbus.Config{URL: strings.TrimSpace(string(url)), Run: r.Name, Name: "e2e-chaos",
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return provisioner.Status{}, fmt.Errorf("describe: %w", err)
	}
	defer bus.Close()
	c := client.New(bus, &envelope.Signer{Secret: secret, Seen: envelope.NewReplayCache(16)}, "e2e-chaos", nil)
	return c.Describe(dctx, provisioner.DescribeBody{})
}

// checkDatabases runs PRAGMA integrity_check on every SQLite database of the
// run after teardown.
func checkDatabases(t *testing.T, r *Run, pg bool) {
	t.Helper()
	dbs := []string{filepath.Join(r.Home, "nightshift.db")}
	if !pg { // on PostgreSQL the daemons keep no SQLite file
		dbs = append(dbs, filepath.Join(r.RunDir(), "provisioner.db"),
			filepath.Join(r.RunDir(), "work", "controller", "controller", "controller.db"))
	}
	for _, path := range dbs {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("database %s: %v", path, err)
			continue
		}
		db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
		if err != nil {
			t.Errorf("open %s: %v", path, err)
			continue
		}
		var res string
		if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
			t.Errorf("PRAGMA integrity_check of %s: %q (err %v)", path, res, err)
		} else {
			t.Logf("integrity_check %s: ok", path)
		}
		db.Close()
	}
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
