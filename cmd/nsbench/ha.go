package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"nightshift/internal/bench"
	"nightshift/internal/runlayout"
	"nightshift/internal/worker/localworker"
	"nightshift/mgmt"
)

// haScenario runs issue 14's three recoveries on plans/ha.toml (two
// replicas of each daemon on this machine's PostgreSQL, a 3-node broker
// cluster), once each, nobody typing anything after the fault:
//
//   - kill -9 the active controller, then, as soon as a standby is active,
//     a sleeper's sitter: the time to the takeover and to the pool back at
//     policy without that sitter;
//   - `mgmt reconfigure RUN sleeper n=20` and at once kill -9 the active
//     provisioner: the time to 20 running, duplicate instances (live sitters
//     beyond 20) and orphans (live sitters status does not list, and the
//     other way round);
//   - kill -9 one broker node while the producer publishes: items never
//     processed, and the pools at policy again.
func (e *env) haScenario(ctx context.Context) (bench.Result, error) {
	var res bench.Result
	plan := filepath.Join(e.root, "plans", "ha.toml")
	if !fileExists(plan) {
		return res, bench.NotMeasured("plans/ha.toml does not exist")
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:5432", 2*time.Second); err != nil {
		return res, bench.NotMeasured("no PostgreSQL at 127.0.0.1:5432, the store plans/ha.toml names: %v", err)
	} else {
		c.Close()
	}
	dir := filepath.Join(e.work, "ha")
	bin := filepath.Join(e.work, "bin")
	for _, d := range []string{filepath.Join(dir, "logs"), filepath.Join(e.work, "plans"), bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return res, fmt.Errorf("ha: %w", err)
		}
	}
	if err := e.buildSystem(ctx, bin); err != nil {
		return res, err
	}
	if err := rabbitAvailable(); err != nil {
		return res, bench.NotMeasured("%v", err)
	}
	// Unique per invocation, so a run left by an interrupted scenario (its
	// schemas, which teardown drops, included) never meets the next.
	name := fmt.Sprintf("nsha%d", time.Now().UnixNano()%1_000_000_000)
	sys, err := e.startSystem(ctx, bin, filepath.Join(dir, "home"), name, plan)
	if err != nil {
		return res, err
	}
	defer sys.cleanup()
	res.Notes = append(res.Notes,
		"plans/ha.toml as shipped: lease_ttl 3s, two replicas of the provisioner and of the controller on the PostgreSQL server "+
			"of this machine, a private 3-node RabbitMQ cluster. One fault each; status read with `mgmt status --json` every 50 ms. "+
			"A takeover is a replica reporting role active at a higher epoch (its lease.json, as status shows it).")
	poolsOK := func(st *mgmt.RunStatus) bool { return atPolicy(sleeperJob)(st) && atPolicy(workJob)(st) }
	oneActive := func(role string) func(*mgmt.RunStatus) bool {
		return func(st *mgmt.RunStatus) bool { _, ok := activeReplica(st, role); return ok }
	}

	// 1. The active controller, then a sitter.
	st, err := sys.waitFor(ctx, "pools at policy, a controller active", 90*time.Second, func(st *mgmt.RunStatus) bool {
		return poolsOK(st) && oneActive("controller")(st) && oneActive("provisioner")(st)
	})
	if err != nil {
		return res, err
	}
	if err := sleepCtx(ctx, e.clock, keeperResetWait); err != nil {
		return res, err
	}
	ctl, _ := activeReplica(st, "controller")
	// Chosen while the pool is healthy: the new controller knows its
	// workers' health only from their next heartbeats.
	j, _ := findJob(st, sleeperJob)
	victim, pid, err := sys.victim(j, 0)
	if err != nil {
		return res, err
	}
	t0 := e.clock.Now()
	if err := syscall.Kill(ctl.PID, syscall.SIGKILL); err != nil {
		return res, fmt.Errorf("kill the active controller: %w", err)
	}
	epoch := epochOf(ctl)
	st, err = sys.waitFor(ctx, "a controller active at a higher epoch", 60*time.Second, func(st *mgmt.RunStatus) bool {
		s, ok := activeReplica(st, "controller")
		return ok && epochOf(s) > epoch
	})
	if err != nil {
		return res, err
	}
	takeover := e.clock.Since(t0)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return res, fmt.Errorf("kill sitter %s: %w", victim, err)
	}
	if _, err := sys.waitFor(ctx, "the killed sitter replaced", 60*time.Second, func(st *mgmt.RunStatus) bool {
		j, ok := findJob(st, sleeperJob)
		if !ok || !atPolicy(sleeperJob)(st) {
			return false
		}
		for _, w := range j.Workers {
			if w.ID == victim {
				return false
			}
		}
		return true
	}); err != nil {
		return res, err
	}
	replaced := e.clock.Since(t0)
	ccmd := "kill -9 <the active controller's pid, as `mgmt status --json RUN` shows it (role active)>; then kill -9 a sleeper's sitter"
	res.Figures = append(res.Figures,
		bench.Figure{Name: "active controller SIGKILLed to a standby active", Value: takeover.Seconds(), Unit: "s",
			Target: "< lease_ttl + 1 s (4 s)", Verdict: bench.AtMost(takeover.Seconds(), 4), Command: ccmd},
		bench.Figure{Name: "active controller SIGKILLed to a sitter killed after the takeover replaced", Value: replaced.Seconds(), Unit: "s",
			Target: "< 5 s", Verdict: bench.AtMost(replaced.Seconds(), 5), Command: ccmd + "; mgmt status --json RUN every 50 ms"})

	// 2. The active provisioner, mid-burst.
	st, err = sys.waitFor(ctx, "pools at policy, a provisioner active", 90*time.Second, func(st *mgmt.RunStatus) bool {
		return poolsOK(st) && oneActive("provisioner")(st) && oneActive("controller")(st)
	})
	if err != nil {
		return res, err
	}
	if err := sleepCtx(ctx, e.clock, keeperResetWait); err != nil {
		return res, err
	}
	prov, _ := activeReplica(st, "provisioner")
	if _, err := sys.command(ctx, 30*time.Second, "mgmt", "--home", sys.home, "reconfigure", sys.name, sleeperJob, "n=20"); err != nil {
		return res, err
	}
	t0 = e.clock.Now()
	if err := syscall.Kill(prov.PID, syscall.SIGKILL); err != nil {
		return res, fmt.Errorf("kill the active provisioner: %w", err)
	}
	st, err = sys.waitFor(ctx, "sleeper at 20", 90*time.Second, atPolicy(sleeperJob))
	if err != nil {
		return res, err
	}
	at20 := e.clock.Since(t0)
	// Settle, so a late duplicate would show.
	if err := sleepCtx(ctx, e.clock, 3*time.Second); err != nil {
		return res, err
	}
	if st, err = sys.status(ctx); err != nil {
		return res, err
	}
	dups, orphans, err := sys.instanceAudit(st)
	if err != nil {
		return res, err
	}
	pcmd := "mgmt reconfigure RUN sleeper n=20; kill -9 <the active provisioner's pid, as `mgmt status --json RUN` shows it>"
	res.Figures = append(res.Figures,
		bench.Figure{Name: "active provisioner SIGKILLed mid-burst (n 3 to 20) to 20 running", Value: at20.Seconds(), Unit: "s",
			Target: "< 10 s", Verdict: bench.AtMost(at20.Seconds(), 10), Command: pcmd + "; mgmt status --json RUN every 50 ms"},
		bench.Figure{Name: "duplicate instances after the provisioner's takeover (live sitters beyond 20)", Value: float64(dups), Unit: "instances",
			Target: "0", Verdict: bench.AtMost(float64(dups), 0), Command: pcmd + "; ownership markers of live sitters, 3 s after"},
		bench.Figure{Name: "orphans after the provisioner's takeover (live sitters status does not run, or the other way round)", Value: float64(orphans), Unit: "instances",
			Target: "0", Verdict: bench.AtMost(float64(orphans), 0), Command: pcmd + "; status against ownership markers, 3 s after"})

	// 3. A broker node while the producer publishes.
	if _, err := sys.waitFor(ctx, "pools at policy", 90*time.Second, poolsOK); err != nil {
		return res, err
	}
	const items = 200
	published := e.clock.Now().UTC()
	pubErr := make(chan error, 1)
	go func() {
		_, err := sys.command(ctx, 2*time.Minute, "producer", "--home", sys.home, "--run", sys.name, "--count", strconv.Itoa(items))
		pubErr <- err
	}()
	nodePID := filepath.Join(runlayout.Of(sys.home, sys.name).Work("broker"), "rabbit-2", "pid")
	pid, err = livePID(nodePID)
	if err != nil {
		return res, err
	}
	t0 = e.clock.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return res, fmt.Errorf("kill broker node 2: %w", err)
	}
	if err := <-pubErr; err != nil {
		return res, fmt.Errorf("producer while a node is down: %w", err)
	}
	if _, err := sys.waitFor(ctx, "pools at policy after the node", 2*time.Minute, poolsOK); err != nil {
		return res, err
	}
	var done int
	for deadline := e.clock.Now().Add(2 * time.Minute); ; {
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
	drained := e.clock.Since(t0)
	if _, err := sys.waitFor(ctx, "pools at policy after the backlog", 2*time.Minute, poolsOK); err != nil {
		return res, err
	}
	bcmd := fmt.Sprintf("producer --run RUN --count %d & kill -9 <broker node 2's pid from work/broker/rabbit-2/pid>", items)
	res.Figures = append(res.Figures,
		bench.Figure{Name: fmt.Sprintf("work items lost with a broker node SIGKILLed while %d were published", items), Value: float64(items - done), Unit: "items",
			Target: "0", Verdict: bench.AtMost(float64(items-done), 0), Command: bcmd + "; distinct `done` items in the workers' task logs"},
		bench.Figure{Name: "broker node SIGKILLed mid-publish to every item processed", Value: drained.Seconds(), Unit: "s",
			Command: bcmd})
	res.Notes = append(res.Notes, fmt.Sprintf("controller takeover %s, sitter replaced %s; provisioner: 20 running %s, %d duplicates, %d orphans; broker node: %d of %d items processed in %s",
		takeover.Round(time.Millisecond), replaced.Round(time.Millisecond), at20.Round(time.Millisecond), dups, orphans, done, items, drained.Round(time.Millisecond)))
	return res, nil
}

// activeReplica is the one replica of a daemon (NAME-0, NAME-1, …) that
// status shows ready and active.
func activeReplica(st *mgmt.RunStatus, role string) (mgmt.ServiceStatus, bool) {
	var found []mgmt.ServiceStatus
	for _, l := range st.Levels {
		for _, s := range l.Services {
			if len(s.Name) > len(role) && s.Name[:len(role)+1] == role+"-" && s.State == "ready" && s.Attributes[mgmt.AttrRole] == "active" && s.PID > 0 {
				found = append(found, s)
			}
		}
	}
	if len(found) != 1 {
		return mgmt.ServiceStatus{}, false
	}
	return found[0], true
}

func epochOf(s mgmt.ServiceStatus) int {
	n, _ := strconv.Atoi(s.Attributes[mgmt.AttrEpoch])
	return n
}

// instanceAudit compares the sleeper pool in status with the live sitters'
// ownership markers: duplicates are live sitters beyond the desired count,
// orphans the live sitters status does not run plus the running workers
// with no live sitter.
func (s *system) instanceAudit(st *mgmt.RunStatus) (dups, orphans int, err error) {
	owned, err := localworker.ListOwned(s.home, s.name)
	if err != nil {
		return 0, 0, err
	}
	j, _ := findJob(st, sleeperJob)
	running := map[string]bool{}
	for _, w := range j.Workers {
		if w.State == "running" {
			running[w.ID] = true
		}
	}
	live := map[string]bool{}
	for _, o := range owned {
		if o.Job != sleeperJob || syscall.Kill(o.PID, 0) != nil {
			continue
		}
		live[o.InstanceID] = true
		if !running[o.InstanceID] {
			orphans++
		}
	}
	for id := range running {
		if !live[id] {
			orphans++
		}
	}
	if len(live) > j.Desired {
		dups = len(live) - j.Desired
	}
	return dups, orphans, nil
}
