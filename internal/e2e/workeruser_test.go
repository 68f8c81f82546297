package e2e

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"testing"
	"time"

	"nightshift/internal/worker/localworker"
	"nightshift/internal/workeruser"
)

// procUID is the real uid of pid, from /proc/<pid>/status.
func procUID(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			return strconv.Atoi(strings.Fields(rest)[0])
		}
	}
	return 0, fmt.Errorf("pid %d: no Uid line", pid)
}

// TestWorkerUserEndToEnd: plans/local.toml launched as root runs
// every local worker (sitter and task) under a uid of its own from
// localworker.DefaultUIDs (not nightshift-worker's, nor another's), mgmt
// status shows each worker's uid and carries no "can read this run's
// secrets" note, mgmt logs still shows a worker's sitter logs, and
// teardown leaves no process of the run.
func TestWorkerUserEndToEnd(t *testing.T) {
	requireRuns(t)
	if os.Geteuid() != 0 {
		t.Skip("local workers are isolated only under a root provisioner (CI runs as root)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := env.NewRun(t, "plans/local.toml", "wu")
	r.Launch(ctx)
	mustWait(t, r, ctx, "pools at policy after launch", 90*time.Second, atPolicy)
	u, err := user.Lookup(workeruser.DefaultName)
	if err != nil {
		t.Fatalf("the provisioner did not create %s: %v", workeruser.DefaultName, err)
	}
	want, _ := strconv.Atoi(u.Uid)
	if want == 0 {
		t.Fatalf("%s is uid 0", workeruser.DefaultName)
	}
	sitters, err := r.Sitters()
	if err != nil || len(sitters) < 4 {
		t.Fatalf("sitters %v (err %v), want 3 sleepers and a queue worker", sitters, err)
	}
	var anyID string
	r0 := localworker.DefaultUIDs
	owner := map[int]string{} // uid: the instance whose sitter holds it
	for id, pid := range sitters {
		anyID = id
		uid, err := procUID(pid)
		if err != nil || uid == want || uid < int(r0.First) || uid > int(r0.Last) {
			t.Errorf("sitter of %s (pid %d) runs as uid %d (%v), want one of its own in %d-%d", id, pid, uid, err, r0.First, r0.Last)
		}
		if other, ok := owner[uid]; ok {
			t.Errorf("sitters of %s and %s share uid %d", id, other, uid)
		}
		owner[uid] = id
	}
	tasks, err := r.Workers("sleeper")
	if err != nil || len(tasks) != 3 {
		t.Fatalf("sleeper tasks %v (err %v)", tasks, err)
	}
	for _, p := range tasks {
		if uid, err := procUID(p.PID); err != nil || owner[uid] == "" {
			t.Errorf("task %v runs as uid %d (%v), want its sitter's (%v)", p, uid, err, owner)
		}
	}
	res := r.Mgmt(ctx, "status", r.Name)
	if strings.Contains(res.Stdout, "can read this run's secrets") {
		t.Errorf("status warns of shared user under a root provisioner:\n%s", res.Stdout)
	}
	if !strings.Contains(res.Stdout, " UID ") {
		t.Errorf("status shows no UID column for workers with uids of their own:\n%s", res.Stdout)
	}
	// Every worker's uid in --json is the one its sitter runs under.
	st, err := r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shown := 0
	for _, j := range st.Jobs {
		for _, w := range j.Workers {
			if _, ok := sitters[w.ID]; !ok {
				continue
			}
			shown++
			if owner[int(w.UID)] != w.ID {
				t.Errorf("status gives %s uid %d; its sitter's is another (%v)", w.ID, w.UID, owner)
			}
		}
	}
	if shown == 0 {
		t.Errorf("status --json lists none of the running workers %v", sitters)
	}
	if res := r.Mgmt(ctx, "logs", r.Name, anyID); res.Code != 0 || strings.TrimSpace(res.Stdout) == "" {
		t.Errorf("mgmt logs %s: exit %d\n%s%s", anyID, res.Code, res.Stdout, res.Stderr)
	}
	if res := r.Teardown(ctx); res.Code != 0 {
		t.Fatalf("teardown exit %d", res.Code)
	}
	r.AssertNoProcesses()
}
