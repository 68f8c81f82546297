package controller_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"nightshift"
	"nightshift/controller"
	"nightshift/decision"
	"nightshift/provisioner"
	"nightshift/sitter"
)

// The tests in this file exercise the controller's rules through Pool
// alone: no store, no provisioner, no goroutines, no clock but the times
// they pass in.

// poolJob is a job with tight health timings: missing after 3s of silence,
// 20s to boot.
func poolJob(t *testing.T) controller.Job {
	t.Helper()
	return npJob(t, 2)
}

// started is when the pool's controller started; most events come after.
var started = t0

func newPool(t *testing.T) *controller.Pool {
	return controller.NewPool(poolJob(t), started)
}

func inst(id string, s nightshift.InstanceState, updated time.Time) provisioner.Instance {
	return provisioner.Instance{ID: id, Job: "web", LaunchID: "L-" + id, State: s, Created: updated, Updated: updated}
}

func at(d time.Duration) time.Time { return started.Add(d) }

func beat(id string, tasks ...sitter.TaskStatus) sitter.Heartbeat {
	if len(tasks) == 0 {
		tasks = []sitter.TaskStatus{{Name: "work", State: sitter.StateRunning, Work: sitter.WorkIdle}}
	}
	return sitter.Heartbeat{InstanceID: id, Job: "web", Host: "h-" + id, Tasks: tasks}
}

func snapInstance(t *testing.T, p *controller.Pool, now time.Time, id string) (decision.Instance, bool) {
	t.Helper()
	for _, in := range p.Snapshot(now).Instances {
		if in.ID == id {
			return in, true
		}
	}
	return decision.Instance{}, false
}

func workerStatus(t *testing.T, p *controller.Pool, now time.Time, id string) (controller.WorkerStatus, bool) {
	t.Helper()
	for _, w := range p.Status(now, nil, false).Workers {
		if w.ID == id {
			return w, true
		}
	}
	return controller.WorkerStatus{}, false
}

func TestPoolApplyInstance(t *testing.T) {
	cases := []struct {
		name        string
		events      []provisioner.Instance
		wantChanged []bool
		wantState   nightshift.InstanceState
		wantHost    string
	}{
		{"first sight changes the view",
			[]provisioner.Instance{inst("a", nightshift.StatePending, at(0))},
			[]bool{true}, nightshift.StatePending, ""},
		{"forward moves change it",
			[]provisioner.Instance{inst("a", nightshift.StatePending, at(0)), inst("a", nightshift.StateRunning, at(time.Second))},
			[]bool{true, true}, nightshift.StateRunning, ""},
		{"a duplicate does not",
			[]provisioner.Instance{inst("a", nightshift.StateRunning, at(0)), inst("a", nightshift.StateRunning, at(time.Second))},
			[]bool{true, false}, nightshift.StateRunning, ""},
		{"a stale (backward) state is ignored",
			[]provisioner.Instance{inst("a", nightshift.StateRunning, at(0)), inst("a", nightshift.StatePending, at(time.Second))},
			[]bool{true, false}, nightshift.StateRunning, ""},
		{"a stale record still brings the host",
			[]provisioner.Instance{inst("a", nightshift.StateRunning, at(0)), func() provisioner.Instance {
				i := inst("a", nightshift.StateStarted, at(time.Second))
				i.Host = "10.0.0.9"
				return i
			}()},
			[]bool{true, false}, nightshift.StateRunning, "10.0.0.9"},
		{"nothing moves on from terminated",
			[]provisioner.Instance{inst("a", nightshift.StateTerminated, at(0)), inst("a", nightshift.StateRunning, at(time.Second))},
			[]bool{true, false}, nightshift.StateTerminated, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t)
			var changed []bool
			for _, ev := range tc.events {
				changed = append(changed, p.ApplyInstance(ev, at(time.Minute)))
			}
			if !slices.Equal(changed, tc.wantChanged) {
				t.Errorf("changed = %v, want %v", changed, tc.wantChanged)
			}
			got, ok := snapInstance(t, p, at(time.Minute), "a")
			if !ok || got.State != tc.wantState {
				t.Fatalf("snapshot has %+v (found %v), want state %s", got, ok, tc.wantState)
			}
			if tc.wantHost != "" {
				if ws, ok := workerStatus(t, p, at(time.Minute), "a"); !ok || ws.Host != tc.wantHost {
					t.Errorf("status %+v, want host %s", ws, tc.wantHost)
				}
			}
		})
	}
}

func TestPoolLaunchedAt(t *testing.T) {
	now := at(time.Hour)
	cases := []struct {
		name             string
		created, updated time.Time
		want             time.Time
	}{
		{"the record's creation", at(time.Second), at(time.Minute), at(time.Second)},
		{"else its update", time.Time{}, at(time.Minute), at(time.Minute)},
		{"else when it was seen", time.Time{}, time.Time{}, now},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t)
			p.ApplyInstance(provisioner.Instance{ID: "a", Job: "web", State: nightshift.StateRunning, Created: tc.created, Updated: tc.updated}, now)
			if got, _ := snapInstance(t, p, now, "a"); !got.LaunchedAt.Equal(tc.want) {
				t.Fatalf("launched at %s, want %s", got.LaunchedAt, tc.want)
			}
		})
	}
}

// launchDecision is what an engine says when it wants one more worker.
func launchDecision(reason string) decision.Decision {
	return decision.Decision{Engine: "npreserving", Reason: reason, Target: 2,
		Actions: []decision.Action{
			decision.Terminate{IDs: []string{"z"}, Reason: "zombie"},
			decision.Launch{Count: 1, Spec: decision.LaunchSpec{Deployable: "worker"}, Reason: "need 2, have 1"},
			decision.Drain{IDs: []string{"y"}, Reason: "scale in"},
		}}
}

func failed(id string, since time.Time, reason string) provisioner.Instance {
	i := inst(id, nightshift.StateFailed, since)
	i.Reason = reason
	return i
}

// TestPoolLaunchBackOff covers which failures count as failed launches (the
// 5-minute window for instances first seen failed, failures before running
// only, a running instance resetting the count) and how the hold then
// treats a decision.
func TestPoolLaunchBackOff(t *testing.T) {
	type event struct {
		inst provisioner.Instance
		now  time.Time
		beat bool // a healthy heartbeat of inst.ID at now, instead of inst
	}
	cases := []struct {
		name   string
		events []event
		decide time.Time
		// wantHeld: the launch is dropped; wantReason: the reason then
		// starts with it.
		wantHeld   bool
		wantReason string
	}{
		{"no failures: nothing held", nil, at(time.Minute), false, ""},
		{"a launch that failed before running holds for 1s",
			[]event{{inst("a", nightshift.StatePending, at(0)), at(0), false}, {failed("a", at(10*time.Second), "InvalidAMIID.NotFound"), at(10 * time.Second), false}},
			at(10*time.Second + 500*time.Millisecond), true,
			"launch back-off after 1 failed launch(es) (last: InvalidAMIID.NotFound): next launch in 500ms; engine: need more"},
		{"and no longer once the back-off ran out",
			[]event{{inst("a", nightshift.StatePending, at(0)), at(0), false}, {failed("a", at(10*time.Second), "bad image"), at(10 * time.Second), false}},
			at(11 * time.Second), false, ""},
		{"two failures in a row hold for 2s",
			[]event{{failed("a", at(0), "x"), at(0), false}, {failed("b", at(10*time.Second), "y"), at(10 * time.Second), false}},
			at(11*time.Second + 500*time.Millisecond), true,
			"launch back-off after 2 failed launch(es) (last: y): next launch in 500ms"},
		{"first seen failed within 5 minutes counts",
			[]event{{failed("old", at(0), "x"), at(5*time.Minute - time.Second), false}, {failed("b", at(5*time.Minute), "y"), at(5 * time.Minute), false}},
			at(5*time.Minute + time.Second), true, "launch back-off after 2 failed launch(es)"},
		{"first seen failed 5 minutes ago or more does not",
			[]event{{failed("old", at(0), "x"), at(5 * time.Minute), false}, {failed("b", at(5*time.Minute), "y"), at(5 * time.Minute), false}},
			at(5*time.Minute + 500*time.Millisecond), true, "launch back-off after 1 failed launch(es)"},
		{"a worker that ran and then failed is no failed launch",
			[]event{{inst("a", nightshift.StateRunning, at(0)), at(0), false}, {failed("a", at(10*time.Second), "crashed"), at(10 * time.Second), false}},
			at(10 * time.Second), false, ""},
		{"a worker heard healthy for missing_timeout resets the count",
			[]event{{failed("a", at(0), "x"), at(0), false}, {inst("b", nightshift.StateRunning, at(0)), at(0), false},
				{inst("b", "", time.Time{}), at(time.Second), true}, {inst("b", "", time.Time{}), at(4 * time.Second), true}},
			at(4*time.Second + 500*time.Millisecond), false, ""},
		{"reaching running alone does not",
			[]event{{inst("b", nightshift.StatePending, at(0)), at(0), false}, {failed("a", at(0), "x"), at(0), false},
				{inst("b", nightshift.StateRunning, at(200*time.Millisecond)), at(200 * time.Millisecond), false},
				{inst("b", "", time.Time{}), at(300 * time.Millisecond), true}},
			at(500 * time.Millisecond), true, "launch back-off after 1 failed launch(es) (last: x)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t)
			for _, ev := range tc.events {
				if ev.beat {
					p.Heartbeat(beat(ev.inst.ID), ev.now)
					continue
				}
				p.ApplyInstance(ev.inst, ev.now)
			}
			in := launchDecision("need more")
			d := p.Hold(in, tc.decide)
			var kinds []string
			for _, a := range d.Actions {
				switch a.(type) {
				case decision.Launch:
					kinds = append(kinds, "launch")
				case decision.Terminate:
					kinds = append(kinds, "terminate")
				case decision.Drain:
					kinds = append(kinds, "drain")
				}
			}
			want := []string{"terminate", "launch", "drain"}
			if tc.wantHeld {
				want = []string{"terminate", "drain"}
			}
			if !slices.Equal(kinds, want) {
				t.Errorf("actions %v, want %v", kinds, want)
			}
			if !tc.wantHeld && d.Reason != in.Reason {
				t.Errorf("reason %q, want the engine's %q", d.Reason, in.Reason)
			}
			if tc.wantHeld && !strings.HasPrefix(d.Reason, tc.wantReason) {
				t.Errorf("reason %q, want it to start with %q", d.Reason, tc.wantReason)
			}
			if len(in.Actions) != 3 {
				t.Errorf("Hold changed the engine's decision: %+v", in.Actions)
			}
		})
	}
}

func TestPoolHoldLeavesDecisionsWithoutLaunches(t *testing.T) {
	p := newPool(t)
	p.ApplyInstance(failed("a", at(0), "x"), at(0))
	d := decision.Decision{Reason: "hold: have 2", Actions: []decision.Action{decision.Terminate{IDs: []string{"z"}}}}
	if got := p.Hold(d, at(0)); got.Reason != d.Reason || len(got.Actions) != 1 {
		t.Fatalf("Hold(%+v) = %+v: nothing to hold, want it unchanged", d, got)
	}
}

func TestLaunchBackoff(t *testing.T) {
	cases := []struct {
		n    int
		want time.Duration
	}{
		{-1, 0}, {0, 0}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second},
		{9, 256 * time.Second}, {10, 5 * time.Minute}, {11, 5 * time.Minute}, {1000, 5 * time.Minute},
	}
	for _, tc := range cases {
		if got := controller.LaunchBackoff(tc.n); got != tc.want {
			t.Errorf("LaunchBackoff(%d) = %s, want %s", tc.n, got, tc.want)
		}
	}
}

func TestPoolHeartbeat(t *testing.T) {
	busy := sitter.TaskStatus{Name: "work", State: sitter.StateRunning, Work: sitter.WorkBusy, Restarts: 1}
	idle := sitter.TaskStatus{Name: "work", State: sitter.StateRunning, Work: sitter.WorkIdle, Restarts: 1}
	crashed := sitter.TaskStatus{Name: "side", State: sitter.StateFailed, Restarts: 4}
	cases := []struct {
		name        string
		beats       []sitter.Heartbeat
		wantChanged []bool
		wantBusy    bool
		wantHealth  nightshift.Health
		wantRestart int
	}{
		{"the first heartbeat is news", []sitter.Heartbeat{beat("a", idle)}, []bool{true}, false, nightshift.HealthOK, 1},
		{"a steady one is not", []sitter.Heartbeat{beat("a", idle), beat("a", idle)}, []bool{true, false}, false, nightshift.HealthOK, 1},
		{"busy flipping is", []sitter.Heartbeat{beat("a", idle), beat("a", busy), beat("a", idle)}, []bool{true, true, true}, false, nightshift.HealthOK, 1},
		{"a task failing is", []sitter.Heartbeat{beat("a", busy), beat("a", busy, crashed)}, []bool{true, true}, true, nightshift.HealthProcessError, 5},
		{"a heartbeat of an unknown instance is dropped", []sitter.Heartbeat{beat("ghost", busy)}, []bool{false}, false, nightshift.HealthBooting, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t)
			p.ApplyInstance(inst("a", nightshift.StateRunning, at(0)), at(0))
			var changed []bool
			for i, hb := range tc.beats {
				changed = append(changed, p.Heartbeat(hb, at(time.Duration(i+1)*time.Second)))
			}
			if !slices.Equal(changed, tc.wantChanged) {
				t.Errorf("changed = %v, want %v", changed, tc.wantChanged)
			}
			now := at(time.Duration(len(tc.beats)) * time.Second)
			got, _ := snapInstance(t, p, now, "a")
			if got.Busy != tc.wantBusy || got.Health != tc.wantHealth {
				t.Errorf("instance %+v, want busy %v health %s", got, tc.wantBusy, tc.wantHealth)
			}
			ws, _ := workerStatus(t, p, now, "a")
			if ws.Restarts != tc.wantRestart {
				t.Errorf("restarts %d, want %d", ws.Restarts, tc.wantRestart)
			}
			if len(p.Status(now, nil, false).Workers) != 1 {
				t.Errorf("heartbeats invented a worker")
			}
		})
	}
}

// TestPoolHeartbeatTimedByController: a heartbeat's age runs on the
// controller's clock, whatever time the host's clock put in it.
func TestPoolHeartbeatTimedByController(t *testing.T) {
	p := newPool(t)
	p.ApplyInstance(inst("a", nightshift.StateRunning, at(0)), at(0))
	hb := beat("a")
	hb.Time = at(-time.Hour) // a host an hour behind
	p.Heartbeat(hb, at(10*time.Second))
	ws, _ := workerStatus(t, p, at(12*time.Second), "a")
	if ws.HeartbeatAgeS == nil || *ws.HeartbeatAgeS != 2 || ws.Host != "h-a" {
		t.Fatalf("status %+v, want heartbeat age 2s and host h-a", ws)
	}
	if got, _ := snapInstance(t, p, at(12*time.Second), "a"); got.Health != nightshift.HealthOK {
		t.Fatalf("health %s, want ok", got.Health)
	}
}

// TestPoolHealthClamp: the boot and missing timers of a running instance
// start no earlier than the controller, so a restart does not find every
// worker missing; the zombie grace of a gone one is not clamped.
func TestPoolHealthClamp(t *testing.T) {
	cases := []struct {
		name  string
		state nightshift.InstanceState
		since time.Time
		beat  time.Time // zero: never heard
		now   time.Time
		want  nightshift.Health
	}{
		{"running since long before the start, unheard, before recovery, within boot_timeout of the start", nightshift.StateRunning, at(-time.Hour), time.Time{}, at(10 * time.Second), nightshift.HealthBooting},
		{"and past it: never heard", nightshift.StateRunning, at(-time.Hour), time.Time{}, at(21 * time.Second), nightshift.HealthNeverHeard},
		{"running since after the start: its own timer", nightshift.StateRunning, at(5 * time.Second), time.Time{}, at(26 * time.Second), nightshift.HealthNeverHeard},
		{"heard, then silent past missing_timeout", nightshift.StateRunning, at(-time.Hour), at(time.Second), at(5 * time.Second), nightshift.HealthMissing},
		{"terminated before the start, heard long after: zombie", nightshift.StateTerminated, at(-time.Hour), at(time.Second), at(2 * time.Second), nightshift.HealthZombie},
		{"starting: unknown", nightshift.StateStarted, at(-time.Hour), time.Time{}, at(time.Hour), nightshift.HealthUnknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t)
			p.ApplyInstance(inst("a", tc.state, tc.since), at(0))
			if !tc.beat.IsZero() {
				p.Heartbeat(beat("a"), tc.beat)
			}
			got, _ := snapInstance(t, p, tc.now, "a")
			if got.Health != tc.want {
				t.Fatalf("health %s, want %s", got.Health, tc.want)
			}
		})
	}
}

func TestPoolPrune(t *testing.T) {
	p := newPool(t)
	p.ApplyInstance(inst("gone-long", nightshift.StateTerminated, at(0)), at(0))
	p.ApplyInstance(inst("gone-just", nightshift.StateFailed, at(time.Minute)), at(time.Minute))
	p.ApplyInstance(inst("live", nightshift.StateRunning, at(0)), at(0))
	now := at(10*time.Minute + time.Second)
	before := p.Snapshot(now)
	p.Prune(now)
	var ids []string
	for _, in := range p.Snapshot(now).Instances {
		ids = append(ids, in.ID)
	}
	if len(before.Instances) != 3 || !slices.Equal(ids, []string{"gone-just", "live"}) {
		t.Fatalf("after prune %v (before %d), want gone-just and live: gone instances stay 10 minutes", ids, len(before.Instances))
	}
}

func TestPoolSnapshot(t *testing.T) {
	p := newPool(t)
	for _, id := range []string{"c", "a", "b"} {
		p.ApplyInstance(inst(id, nightshift.StateRunning, at(0)), at(0))
	}
	depth := 7
	p.Observe(&depth, decision.SourcePassiveDeclare, "")
	p.Restore(at(-time.Minute), nil)
	s := p.Snapshot(at(time.Second))
	var ids []string
	for _, in := range s.Instances {
		ids = append(ids, in.ID)
	}
	if !slices.Equal(ids, []string{"a", "b", "c"}) {
		t.Errorf("instances %v, want sorted by id", ids)
	}
	if s.Pool != "web" || *s.Depth != 7 || s.Source != decision.SourcePassiveDeclare || !s.LastScaleAt.Equal(at(-time.Minute)) || !s.Now.Equal(at(time.Second)) {
		t.Errorf("snapshot %+v", s)
	}
}

// TestPoolPlan: what a decision asks to store, and the same-reason skip.
func TestPoolPlan(t *testing.T) {
	hold := decision.Decision{Engine: "npreserving", Reason: "n=2, have 2: hold", Target: 2}
	cases := []struct {
		name     string
		last     []controller.Decision // what the store remembers
		d        decision.Decision
		wantSkip bool
	}{
		{"the first hold is news", nil, hold, false},
		{"the same hold again is not", []controller.Decision{{Reason: hold.Reason, Target: 2}}, hold, true},
		{"a hold for another reason is", []controller.Decision{{Reason: "n=3, have 3: hold", Target: 2}}, hold, false},
		{"a hold with another target is", []controller.Decision{{Reason: hold.Reason, Target: 3}}, hold, false},
		{"a hold that now fails is", []controller.Decision{{Reason: hold.Reason, Target: 2}}, decision.Decision{Reason: hold.Reason, Target: 2, Error: "exec: timeout"}, false},
		{"a decision with actions always is", []controller.Decision{{Reason: "need 2, have 1", Target: 2}}, launchDecision("need 2, have 1"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t)
			p.Restore(time.Time{}, tc.last)
			plan, err := p.Plan(tc.d, at(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if plan.Skip != tc.wantSkip {
				t.Fatalf("skip = %v, want %v", plan.Skip, tc.wantSkip)
			}
			if plan.Skip {
				return
			}
			r := plan.Record
			if r.Job != "web" || r.Reason != tc.d.Reason || r.Target != tc.d.Target || r.Error != tc.d.Error || !r.Time.Equal(at(time.Second)) {
				t.Errorf("record %+v does not carry the decision %+v", r, tc.d)
			}
		})
	}
}

func TestPoolPlanRendersLaunchSpecs(t *testing.T) {
	p := newPool(t)
	d := launchDecision("need 2, have 0")
	d.Actions = append(d.Actions, decision.Launch{Count: 2, Spec: decision.LaunchSpec{Deployable: "big", Vars: map[string]string{"k": "v"}}})
	plan, err := p.Plan(d, at(0))
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Launches) != 2 || plan.Launches[0].Count != 1 || plan.Launches[1].Count != 2 {
		t.Fatalf("launches %+v, want counts 1 and 2 in order", plan.Launches)
	}
	// A launch stores the engine's labels only: the worker spec is the
	// provisioner's, from the plan, named by digest when the launch is sent.
	var spec map[string]any
	if err := json.Unmarshal(plan.Launches[1].Spec, &spec); err != nil {
		t.Fatal(err)
	}
	vars, _ := spec["vars"].(map[string]any)
	if spec["deployable"] != "big" || vars["k"] != "v" || spec["worker"] != nil || spec["driver"] != nil {
		t.Fatalf("spec %s: want the engine's deployable and vars, and nothing of the worker", plan.Launches[1].Spec)
	}
}

// TestPoolLaunchLifecycle: a recorded launch counts toward the pool until
// settled; once its instances are in the view it is settled, not resent.
func TestPoolLaunchLifecycle(t *testing.T) {
	p := newPool(t)
	plan, err := p.Plan(launchDecision("need 2, have 1"), at(0))
	if err != nil {
		t.Fatal(err)
	}
	p.Recorded(plan, 7, []string{"web.e.d7.0"})
	if got := p.Snapshot(at(0)).PendingLaunches; got != 1 {
		t.Fatalf("pending launches %d, want 1", got)
	}
	if st := p.Status(at(0), nil, false); st.Counts["pending_launch"] != 1 || st.LastDecision == nil || st.LastDecision.Reason != "need 2, have 1" || st.Desired != 2 {
		t.Fatalf("status %+v", st)
	}
	steps := p.LaunchSteps()
	if len(steps) != 1 || steps[0].Settle || steps[0].Launch.LaunchID != "web.e.d7.0" || steps[0].Launch.Seq != 7 || steps[0].Launch.State != controller.LaunchPending {
		t.Fatalf("steps %+v, want launch web.e.d7.0 to send", steps)
	}
	// Its instance shows up (an event raced the reply): settle, do not resend.
	i := inst("web-1", nightshift.StateRequested, at(time.Second))
	i.LaunchID = "web.e.d7.0"
	p.ApplyInstance(i, at(time.Second))
	if steps := p.LaunchSteps(); len(steps) != 1 || !steps[0].Settle {
		t.Fatalf("steps %+v, want the launch settled", steps)
	}
	p.Settled("web.e.d7.0")
	if steps := p.LaunchSteps(); steps != nil {
		t.Fatalf("steps %+v after settling, want none", steps)
	}
	if got := p.Snapshot(at(time.Second)).PendingLaunches; got != 0 {
		t.Fatalf("pending launches %d after settling, want 0", got)
	}
}

func TestPoolRecordedScale(t *testing.T) {
	for _, scaled := range []bool{false, true} {
		p := newPool(t)
		d := launchDecision("queue deep")
		d.Scaled = scaled
		plan, _ := p.Plan(d, at(time.Minute))
		p.Recorded(plan, 1, []string{"id"})
		want := time.Time{}
		if scaled {
			want = at(time.Minute)
		}
		if got := p.Snapshot(at(time.Minute)).LastScaleAt; !got.Equal(want) {
			t.Errorf("scaled=%v: last scale %s, want %s", scaled, got, want)
		}
	}
}

func TestSortRecovered(t *testing.T) {
	records := []provisioner.Instance{{ID: "i1", LaunchID: "arrived"}}
	pending := []controller.Launch{{LaunchID: "lost"}, {LaunchID: "arrived"}, {LaunchID: "lost2"}}
	done, still := controller.SortRecovered(records, pending)
	if len(done) != 1 || done[0].LaunchID != "arrived" || len(still) != 2 || still[0].LaunchID != "lost" || still[1].LaunchID != "lost2" {
		t.Fatalf("done %+v still %+v", done, still)
	}
}

func TestPoolRecover(t *testing.T) {
	p := newPool(t)
	records := []provisioner.Instance{
		inst("live", nightshift.StateRunning, at(-time.Hour)),
		inst("dead", nightshift.StateTerminated, at(-time.Hour)),
		{ID: "other", Job: "batch", State: nightshift.StateRunning},
	}
	drains := map[string]time.Time{"live": at(-time.Minute), "dead": at(-time.Minute), "unknown": at(-time.Minute)}
	gone := p.Recover(records, []controller.Launch{{LaunchID: "lost", Count: 2}}, drains, at(0))
	if !slices.Equal(gone, []string{"dead", "unknown"}) {
		t.Errorf("gone drains %v, want dead and unknown", gone)
	}
	s := p.Snapshot(at(0))
	if len(s.Instances) != 2 || s.PendingLaunches != 2 {
		t.Fatalf("snapshot %+v, want live and dead (not batch's) and 2 pending", s)
	}
	if live, _ := snapInstance(t, p, at(0), "live"); !live.DrainingSince.Equal(at(-time.Minute)) {
		t.Errorf("live %+v, want its stored drain kept", live)
	}
}

func TestPoolDrained(t *testing.T) {
	p := newPool(t)
	p.ApplyInstance(inst("a", nightshift.StateRunning, at(0)), at(0))
	p.Drained("a", at(time.Second))
	p.Drained("a", at(time.Minute)) // a repeat keeps the first start
	p.Drained("ghost", at(time.Second))
	if got, _ := snapInstance(t, p, at(time.Minute), "a"); !got.DrainingSince.Equal(at(time.Second)) {
		t.Fatalf("draining since %s, want %s", got.DrainingSince, at(time.Second))
	}
	st := p.Status(at(time.Minute), nil, false)
	if st.Counts["draining"] != 1 || len(st.Workers) != 1 {
		t.Fatalf("status %+v, want one draining worker", st)
	}
}

func TestPoolStatus(t *testing.T) {
	p := newPool(t)
	p.ApplyInstance(inst("b", nightshift.StateRunning, at(0)), at(0))
	p.ApplyInstance(inst("a", nightshift.StatePending, at(0)), at(0))
	p.ApplyInstance(inst("x", nightshift.StateTerminated, at(0)), at(0))
	st := p.Status(at(time.Second), map[string]any{"n": 2, "vars": map[string]string{"API_TOKEN": "hunter2"}}, true)
	if !st.Frozen || st.Name != "web" || st.Engine != "npreserving" {
		t.Errorf("status %+v", st)
	}
	if st.Counts["running"] != 1 || st.Counts["pending"] != 1 || st.Counts["terminated"] != 1 {
		t.Errorf("counts %v", st.Counts)
	}
	if len(st.Workers) != 2 || st.Workers[0].ID != "a" || st.Workers[1].ID != "b" || st.Workers[0].HeartbeatAgeS != nil {
		t.Errorf("workers %+v, want a and b (not the terminated one), sorted, a never heard", st.Workers)
	}
	if vars, ok := st.Policy["vars"].(map[string]string); !ok || vars["API_TOKEN"] == "" || vars["API_TOKEN"] == "hunter2" || st.Policy["n"] != 2 {
		t.Errorf("policy %v: want n kept and the token redacted", st.Policy)
	}
}

// TestPoolHearingGrace: a running worker silent through the controller's
// own bus outage is unknown, not missing, until missing_timeout plus the
// outage's length (at most boot_timeout) after the bus is back.
func TestPoolHearingGrace(t *testing.T) {
	cases := []struct {
		name            string
		deaf, hear, now time.Duration // deaf 0: no outage
		beatAfter       bool          // heard again after the outage, 1s after hear
		want            nightshift.Health
	}{
		{"no outage: missing after 3s of silence", 0, 0, 5 * time.Second, false, nightshift.HealthMissing},
		{"during the outage: unknown", 2 * time.Second, 0, 30 * time.Second, false, nightshift.HealthUnknown},
		{"a 4s outage: grace 3s+4s, within it", 2 * time.Second, 6 * time.Second, 12 * time.Second, false, nightshift.HealthUnknown},
		{"a 4s outage: past the grace", 2 * time.Second, 6 * time.Second, 14 * time.Second, false, nightshift.HealthMissing},
		{"a long outage: grace capped at boot_timeout 20s", 2 * time.Second, 100 * time.Second, 119 * time.Second, false, nightshift.HealthUnknown},
		{"and past the cap", 2 * time.Second, 100 * time.Second, 121 * time.Second, false, nightshift.HealthMissing},
		{"heard after the outage: its own timer again", 2 * time.Second, 6 * time.Second, 11 * time.Second, true, nightshift.HealthMissing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t)
			p.ApplyInstance(inst("a", nightshift.StateRunning, at(0)), at(0))
			p.Heartbeat(beat("a"), at(time.Second))
			if tc.deaf > 0 {
				p.Deaf(at(tc.deaf))
				if tc.hear > 0 {
					p.Hearing(at(tc.hear))
				}
			}
			if tc.beatAfter {
				p.Heartbeat(beat("a"), at(tc.hear+time.Second))
			}
			if got, _ := snapInstance(t, p, at(tc.now), "a"); got.Health != tc.want {
				t.Fatalf("health %s, want %s", got.Health, tc.want)
			}
		})
	}
}

// A draining worker's status says since when it drains and when its
// drain_timeout ends; a worker not draining, or an engine without a
// drain_timeout, shows no deadline.
func TestPoolStatusDrain(t *testing.T) {
	cases := []struct {
		name         string
		policy       map[string]any
		drain        bool
		wantDeadline *time.Time
	}{
		{name: "not draining", policy: map[string]any{"drain_timeout": "5m0s"}},
		{name: "draining with timeout", policy: map[string]any{"drain_timeout": "5m0s"}, drain: true, wantDeadline: ptr(at(2*time.Second + 5*time.Minute))},
		{name: "draining, engine has no timeout", policy: map[string]any{}, drain: true},
		{name: "draining, timeout unreadable", policy: map[string]any{"drain_timeout": 300}, drain: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t)
			p.ApplyInstance(inst("a", nightshift.StateRunning, at(0)), at(0))
			p.Heartbeat(beat("a", sitter.TaskStatus{Name: "work", State: sitter.StateRunning, Work: sitter.WorkBusy}), at(time.Second))
			if tc.drain {
				p.Drained("a", at(2*time.Second))
			}
			st := p.Status(at(3*time.Second), tc.policy, false)
			if len(st.Workers) != 1 {
				t.Fatalf("workers %+v", st.Workers)
			}
			w := st.Workers[0]
			if !w.Busy {
				t.Errorf("busy = false, want true after a busy heartbeat")
			}
			switch {
			case !tc.drain && (w.DrainingSince != nil || w.DrainDeadline != nil):
				t.Errorf("not draining, but since %v deadline %v", w.DrainingSince, w.DrainDeadline)
			case tc.drain && (w.DrainingSince == nil || !w.DrainingSince.Equal(at(2*time.Second))):
				t.Errorf("draining since %v, want %s", w.DrainingSince, at(2*time.Second))
			case (tc.wantDeadline == nil) != (w.DrainDeadline == nil):
				t.Errorf("deadline %v, want %v", w.DrainDeadline, tc.wantDeadline)
			case tc.wantDeadline != nil && !w.DrainDeadline.Equal(*tc.wantDeadline):
				t.Errorf("deadline %s, want %s", w.DrainDeadline, tc.wantDeadline)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// A draining worker is shown to the engine as busy until a heartbeat
// received a full heartbeat interval after the drain says idle: an idle
// heartbeat from before may predate an item the worker took.
func TestPoolDrainIdleNeedsHeartbeatAfterDrain(t *testing.T) {
	idle := sitter.TaskStatus{Name: "work", State: sitter.StateRunning, Work: sitter.WorkIdle}
	exited := sitter.TaskStatus{Name: "work", State: sitter.StateExited, Reason: "drained (exit status 0)"}
	cases := []struct {
		name     string
		beatAt   time.Duration // after the drain at 10s; negative: none after
		task     sitter.TaskStatus
		wantBusy bool
	}{
		{name: "only the idle heartbeat from before the drain", beatAt: -1, task: idle, wantBusy: true},
		{name: "idle heartbeat right after the drain", beatAt: 200 * time.Millisecond, task: idle, wantBusy: true},
		{name: "idle heartbeat an interval after the drain", beatAt: time.Second, task: idle, wantBusy: false},
		{name: "task exited, an interval after the drain", beatAt: 2 * time.Second, task: exited, wantBusy: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t)
			p.ApplyInstance(inst("a", nightshift.StateRunning, at(0)), at(0))
			p.Heartbeat(beat("a", idle), at(9*time.Second))
			if in, _ := snapInstance(t, p, at(9*time.Second), "a"); in.Busy {
				t.Fatal("idle worker not draining shown busy")
			}
			p.Drained("a", at(10*time.Second))
			now := at(10*time.Second + 100*time.Millisecond)
			if tc.beatAt >= 0 {
				now = at(10*time.Second + tc.beatAt)
				p.Heartbeat(beat("a", tc.task), now)
			}
			if in, _ := snapInstance(t, p, now, "a"); in.Busy != tc.wantBusy {
				t.Errorf("busy = %v, want %v", in.Busy, tc.wantBusy)
			}
		})
	}
}

// TestStatusShowsTheProvisionersDNSName: the name the provisioner gave a
// worker (its job's dns table) reaches mgmt status, from the first event
// or a later one.
func TestStatusShowsTheProvisionersDNSName(t *testing.T) {
	p := newPool(t)
	a := inst("a", nightshift.StatePending, at(0))
	a.DNSName = "web-0.r.example.internal"
	p.ApplyInstance(a, at(0))
	b := inst("b", nightshift.StatePending, at(0))
	p.ApplyInstance(b, at(0))
	b.State, b.DNSName, b.Updated = nightshift.StateRunning, "web-1.r.example.internal", at(time.Second)
	p.ApplyInstance(b, at(time.Second))
	got := map[string]string{}
	for _, w := range p.Status(at(time.Second), nil, false).Workers {
		got[w.ID] = w.DNSName
	}
	if got["a"] != "web-0.r.example.internal" || got["b"] != "web-1.r.example.internal" {
		t.Fatalf("dns names %v", got)
	}
}

// TestStatusShowsTheWorkersUID: the uid of its own the provisioner gave a
// local worker reaches mgmt status, from the first event or a later one.
func TestStatusShowsTheWorkersUID(t *testing.T) {
	p := newPool(t)
	a := inst("a", nightshift.StatePending, at(0))
	a.WorkerUID = 61184
	p.ApplyInstance(a, at(0))
	b := inst("b", nightshift.StatePending, at(0))
	p.ApplyInstance(b, at(0))
	b.State, b.WorkerUID, b.Updated = nightshift.StateRunning, 61185, at(time.Second)
	p.ApplyInstance(b, at(time.Second))
	c := inst("c", nightshift.StateRunning, at(0)) // a named user's: none
	p.ApplyInstance(c, at(0))
	got := map[string]uint32{}
	for _, w := range p.Status(at(time.Second), nil, false).Workers {
		got[w.ID] = w.UID
	}
	if want := map[string]uint32{"a": 61184, "b": 61185, "c": 0}; !maps.Equal(got, want) {
		t.Fatalf("worker uids %v, want %v", got, want)
	}
}

// TestPoolUnheardAfterRestart: a worker that was running before the
// controller started and is still unheard once the controller listens is
// judged by missing_timeout from then, not boot_timeout: one killed during
// the restart is replaced seconds after it, not boot_timeout after.
func TestPoolUnheardAfterRestart(t *testing.T) {
	cases := []struct {
		name  string
		since time.Time // running since
		beat  time.Time // zero: not heard by this controller
		now   time.Time
		want  nightshift.Health
	}{
		{"from before the start, within missing_timeout of listening", at(-time.Hour), time.Time{}, at(4 * time.Second), nightshift.HealthUnknown},
		{"and past it: missing", at(-time.Hour), time.Time{}, at(5 * time.Second), nightshift.HealthMissing},
		{"heard after the restart: its own timer", at(-time.Hour), at(3 * time.Second), at(5 * time.Second), nightshift.HealthOK},
		{"running since after the start: boot_timeout still", at(2 * time.Second), time.Time{}, at(10 * time.Second), nightshift.HealthBooting},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t)
			p.ApplyInstance(inst("a", nightshift.StateRunning, tc.since), at(0))
			p.Listening(at(time.Second)) // recovery done a second after the start
			if !tc.beat.IsZero() {
				p.Heartbeat(beat("a"), tc.beat)
			}
			got, _ := snapInstance(t, p, tc.now, "a")
			if got.Health != tc.want {
				t.Fatalf("health %s, want %s", got.Health, tc.want)
			}
		})
	}
}
