package alert

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)

type step struct {
	at   time.Duration // since t0
	in   Input
	want []string // "firing kind/subject" or "resolved kind/subject"
}

func blocked(job string) Pool {
	return Pool{Job: job, Desired: 3, Blocked: &Blocked{FailedLaunches: 3, LastCause: "exec: no such file"}}
}

func healthy(job string, n int) Pool {
	p := Pool{Job: job, Desired: n, Healthy: n}
	for i := range n {
		p.Workers = append(p.Workers, Worker{ID: fmt.Sprintf("%s-%d", job, i)})
	}
	return p
}

func withWorkers(p Pool, ws ...Worker) Pool { p.Workers = ws; return p }

func TestEvaluate(t *testing.T) {
	bad := func(id string) Worker { return Worker{ID: id, Unhealthy: true} }
	flap := func(at time.Duration, id string, want ...string) step {
		return step{at: at, in: Input{Pools: []Pool{withWorkers(Pool{Job: "w", Desired: 1}, bad(id))}}, want: want}
	}
	cases := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"blocked fires once and resolves once", Config{}, []step{
			{0, Input{Pools: []Pool{healthy("w", 3)}}, nil},
			{time.Second, Input{Pools: []Pool{blocked("w")}}, []string{"firing pool_blocked/w"}},
			{2 * time.Second, Input{Pools: []Pool{blocked("w")}}, nil},
			{time.Minute, Input{Pools: []Pool{blocked("w")}}, nil},
			{2 * time.Minute, Input{Pools: []Pool{healthy("w", 3)}}, []string{"resolved pool_blocked/w"}},
			{3 * time.Minute, Input{Pools: []Pool{healthy("w", 3)}}, nil},
		}},
		{"a rolled back rollout fires once, and its next rollout resolves it", Config{}, []step{
			{0, Input{Pools: []Pool{healthy("w", 3)}}, nil},
			{time.Second, Input{Pools: []Pool{rolledBack("w")}}, []string{"firing rollout_rolled_back/w"}},
			{time.Minute, Input{Pools: []Pool{rolledBack("w")}}, nil},
			{2 * time.Minute, Input{Pools: []Pool{healthy("w", 3)}}, []string{"resolved rollout_rolled_back/w"}},
		}},
		{"below policy only after the threshold", Config{PoolBelowPolicyFor: time.Minute}, []step{
			{0, Input{Pools: []Pool{{Job: "w", Desired: 3, Healthy: 1}}}, nil},
			{59 * time.Second, Input{Pools: []Pool{{Job: "w", Desired: 3, Healthy: 2}}}, nil},
			{60 * time.Second, Input{Pools: []Pool{{Job: "w", Desired: 3, Healthy: 2}}}, []string{"firing pool_below_policy_for/w"}},
			{61 * time.Second, Input{Pools: []Pool{{Job: "w", Desired: 3, Healthy: 3}}}, []string{"resolved pool_below_policy_for/w"}},
			// A new episode starts its own clock.
			{62 * time.Second, Input{Pools: []Pool{{Job: "w", Desired: 3, Healthy: 2}}}, nil},
			{121 * time.Second, Input{Pools: []Pool{{Job: "w", Desired: 3, Healthy: 2}}}, nil},
			{122 * time.Second, Input{Pools: []Pool{{Job: "w", Desired: 3, Healthy: 2}}}, []string{"firing pool_below_policy_for/w"}},
		}},
		{"below policy default is five minutes", Config{}, []step{
			{0, Input{Pools: []Pool{{Job: "w", Desired: 1}}}, nil},
			{4 * time.Minute, Input{Pools: []Pool{{Job: "w", Desired: 1}}}, nil},
			{5 * time.Minute, Input{Pools: []Pool{{Job: "w", Desired: 1}}}, []string{"firing pool_below_policy_for/w"}},
		}},
		{"a frozen pool is not below policy", Config{PoolBelowPolicyFor: time.Second}, []step{
			{0, Input{Pools: []Pool{{Job: "w", Desired: 3, Frozen: true}}}, nil},
			{time.Hour, Input{Pools: []Pool{{Job: "w", Desired: 3, Frozen: true}}}, nil},
		}},
		{"broker unreachable after its threshold, once for the run", Config{BrokerUnreachableFor: 30 * time.Second}, []step{
			{0, Input{Pools: []Pool{{Job: "a", DeafSince: t0}, {Job: "b", DeafSince: t0}}}, nil},
			{30 * time.Second, Input{Pools: []Pool{{Job: "a", DeafSince: t0}, {Job: "b", DeafSince: t0}}}, []string{"firing broker_unreachable_for/"}},
			{40 * time.Second, Input{Pools: []Pool{{Job: "a"}, {Job: "b"}}}, []string{"resolved broker_unreachable_for/"}},
		}},
		{"a short outage raises nothing", Config{}, []step{
			{0, Input{Pools: []Pool{{Job: "a", DeafSince: t0}}}, nil},
			{59 * time.Second, Input{Pools: []Pool{{Job: "a", DeafSince: t0}}}, nil},
			{60 * time.Second, Input{Pools: []Pool{{Job: "a"}}}, nil},
		}},
		{"replacements flap past the threshold", Config{FlappingReplacements: 2, FlappingWindow: time.Minute}, []step{
			flap(0, "i1"),
			flap(time.Second, "i2"),
			flap(2*time.Second, "i3"),
			flap(3*time.Second, "i4", "firing replacement_flapping/w"),
			flap(4*time.Second, "i5"),
			// The window moves past the replacements: resolved.
			{2 * time.Minute, Input{Pools: []Pool{withWorkers(Pool{Job: "w", Desired: 1, Healthy: 1}, Worker{ID: "i6"})}}, []string{"resolved replacement_flapping/w"}},
		}},
		{"healthy workers leaving are not replacements", Config{FlappingReplacements: 1}, []step{
			{0, Input{Pools: []Pool{healthy("w", 3)}}, nil},
			{time.Second, Input{Pools: []Pool{healthy("x", 3), {Job: "w"}}}, nil},
			{2 * time.Second, Input{Pools: []Pool{{Job: "w"}}}, nil},
		}},
		{"a daemon restarting in a loop", Config{RestartLoopRestarts: 2, RestartLoopWindow: time.Minute}, []step{
			{0, Input{Daemons: []Daemon{{Service: "controller", Up: true}}}, nil},
			{time.Second, Input{Daemons: []Daemon{{Service: "controller", Up: true, Restarts: 1}}}, nil},
			{2 * time.Second, Input{Daemons: []Daemon{{Service: "controller", Up: true, Restarts: 2}}}, nil},
			{3 * time.Second, Input{Daemons: []Daemon{{Service: "controller", Up: false, Restarts: 3, LastExit: "exit 1"}}}, []string{"firing daemon_restart_loop/controller"}},
			{30 * time.Second, Input{Daemons: []Daemon{{Service: "controller", Up: true, Restarts: 3}}}, nil},
			{2 * time.Minute, Input{Daemons: []Daemon{{Service: "controller", Up: true, Restarts: 3}}}, []string{"resolved daemon_restart_loop/controller"}},
		}},
		{"a daemon the keeper gave up on", Config{}, []step{
			{0, Input{Daemons: []Daemon{{Service: "provisioner", Restarts: 20, GaveUp: "20 restarts within 10m"}}}, []string{"firing daemon_restart_loop/provisioner"}},
			{time.Hour, Input{Daemons: []Daemon{{Service: "provisioner", Restarts: 20, GaveUp: "20 restarts within 10m"}}}, nil},
			{2 * time.Hour, Input{Daemons: []Daemon{{Service: "provisioner", Up: true, Restarts: 20}}}, []string{"resolved daemon_restart_loop/provisioner"}},
		}},
		{"the first look at a daemon's total is not a burst", Config{}, []step{
			{0, Input{Daemons: []Daemon{{Service: "broker", Up: true, Restarts: 50}}}, nil},
		}},
		{"two pools, two alerts", Config{}, []step{
			{0, Input{Pools: []Pool{blocked("a"), blocked("b")}}, []string{"firing pool_blocked/a", "firing pool_blocked/b"}},
			{time.Second, Input{Pools: []Pool{blocked("a"), healthy("b", 3)}}, []string{"resolved pool_blocked/b"}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEvaluator("r1", tc.cfg)
			for i, s := range tc.steps {
				got := e.Evaluate(t0.Add(s.at), s.in)
				var names []string
				for _, ev := range got {
					names = append(names, string(ev.Status)+" "+string(ev.Kind)+"/"+ev.Job)
					if ev.Run != "r1" || ev.Version != Version || ev.Key != Key("r1", ev.Kind, ev.Job) || ev.Summary == "" {
						t.Errorf("step %d: malformed event %+v", i, ev)
					}
				}
				if strings.Join(names, ",") != strings.Join(s.want, ",") {
					t.Fatalf("step %d (at %s): got %q, want %q", i, s.at, names, s.want)
				}
			}
		})
	}
}

// TestEpisode: a resolved event carries its episode's first_seen and the
// time it was seen cleared; the next episode has a first_seen of its own
// and the same dedupe key.
func TestEpisode(t *testing.T) {
	e := NewEvaluator("r1", Config{})
	fire := e.Evaluate(t0, Input{Pools: []Pool{blocked("w")}})
	e.Evaluate(t0.Add(time.Minute), Input{Pools: []Pool{blocked("w")}})
	if f := e.Firing(); len(f) != 1 || !f[0].LastSeen.Equal(t0.Add(time.Minute)) {
		t.Fatalf("firing = %+v, want one last seen a minute in", f)
	}
	res := e.Evaluate(t0.Add(2*time.Minute), Input{Pools: []Pool{healthy("w", 3)}})
	again := e.Evaluate(t0.Add(3*time.Minute), Input{Pools: []Pool{blocked("w")}})
	if len(fire) != 1 || len(res) != 1 || len(again) != 1 {
		t.Fatalf("got %d, %d, %d events, want one each", len(fire), len(res), len(again))
	}
	if res[0].Status != Resolved || !res[0].FirstSeen.Equal(t0) || !res[0].LastSeen.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("resolved = %+v", res[0])
	}
	if again[0].Key != fire[0].Key || !again[0].FirstSeen.Equal(t0.Add(3*time.Minute)) {
		t.Errorf("second episode = %+v", again[0])
	}
	if len(e.Firing()) != 1 {
		t.Errorf("firing after second episode: %+v", e.Firing())
	}
}

// TestRestore: alerts firing before a restart neither fire again nor are
// forgotten: a condition that cleared meanwhile resolves.
func TestRestore(t *testing.T) {
	old := Once("r1", PoolBlocked, "w", Critical, "blocked", nil, t0)
	other := Once("r2", PoolBlocked, "w", Critical, "another run", nil, t0)
	e := NewEvaluator("r1", Config{})
	e.Restore([]Event{old, other})
	if got := e.Evaluate(t0.Add(time.Minute), Input{Pools: []Pool{blocked("w")}}); len(got) != 0 {
		t.Fatalf("still blocked after restore: %+v, want nothing", got)
	}
	got := e.Evaluate(t0.Add(2*time.Minute), Input{Pools: []Pool{healthy("w", 3)}})
	if len(got) != 1 || got[0].Status != Resolved || !got[0].FirstSeen.Equal(t0) {
		t.Fatalf("after recovery: %+v, want one resolved with the old first_seen", got)
	}
}

// A pool blocked by workers that never heartbeat fires pool_blocked with a
// summary that says so and what to check.
func TestPoolBlockedNoHeartbeatSummary(t *testing.T) {
	e := NewEvaluator("r", Config{})
	p := Pool{Job: "w", Desired: 3, Blocked: &Blocked{Cause: "no_heartbeat", FailedLaunches: 3,
		LastCause: "worker w-1 reached running and sent no heartbeat within boot_timeout 20s",
		Check:     "check the sitter URL (instance.sitter_url), the AMI and the security group to the broker"}}
	evs := e.Evaluate(t0, Input{Pools: []Pool{p}})
	if len(evs) != 1 || evs[0].Kind != PoolBlocked || evs[0].Status != Firing {
		t.Fatalf("events %+v, want pool_blocked firing", evs)
	}
	for _, want := range []string{"never sent a heartbeat", "sitter URL", "security group", "w-1"} {
		if !strings.Contains(evs[0].Summary, want) {
			t.Errorf("summary %q lacks %q", evs[0].Summary, want)
		}
	}
	if evs[0].Details["cause"] != "no_heartbeat" {
		t.Errorf("details %v, want the cause", evs[0].Details)
	}
}

func rolledBack(job string) Pool {
	p := healthy(job, 3)
	p.RolledBack = &RolledBack{From: 1, To: 2, Reason: "rolling back to revision 1: 1 new worker(s) of revision 2 failed"}
	return p
}

func TestMassSilenceFiresAndResolves(t *testing.T) {
	e := NewEvaluator("r", Config{})
	p := healthy("w", 20)
	p.Silence = &Silence{Silent: 15, Running: 20, Since: t0, Until: t0.Add(time.Minute), Held: true}
	evs := e.Evaluate(t0, Input{Pools: []Pool{p}})
	if len(evs) != 1 || evs[0].Kind != MassSilence || evs[0].Status != Firing || evs[0].Severity != Critical {
		t.Fatalf("events %+v, want mass_silence firing, critical", evs)
	}
	for _, want := range []string{"15 of 20", "not replaced until", "broker"} {
		if !strings.Contains(evs[0].Summary, want) {
			t.Errorf("summary %q lacks %q", evs[0].Summary, want)
		}
	}
	p.Silence = nil
	evs = e.Evaluate(t0.Add(time.Second), Input{Pools: []Pool{p}})
	if len(evs) != 1 || evs[0].Kind != MassSilence || evs[0].Status != Resolved {
		t.Fatalf("events %+v, want mass_silence resolved", evs)
	}
}

// Every kind a controller's evaluator raises must be one the controller
// restores from the journal after a restart, or a firing alert is paged
// again (or never resolved) by the controller that takes over.
func TestControllerRestoresEveryKindItRaises(t *testing.T) {
	e := NewEvaluator("r", Config{})
	raised := map[Kind]bool{}
	// Two pools cover every condition: one blocked, rolled back and in a
	// mass silence; one whose workers were replaced while unhealthy.
	a := Pool{Job: "a", Desired: 3, Healthy: 0, DeafSince: t0,
		Blocked:    &Blocked{Cause: "launch_failures", FailedLaunches: 3, LastCause: "x"},
		RolledBack: &RolledBack{From: 1, To: 2, Reason: "x"},
		Silence:    &Silence{Silent: 20, Running: 20, Since: t0, Until: t0.Add(time.Minute), Held: true}}
	b := Pool{Job: "b", Desired: 10, Healthy: 0}
	for i := range 10 {
		b.Workers = append(b.Workers, Worker{ID: fmt.Sprintf("b-%d", i), Unhealthy: true})
	}
	for _, ev := range e.Evaluate(t0, Input{Pools: []Pool{a, b}}) {
		raised[ev.Kind] = true
	}
	b.Workers = nil // all replaced while unhealthy: flapping
	for _, ev := range e.Evaluate(t0.Add(time.Hour), Input{Pools: []Pool{a, b}}) {
		raised[ev.Kind] = true
	}
	for _, k := range []Kind{PoolBlocked, PoolBelowPolicy, ReplacementFlapping, BrokerUnreachable, MassSilence, RolloutRolledBack} {
		if !raised[k] {
			t.Errorf("the scenario never raised %s; extend it", k)
		}
	}
	for k := range raised {
		if !slices.Contains(ControllerKinds, k) {
			t.Errorf("the controller raises %s but does not restore it (ControllerKinds)", k)
		}
		if !slices.Contains(Kinds, k) {
			t.Errorf("%s is not in Kinds", k)
		}
	}
}
