package controller_test

import (
	"testing"
	"time"

	"nightshift"
	"nightshift/controller"
)

// TestPoolAlertView: what the alert evaluator reads of a pool: blocked
// after BlockedAfter failed launches (and not before), healthy workers
// counted, unhealthy ones marked, the outage's start, held pools.
func TestPoolAlertView(t *testing.T) {
	p := newPool(t)
	for i := range controller.BlockedAfter - 1 {
		p.ApplyInstance(failed(string(rune('a'+i)), at(time.Second), "exec: no such file"), at(time.Second))
	}
	if v := p.AlertView(at(2*time.Second), false); v.Blocked != nil {
		t.Fatalf("blocked after %d failures: %+v", controller.BlockedAfter-1, v.Blocked)
	}
	p.ApplyInstance(failed("z", at(2*time.Second), "exec: no such file"), at(2*time.Second))
	v := p.AlertView(at(3*time.Second), false)
	if v.Job != "web" || v.Blocked == nil || v.Blocked.FailedLaunches != controller.BlockedAfter || v.Blocked.LastCause != "exec: no such file" {
		t.Fatalf("view %+v, want blocked with the last cause", v)
	}
	if len(v.Workers) != 0 {
		t.Errorf("failed launches listed as live workers: %+v", v.Workers)
	}

	p = newPool(t)
	p.ApplyInstance(inst("ok", nightshift.StateRunning, at(0)), at(0))
	p.ApplyInstance(inst("quiet", nightshift.StateRunning, at(0)), at(0))
	p.Heartbeat(beat("ok"), at(time.Second))
	p.Heartbeat(beat("quiet"), at(time.Second))
	p.Heartbeat(beat("ok"), at(10*time.Second))
	v = p.AlertView(at(10*time.Second), false)
	bad := map[string]bool{}
	for _, w := range v.Workers {
		bad[w.ID] = w.Unhealthy
	}
	if v.Healthy != 1 || len(v.Workers) != 2 || bad["ok"] || !bad["quiet"] {
		t.Errorf("view %+v, want ok healthy and quiet unhealthy (missing)", v)
	}
	p.Deaf(at(11 * time.Second))
	if v := p.AlertView(at(12*time.Second), true); !v.DeafSince.Equal(at(11*time.Second)) || !v.Frozen {
		t.Errorf("deaf and held: %+v", v)
	}
	p.Hearing(at(13 * time.Second))
	if v := p.AlertView(at(13*time.Second), false); !v.DeafSince.IsZero() {
		t.Errorf("hearing again, still deaf since %s", v.DeafSince)
	}
}
