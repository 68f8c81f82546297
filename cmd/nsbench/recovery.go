package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"nightshift/decision"
	"nightshift/internal/bench"
	"nightshift/internal/nsenv"
	"nightshift/internal/procscan"
	"nightshift/internal/store/ctlstore"
	"nightshift/internal/worker/localworker"
	"nightshift/mgmt"
)

// The pools of plans/local.toml that the recovery scenario exercises.
const (
	sleeperJob = "sleeper" // n-preserving, n = 3
	workJob    = "work"    // queue-length, high_water 20
)

// pollEvery is how often the scenario reads `mgmt status`: each read costs
// about 15 ms of a fork and a bus round trip, so 50 ms bounds the error of
// a sample without taking a core from the system being measured.
const pollEvery = 50 * time.Millisecond

// quotedPeers are the peers' defaults the figures are compared with. None
// of them runs here, so each is labelled as quoted, with its source.
func quotedPeers() (k8sNode, asg, keda bench.Peer) {
	return bench.Peer{Name: "Kubernetes node failure (quoted default, not measured)", Value: 40,
			Command: "quoted: kube-controller-manager --node-monitor-grace-period default 40s before NotReady, then eviction"},
		bench.Peer{Name: "AWS ASG health-check grace (quoted default, not measured)", Value: 300,
			Command: "quoted: AWS EC2 Auto Scaling user guide (health-check-grace-period), health check grace period 300s (console)"},
		bench.Peer{Name: "KEDA pollingInterval (quoted default, not measured)", Value: 30,
			Command: "quoted: KEDA ScaledObject specification, pollingInterval default 30s"}
}

// recoverySizes are the worker counts whose teardown is timed; the first
// is done on the run that took the kills, the others on fresh runs.
func (e *env) recoverySizes() (kills, backlog int, sizes []int) {
	if e.quick {
		return 2, 50, []int{10}
	}
	return 7, 200, []int{10, 25, 50}
}

// system is one run of plans/local.toml under a private home.
type system struct {
	e       *env
	bin     string // directory holding every binary, also plan_dir/../bin
	home    string
	name    string
	logs    string
	tornOff bool // teardown already ran, successfully or not
}

// recoveryScenario boots plans/local.toml, SIGKILLs sitters and times their
// replacement, publishes a backlog and times the launch it causes, then
// times `mgmt teardown` at several pool sizes and counts what is left.
func (e *env) recoveryScenario(ctx context.Context) (bench.Result, error) {
	var res bench.Result
	plan := filepath.Join(e.root, "plans", "local.toml")
	if !fileExists(plan) {
		return res, bench.NotMeasured("plans/local.toml does not exist")
	}
	dir := filepath.Join(e.work, "recovery")
	bin := filepath.Join(e.work, "bin")
	for _, d := range []string{filepath.Join(dir, "logs"), filepath.Join(e.work, "plans"), bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return res, fmt.Errorf("recovery: %w", err)
		}
	}
	if err := e.buildSystem(ctx, bin); err != nil {
		return res, err
	}
	if err := rabbitAvailable(); err != nil {
		return res, bench.NotMeasured("%v", err)
	}
	kills, items, sizes := e.recoverySizes()
	home := filepath.Join(dir, "home")
	// Erlang node names are per host, so the run name carries the pid: two
	// people running nsbench at once must not share a broker node name.
	prefix := fmt.Sprintf("nsb%d", os.Getpid())

	res.Notes = append(res.Notes,
		"Binaries are built with `go build -o $WORK/bin/ ./cmd/launch ./cmd/mgmt ./cmd/provisioner ./cmd/controller ./cmd/sitter "+
			"./examples/sleeper ./examples/queueworker ./examples/producer`; every run is `launch --home $HOME_DIR -g plan_dir=$WORK/plans "+
			"--name RUN plans/local.toml` with NIGHTSHIFT_HOME=$HOME_DIR, and its state is read with `mgmt --home $HOME_DIR status --json RUN` "+
			"every 50 ms (each read takes ~15 ms, which bounds a sample's error).",
		"Peers are quoted defaults, not measured here: Kubernetes marks a silent node NotReady after --node-monitor-grace-period "+
			"(40 s; 50 s in recent releases) and only then evicts its pods; AWS ASG waits out a 300 s health-check grace period "+
			"(console default) and a 300 s DefaultCooldown (EC2 Auto Scaling docs); KEDA polls every 30 s (ScaledObject pollingInterval).")

	sys, err := e.startSystem(ctx, bin, home, prefix+"-kill", plan)
	if err != nil {
		return res, err
	}
	defer sys.cleanup()

	if err := e.measureKills(ctx, sys, kills, &res); err != nil {
		return res, err
	}
	if err := e.measureBacklog(ctx, sys, items, &res); err != nil {
		return res, err
	}
	res.Notes = append(res.Notes, fmt.Sprintf("Teardown: the first size (%d) is timed on the run that took the kills and the backlog, "+
		"every other size on a fresh run; before each, `mgmt reconfigure RUN sleeper n=K` makes the run's workers (sleeper plus the work pool) "+
		"add up to the size, and the clock starts once all of them heartbeat. What is left is every process whose environment names "+
		"the run's home and name (internal/procscan.Find).", sizes[0]))
	var leaks []string
	series := bench.Series{Name: "recovery: mgmt teardown of a run of plans/local.toml", SizeUnit: "workers", CostUnit: "s",
		Command: "mgmt --home $HOME_DIR teardown RUN (one run per size)"}
	for i, n := range sizes {
		s := sys
		if i > 0 {
			if s, err = e.startSystem(ctx, bin, home, fmt.Sprintf("%s-td%d", prefix, n), plan); err != nil {
				return res, err
			}
			defer s.cleanup()
		}
		live, took, left, err := e.teardownAt(ctx, s, n)
		if err != nil {
			return res, err
		}
		cmd := "mgmt --home $HOME_DIR teardown " + s.name
		res.Figures = append(res.Figures,
			bench.Figure{Name: fmt.Sprintf("`mgmt teardown` of a run with %d live workers", live), Value: took.Seconds(), Unit: "s", Command: cmd},
			bench.Figure{Name: fmt.Sprintf("processes of the run left after that teardown (%d workers)", live), Value: float64(len(left)), Unit: "processes",
				Target: "0", Verdict: bench.AtMost(float64(len(left)), 0), Command: "procscan.Find(/proc, $HOME_DIR, " + s.name + ") after " + cmd})
		if len(left) > 0 {
			leaks = append(leaks, fmt.Sprintf("%s: %v", s.name, left))
		}
		series.Points = append(series.Points, bench.Point{Size: float64(live), Cost: took.Seconds()})
	}
	if len(series.Points) > 1 {
		res.Series = append(res.Series, series)
	} else {
		res.Notes = append(res.Notes, "quick mode times one teardown size, so there is no teardown scale curve")
	}
	// Anything left is a broken teardown, not a slow one: fail the run.
	if len(leaks) > 0 {
		return res, fmt.Errorf("processes left after mgmt teardown: %s", strings.Join(leaks, "; "))
	}
	return res, nil
}

// buildSystem builds every binary of the system in one go build: launch
// finds the daemons beside itself and the plan finds the workers at
// ${global.plan_dir}/../bin, so they all share one directory.
func (e *env) buildSystem(ctx context.Context, bin string) error {
	pkgs := []string{"./cmd/launch", "./cmd/mgmt", "./cmd/provisioner", "./cmd/controller", "./cmd/sitter",
		"./examples/sleeper", "./examples/queueworker", "./examples/producer"}
	e.mu.Lock()
	defer e.mu.Unlock()
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", bin + string(filepath.Separator)}, pkgs...)...)
	cmd.Dir = e.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return bench.NotMeasured("go build of the system failed (component not ready?): %v: %s", err, lastLines(out, 3))
	}
	if e.built == nil {
		e.built = map[string]string{}
	}
	for _, p := range pkgs {
		e.built[p] = filepath.Join(bin, filepath.Base(p))
	}
	return nil
}

// rabbitAvailable checks that a private broker can be started: the plan's
// level 1 runs rabbitmq-server itself.
func rabbitAvailable() error {
	for _, b := range []string{"rabbitmq-server", "rabbitmqctl"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s is not installed (apt-get install rabbitmq-server): plans/local.toml boots a private broker", b)
		}
	}
	return nil
}

// runEnv is the environment of every command of a run: the inherited one
// without any NIGHTSHIFT_* (a developer's own home or run must not leak in)
// plus the run's home, which the daemons pass on to the workers.
func runEnv(home string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, nsenv.Prefix) {
			out = append(out, kv)
		}
	}
	return append(out, nsenv.Home+"="+home)
}

// command runs one of the system's binaries and returns its stdout. Its
// stderr goes to the run's log so a failure can be explained.
func (s *system) command(ctx context.Context, timeout time.Duration, prog string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, prog), args...)
	cmd.Env = runEnv(s.home)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// Daemons started by launch could inherit the pipes; never wait on them.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", prog, strings.Join(args, " "), err, lastLines(append(out.Bytes(), errb.Bytes()...), 3))
	}
	return out.Bytes(), nil
}

func (e *env) startSystem(ctx context.Context, bin, home, name, plan string) (*system, error) {
	s := &system{e: e, bin: bin, home: home, name: name, logs: filepath.Join(filepath.Dir(home), "logs")}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("recovery: home: %w", err)
	}
	t0 := e.clock.Now()
	out, err := s.command(ctx, 3*time.Minute, "launch", "--home", home, "--plain", "-g", "plan_dir="+filepath.Join(e.work, "plans"), "--name", name, plan)
	_ = os.WriteFile(filepath.Join(s.logs, name+"-launch.log"), out, 0o644)
	if err != nil {
		s.cleanup()
		return nil, fmt.Errorf("boot run %s of plans/local.toml: %w", name, err)
	}
	e.log.Info("recovery: run ready", "run", name, "took", e.clock.Since(t0).Round(time.Millisecond))
	return s, nil
}

func (s *system) status(ctx context.Context) (*mgmt.RunStatus, error) {
	out, err := s.mgmtStatus(ctx, 30*time.Second, "--json")
	if err != nil {
		return nil, err
	}
	return decodeStatus(out)
}

// mgmtStatus runs mgmt status [flags] RUN and returns what it printed.
// Exit 3 is no error: status read the run fine, and the run is only not
// ready and at policy (yet).
func (s *system) mgmtStatus(ctx context.Context, timeout time.Duration, flags ...string) ([]byte, error) {
	args := append(append([]string{"--home", s.home, "status"}, flags...), s.name)
	out, err := s.command(ctx, timeout, "mgmt", args...)
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 3 {
		err = nil
	}
	return out, err
}

// waitFor polls status until ok says the run is where the caller wants it.
func (s *system) waitFor(ctx context.Context, what string, limit time.Duration, ok func(*mgmt.RunStatus) bool) (*mgmt.RunStatus, error) {
	deadline := s.e.clock.Now().Add(limit)
	var last *mgmt.RunStatus
	var lastErr error
	for {
		st, err := s.status(ctx)
		if err == nil && ok(st) {
			return st, nil
		}
		if err != nil {
			lastErr = err
		} else {
			last = st
		}
		if s.e.clock.Now().After(deadline) {
			return last, fmt.Errorf("run %s: %s: not reached within %s (last status error: %v; pools: %s)", s.name, what, limit, lastErr, poolSummary(last))
		}
		if err := sleepCtx(ctx, s.e.clock, pollEvery); err != nil {
			return last, err
		}
	}
}

// atPolicy says a pool runs exactly its desired count, every worker
// running with heartbeats arriving.
func atPolicy(job string) func(*mgmt.RunStatus) bool {
	return func(st *mgmt.RunStatus) bool {
		j, ok := findJob(st, job)
		return ok && j.Desired > 0 && healthyRunning(j) == j.Desired && len(j.Workers) == j.Desired
	}
}

// measureKills SIGKILLs one healthy sleeper's sitter at a time and times
// until a new worker of the pool is running, and until it heartbeats.
func (e *env) measureKills(ctx context.Context, s *system, kills int, res *bench.Result) error {
	var running, healthy []time.Duration
	for i := range kills {
		st, err := s.waitFor(ctx, "pool sleeper at policy", 60*time.Second, atPolicy(sleeperJob))
		if err != nil {
			return err
		}
		j, _ := findJob(st, sleeperJob)
		before := workerIDs(j)
		victim, pid, err := s.victim(j, i)
		if err != nil {
			return err
		}
		t0 := e.clock.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return fmt.Errorf("kill sitter %d of worker %s: %w", pid, victim, err)
		}
		var newID string
		if _, err := s.waitFor(ctx, fmt.Sprintf("replacement of %s (sitter pid %d SIGKILLed)", victim, pid), 60*time.Second, func(st *mgmt.RunStatus) bool {
			newID = newRunning(st, sleeperJob, before)
			return newID != ""
		}); err != nil {
			return err
		}
		running = append(running, e.clock.Since(t0))
		if _, err := s.waitFor(ctx, "first heartbeat of "+newID, 60*time.Second, func(st *mgmt.RunStatus) bool {
			w, ok := findWorker(st, sleeperJob, newID)
			return ok && w.Health == "ok"
		}); err != nil {
			return err
		}
		healthy = append(healthy, e.clock.Since(t0))
		e.log.Info("recovery: sitter replaced", "killed", victim, "replacement", newID, "running", running[i].Round(time.Millisecond), "heartbeating", healthy[i].Round(time.Millisecond))
	}
	cmd := "kill -9 <sitter pid from $HOME_DIR/runs/" + s.name + "/instances/ID/owner.json>; mgmt --home $HOME_DIR status --json " + s.name + " every 50 ms"
	med, medOK := bench.Median(running).Seconds(), bench.Median(healthy).Seconds()
	name := fmt.Sprintf("SIGKILL of a sleeper's sitter to a new worker running, median of %d", kills)
	k8s, asg, _ := quotedPeers()
	res.Figures = append(res.Figures,
		bench.Figure{Name: name, Value: med, Unit: "s", Peer: &k8s, Target: "< 3 s with 1 s heartbeats", Verdict: bench.AtMost(med, 3), Command: cmd,
			Note: "the plan's missing_timeout is 3 s"},
		bench.Figure{Name: name + ", against AWS ASG", Value: med, Unit: "s", Peer: &asg, Command: cmd},
		bench.Figure{Name: fmt.Sprintf("SIGKILL of a sleeper's sitter to the new worker's first heartbeat, median of %d", kills), Value: medOK, Unit: "s", Command: cmd},
	)
	res.Notes = append(res.Notes,
		fmt.Sprintf("kill to replacement running (ms): %s", msList(running)),
		fmt.Sprintf("kill to replacement heartbeating (ms): %s", msList(healthy)),
		"\"Running\" is a worker id not in the pool before the kill with state running in `mgmt status --json`; the pool must be "+
			"back at policy (n = 3, all heartbeating) before the next kill.")
	return nil
}

// victim picks a healthy sleeper worker, rotating through the pool, and
// returns its sitter's pid from the driver's ownership marker, which also
// checks the pid's start time so that a reused pid is never killed.
func (s *system) victim(j mgmt.JobStatus, i int) (string, int, error) {
	owned, err := localworker.ListOwned(s.home, s.name)
	if err != nil {
		return "", 0, fmt.Errorf("run %s: %w", s.name, err)
	}
	pids := map[string]int{}
	for _, o := range owned {
		pids[o.InstanceID] = o.PID
	}
	var ids []string
	for _, w := range j.Workers {
		if w.State == "running" && w.Health == "ok" && pids[w.ID] > 0 {
			ids = append(ids, w.ID)
		}
	}
	if len(ids) == 0 {
		return "", 0, fmt.Errorf("run %s: no live sleeper worker with an owner.json under %s", s.name, localworker.InstanceDir(s.home, s.name, "*"))
	}
	slices.Sort(ids)
	id := ids[i%len(ids)]
	return id, pids[id], nil
}

// measureBacklog publishes items at once to the work queue and times the
// first launch decision for the pool and the new worker running.
func (e *env) measureBacklog(ctx context.Context, s *system, items int, res *bench.Result) error {
	st, err := s.waitFor(ctx, "pool work at policy with an empty queue", 60*time.Second, func(st *mgmt.RunStatus) bool {
		j, ok := findJob(st, workJob)
		return atPolicy(workJob)(st) && ok && j.QueueDepth != nil && *j.QueueDepth == 0
	})
	if err != nil {
		return err
	}
	j, _ := findJob(st, workJob)
	before := workerIDs(j)
	t0 := e.clock.Now()
	if _, err := s.command(ctx, time.Minute, "producer", "--home", s.home, "--run", s.name, "--count", strconv.Itoa(items)); err != nil {
		return fmt.Errorf("publish backlog: %w", err)
	}
	published := e.clock.Since(t0)
	var newID string
	if _, err := s.waitFor(ctx, "a new worker of pool work after the backlog", 90*time.Second, func(st *mgmt.RunStatus) bool {
		newID = newRunning(st, workJob, before)
		return newID != ""
	}); err != nil {
		return err
	}
	running := e.clock.Since(t0)
	out, err := s.command(ctx, 30*time.Second, "mgmt", "--home", s.home, "decisions", "--json", "--limit", "100", s.name, workJob)
	if err != nil {
		return err
	}
	ds, err := decodeDecisions(out)
	if err != nil {
		return err
	}
	d, ok, err := firstLaunch(ds, t0)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("run %s: worker %s runs but no decision of pool work since the backlog launches anything", s.name, newID)
	}
	decided := d.Time.Sub(t0)
	cmd := fmt.Sprintf("producer --home $HOME_DIR --run %s --count %d; mgmt --home $HOME_DIR decisions --json %s work", s.name, items, s.name)
	_, _, keda := quotedPeers()
	res.Figures = append(res.Figures,
		bench.Figure{Name: fmt.Sprintf("backlog of %d items published to the first launch decision of pool work", items), Value: decided.Seconds(), Unit: "s",
			Peer: &keda, Target: "< 2 s", Verdict: bench.AtMost(decided.Seconds(), 2), Command: cmd, Note: "decision time from the controller's record"},
		bench.Figure{Name: fmt.Sprintf("backlog of %d items published to the new worker running", items), Value: running.Seconds(), Unit: "s", Command: cmd},
	)
	res.Notes = append(res.Notes, fmt.Sprintf("Backlog: the clock starts when producer starts (it took %s to publish %d items and exit); "+
		"the decision was %q at %s; the new worker is %s. The controller reads the queue depth from the broker's management API, "+
		"whose statistics RabbitMQ refreshes every collect_statistics_interval (5 s by default; the plan's broker does not set it), "+
		"the likely cause of most of this latency.",
		published.Round(time.Millisecond), items, d.Reason, d.Time.UTC().Format("15:04:05.000"), newID))
	// The teardown that follows should not race a draining queue.
	_, err = s.waitFor(ctx, "queue of pool work drained", 3*time.Minute, func(st *mgmt.RunStatus) bool {
		j, ok := findJob(st, workJob)
		return ok && j.QueueDepth != nil && *j.QueueDepth == 0
	})
	return err
}

// teardownAt grows the sleeper pool so the run has n workers in all, waits
// until they all heartbeat, times `mgmt teardown` and lists what is left.
// live is the number of workers running when the teardown started: the
// other pools may still be shrinking after a backlog, so the sleeper pool
// is resized until the total holds.
func (e *env) teardownAt(ctx context.Context, s *system, n int) (live int, took time.Duration, left []procscan.Proc, err error) {
	for attempt := 0; attempt < 5 && live != n; attempt++ {
		st, err := s.status(ctx)
		if err != nil {
			return 0, 0, nil, err
		}
		others := 0
		for _, j := range st.Jobs {
			if j.Name != sleeperJob {
				others += len(j.Workers)
			}
		}
		want := max(n-others, 1)
		if _, err := s.command(ctx, 30*time.Second, "mgmt", "--home", s.home, "reconfigure", s.name, sleeperJob, fmt.Sprintf("n=%d", want)); err != nil {
			return 0, 0, nil, err
		}
		st, err = s.waitFor(ctx, fmt.Sprintf("%d sleeper workers heartbeating", want), 4*time.Minute, func(st *mgmt.RunStatus) bool {
			j, ok := findJob(st, sleeperJob)
			return ok && j.Desired == want && healthyRunning(j) == want && len(j.Workers) == want
		})
		if err != nil {
			return 0, 0, nil, err
		}
		live = 0
		for _, j := range st.Jobs {
			live += len(j.Workers)
		}
	}
	t0 := e.clock.Now()
	s.tornOff = true
	out, err := s.command(ctx, 5*time.Minute, "mgmt", "--home", s.home, "teardown", s.name)
	took = e.clock.Since(t0)
	_ = os.WriteFile(filepath.Join(s.logs, s.name+"-teardown.log"), out, 0o644)
	if err != nil {
		return live, took, nil, fmt.Errorf("teardown of run %s with %d workers: %w", s.name, live, err)
	}
	left, err = procscan.Find("", s.home, s.name)
	if err != nil {
		return live, took, nil, fmt.Errorf("after teardown of run %s: %w", s.name, err)
	}
	e.log.Info("recovery: teardown", "run", s.name, "workers", live, "took", took.Round(time.Millisecond), "left", len(left))
	return live, took, left, nil
}

// cleanup tears a run down if the scenario stopped before doing so, and
// kills whatever of it survives: a private broker left running would hold
// ports and memory on a shared machine.
func (s *system) cleanup() {
	// A context of its own: cleanup matters most when the scenario's
	// context was cancelled by ^C or a deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if !s.tornOff {
		s.tornOff = true
		if _, err := s.command(ctx, 2*time.Minute, "mgmt", "--home", s.home, "teardown", s.name); err != nil {
			s.e.log.Warn("recovery: cleanup teardown failed", "run", s.name, "err", err)
		}
	}
	killed, remaining, err := procscan.Kill("", s.home, s.name, 10*time.Second)
	if len(killed) > 0 || len(remaining) > 0 || err != nil {
		s.e.log.Warn("recovery: cleanup killed leftovers", "run", s.name, "killed", killed, "remaining", remaining, "err", err)
	}
	// Run as root, the workers had directories of their own outside the
	// home, which goes with the work directory.
	if err := localworker.RemoveWorkerDirs(s.home, s.name); err != nil {
		s.e.log.Warn("recovery: cleanup of worker directories", "run", s.name, "err", err)
	}
}

// decodeStatus reads `mgmt status --json`.
func decodeStatus(b []byte) (*mgmt.RunStatus, error) {
	var st mgmt.RunStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("mgmt status --json: %w", err)
	}
	if st.Run == "" {
		return nil, errors.New("mgmt status --json: field run is empty")
	}
	return &st, nil
}

// decodeDecisions reads `mgmt decisions --json`.
func decodeDecisions(b []byte) ([]ctlstore.Decision, error) {
	var ds []ctlstore.Decision
	if err := json.Unmarshal(b, &ds); err != nil {
		return nil, fmt.Errorf("mgmt decisions --json: %w", err)
	}
	return ds, nil
}

// decisionAction is the part of a recorded action the scenario reads.
type decisionAction struct {
	Type  string `json:"type"`
	Count int    `json:"count"`
}

// firstLaunch is the earliest decision at or after since whose actions
// launch at least one worker.
func firstLaunch(ds []ctlstore.Decision, since time.Time) (ctlstore.Decision, bool, error) {
	var best ctlstore.Decision
	found := false
	for _, d := range ds {
		if d.Time.Before(since) {
			continue
		}
		var acts []decisionAction
		if len(d.Actions) > 0 && string(d.Actions) != "null" {
			if err := json.Unmarshal(d.Actions, &acts); err != nil {
				return best, false, fmt.Errorf("mgmt decisions --json: decision seq %d: field actions: %w", d.Seq, err)
			}
		}
		launches := slices.ContainsFunc(acts, func(a decisionAction) bool { return a.Type == decision.ActionLaunch && a.Count > 0 })
		if launches && (!found || d.Time.Before(best.Time)) {
			best, found = d, true
		}
	}
	return best, found, nil
}

func findJob(st *mgmt.RunStatus, job string) (mgmt.JobStatus, bool) {
	if st == nil {
		return mgmt.JobStatus{}, false
	}
	for _, j := range st.Jobs {
		if j.Name == job {
			return j, true
		}
	}
	return mgmt.JobStatus{}, false
}

func findWorker(st *mgmt.RunStatus, job, id string) (mgmt.WorkerStatus, bool) {
	j, _ := findJob(st, job)
	for _, w := range j.Workers {
		if w.ID == id {
			return w, true
		}
	}
	return mgmt.WorkerStatus{}, false
}

func workerIDs(j mgmt.JobStatus) map[string]bool {
	ids := map[string]bool{}
	for _, w := range j.Workers {
		ids[w.ID] = true
	}
	return ids
}

// newRunning is the first worker of job, in id order, that was not in
// before and is running; "" when there is none yet.
func newRunning(st *mgmt.RunStatus, job string, before map[string]bool) string {
	j, _ := findJob(st, job)
	var ids []string
	for _, w := range j.Workers {
		if !before[w.ID] && w.State == "running" {
			ids = append(ids, w.ID)
		}
	}
	if len(ids) == 0 {
		return ""
	}
	return slices.Min(ids)
}

func healthyRunning(j mgmt.JobStatus) int {
	n := 0
	for _, w := range j.Workers {
		if w.State == "running" && w.Health == "ok" {
			n++
		}
	}
	return n
}

// poolSummary shows pools in an error message: name, desired, and each
// worker's state/health.
func poolSummary(st *mgmt.RunStatus) string {
	if st == nil {
		return "no status"
	}
	var parts []string
	for _, j := range st.Jobs {
		var ws []string
		for _, w := range j.Workers {
			ws = append(ws, w.ID+"="+w.State+"/"+w.Health)
		}
		parts = append(parts, fmt.Sprintf("%s desired %d [%s]", j.Name, j.Desired, strings.Join(ws, " ")))
	}
	return strings.Join(parts, "; ")
}
