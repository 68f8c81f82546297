package controller_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"nightshift"
	"nightshift/controller"
	"nightshift/decision"
	"nightshift/provisioner"
)

// silentStep is one moment of a silent-worker scenario, run through Pool
// alone: instances that reach running and heartbeats that arrive then, an
// unblock a person asks for, then one decision of an engine that always
// wants 3 more workers, and what must come out of it.
type silentStep struct {
	at time.Duration
	// running reach running now, launched by the last launch planned
	// (or by none, before the first).
	running []string
	// failed fail before running now, launched by the last launch.
	failed  []string
	beats   []string
	unblock bool
	// want is how many workers the decision launches.
	want int
	// blocked: the status shows a no_heartbeat block, with silent workers
	// in a row, probes sent and the next probe at next (when not zero).
	blocked bool
	silent  int
	probes  int
	next    time.Duration
	reason  string // the decision's reason contains it, when set
}

func TestPoolSilentWorkersBlock(t *testing.T) {
	cases := []struct {
		name  string
		after int // block_after_silent; 0: the default
		steps []silentStep
	}{
		{"3 silent in a row block; probes go one at a time, boot_timeout then doubling", 0, []silentStep{
			{at: 0, running: []string{"a", "b", "c"}, want: 3},
			{at: 20 * time.Second, want: 3}, // still within boot_timeout: nothing judged
			{at: 21 * time.Second, want: 0, blocked: true, silent: 3, next: 41 * time.Second,
				reason: "blocked: 3 workers in a row never sent a heartbeat"},
			{at: 40 * time.Second, want: 0, blocked: true, silent: 3},
			{at: 41 * time.Second, want: 1, blocked: true, silent: 3, probes: 1, next: 81 * time.Second, reason: "probe launch 1 of one worker"},
			{at: 42 * time.Second, running: []string{"p1"}, want: 0, blocked: true, probes: 1, reason: "while probe launch 1 boots"},
			{at: 63 * time.Second, want: 0, blocked: true, silent: 4, probes: 1}, // judged silent; the next probe waits
			{at: 80 * time.Second, want: 0, blocked: true, silent: 4},
			{at: 81 * time.Second, want: 1, blocked: true, silent: 4, probes: 2, next: 161 * time.Second},
			{at: 82 * time.Second, running: []string{"p2"}, want: 0, blocked: true},
			{at: 103 * time.Second, want: 0, blocked: true, silent: 5, probes: 2, next: 161 * time.Second, reason: "launches held, next probe launch at"},
			{at: 161 * time.Second, want: 1, blocked: true, silent: 5, probes: 3, next: 321 * time.Second},
		}},
		{"a probe still booting when its turn comes holds the next", 0, []silentStep{
			{at: 0, running: []string{"a", "b", "c"}, want: 3},
			{at: 21 * time.Second, want: 0, blocked: true, silent: 3},
			{at: 41 * time.Second, want: 1, blocked: true, probes: 1},
			{at: 500 * time.Second, want: 0, blocked: true, silent: 3, probes: 1, reason: "while probe launch 1 boots"}, // launch still pending
			{at: 501 * time.Second, running: []string{"p1"}, want: 0, blocked: true},
			{at: 522 * time.Second, want: 1, blocked: true, silent: 4, probes: 2}, // judged: its turn is long past
		}},
		{"a probe that fails before running frees the next probe's turn", 0, []silentStep{
			{at: 0, running: []string{"a", "b", "c"}, want: 3},
			{at: 21 * time.Second, want: 0, blocked: true, silent: 3},
			{at: 41 * time.Second, want: 1, blocked: true, probes: 1},
			{at: 42 * time.Second, failed: []string{"p1"}, want: 0, blocked: true}, // the launch back-off holds 1s too
			{at: 80 * time.Second, want: 0, blocked: true, silent: 3},
			{at: 81 * time.Second, want: 1, blocked: true, silent: 3, probes: 2},
		}},
		{"a heartbeat resets the count before the block", 0, []silentStep{
			{at: 0, running: []string{"a", "b"}, want: 3},
			{at: 21 * time.Second, running: []string{"c"}, want: 3},
			{at: 22 * time.Second, beats: []string{"c"}, running: []string{"d", "e"}, want: 3},
			{at: 43 * time.Second, want: 3}, // d and e silent: 2 in a row, not 4
			{at: 44 * time.Second, running: []string{"f"}, want: 3},
			{at: 65 * time.Second, want: 0, blocked: true, silent: 3},
		}},
		{"the probe's heartbeat unblocks, and the engine's launches go whole", 0, []silentStep{
			{at: 0, running: []string{"a", "b", "c"}, want: 3},
			{at: 21 * time.Second, want: 0, blocked: true},
			{at: 41 * time.Second, want: 1, blocked: true, probes: 1},
			{at: 45 * time.Second, running: []string{"p1"}, want: 0, blocked: true},
			{at: 50 * time.Second, beats: []string{"p1"}, want: 3},
		}},
		{"a late first heartbeat from a silent worker unblocks too", 0, []silentStep{
			{at: 0, running: []string{"a", "b", "c"}, want: 3},
			{at: 21 * time.Second, want: 0, blocked: true},
			{at: 30 * time.Second, beats: []string{"b"}, want: 3},
		}},
		{"a person's unblock (reconfigure, repair) lets launches go at once", 0, []silentStep{
			{at: 0, running: []string{"a", "b", "c"}, want: 3},
			{at: 21 * time.Second, want: 0, blocked: true},
			{at: 22 * time.Second, unblock: true, want: 3},
			// The silent workers were counted already: no block again from them.
			{at: 30 * time.Second, want: 3},
		}},
		{"block_after_silent = 1 blocks at the first", 1, []silentStep{
			{at: 0, running: []string{"a"}, want: 3},
			{at: 21 * time.Second, want: 0, blocked: true, silent: 1, next: 41 * time.Second},
		}},
		{"block_after_silent = 5 waits for the fifth", 5, []silentStep{
			{at: 0, running: []string{"a", "b", "c", "d"}, want: 3},
			{at: 21 * time.Second, running: []string{"e"}, want: 3},
			{at: 42 * time.Second, want: 0, blocked: true, silent: 5},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			table := map[string]any{
				"engine": "npreserving", "policy": map[string]any{"n": 3},
				"health": map[string]any{"heartbeat_interval": "1s", "missing_timeout": "3s", "boot_timeout": "20s"},
			}
			if tc.after > 0 {
				table["block_after_silent"] = int64(tc.after)
			}
			p := controller.NewPool(mustJob(t, "web", table), started)
			launch, seq := "seed", int64(0)
			for i, st := range tc.steps {
				now := at(st.at)
				for _, id := range st.running {
					p.ApplyInstance(provisioner.Instance{ID: id, Job: "web", LaunchID: launch, State: nightshift.StateRunning, Created: now, Updated: now}, now)
					p.Settled(launch)
				}
				for _, id := range st.failed {
					p.ApplyInstance(provisioner.Instance{ID: id, Job: "web", LaunchID: launch, State: nightshift.StateFailed, Created: now, Updated: now, Reason: "boom"}, now)
					p.Settled(launch)
				}
				for _, id := range st.beats {
					p.Heartbeat(beat(id), now)
				}
				if st.unblock {
					p.Unblock()
				}
				d := decision.Decision{Engine: "npreserving", Reason: fmt.Sprintf("step %d: grow", i), Target: 3,
					Actions: []decision.Action{decision.Launch{Count: 3, Reason: "grow"}}}
				plan, err := p.Plan(d, now)
				if err != nil {
					t.Fatal(err)
				}
				got := 0
				for _, a := range plan.Decision.Actions {
					if l, ok := a.(decision.Launch); ok {
						got += l.Count
					}
				}
				if got != st.want {
					t.Fatalf("step %d (%s): launched %d, want %d; reason %q", i, st.at, got, st.want, plan.Decision.Reason)
				}
				if st.reason != "" && !strings.Contains(plan.Decision.Reason, st.reason) {
					t.Errorf("step %d: reason %q, want it to contain %q", i, plan.Decision.Reason, st.reason)
				}
				if !plan.Skip {
					seq++
					ids := make([]string, len(plan.Launches))
					for k := range ids {
						ids[k] = fmt.Sprintf("L%d.%d", seq, k)
						launch = ids[k]
					}
					p.Recorded(plan, seq, ids)
				}
				b := p.Status(now, nil, false).Blocked
				if !st.blocked {
					if b != nil {
						t.Fatalf("step %d (%s): blocked %+v, want not", i, st.at, b)
					}
					continue
				}
				switch {
				case b == nil || b.Cause != controller.BlockedNoHeartbeat:
					t.Fatalf("step %d (%s): blocked %+v, want a no_heartbeat block", i, st.at, b)
				case st.silent != 0 && b.FailedLaunches != st.silent:
					t.Errorf("step %d: %d silent in a row, want %d", i, b.FailedLaunches, st.silent)
				case st.probes != 0 && b.Probes != st.probes:
					t.Errorf("step %d: %d probes, want %d", i, b.Probes, st.probes)
				case st.next != 0 && !b.NextLaunch.Equal(at(st.next)):
					t.Errorf("step %d: next probe at %s, want %s", i, b.NextLaunch.Sub(started), st.next)
				case !strings.Contains(b.LastCause, "sent no heartbeat within boot_timeout 20s") || !strings.Contains(b.Check, "sitter"):
					t.Errorf("step %d: cause %q, check %q: want the silent worker and what to check", i, b.LastCause, b.Check)
				}
			}
		})
	}
}

// A worker never heard from is never_heard in the status; one heard and
// then silent is missing: their causes differ.
func TestPoolNeverHeardIsNotMissing(t *testing.T) {
	p := newPool(t)
	p.ApplyInstance(inst("quiet", nightshift.StateRunning, at(0)), at(0))
	p.ApplyInstance(inst("died", nightshift.StateRunning, at(0)), at(0))
	p.Heartbeat(beat("died"), at(time.Second))
	for id, want := range map[string]nightshift.Health{"quiet": nightshift.HealthNeverHeard, "died": nightshift.HealthMissing} {
		ws, ok := workerStatus(t, p, at(21*time.Second), id)
		if !ok || ws.Health != string(want) {
			t.Errorf("worker %s: %+v, want health %s", id, ws, want)
		}
	}
}

func TestSilentBackoff(t *testing.T) {
	cases := []struct {
		boot  time.Duration
		probe int
		want  time.Duration
	}{
		{20 * time.Second, 1, 20 * time.Second},
		{20 * time.Second, 2, 40 * time.Second},
		{20 * time.Second, 4, 160 * time.Second},
		{20 * time.Second, 20, 30 * time.Minute},
		{5 * time.Minute, 3, 20 * time.Minute},
		{5 * time.Minute, 4, 30 * time.Minute},
		{time.Hour, 1, 30 * time.Minute},
	}
	for _, tc := range cases {
		if got := controller.SilentBackoff(tc.boot, tc.probe); got != tc.want {
			t.Errorf("SilentBackoff(%s, %d) = %s, want %s", tc.boot, tc.probe, got, tc.want)
		}
	}
}

func TestSilentCheckByDriver(t *testing.T) {
	for driver, want := range map[string]string{
		controller.DriverEC2:   "security group",
		controller.DriverLocal: "worker command",
	} {
		if got := controller.SilentCheck(driver); !strings.Contains(got, want) {
			t.Errorf("SilentCheck(%s) = %q, want it to mention %q", driver, got, want)
		}
	}
}

// TestPoolRestoreSilentCountsNoWorkerTwice: a pool restored from what a
// previous controller stored (RestoreSilent) goes on counting from there;
// the workers that controller counted, reported again by the provisioner
// and still silent, are not counted again, and a new silent one is.
func TestPoolRestoreSilentCountsNoWorkerTwice(t *testing.T) {
	table := map[string]any{
		"engine": "npreserving", "policy": map[string]any{"n": 3},
		"health": map[string]any{"heartbeat_interval": "1s", "missing_timeout": "3s", "boot_timeout": "20s"},
	}
	grow := func(p *controller.Pool, now time.Time) controller.Plan {
		plan, err := p.Plan(decision.Decision{Engine: "npreserving", Reason: "grow", Target: 3,
			Actions: []decision.Action{decision.Launch{Count: 1, Reason: "grow"}}}, now)
		if err != nil {
			t.Fatal(err)
		}
		return plan
	}
	running := func(p *controller.Pool, now time.Time, ids ...string) {
		for _, id := range ids {
			p.ApplyInstance(provisioner.Instance{ID: id, Job: "web", LaunchID: "L-" + id, State: nightshift.StateRunning, Created: at(0), Updated: now}, now)
		}
	}
	before := controller.NewPool(mustJob(t, "web", table), started)
	running(before, at(0), "a", "b")
	grow(before, at(21*time.Second)) // a and b: 2 silent
	saved := before.Silent()
	if saved.Count != 2 || len(saved.Counted) != 2 {
		t.Fatalf("stored state %+v, want 2 silent workers, both named", saved)
	}

	// The restarted controller: the provisioner reports a and b again,
	// still silent, and c, new.
	after := controller.NewPool(mustJob(t, "web", table), at(30*time.Second))
	after.RestoreSilent(saved)
	running(after, at(30*time.Second), "a", "b", "c")
	if plan := grow(after, at(60*time.Second)); len(plan.Launches) != 0 {
		t.Errorf("launched %d after the third silent worker, want the pool blocked", len(plan.Launches))
	}
	b := after.Status(at(60*time.Second), nil, false).Blocked
	if b == nil || b.FailedLaunches != 3 || !strings.Contains(b.LastCause, "worker c ") {
		t.Errorf("blocked %+v, want 3 silent workers (a and b once, then c)", b)
	}
}
