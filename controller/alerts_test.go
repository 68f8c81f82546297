package controller_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"nightshift"
	"nightshift/controller"
	"nightshift/decision"
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

// TestReconfigureAlerts: `mgmt reconfigure RUN @alerts ...` reaches the
// alert hook and never a job; without a hook it is refused; the hook's
// refusal is the command's.
func TestReconfigureAlerts(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, npJob(t, 2))
	if err := r.c.Reconfigure(ctx, controller.AlertsJob, map[string]any{"rate_limit": 3}, "mgmt"); err == nil || !strings.Contains(err.Error(), "raises no alerts") {
		t.Fatalf("without a hook: %v, want refused", err)
	}
	var got []map[string]any
	c, err := controller.New(ctx, controller.Config{Jobs: r.jobs, Registry: decision.NewRegistry(), Store: r.store, Provisioner: r.prov, Clock: r.clock,
		ReconfigureAlerts: func(v map[string]any) error {
			got = append(got, v)
			if v["rate_limit"] == "lots" {
				return errors.New("rate_limit: want a whole number")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reconfigure(ctx, controller.AlertsJob, map[string]any{"rate_limit": 3}, "mgmt"); err != nil {
		t.Fatal(err)
	}
	if err := c.Reconfigure(ctx, controller.AlertsJob, map[string]any{"rate_limit": "lots"}, "mgmt"); err == nil || !strings.Contains(err.Error(), "want a whole number") {
		t.Fatalf("hook's refusal: %v", err)
	}
	if len(got) != 2 {
		t.Errorf("hook called %d times, want 2", len(got))
	}
	if pools := c.AlertPools(); len(pools) != 1 || pools[0].Job != "web" || !pools[0].Frozen {
		t.Errorf("AlertPools before recovery = %+v, want web, held", pools)
	}
}

// TestPoolAlertViewSilentWorkers: workers that reach running and never
// heartbeat block the pool for the alert evaluator too (pool_blocked),
// with the cause and what to check; a heartbeat ends it.
func TestPoolAlertViewSilentWorkers(t *testing.T) {
	p := newPool(t)
	for _, id := range []string{"a", "b", "c"} {
		p.ApplyInstance(inst(id, nightshift.StateRunning, at(0)), at(0))
	}
	hold := decision.Decision{Engine: "npreserving", Reason: "hold", Target: 3}
	if _, err := p.Plan(hold, at(20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if v := p.AlertView(at(20*time.Second), false); v.Blocked != nil {
		t.Fatalf("blocked within boot_timeout: %+v", v.Blocked)
	}
	if _, err := p.Plan(hold, at(21*time.Second)); err != nil {
		t.Fatal(err)
	}
	v := p.AlertView(at(21*time.Second), false)
	if b := v.Blocked; b == nil || b.Cause != controller.BlockedNoHeartbeat || b.FailedLaunches != 3 ||
		!strings.Contains(b.LastCause, "sent no heartbeat") || !strings.Contains(b.Check, "worker command") {
		t.Fatalf("view %+v, want a no_heartbeat block with cause and check", v.Blocked)
	}
	p.Heartbeat(beat("a"), at(22*time.Second))
	if v := p.AlertView(at(22*time.Second), false); v.Blocked != nil {
		t.Fatalf("still blocked after a heartbeat: %+v", v.Blocked)
	}
}
