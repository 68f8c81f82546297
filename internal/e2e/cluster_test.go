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

	"nightshift/internal/brokerurl"
	"nightshift/internal/store/pgdb"
	"nightshift/internal/store/pgdb/pgtest"
	"nightshift/mgmt"
)

// TestBrokerClusterEndToEnd: plans/ha.toml (a private 3-node RabbitMQ
// cluster, every client given every node, the daemons on PostgreSQL)
// boots and reaches policy; with work on the quorum work queue, kill -9 of
// the first node (the one every client connected to first) leaves the
// pools at policy: the clients fail over, the keeper restarts the node,
// the producer publishes through the others meanwhile, and the queue is
// drained. Teardown leaves no process.
func TestBrokerClusterEndToEnd(t *testing.T) {
	requireRuns(t)
	pgURL := pgtest.Need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	b, err := os.ReadFile(filepath.Join(env.Root, "plans", "ha.toml"))
	if err != nil {
		t.Fatal(err)
	}
	const store = haStore
	plan := string(b)
	if !strings.Contains(plan, store) {
		t.Fatalf("plans/ha.toml no longer has %q; update this test", store)
	}
	plan = strings.Replace(plan, store, fmt.Sprintf("store = %q", pgURL), 1)
	path := filepath.Join(env.PlanDir, "ha-test.toml")
	if err := os.WriteFile(path, []byte(plan), 0o600); err != nil {
		t.Fatal(err)
	}
	r := env.NewRun(t, path, "ha")
	t.Cleanup(func() {
		pgtest.Drop(t, pgURL, pgdb.SchemaName("ns", r.Name, "provisioner"))
		pgtest.Drop(t, pgURL, pgdb.SchemaName("ns", r.Name, "controller"))
	})
	r.Launch(ctx)
	st := mustWait(t, r, ctx, "pools at policy after launch", 2*time.Minute, atPolicy)
	broker := Service(st, "broker")
	if broker == nil || len(brokerurl.Split(broker.Attributes["urls"])) != 3 || broker.Attributes["nodes"] != "3" {
		t.Fatalf("broker service %+v: want 3 nodes and their urls", broker)
	}

	if err := r.Publish(ctx, 40); err != nil {
		t.Fatal(err)
	}
	pid, alive, err := r.BrokerPID()
	if err != nil || !alive {
		t.Fatalf("first broker node pid %d alive %v: %v", pid, alive, err)
	}
	if err := r.Kill9("broker node 1", pid); err != nil {
		t.Fatal(err)
	}
	// Published while the node may still be down: the producer goes to
	// the next node, the quorum queue takes it on the two left.
	if err := r.Publish(ctx, 40); err != nil {
		t.Fatalf("publish with a node down: %v", err)
	}
	mustWait(t, r, ctx, "the keeper restarts the node", 90*time.Second, func(*mgmt.RunStatus) (bool, string) {
		npid, alive, err := r.BrokerPID()
		return err == nil && alive && npid != pid, fmt.Sprintf("node 1 pid %d alive %v err %v (killed %d)", npid, alive, err, pid)
	})
	mustWait(t, r, ctx, "pools at policy and the work queue drained", 3*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		ok, what := atPolicy(st)
		w := Job(st, "work")
		if w == nil || w.QueueDepth == nil {
			return false, what + "; work queue depth unknown"
		}
		return ok && *w.QueueDepth == 0, fmt.Sprintf("%s; work queue depth %d", what, *w.QueueDepth)
	})
	assertAgrees(t, r, ctx, "after kill -9 of a broker node")

	// One VM per node: the restart started the lost node once, beside
	// the two that were left running.
	if vms := brokerVMs(t, r.RunDir()); len(vms) != 3 {
		t.Errorf("%d RabbitMQ VMs of the run (pids %v), want 3", len(vms), vms)
	}
	if res := r.Teardown(ctx); res.Code != 0 {
		t.Fatalf("teardown exit %d", res.Code)
	}
	r.AssertNoProcesses()
}

// brokerVMs lists the pids of the Erlang VMs whose -home is under runDir.
func brokerVMs(t *testing.T, runDir string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), "beam.smp") {
			continue
		}
		args := strings.Split(string(b), "\x00")
		for i, a := range args {
			if a == "-home" && i+1 < len(args) && strings.HasPrefix(args[i+1], runDir+"/") {
				out = append(out, pid)
			}
		}
	}
	return out
}
