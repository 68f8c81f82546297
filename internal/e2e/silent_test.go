package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"nightshift/alert"
	"nightshift/controller"
	"nightshift/mgmt"
)

// launched counts the instances a job's status knows of (every state,
// gone ones included for ten minutes) and the launches sent without a
// record yet: how many workers the pool has launched so far.
func launched(j *mgmt.JobStatus) int {
	n := 0
	for state, c := range j.Counts {
		if state != "draining" {
			n += c
		}
	}
	return n
}

// TestSilentWorkersBlockEndToEnd runs a pool whose worker command never
// starts a sitter (testdata/local-silent.toml): each worker reaches
// running and never heartbeats. After 3 of them the pool is blocked, in
// mgmt status and its JSON, having launched 3 workers and not more
// (probes aside, one at a time); mgmt reconfigure unblocks it at once,
// and so, once it has blocked again, does mgmt repair.
func TestSilentWorkersBlockEndToEnd(t *testing.T) {
	requireRuns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	r := env.NewRun(t, "internal/e2e/testdata/local-silent.toml", "sil")
	r.Launch(ctx)

	blocked := func(what string) *mgmt.JobStatus {
		t.Helper()
		st := mustWait(t, r, ctx, what, 2*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
			j := Job(st, "silent")
			return j != nil && j.Blocked != nil, fmt.Sprintf("silent %+v", j)
		})
		return Job(st, "silent")
	}
	j := blocked("the silent pool blocked")
	b := j.Blocked
	t.Logf("blocked: %+v; counts %v", b, j.Counts)
	if b.Cause != controller.BlockedNoHeartbeat || b.FailedLaunches != 3 || !strings.Contains(b.LastCause, "sent no heartbeat") ||
		!strings.Contains(b.Check, "worker command") {
		t.Fatalf("blocked %+v, want 3 silent workers, the cause and what to check", b)
	}
	// Not more: every launch is a silent worker counted, or a probe.
	for range 5 {
		st, err := r.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		j := Job(st, "silent")
		if j.Blocked == nil {
			t.Fatalf("unblocked on its own: %+v", j)
		}
		if n := launched(j); n != 3+j.Blocked.Probes {
			t.Fatalf("%d launched while blocked after 3 silent workers and %d probe(s): %v", n, j.Blocked.Probes, j.Counts)
		}
	}
	res := r.Mgmt(ctx, "status", r.Name)
	for _, want := range []string{"blocked", "BLOCKED: 3 workers in a row reached running and never sent a heartbeat", "worker command"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("mgmt status (exit %d) lacks %q:\n%s", res.Code, want, res.Stdout)
		}
	}
	if res.Code != 3 {
		t.Errorf("mgmt status exit %d, want 3 (not at policy)", res.Code)
	}
	// The controller raises pool_blocked for it, saying why: in the run's
	// alert journal, as mgmt alerts lists it (the plan has no sinks).
	waitUntil(t, "mgmt alerts lists pool_blocked for the silent pool", time.Now(), time.Minute, func() (bool, string) {
		res := r.Mgmt(ctx, "alerts", "--json", r.Name)
		var l mgmt.AlertList
		if res.Code != 0 || json.Unmarshal([]byte(res.Stdout), &l) != nil {
			return false, fmt.Sprintf("exit %d: %s %s", res.Code, res.Stdout, res.Stderr)
		}
		for _, v := range l.Firing {
			if v.Kind == alert.PoolBlocked && v.Job == "silent" {
				return strings.Contains(v.Summary, "never sent a heartbeat") && strings.Contains(v.Summary, "worker command"), v.Summary
			}
		}
		return false, fmt.Sprintf("firing %+v", l.Firing)
	})

	// A reconfigure unblocks at once: the pool launches again.
	before := launched(j)
	if res := r.Mgmt(ctx, "reconfigure", r.Name, "silent", "n=1"); res.Code != 0 {
		t.Fatalf("mgmt reconfigure exit %d: %s", res.Code, res.Stderr)
	}
	mustWait(t, r, ctx, "unblocked by the reconfigure, launching again", time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "silent")
		return j != nil && j.Blocked == nil && launched(j) > before, fmt.Sprintf("silent %+v", j)
	})

	// Three more silent workers block it again; mgmt repair unblocks it.
	j = blocked("the silent pool blocked again")
	if j.Blocked.FailedLaunches != 3 {
		t.Fatalf("blocked again %+v, want after 3 silent workers", j.Blocked)
	}
	if res := r.Mgmt(ctx, "repair", r.Name); res.Code != 0 {
		t.Fatalf("mgmt repair exit %d: %s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	st, err := r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if j := Job(st, "silent"); j.Blocked != nil && j.Blocked.FailedLaunches >= 3 {
		t.Fatalf("still blocked after mgmt repair: %+v", j.Blocked)
	}
}
