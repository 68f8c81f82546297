package controller_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"nightshift"
	"nightshift/controller"
	"nightshift/sitter"
)

// rolloutRig drives a rig through a rollout: every live worker runs, old
// workers are busy until drained (then idle a heartbeat interval later),
// and new workers report probe for their task.
type rolloutRig struct {
	*rig
	probe      func(id string) *sitter.ProbeStatus
	drainedAt  map[string]time.Time
	lastBusy   map[string]bool
	killedBusy []string
}

func (rr *rolloutRig) beat() {
	drained := rr.drainer.got()
	for _, id := range rr.prov.ids("web", true) {
		rr.c.HandleInstance(rr.prov.setState(id, nightshift.StateRunning))
		if slices.Contains(drained, id) && rr.drainedAt[id].IsZero() {
			rr.drainedAt[id] = rr.clock.Now()
		}
		busy := rr.lastBusy[id]
		if at := rr.drainedAt[id]; !at.IsZero() && rr.clock.Now().Sub(at) >= time.Second {
			busy = false
		}
		rr.lastBusy[id] = busy
		w := sitter.WorkIdle
		if busy {
			w = sitter.WorkBusy
		}
		ts := sitter.TaskStatus{Name: "work", State: sitter.StateRunning, Work: w}
		if rr.probe != nil {
			ts.Probe = rr.probe(id)
		}
		rr.c.IngestHeartbeat(sitter.Heartbeat{InstanceID: id, Job: "web", Host: "h", Time: rr.clock.Now(), Tasks: []sitter.TaskStatus{ts}})
	}
}

func (rr *rolloutRig) step() *controller.Rollout {
	rr.t.Helper()
	before := map[string]bool{}
	for _, id := range rr.prov.ids("web", true) {
		before[id] = rr.lastBusy[id]
	}
	rr.tick()
	for id, busy := range before {
		if busy && !slices.Contains(rr.prov.ids("web", true), id) {
			rr.killedBusy = append(rr.killedBusy, id)
		}
	}
	rr.clock.Advance(500 * time.Millisecond)
	rr.beat()
	ro, err := rr.c.RolloutOf("web")
	if err != nil {
		rr.t.Fatal(err)
	}
	return ro
}

func startRolloutRig(t *testing.T) *rolloutRig {
	rr := &rolloutRig{rig: newRig(t, npJob(t, 2)), drainedAt: map[string]time.Time{}, lastBusy: map[string]bool{}}
	rr.tick()
	for _, id := range rr.prov.ids("web", true) {
		rr.lastBusy[id] = true
	}
	for range 5 {
		rr.beat()
		rr.clock.Advance(time.Second)
	}
	return rr
}

func TestRolloutThroughRounds(t *testing.T) {
	rr := startRolloutRig(t)
	old := rr.prov.ids("web", true)
	ctx := context.Background()
	ro, err := rr.c.StartRollout(ctx, "web", controller.RolloutRequest{Set: map[string]string{"env.VERSION": "2"},
		Config: controller.RolloutConfig{MinReady: 2 * time.Second}}, "ns.r.mgmt")
	if err != nil {
		t.Fatal(err)
	}
	if ro.From != 1 || ro.To != 2 || ro.Phase != controller.RolloutRolling {
		t.Fatalf("rollout %+v", ro)
	}
	if _, err := rr.c.StartRollout(ctx, "web", controller.RolloutRequest{Set: map[string]string{"env.VERSION": "3"}}, "x"); err == nil {
		t.Error("a second rollout started while one is in progress")
	}
	var last *controller.Rollout
	for range 100 {
		if last = rr.step(); !last.Active() {
			break
		}
	}
	if last.Phase != controller.RolloutDone {
		t.Fatalf("rollout %+v, want done", last)
	}
	if len(rr.killedBusy) > 0 {
		t.Errorf("busy workers terminated: %v", rr.killedBusy)
	}
	for _, id := range old {
		if !slices.Contains(rr.drainer.got(), id) {
			t.Errorf("old busy worker %s was not drained before it went", id)
		}
	}
	st, _ := rr.c.Status("web")
	for _, w := range st[0].Workers {
		if w.State == "running" && w.Revision != 2 {
			t.Errorf("worker %s at revision %d after the rollout", w.ID, w.Revision)
		}
		if slices.Contains(old, w.ID) && w.State == "running" {
			t.Errorf("old worker %s still running", w.ID)
		}
	}
	if st[0].Rollout == nil || st[0].Rollout.Phase != controller.RolloutDone || st[0].Revision.Number != 2 {
		t.Errorf("status rollout %+v revision %+v", st[0].Rollout, st[0].Revision)
	}
	rr.prov.mu.Lock()
	revised := slices.Clone(rr.prov.revised)
	rr.prov.mu.Unlock()
	if len(revised) == 0 || revised[0].Digest != st[0].Revision.Digest || revised[0].Spec.Worker["env"].(map[string]any)["VERSION"] != "2" {
		t.Errorf("provisioner handed %+v, want revision 2 with VERSION=2", revised)
	}
	ds, _ := rr.c.Decisions(ctx, "web", 100)
	if !slices.ContainsFunc(ds, func(d controller.Decision) bool { return strings.HasPrefix(d.Reason, "rollout to revision 2 done") }) {
		t.Errorf("no decision says the rollout is done")
	}
}

func TestRolloutRollsBackWhenProbesFail(t *testing.T) {
	rr := startRolloutRig(t)
	old := rr.prov.ids("web", true)
	rr.probe = func(id string) *sitter.ProbeStatus {
		if slices.Contains(old, id) {
			return &sitter.ProbeStatus{State: sitter.ProbeHealthy, Output: "HTTP 200"}
		}
		return &sitter.ProbeStatus{State: sitter.ProbeUnhealthy, Failures: 3, Output: "HTTP 404"}
	}
	ctx := context.Background()
	if _, err := rr.c.StartRollout(ctx, "web", controller.RolloutRequest{Set: map[string]string{"health.http": "http://127.0.0.1:${port}/nope"}}, "ns.r.mgmt"); err != nil {
		t.Fatal(err)
	}
	var last *controller.Rollout
	for range 100 {
		if last = rr.step(); !last.Active() {
			break
		}
	}
	if last.Phase != controller.RolloutRolledBack {
		t.Fatalf("rollout %+v, want rolled_back", last)
	}
	if !strings.Contains(last.Reason, "rolling back to revision 1") || !strings.Contains(last.Reason, "HTTP 404") {
		t.Errorf("reason %q", last.Reason)
	}
	if len(rr.killedBusy) > 0 {
		t.Errorf("busy workers terminated: %v", rr.killedBusy)
	}
	st, _ := rr.c.Status("web")
	if st[0].Revision.Number != 1 {
		t.Errorf("revision in force %d, want 1 again", st[0].Revision.Number)
	}
	ds, _ := rr.c.Decisions(ctx, "web", 200)
	if !slices.ContainsFunc(ds, func(d controller.Decision) bool {
		return strings.Contains(d.Reason, "rolling back to revision 1: 1 new worker(s) of revision 2 failed")
	}) {
		t.Errorf("no decision says why it rolled back")
	}
	revs, _ := rr.store.Revisions(ctx, "web")
	if len(revs) != 2 || revs[0].Outcome != controller.RevisionCurrent || revs[1].Outcome != controller.RevisionRolledBack {
		t.Errorf("revisions %+v", revs)
	}
	var raised bool
	for _, p := range rr.c.AlertPools() {
		raised = raised || p.Job == "web" && p.RolledBack != nil && p.RolledBack.To == 2 && strings.Contains(p.RolledBack.Reason, "HTTP 404")
	}
	if !raised {
		t.Error("the alert evaluator is not told of the rollback (rollout_rolled_back)")
	}
	// The rollout, and where it ended, survive a restart.
	rr.restart()
	if ro, _ := rr.c.RolloutOf("web"); ro == nil || ro.Phase != controller.RolloutRolledBack {
		t.Errorf("rollout after restart %+v", ro)
	}
	// The next rollout from revision 1 makes revision 3: revision 2, rolled
	// back, keeps its number, its record and its workers' launch ids.
	rr.probe = nil
	next, err := rr.c.StartRollout(ctx, "web", controller.RolloutRequest{Set: map[string]string{"env.VERSION": "3"}}, "ns.r.mgmt")
	if err != nil {
		t.Fatal(err)
	}
	if next.From != 1 || next.To != 3 {
		t.Errorf("next rollout %d -> %d, want 1 -> 3", next.From, next.To)
	}
	revs, _ = rr.store.Revisions(ctx, "web")
	if len(revs) != 3 || revs[1].Number != 2 || revs[1].Outcome != controller.RevisionRolledBack || revs[2].Number != 3 {
		t.Errorf("revisions %+v, want 1, 2 (rolled back) and 3", revs)
	}
}

// A controller restarted mid-rollout picks the rollout up where it was,
// its target revision in force, and finishes it.
func TestRolloutResumesAfterRestart(t *testing.T) {
	rr := startRolloutRig(t)
	ctx := context.Background()
	if _, err := rr.c.StartRollout(ctx, "web", controller.RolloutRequest{Set: map[string]string{"env.VERSION": "2"},
		Config: controller.RolloutConfig{MinReady: 2 * time.Second}}, "ns.r.mgmt"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		rr.step()
	}
	if ro, _ := rr.c.RolloutOf("web"); ro == nil || ro.Phase != controller.RolloutRolling {
		t.Fatalf("rollout before the restart %+v, want still rolling", ro)
	}
	rr.restart()
	ro, _ := rr.c.RolloutOf("web")
	if ro == nil || ro.Phase != controller.RolloutRolling || ro.To != 2 {
		t.Fatalf("rollout after the restart %+v, want rolling to 2", ro)
	}
	st, _ := rr.c.Status("web")
	if st[0].Revision.Number != 2 {
		t.Fatalf("revision in force after the restart %d, want 2", st[0].Revision.Number)
	}
	var last *controller.Rollout
	for range 100 {
		if last = rr.step(); !last.Active() {
			break
		}
	}
	if last.Phase != controller.RolloutDone {
		t.Fatalf("rollout %+v, want done after resuming", last)
	}
	if len(rr.killedBusy) > 0 {
		t.Errorf("busy workers terminated: %v", rr.killedBusy)
	}
}

// A launch decided before a rollout, whose outcome was unknown (a lost
// reply), is resent after the rollout started as the revision it was
// decided for: its id names revision 1, so it must carry revision 1's
// digest, not the new revision's.
func TestPendingLaunchKeepsItsRevisionAcrossARollout(t *testing.T) {
	r := newRig(t, npJob(t, 2))
	r.prov.mu.Lock()
	r.prov.failLaunch = 1000
	r.prov.mu.Unlock()
	r.tick()
	r.prov.mu.Lock()
	if len(r.prov.calls) == 0 {
		r.prov.mu.Unlock()
		t.Fatal("no launch sent")
	}
	pending := r.prov.calls[0]
	r.prov.mu.Unlock()
	if controller.RevisionOfLaunch(pending.LaunchID) != 1 {
		t.Fatalf("launch %s, want one of revision 1", pending.LaunchID)
	}
	ctx := context.Background()
	if _, err := r.c.StartRollout(ctx, "web", controller.RolloutRequest{Set: map[string]string{"env.VERSION": "2"}}, "ns.r.mgmt"); err != nil {
		t.Fatal(err)
	}
	r.prov.mu.Lock()
	r.prov.failLaunch = 0
	r.prov.calls = nil
	r.prov.mu.Unlock()
	r.tick()
	r.prov.mu.Lock()
	defer r.prov.mu.Unlock()
	var resent bool
	for _, c := range r.prov.calls {
		switch controller.RevisionOfLaunch(c.LaunchID) {
		case 1:
			resent = resent || c.LaunchID == pending.LaunchID
			if c.SpecDigest != pending.SpecDigest {
				t.Errorf("launch %s of revision 1 resent with digest %s, want revision 1's %s", c.LaunchID, c.SpecDigest, pending.SpecDigest)
			}
		case 2:
			if c.SpecDigest == pending.SpecDigest {
				t.Errorf("launch %s of revision 2 carries revision 1's digest", c.LaunchID)
			}
		}
	}
	if !resent {
		t.Errorf("the pending launch %s was not resent (calls %+v)", pending.LaunchID, r.prov.calls)
	}
}

// TestResentLaunchOfAnOlderRevision: a launch whose outcome stays unknown
// is resent round after round; when it is of a revision no longer in
// force, each resend used to read every stored revision again and hand
// that revision to the provisioner again. Stored revisions never change
// and the provisioner keeps what it is handed: neither is needed twice.
func TestResentLaunchOfAnOlderRevision(t *testing.T) {
	r := newRig(t, npJob(t, 2))
	r.prov.mu.Lock()
	r.prov.failLaunch = 1000
	r.prov.mu.Unlock()
	r.tick()
	_, calls := r.prov.launched()
	if len(calls) == 0 {
		t.Fatal("no launch sent")
	}
	pending := calls[0]
	ctx := context.Background()
	if _, err := r.c.StartRollout(ctx, "web", controller.RolloutRequest{Set: map[string]string{"env.VERSION": "2"}}, "ns.r.mgmt"); err != nil {
		t.Fatal(err)
	}
	reads, before := r.revReads.Load(), len(r.prov.sentLog())
	const rounds = 5
	for range rounds {
		r.tick()
	}
	resent, revised := 0, 0
	for _, s := range r.prov.sentLog()[before:] {
		switch s {
		case "launch " + pending.LaunchID:
			resent++
		case "revise " + pending.SpecDigest:
			revised++
		}
	}
	if resent != rounds {
		t.Fatalf("launch %s of revision 1 resent %d times in %d rounds", pending.LaunchID, resent, rounds)
	}
	if revised != 1 {
		t.Errorf("revision 1 handed over %d times for %d resends, want once", revised, resent)
	}
	if got := r.revReads.Load() - reads; got != 0 {
		t.Errorf("stored revisions read %d times for %d resends, want none (the controller holds them)", got, resent)
	}
}

// A worker's linked tasks are part of its revision: a --set on one linked
// task's environment makes a new revision whose spec changes that task
// alone, every new worker launches it (all its tasks on it), and a linked
// task the sitter would refuse is refused before anything is recorded.
func TestRolloutOfALinkedTask(t *testing.T) {
	job := mustJob(t, "web", map[string]any{
		"engine": "npreserving",
		"policy": map[string]any{"n": 2, "drain_timeout": "30s"},
		"health": map[string]any{"heartbeat_interval": "1s", "missing_timeout": "3s", "boot_timeout": "20s"},
		"worker": map[string]any{"command": []any{"/bin/worker"},
			"linked": map[string]any{"sidecar": map[string]any{"command": []any{"/bin/sidecar"}, "env": map[string]any{"VERSION": "1"}}}},
	})
	r := newRig(t, job)
	r.tick()
	ctx := context.Background()
	if _, err := r.c.StartRollout(ctx, "web", controller.RolloutRequest{Set: map[string]string{"linked.sidecar.cpus": "2"}}, "ns.r.mgmt"); err == nil || !strings.Contains(err.Error(), "cpus") {
		t.Errorf("a linked task with an unknown key: %v, want refused", err)
	}
	ro, err := r.c.StartRollout(ctx, "web", controller.RolloutRequest{Set: map[string]string{"linked.sidecar.env.VERSION": "2"}}, "ns.r.mgmt")
	if err != nil {
		t.Fatal(err)
	}
	if ro.From != 1 || ro.To != 2 {
		t.Fatalf("rollout %+v, want 1 -> 2", ro)
	}
	r.prov.mu.Lock()
	revised := slices.Clone(r.prov.revised)
	r.prov.mu.Unlock()
	if len(revised) != 1 {
		t.Fatalf("provisioner handed %d revisions, want 1", len(revised))
	}
	w := revised[0].Spec.Worker
	side := w["linked"].(map[string]any)["sidecar"].(map[string]any)
	if side["env"].(map[string]any)["VERSION"] != "2" || w["command"].([]any)[0] != "/bin/worker" {
		t.Errorf("revision 2's worker %v, want the sidecar's VERSION 2 (a string) and the worker as it was", w)
	}
	st, _ := r.c.Status("web")
	if st[0].Revision.Digest != revised[0].Digest {
		t.Errorf("revision in force %s, want the one handed over %s", st[0].Revision.Digest, revised[0].Digest)
	}
	r.prov.mu.Lock()
	r.prov.calls = nil
	r.prov.mu.Unlock()
	for range 3 {
		r.tick()
		r.clock.Advance(time.Second)
	}
	r.prov.mu.Lock()
	defer r.prov.mu.Unlock()
	var fresh int
	for _, c := range r.prov.calls {
		if controller.RevisionOfLaunch(c.LaunchID) == 2 {
			fresh++
			if c.SpecDigest != revised[0].Digest {
				t.Errorf("launch %s of revision 2 carries %s", c.LaunchID, c.SpecDigest)
			}
		}
	}
	if fresh == 0 {
		t.Errorf("no worker of revision 2 launched (calls %+v)", r.prov.calls)
	}
}

// TestRevisionHandedOverOncePerProvisioner: a revision other than the
// plan's is handed to the provisioner once, not before every launch of it
// (a signed, confirmed round trip each, all through a rollout and after
// it). It is handed over again before the next launch once the controller
// has reason to think the provisioner may have forgotten it: its instance
// subscription was bound again (a reconnect, a takeover), or a launch
// naming it was refused (a provisioner restarted on a fresh store), which
// is then sent once more and accepted.
func TestRevisionHandedOverOncePerProvisioner(t *testing.T) {
	rr := startRolloutRig(t)
	ctx := context.Background()
	plan, _ := rr.c.Status("web")
	if _, err := rr.c.StartRollout(ctx, "web", controller.RolloutRequest{Set: map[string]string{"env.VERSION": "2"},
		Config: controller.RolloutConfig{MinReady: 2 * time.Second}}, "ns.r.mgmt"); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if ro := rr.step(); !ro.Active() {
			break
		}
	}
	st, _ := rr.c.Status("web")
	if st[0].Rollout == nil || st[0].Rollout.Phase != controller.RolloutDone {
		t.Fatalf("rollout %+v, want done", st[0].Rollout)
	}
	rev2 := st[0].Revision.Digest
	// grow grows the pool by one worker, times times, and returns the
	// launches and revises sent meanwhile.
	n := 2
	grow := func(times int) []string {
		t.Helper()
		before := len(rr.prov.sentLog())
		for range times {
			n++
			if err := rr.c.Reconfigure(ctx, "web", map[string]any{"n": n}, "ops"); err != nil {
				t.Fatal(err)
			}
			rr.tick()
			rr.clock.Advance(500 * time.Millisecond)
			rr.beat()
		}
		return rr.prov.sentLog()[before:]
	}
	launchesOf := func(sent []string) int {
		k := 0
		for _, s := range sent {
			if id, ok := strings.CutPrefix(s, "launch "); ok && controller.RevisionOfLaunch(id) == 2 {
				k++
			}
		}
		return k
	}
	revises := func(sent []string) []string {
		var out []string
		for _, s := range sent {
			if d, ok := strings.CutPrefix(s, "revise "); ok {
				out = append(out, d)
			}
		}
		return out
	}
	all := rr.prov.sentLog()
	if got := revises(all); len(got) != 1 || got[0] != rev2 {
		t.Fatalf("rollout: revisions handed over %v over %d launches of revision 2, want revision 2 once (when the rollout started)", got, launchesOf(all))
	}
	const N = 5
	sent := grow(N)
	if launchesOf(sent) != N || len(revises(sent)) != 0 {
		t.Fatalf("%d launches of revision 2 sent %v; want %d launches and no revision handed over again", launchesOf(sent), sent, N)
	}

	// The instance subscription bound again: the provisioner may be
	// another, so the next launch hands the revision over first, and the
	// one after does not.
	rr.c.Bound(ctx)
	sent = grow(2)
	if len(sent) != 3 || sent[0] != "revise "+rev2 || !strings.HasPrefix(sent[1], "launch ") || !strings.HasPrefix(sent[2], "launch ") {
		t.Fatalf("after a bind: sent %v, want revision 2 handed over, then two launches", sent)
	}

	// A provisioner restarted on a fresh store refuses the launch; the
	// revision is handed over and the same launch sent once more.
	rr.prov.loseLedger(plan[0].Revision.Digest)
	instances, _ := rr.prov.launched()
	sent = grow(1)
	if len(sent) != 3 || !strings.HasPrefix(sent[0], "launch ") || sent[1] != "revise "+rev2 || sent[2] != sent[0] {
		t.Fatalf("after the provisioner lost its revisions: sent %v, want the launch refused, revision 2 handed over, and the launch again", sent)
	}
	if now, _ := rr.prov.launched(); now != instances+1 {
		t.Fatalf("%d instances launched after the retry, want 1", now-instances)
	}
	if sent = grow(1); len(sent) != 1 || launchesOf(sent) != 1 {
		t.Fatalf("next launch: sent %v, want the launch alone", sent)
	}
}
