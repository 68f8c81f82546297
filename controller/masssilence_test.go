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

// When most of a pool goes silent at once, the cause is more likely what
// carries the heartbeats than the workers: replacing them all would add a
// whole pool of launches to an overloaded bus (at 10,000 simulated workers
// on a loaded machine this grew a pool of 10,000 to 42,780 instances). The
// silent ones are held for boot_timeout, then replaced as usual.
func TestMassSilenceHoldsReplacement(t *testing.T) {
	const size = 20
	cases := []struct {
		name    string
		percent int // mass_silence_percent; 0: the default
		size    int
		silent  int
		at      time.Duration // when judged; all last heard at 0
		held    bool          // the silent are not missing now
		mass    bool          // status shows a mass silence
	}{
		{"a few silent are replaced", 0, size, 5, 5 * time.Second, false, false},
		{"exactly half is not more than half", 0, size, 10, 5 * time.Second, false, false},
		{"more than half at once is held", 0, size, 11, 5 * time.Second, true, true},
		{"all of them at once is held", 0, size, size, 5 * time.Second, true, true},
		{"the hold ends after boot_timeout", 0, size, 15, 26 * time.Second, false, true},
		{"a small pool is never a mass silence", 0, 9, 9, 5 * time.Second, false, false},
		{"a lower threshold holds sooner", 20, 60, 15, 5 * time.Second, true, true},
		{"100 turns the guard off", 100, size, size, 5 * time.Second, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			health := map[string]any{"heartbeat_interval": "1s", "missing_timeout": "3s", "boot_timeout": "20s"}
			if tc.percent != 0 {
				health["mass_silence_percent"] = int64(tc.percent)
			}
			p := controller.NewPool(mustJob(t, "web", map[string]any{"engine": "npreserving", "policy": map[string]any{"n": tc.size}, "health": health}), started)
			var ids []string
			for i := range tc.size {
				id := fmt.Sprintf("w%02d", i)
				ids = append(ids, id)
				p.ApplyInstance(provisioner.Instance{ID: id, Job: "web", LaunchID: "L", State: nightshift.StateRunning, Created: at(0), Updated: at(0)}, at(0))
				p.Heartbeat(beat(id), at(0))
			}
			// The first round sees the silence begin 2 s after
			// missing_timeout; the judged round is tc.at.
			first := 5 * time.Second
			for _, when := range []time.Duration{first, tc.at} {
				now := at(when)
				for _, id := range ids[tc.silent:] {
					p.Heartbeat(beat(id), now)
				}
				p.JudgeSilence(now)
			}
			now := at(tc.at)
			snap := p.Snapshot(now)
			missing := 0
			for _, in := range snap.Instances {
				if in.Health == nightshift.HealthMissing {
					missing++
				}
			}
			wantMissing := tc.silent
			if tc.held {
				wantMissing = 0
			}
			if missing != wantMissing {
				t.Fatalf("%d of %d silent at %s: %d judged missing, want %d", tc.silent, tc.size, tc.at, missing, wantMissing)
			}
			d := decision.DecideNPreserving(decision.NPreservingConfig{N: &tc.size}, snap)
			launched := 0
			for _, a := range d.Actions {
				if l, ok := a.(decision.Launch); ok {
					launched += l.Count
				}
			}
			if want := wantMissing; launched != want {
				t.Errorf("n-preserving launched %d, want %d (%s)", launched, want, d.Reason)
			}
			st := p.Status(now, nil, false)
			m := st.MassSilence
			if !tc.mass {
				if m != nil {
					t.Fatalf("status mass silence %+v, want none", m)
				}
				return
			}
			if m == nil || m.Silent != tc.silent || m.Running != tc.size || m.Held != tc.held ||
				!m.Since.Equal(at(first)) || !m.Until.Equal(at(first+20*time.Second)) {
				t.Fatalf("status mass silence %+v, want %d of %d since %s until +20s, held %v", m, tc.silent, tc.size, at(first), tc.held)
			}
			plan, err := p.Plan(d, now)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(plan.Decision.Reason, "mass silence since"); got != tc.held {
				t.Errorf("reason %q: says mass silence %v, want %v", plan.Decision.Reason, got, tc.held)
			}
			v := p.AlertView(now, false)
			if v.Silence == nil || v.Silence.Held != tc.held {
				t.Errorf("alert view silence %+v, want held %v", v.Silence, tc.held)
			}
		})
	}
}

// The silence ends when the workers are heard again: nothing stays held.
func TestMassSilenceEndsWhenHeard(t *testing.T) {
	p := controller.NewPool(mustJob(t, "web", map[string]any{"engine": "npreserving", "policy": map[string]any{"n": 20},
		"health": map[string]any{"heartbeat_interval": "1s", "missing_timeout": "3s", "boot_timeout": "20s"}}), started)
	for i := range 20 {
		id := fmt.Sprintf("w%02d", i)
		p.ApplyInstance(provisioner.Instance{ID: id, Job: "web", LaunchID: "L", State: nightshift.StateRunning, Created: at(0), Updated: at(0)}, at(0))
		p.Heartbeat(beat(id), at(0))
	}
	p.JudgeSilence(at(5 * time.Second))
	if m := p.Silence(); m == nil || !m.Held {
		t.Fatalf("all 20 silent: %+v, want a held mass silence", m)
	}
	for i := range 20 {
		p.Heartbeat(beat(fmt.Sprintf("w%02d", i)), at(6*time.Second))
	}
	p.JudgeSilence(at(6 * time.Second))
	if m := p.Silence(); m != nil {
		t.Fatalf("all heard again: %+v, want no mass silence", m)
	}
}

func TestMassSilencePercentChecked(t *testing.T) {
	for _, v := range []int64{0, 101, -5} {
		_, err := decision.ParseHealthConfig(map[string]any{"mass_silence_percent": v})
		if err == nil || !strings.Contains(err.Error(), "mass_silence_percent") {
			t.Errorf("mass_silence_percent = %d: err %v, want one naming the key", v, err)
		}
	}
	hc, err := decision.ParseHealthConfig(map[string]any{})
	if err != nil || hc.MassSilencePercent != decision.DefaultMassSilence {
		t.Errorf("default: %+v, %v", hc, err)
	}
}

// A pool bigger than one message may carry (provisioner.MaxCount ids or
// launches) is launched and terminated in several requests, each of which
// the provisioner accepts: one request over the limit was refused whole,
// so the decision round failed and nothing was terminated, round after
// round, while replacements kept being launched.
func TestPoolsOverOneMessageLaunchAndTerminateInParts(t *testing.T) {
	n := provisioner.MaxCount + 500
	// The guard off: here every worker falls silent at once, and each
	// must be terminated and replaced.
	r := newRig(t, mustJob(t, "web", map[string]any{
		"engine": "npreserving", "policy": map[string]any{"n": n},
		"health": map[string]any{"heartbeat_interval": "1s", "missing_timeout": "3s", "boot_timeout": "20s", "mass_silence_percent": int64(100)},
		"worker": map[string]any{"command": []any{"/bin/worker"}},
	}))
	r.tick()
	got, calls := r.prov.launched()
	if got != n || len(calls) != 2 || calls[0].Count != provisioner.MaxCount || calls[1].Count != 500 {
		t.Fatalf("launching %d: %d instances in %d calls, want 2 calls of %d and 500", n, got, len(calls), provisioner.MaxCount)
	}
	if ids := r.runAll("web", false); len(ids) != n {
		t.Fatalf("%d running, want %d", len(ids), n)
	}
	r.clock.Advance(5 * time.Second)
	r.tick()
	terms := r.prov.terminated()
	total := 0
	for _, ts := range terms {
		if len(ts) > 1000 {
			t.Fatalf("one terminate request carried %d ids, want at most 1000", len(ts))
		}
		total += len(ts)
	}
	if total != n {
		t.Fatalf("terminated %d in %d requests, want all %d silent workers", total, len(terms), n)
	}
	if got, calls := r.prov.launched(); got != 2*n || len(calls) != 4 {
		t.Fatalf("after all went silent: %d instances in %d launch calls, want %d in 4", got, len(calls), 2*n)
	}
}

// A controller cut off from its bus stops judging; its last mass silence
// must not stay on show (or keep its alert firing) as if current.
func TestMassSilenceNotShownWhileDeafOrHeld(t *testing.T) {
	p := controller.NewPool(mustJob(t, "web", map[string]any{"engine": "npreserving", "policy": map[string]any{"n": 20},
		"health": map[string]any{"heartbeat_interval": "1s", "missing_timeout": "3s", "boot_timeout": "20s"}}), started)
	for i := range 20 {
		id := fmt.Sprintf("w%02d", i)
		p.ApplyInstance(provisioner.Instance{ID: id, Job: "web", LaunchID: "L", State: nightshift.StateRunning, Created: at(0), Updated: at(0)}, at(0))
		p.Heartbeat(beat(id), at(0))
	}
	now := at(5 * time.Second)
	p.JudgeSilence(now)
	if p.Silence() == nil || p.AlertView(now, false).Silence == nil {
		t.Fatal("all 20 silent: want a mass silence in status and in the alert view")
	}
	if v := p.AlertView(now, true); v.Silence != nil {
		t.Errorf("frozen or recovering: alert view silence %+v, want none", v.Silence)
	}
	p.Deaf(now)
	if m := p.Silence(); m != nil {
		t.Errorf("deaf: status silence %+v, want none", m)
	}
	if m := p.Status(now, nil, false).MassSilence; m != nil {
		t.Errorf("deaf: job status silence %+v, want none", m)
	}
}
