package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"nightshift/internal/bench"
	"nightshift/internal/runlayout"
	"nightshift/internal/worker/localworker"
	"nightshift/keeper"
	"nightshift/mgmt"
)

// selfhealScenario kills each process of plans/local.toml that only a
// person could bring back before the keeper (provisioner, controller,
// broker node, and the keeper itself) with SIGKILL, nobody typing
// anything, and times the way back: the process running again and the
// pools at policy; for the broker, every item published before the kill
// processed; for the keeper, no daemon restarted because of it.
func (e *env) selfhealScenario(ctx context.Context) (bench.Result, error) {
	var res bench.Result
	plan := filepath.Join(e.root, "plans", "local.toml")
	if !fileExists(plan) {
		return res, bench.NotMeasured("plans/local.toml does not exist")
	}
	dir := filepath.Join(e.work, "selfheal")
	bin := filepath.Join(e.work, "bin")
	for _, d := range []string{filepath.Join(dir, "logs"), filepath.Join(e.work, "plans"), bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return res, fmt.Errorf("selfheal: %w", err)
		}
	}
	if err := e.buildSystem(ctx, bin); err != nil {
		return res, err
	}
	if err := rabbitAvailable(); err != nil {
		return res, bench.NotMeasured("%v", err)
	}
	kills := 5
	if e.quick {
		kills = 1
	}
	sys, err := e.startSystem(ctx, bin, filepath.Join(dir, "home"), fmt.Sprintf("nsh%d", os.Getpid()), plan)
	if err != nil {
		return res, err
	}
	defer sys.cleanup()
	res.Notes = append(res.Notes,
		"Same binaries and run as the recovery scenario; every fault is `kill -9` of a pid read from the run's pid files, "+
			"and nothing is typed afterwards: the run's keeper (package keeper) restarts what died.",
		fmt.Sprintf("Each figure is the median of %d kills; the pools must be at policy before each kill. \"Running again\" is a new live pid in "+
			"the daemon's pid file, polled every 10 ms; \"pools at policy\" is both pools of the plan running exactly their desired "+
			"count with heartbeats, read with `mgmt status --json` every 50 ms. Before each daemon or broker kill the service has run for "+
			"longer than the keeper's back-off reset (5 s), so every kill is timed as a first failure; kills in a row back off as the sitter's rules say.", kills))
	poolsOK := func(st *mgmt.RunStatus) bool { return atPolicy(sleeperJob)(st) && atPolicy(workJob)(st) }

	for _, d := range []string{"provisioner", "controller"} {
		var back, policy []time.Duration
		pidFile := filepath.Join(runlayout.Of(sys.home, sys.name).Work(d), d, "pid")
		for range kills {
			if _, err := sys.waitFor(ctx, "pools at policy", 60*time.Second, poolsOK); err != nil {
				return res, err
			}
			// One kill, not a crash loop: past the keeper's back-off reset.
			if err := sleepCtx(ctx, e.clock, keeperResetWait); err != nil {
				return res, err
			}
			pid, err := livePID(pidFile)
			if err != nil {
				return res, err
			}
			t0 := e.clock.Now()
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				return res, fmt.Errorf("kill %s: %w", d, err)
			}
			if err := waitPID(ctx, pidFile, pid, 30*time.Second); err != nil {
				return res, fmt.Errorf("%s: %w", d, err)
			}
			back = append(back, e.clock.Since(t0))
			if _, err := sys.waitFor(ctx, d+" killed: pools back at policy", 60*time.Second, poolsOK); err != nil {
				return res, err
			}
			policy = append(policy, e.clock.Since(t0))
		}
		cmd := "kill -9 <the " + d + "'s pid from its pid file, as `mgmt status --json RUN` shows it>"
		mb, mp := bench.Median(back).Seconds(), bench.Median(policy).Seconds()
		res.Figures = append(res.Figures,
			bench.Figure{Name: fmt.Sprintf("%s SIGKILLed to running again, median of %d", d, kills), Value: mb, Unit: "s",
				Target: "< 1 s", Verdict: bench.AtMost(mb, 1), Command: cmd},
			bench.Figure{Name: fmt.Sprintf("%s SIGKILLed to pools at policy, median of %d", d, kills), Value: mp, Unit: "s",
				Target: "< 5 s", Verdict: bench.AtMost(mp, 5), Command: cmd + "; mgmt status --json RUN every 50 ms"})
		res.Notes = append(res.Notes, fmt.Sprintf("%s: to running again (ms) %s; to pools at policy (ms) %s", d, msList(back), msList(policy)))
	}

	// The keeper itself: replaced by its standby; a daemon restarted
	// because of it is a needless restart.
	var replaced []time.Duration
	needless := 0
	kdir := keeper.Dir(sys.home, sys.name)
	for range kills {
		if _, err := sys.waitFor(ctx, "pools at policy", 60*time.Second, poolsOK); err != nil {
			return res, err
		}
		before, err := sys.daemonPIDs()
		if err != nil {
			return res, err
		}
		pid, err := livePID(filepath.Join(kdir, "active.pid"))
		if err != nil {
			return res, err
		}
		t0 := e.clock.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return res, fmt.Errorf("kill keeper: %w", err)
		}
		if err := waitPID(ctx, filepath.Join(kdir, "active.pid"), pid, 30*time.Second); err != nil {
			return res, fmt.Errorf("keeper: %w", err)
		}
		replaced = append(replaced, e.clock.Since(t0))
		if err := sleepCtx(ctx, e.clock, 2*time.Second); err != nil {
			return res, err
		}
		after, err := sys.daemonPIDs()
		if err != nil {
			return res, err
		}
		for k, v := range before {
			if after[k] != v {
				needless++
			}
		}
	}
	mr := bench.Median(replaced).Seconds()
	res.Figures = append(res.Figures,
		bench.Figure{Name: fmt.Sprintf("active keeper SIGKILLed to replaced, median of %d", kills), Value: mr, Unit: "s",
			Target: "< 2 s", Verdict: bench.AtMost(mr, 2), Command: "kill -9 <pid in $HOME_DIR/runs/RUN/keeper/active.pid>"},
		bench.Figure{Name: fmt.Sprintf("daemons restarted because the keeper was killed (%d kills)", kills), Value: float64(needless), Unit: "restarts",
			Target: "0", Verdict: bench.AtMost(float64(needless), 0), Command: "broker, provisioner and controller pids 2 s after each keeper kill"})
	res.Notes = append(res.Notes, fmt.Sprintf("keeper: to replaced (ms) %s", msList(replaced)))

	// The broker node: back, every component reconnected (both pools at
	// policy means heartbeats and decisions flow again), and every item
	// published before the kill processed.
	var nodeBack, reconnected, drained []time.Duration
	lost := 0
	nodePID := filepath.Join(runlayout.Of(sys.home, sys.name).Work("broker"), "rabbit", "pid")
	for i := range kills {
		if _, err := sys.waitFor(ctx, "pools at policy", 90*time.Second, poolsOK); err != nil {
			return res, err
		}
		if err := sleepCtx(ctx, e.clock, keeperResetWait); err != nil {
			return res, err
		}
		const items = 13
		published := e.clock.Now().UTC()
		if _, err := sys.command(ctx, time.Minute, "producer", "--home", sys.home, "--run", sys.name, "--count", strconv.Itoa(items)); err != nil {
			return res, err
		}
		pid, err := livePID(nodePID)
		if err != nil {
			return res, err
		}
		t0 := e.clock.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return res, fmt.Errorf("kill broker node: %w", err)
		}
		if err := waitPID(ctx, nodePID, pid, 60*time.Second); err != nil {
			return res, fmt.Errorf("broker: %w", err)
		}
		if _, err := sys.waitFor(ctx, "broker restarted: status ready", 60*time.Second, func(st *mgmt.RunStatus) bool {
			for _, l := range st.Levels {
				for _, s := range l.Services {
					if s.Name == "broker" {
						return s.State == "ready"
					}
				}
			}
			return false
		}); err != nil {
			return res, err
		}
		nodeBack = append(nodeBack, e.clock.Since(t0))
		if _, err := sys.waitFor(ctx, "broker restarted: pools back at policy", 90*time.Second, poolsOK); err != nil {
			return res, err
		}
		reconnected = append(reconnected, e.clock.Since(t0))
		var done int
		for deadline := e.clock.Now().Add(60 * time.Second); ; {
			if done, err = sys.processed(published, items); err != nil {
				return res, err
			}
			if done == items || e.clock.Now().After(deadline) {
				break
			}
			if err := sleepCtx(ctx, e.clock, 200*time.Millisecond); err != nil {
				return res, err
			}
		}
		drained = append(drained, e.clock.Since(t0))
		lost += items - done
		e.log.Info("selfheal: broker back", "kill", i+1, "node", nodeBack[i].Round(time.Millisecond), "pools", reconnected[i].Round(time.Millisecond), "processed", done)
	}
	mb, mr2, md := bench.Median(nodeBack).Seconds(), bench.Median(reconnected).Seconds(), bench.Median(drained).Seconds()
	bcmd := "producer --run RUN --count 13; kill -9 <the broker node's pid from its pid file, as `mgmt status --json RUN` shows it>"
	res.Figures = append(res.Figures,
		bench.Figure{Name: fmt.Sprintf("broker node SIGKILLed to ready again, median of %d", kills), Value: mb, Unit: "s",
			Target: "< 15 s", Verdict: bench.AtMost(mb, 15), Command: bcmd},
		bench.Figure{Name: fmt.Sprintf("broker node SIGKILLed to every component reconnected (pools at policy), median of %d", kills), Value: mr2, Unit: "s",
			Target: "< 15 s", Verdict: bench.AtMost(mr2, 15), Command: bcmd + "; mgmt status --json RUN every 50 ms"},
		bench.Figure{Name: fmt.Sprintf("broker node SIGKILLed to every item published before the kill processed, median of %d", kills), Value: md, Unit: "s",
			Command: bcmd + "; distinct `done item=...` lines in the workers' task logs"},
		bench.Figure{Name: fmt.Sprintf("work items published before a broker kill and never processed (%d kills of %d items)", kills, 13), Value: float64(lost), Unit: "items",
			Target: "0", Verdict: bench.AtMost(float64(lost), 0), Command: bcmd})
	res.Notes = append(res.Notes,
		fmt.Sprintf("broker: to ready (ms) %s; to pools at policy (ms) %s; to every item processed (ms) %s", msList(nodeBack), msList(reconnected), msList(drained)),
		"Items are published persistent to the run's durable work queue with publisher confirms (examples/producer) before the kill; "+
			"processed means a `done` line for that item in some worker's task log under $HOME_DIR/runs/RUN/instances.")
	return res, nil
}

// keeperResetWait is slept before each daemon or broker kill: a service
// that ran this long has its restart back-off reset (keeper.Policy), so
// each kill is timed as one failure, not as the next of a crash loop.
var keeperResetWait = time.Duration(keeper.Policy().BackoffResetAfter) + time.Second

// livePID reads a pid file ("pid" or "pid start") and checks the process.
func livePID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("%s is empty", path)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("%s holds %q", path, b)
	}
	if !procAlive(pid) {
		return 0, fmt.Errorf("%s: pid %d is not alive", path, pid)
	}
	return pid, nil
}

// waitPID polls path every 10 ms until it names a live process other than old.
func waitPID(ctx context.Context, path string, old int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if pid, err := livePID(path); err == nil && pid != old {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no new live process in %s within %s (killed pid %d)", path, limit, old)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func procAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

func (s *system) daemonPIDs() (map[string]int, error) {
	out := map[string]int{}
	run := runlayout.Of(s.home, s.name)
	for name, p := range map[string]string{
		"broker": filepath.Join(run.Work("broker"), "rabbit", "pid"), "provisioner": filepath.Join(run.Work("provisioner"), "provisioner", "pid"),
		"controller": filepath.Join(run.Work("controller"), "controller", "pid"),
	} {
		pid, err := livePID(p)
		if err != nil {
			return nil, err
		}
		out[name] = pid
	}
	return out, nil
}

var doneItem = regexp.MustCompile(`item="item (\d+) of (\d+) at ([^"]+)"`)

// processed counts the distinct items of a batch of n, published at or
// after since, that some worker logged as done.
func (s *system) processed(since time.Time, n int) (int, error) {
	// Each instance's sitter logs, in its own worker directory when the
	// provisioner isolated it (run as root).
	ents, err := os.ReadDir(runlayout.Of(s.home, s.name).Instances())
	if err != nil {
		return 0, err
	}
	var logs []string
	for _, e := range ents {
		if e.IsDir() {
			more, _ := filepath.Glob(filepath.Join(localworker.SitterDir(s.home, s.name, e.Name()), "logs", "*.log"))
			logs = append(logs, more...)
		}
	}
	seen := map[string]bool{}
	for _, p := range logs {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			m := doneItem.FindStringSubmatch(sc.Text())
			if m == nil || m[2] != strconv.Itoa(n) {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, m[3])
			if err != nil || at.Before(since.Add(-time.Second)) {
				continue
			}
			seen[m[1]+" "+m[3]] = true
		}
		f.Close()
	}
	return len(seen), nil
}
