package controller_test

import (
	"slices"
	"testing"
	"time"

	"nightshift/controller"
	"nightshift/provisioner"
)

func dnsJob(t testing.TB, name string, n int, dns bool) controller.Job {
	table := map[string]any{
		"engine": "npreserving",
		"policy": map[string]any{"n": n, "drain_timeout": "30s"},
		"health": map[string]any{"heartbeat_interval": "1s", "missing_timeout": "3s", "boot_timeout": "20s"},
		"worker": map[string]any{"command": []any{"/bin/worker"}},
	}
	if dns {
		table["dns"] = map[string]any{"zone": "example.internal", "name": "${job}-${index}.example.internal"}
	}
	return mustJob(t, name, table)
}

// The controller tells the provisioner, for a job with a dns table, which
// workers are healthy and which unhealthy (DNS records follow health, and
// only the controller hears it): when the judgement changes, not every
// round; again after a failed send and after a restart; never for a job
// without DNS.
func TestHealthFollowsToTheProvisioner(t *testing.T) {
	r := newRig(t, dnsJob(t, "web", 2, true), dnsJob(t, "batch", 1, false))
	r.tick()
	if got := r.prov.healthSent(); len(got) != 0 {
		t.Fatalf("health sent before any worker runs: %+v", got)
	}
	ids := r.runAll("web", false)
	r.runAll("batch", false)
	slices.Sort(ids)
	r.tick()
	want := []provisioner.HealthBody{{Job: "web", Healthy: ids}}
	check := func(what string) {
		t.Helper()
		got := r.prov.healthSent()
		if len(got) != len(want) {
			t.Fatalf("%s: health sent %+v, want %+v", what, got, want)
		}
		for i := range want {
			if got[i].Job != want[i].Job || !slices.Equal(got[i].Healthy, want[i].Healthy) || !slices.Equal(got[i].Unhealthy, want[i].Unhealthy) {
				t.Fatalf("%s: health sent %+v, want %+v", what, got, want)
			}
		}
	}
	check("both heard")
	r.clock.Advance(time.Second)
	r.heartbeat("web", ids[0], false)
	r.heartbeat("web", ids[1], false)
	r.tick()
	check("nothing changed")

	// ids[1] falls silent past missing_timeout: unhealthy (and replaced).
	for range 5 {
		r.clock.Advance(time.Second)
		r.heartbeat("web", ids[0], false)
	}
	r.tick()
	want = append(want, provisioner.HealthBody{Job: "web", Healthy: ids[:1], Unhealthy: ids[1:]})
	check("one missing")

	// Terminated, it is no news; the first send of that fails and is
	// retried the next round.
	r.prov.mu.Lock()
	r.prov.failHealth = true
	r.prov.mu.Unlock()
	r.tick()
	check("send failed")
	r.prov.mu.Lock()
	r.prov.failHealth = false
	r.prov.mu.Unlock()
	r.tick()
	want = append(want, provisioner.HealthBody{Job: "web", Healthy: ids[:1]})
	check("retried")

	// A restarted controller says nothing until it has heard a worker,
	// then tells the provisioner again.
	r.restart()
	r.tick()
	check("restarted, nothing heard")
	r.heartbeat("web", ids[0], false)
	r.tick()
	want = append(want, provisioner.HealthBody{Job: "web", Healthy: ids[:1]})
	check("restarted, heard")
}
