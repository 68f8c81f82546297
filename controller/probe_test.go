package controller_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"nightshift"
	"nightshift/decision"
	"nightshift/sitter"
)

func probed(state sitter.ProbeState, failures int, output string) sitter.TaskStatus {
	return sitter.TaskStatus{Name: "work", State: sitter.StateRunning, Work: sitter.WorkIdle,
		Probe: &sitter.ProbeStatus{State: state, Failures: failures, Output: output}}
}

// A worker whose probe fails is judged like a missing one: unhealthy, so
// the engine replaces it; status shows the probe's last output.
func TestPoolHealthProbe(t *testing.T) {
	healthy := probed(sitter.ProbeHealthy, 0, "HTTP 200")
	starting := probed(sitter.ProbeStarting, 1, "connection refused")
	failing := probed(sitter.ProbeUnhealthy, 3, "HTTP 503: db down")
	stopped := failing
	stopped.State = sitter.StateBackoff
	cases := []struct {
		name        string
		beats       [][]sitter.TaskStatus
		wantChanged []bool
		wantHealth  nightshift.Health
		wantError   string
		wantProbe   string
		wantReplace bool
	}{
		{"healthy probe", [][]sitter.TaskStatus{{healthy}}, []bool{true}, nightshift.HealthOK, "", "work: healthy (HTTP 200)", false},
		{"a starting probe is not a failure", [][]sitter.TaskStatus{{starting}}, []bool{true}, nightshift.HealthOK, "", "work: starting (connection refused)", false},
		{"an unhealthy probe is", [][]sitter.TaskStatus{{healthy}, {failing}}, []bool{true, true}, nightshift.HealthProbeFailed,
			"work: probe failed 3 in a row: HTTP 503: db down", "work: unhealthy (HTTP 503: db down)", true},
		{"a probe that recovers ends it", [][]sitter.TaskStatus{{failing}, {healthy}}, []bool{true, true}, nightshift.HealthOK, "", "work: healthy (HTTP 200)", false},
		{"a probe of a run that ended does not count", [][]sitter.TaskStatus{{stopped}}, []bool{true}, nightshift.HealthOK, "", "", false},
		{"a failing sidecar's probe shows before a healthy one", [][]sitter.TaskStatus{{healthy, func() sitter.TaskStatus { s := failing; s.Name = "side"; return s }()}},
			[]bool{true}, nightshift.HealthProbeFailed, "side: probe failed 3 in a row: HTTP 503: db down", "side: unhealthy (HTTP 503: db down)", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t)
			p.ApplyInstance(inst("a", nightshift.StateRunning, at(0)), at(0))
			p.ApplyInstance(inst("b", nightshift.StateRunning, at(0)), at(0))
			var changed []bool
			var now time.Time
			for i, tasks := range tc.beats {
				now = at(time.Duration(i+1) * time.Second)
				changed = append(changed, p.Heartbeat(beat("a", tasks...), now))
				p.Heartbeat(beat("b"), now)
			}
			if len(changed) != len(tc.wantChanged) || changed[len(changed)-1] != tc.wantChanged[len(changed)-1] {
				t.Errorf("changed = %v, want %v", changed, tc.wantChanged)
			}
			got, _ := snapInstance(t, p, now, "a")
			if got.Health != tc.wantHealth {
				t.Errorf("health %s, want %s", got.Health, tc.wantHealth)
			}
			ws, _ := workerStatus(t, p, now, "a")
			if ws.Error != tc.wantError || ws.Probe != tc.wantProbe {
				t.Errorf("status error %q probe %q, want %q and %q", ws.Error, ws.Probe, tc.wantError, tc.wantProbe)
			}
			// The engine (n = 2) replaces what is unhealthy, as it does a
			// missing worker.
			e, err := decision.NewRegistry().New("npreserving")
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Configure(map[string]any{"n": 2}); err != nil {
				t.Fatal(err)
			}
			d := decision.Run(context.Background(), e, p.Snapshot(now))
			replaced := false
			for _, a := range d.Actions {
				if term, ok := a.(decision.Terminate); ok && len(term.IDs) == 1 && term.IDs[0] == "a" {
					replaced = true
				}
			}
			if replaced != tc.wantReplace {
				t.Errorf("decision %q %+v: replaced a = %v, want %v", d.Reason, d.Actions, replaced, tc.wantReplace)
			}
		})
	}
}

// A worker that never passed its probe before it was replaced is a failed
// launch: a version whose probe never passes backs off like a crash loop.
func TestPoolProbeNeverPassedIsAFailedLaunch(t *testing.T) {
	p := newPool(t)
	p.ApplyInstance(inst("a", nightshift.StateRunning, at(0)), at(0))
	p.Heartbeat(beat("a", probed(sitter.ProbeUnhealthy, 3, "HTTP 404")), at(time.Second))
	d := decision.Decision{Reason: "replace", Actions: []decision.Action{
		decision.Terminate{IDs: []string{"a"}, Reason: "unhealthy"}, decision.Launch{Count: 1, Reason: "replace"}}}
	plan, err := p.Plan(d, at(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	held := plan.Decision
	if len(plan.Launches) != 0 || !strings.Contains(held.Reason, "never passed its health probe: work: probe failed 3 in a row: HTTP 404") {
		t.Errorf("reason %q, want the launch back-off naming the probe", held.Reason)
	}
}
