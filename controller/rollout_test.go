package controller_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"nightshift"
	"nightshift/controller"
)

// rolloutSim is a pool run through Rollout.Step alone: launched workers
// are running at once and ready (probes passing) readyAfter later, unless
// their revision is bad; a drained busy worker finishes its item one step
// later. It checks the rollout's promises at every step.
type rolloutSim struct {
	t          *testing.T
	now        time.Time
	desired    int
	workers    []controller.RolloutWorker
	bad        map[int]bool // revisions whose probe fails
	readyAfter time.Duration
	next       int
	killedBusy []string
}

func newRolloutSim(t *testing.T, desired, busy int) *rolloutSim {
	s := &rolloutSim{t: t, now: t0, desired: desired, bad: map[int]bool{}, readyAfter: 2 * time.Second}
	for i := range desired {
		s.workers = append(s.workers, controller.RolloutWorker{ID: fmt.Sprintf("old-%d", i), Revision: 1,
			State: nightshift.StateRunning, Health: nightshift.HealthOK, Busy: i < busy, ReadySince: t0.Add(-time.Hour)})
	}
	return s
}

func (s *rolloutSim) snapshot() controller.RolloutSnapshot {
	return controller.RolloutSnapshot{Now: s.now, Desired: s.desired, Workers: slices.Clone(s.workers)}
}

// apply carries out a step and advances time by a second.
func (s *rolloutSim) apply(st controller.RolloutStep) {
	for _, id := range st.Terminate {
		i := slices.IndexFunc(s.workers, func(w controller.RolloutWorker) bool { return w.ID == id })
		if s.workers[i].Busy {
			s.killedBusy = append(s.killedBusy, id)
		}
		s.workers = slices.Delete(s.workers, i, i+1)
	}
	for _, id := range st.Drain {
		i := slices.IndexFunc(s.workers, func(w controller.RolloutWorker) bool { return w.ID == id })
		s.workers[i].Draining = true
	}
	target := st.Rollout.Target()
	for range st.Launch {
		s.next++
		s.workers = append(s.workers, controller.RolloutWorker{ID: fmt.Sprintf("r%d-%d", target, s.next), Revision: target,
			State: nightshift.StateRunning, Health: nightshift.HealthOK})
	}
	s.now = s.now.Add(time.Second)
	for i := range s.workers {
		w := &s.workers[i]
		switch {
		case w.Draining && w.Busy:
			w.Busy = false // finished its item, took no other
		case w.ReadySince.IsZero() && s.bad[w.Revision] && s.now.Sub(t0) > 0:
			w.Health, w.Error = nightshift.HealthProbeFailed, "queueworker: probe failed 3 in a row: HTTP 503"
		case w.ReadySince.IsZero() && !s.bad[w.Revision]:
			w.ReadySince = s.now.Add(s.readyAfter - time.Second)
		}
	}
}

// check asserts the rollout's bounds on the pool as it is now.
func (s *rolloutSim) check(cfg controller.RolloutConfig) {
	s.t.Helper()
	cfg = cfg.WithDefaults()
	live, avail := 0, 0
	for _, w := range s.workers {
		live++
		if w.Health == nightshift.HealthOK && !w.Draining && !w.ReadySince.IsZero() && !s.now.Before(w.ReadySince.Add(cfg.MinReady)) {
			avail++
		}
	}
	if live > s.desired+cfg.MaxSurge {
		s.t.Fatalf("at %s: %d workers, more than %d+%d", s.now.Sub(t0), live, s.desired, cfg.MaxSurge)
	}
	if avail < s.desired-cfg.MaxUnavailable {
		s.t.Fatalf("at %s: %d available, fewer than %d-%d: %+v", s.now.Sub(t0), avail, s.desired, cfg.MaxUnavailable, s.workers)
	}
}

func (s *rolloutSim) run(r controller.Rollout, steps int) (controller.Rollout, []string) {
	var reasons []string
	for range steps {
		st := r.Step(s.snapshot())
		reasons = append(reasons, st.Reason)
		r = st.Rollout
		if !r.Active() {
			return r, reasons
		}
		s.apply(st)
		s.check(r.Config)
	}
	s.t.Fatalf("rollout still %s after %d steps: %v", r.Phase, steps, reasons[len(reasons)-1])
	return r, reasons
}

func TestRolloutReplacesEveryWorker(t *testing.T) {
	cases := []struct {
		name    string
		desired int
		busy    int
		cfg     controller.RolloutConfig
	}{
		{"defaults: one at a time, none unavailable", 3, 2, controller.RolloutConfig{MinReady: time.Second}},
		{"surge 2", 4, 4, controller.RolloutConfig{MaxSurge: 2, MinReady: 2 * time.Second}},
		{"max_unavailable 1 without surge", 3, 1, controller.RolloutConfig{MaxUnavailable: 1, MinReady: time.Second}},
		{"one worker", 1, 1, controller.RolloutConfig{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newRolloutSim(t, tc.desired, tc.busy)
			r := controller.Rollout{Job: "work", From: 1, To: 2, Phase: controller.RolloutRolling, Config: tc.cfg, Started: t0}
			end, reasons := s.run(r, 200)
			if end.Phase != controller.RolloutDone {
				t.Fatalf("phase %s, want done; reasons %v", end.Phase, reasons)
			}
			if len(s.killedBusy) > 0 {
				t.Errorf("busy workers terminated: %v", s.killedBusy)
			}
			for _, w := range s.workers {
				if w.Revision != 2 {
					t.Errorf("worker %s still at revision %d", w.ID, w.Revision)
				}
			}
			if len(s.workers) != tc.desired {
				t.Errorf("%d workers at the end, want %d", len(s.workers), tc.desired)
			}
			if last := reasons[len(reasons)-1]; !strings.HasPrefix(last, "rollout to revision 2 done") {
				t.Errorf("last reason %q", last)
			}
		})
	}
}

func TestRolloutRollsBackAFailingRevision(t *testing.T) {
	s := newRolloutSim(t, 3, 3)
	s.bad[2] = true
	r := controller.Rollout{Job: "work", From: 1, To: 2, Phase: controller.RolloutRolling,
		Config: controller.RolloutConfig{MinReady: time.Second, FailureThreshold: 1}, Started: t0}
	end, reasons := s.run(r, 200)
	if end.Phase != controller.RolloutRolledBack || end.Ended.IsZero() {
		t.Fatalf("phase %s, want rolled_back; reasons %v", end.Phase, reasons)
	}
	want := "rolling back to revision 1: 1 new worker(s) of revision 2 failed (threshold 1; last: r2-1 probe_failed: queueworker: probe failed 3 in a row: HTTP 503)"
	if end.Reason != want {
		t.Errorf("reason %q, want %q", end.Reason, want)
	}
	if len(s.killedBusy) > 0 {
		t.Errorf("busy workers terminated: %v", s.killedBusy)
	}
	for _, w := range s.workers {
		if w.Revision != 1 {
			t.Errorf("worker %s at revision %d after the rollback", w.ID, w.Revision)
		}
	}
}

func TestRolloutStep(t *testing.T) {
	now := t0.Add(time.Hour)
	ok := func(id string, rev int, busy bool) controller.RolloutWorker {
		return controller.RolloutWorker{ID: id, Revision: rev, State: nightshift.StateRunning, Health: nightshift.HealthOK, Busy: busy, ReadySince: t0}
	}
	fresh := ok("n-1", 2, false)
	fresh.ReadySince = now.Add(-time.Second)
	draining := ok("o-1", 1, true)
	draining.Draining = true
	drainedIdle := ok("o-1", 1, false)
	drainedIdle.Draining = true
	failing := ok("n-1", 2, false)
	failing.Health, failing.ReadySince, failing.Error = nightshift.HealthProbeFailed, time.Time{}, "w: probe failed 3 in a row: HTTP 404"
	cases := []struct {
		name          string
		workers       []controller.RolloutWorker
		pending       int
		threshold     int
		wantLaunch    int
		wantDrain     []string
		wantTerminate []string
		wantPhase     string
	}{
		{"first batch: surge one", []controller.RolloutWorker{ok("o-1", 1, false), ok("o-2", 1, true)}, 0, 0, 1, nil, nil, controller.RolloutRolling},
		{"a pending launch is not launched again", []controller.RolloutWorker{ok("o-1", 1, false), ok("o-2", 1, true)}, 1, 0, 0, nil, nil, controller.RolloutRolling},
		{"a new worker not ready for min_ready drains nothing", []controller.RolloutWorker{ok("o-1", 1, false), ok("o-2", 1, true), fresh}, 0, 0, 0, nil, nil, controller.RolloutRolling},
		{"a ready new worker frees one old, idle first", []controller.RolloutWorker{ok("o-2", 1, true), ok("o-1", 1, false), ok("n-1", 2, false)}, 0, 0, 0, []string{"o-1"}, nil, controller.RolloutRolling},
		{"a draining busy worker waits, and counts toward the surge", []controller.RolloutWorker{draining, ok("o-2", 1, false), ok("n-1", 2, false)}, 0, 0, 0, nil, nil, controller.RolloutRolling},
		{"a drained idle worker is terminated", []controller.RolloutWorker{drainedIdle, ok("o-2", 1, false), ok("n-1", 2, false)}, 0, 0, 1, nil, []string{"o-1"}, controller.RolloutRolling},
		{"a failing new worker below the threshold is replaced", []controller.RolloutWorker{ok("o-1", 1, false), ok("o-2", 1, false), failing}, 0, 2, 1, nil, []string{"n-1"}, controller.RolloutRolling},
		{"at the threshold the rollout turns back", []controller.RolloutWorker{ok("o-1", 1, false), ok("o-2", 1, false), failing}, 0, 1, 0, nil, []string{"n-1"}, controller.RolloutRollingBack},
		{"all new and ready: done", []controller.RolloutWorker{ok("n-1", 2, false), ok("n-2", 2, true)}, 0, 0, 0, nil, nil, controller.RolloutDone},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := controller.Rollout{Job: "work", From: 1, To: 2, Phase: controller.RolloutRolling,
				Config: controller.RolloutConfig{MinReady: 10 * time.Second, FailureThreshold: tc.threshold}}
			st := r.Step(controller.RolloutSnapshot{Now: now, Desired: 2, Workers: tc.workers, PendingLaunches: tc.pending})
			if st.Launch != tc.wantLaunch || !slices.Equal(st.Drain, tc.wantDrain) || !slices.Equal(st.Terminate, tc.wantTerminate) || st.Rollout.Phase != tc.wantPhase {
				t.Errorf("step launch %d drain %v terminate %v phase %s (%s); want %d %v %v %s",
					st.Launch, st.Drain, st.Terminate, st.Rollout.Phase, st.Reason, tc.wantLaunch, tc.wantDrain, tc.wantTerminate, tc.wantPhase)
			}
		})
	}
}

func TestRolloutUndo(t *testing.T) {
	r := controller.Rollout{Job: "work", From: 1, To: 2, Phase: controller.RolloutRolling}
	u, err := r.Undo("ns.r.mgmt", t0)
	if err != nil || u.Phase != controller.RolloutRollingBack || u.Target() != 1 || !strings.Contains(u.Reason, "undone by ns.r.mgmt") {
		t.Fatalf("undo = %+v, %v", u, err)
	}
	done := controller.Rollout{Job: "work", From: 1, To: 2, Phase: controller.RolloutDone}
	if _, err := done.Undo("x", t0); err == nil {
		t.Error("a finished rollout was undone")
	}
}
