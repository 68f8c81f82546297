package controller_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"nightshift"
	"nightshift/controller"
	"nightshift/internal/store/provstore"
	"nightshift/provisioner"
	"nightshift/provisioner/provisionertest"
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

// The controller's memory of the health it told the provisioner does not
// outlive a bind of its instance subscription: the provisioner may have
// been replaced unseen (a fresh store holds no health, so no records), and
// a judgement that does not change would never reach the new one. The
// next round after a bind tells it again, once.
func TestHealthToldAgainAfterABind(t *testing.T) {
	r := newRig(t, dnsJob(t, "web", 2, true))
	r.tick() // launches
	ids := r.runAll("web", false)
	slices.Sort(ids)
	r.tick()
	r.tick()
	if got := r.prov.healthSent(); len(got) != 1 {
		t.Fatalf("health sent %+v over two rounds, want once", got)
	}
	r.c.Bound(context.Background())
	r.tick()
	r.tick()
	got := r.prov.healthSent()
	if len(got) != 2 || got[1].Job != "web" || !slices.Equal(got[1].Healthy, ids) || len(got[1].Unhealthy) != 0 {
		t.Fatalf("health sent %+v, want the same word (%v healthy) once more after the bind", got, ids)
	}
}

// A pool of more workers than one provisioner.health message may name
// (MaxCount) is reported in several messages, each of which the
// provisioner's decoding accepts, and the provisioner, a real one with
// those workers in its ledger, ends up with the word on every one.
// Sent whole, the report was refused every round and the pool's DNS
// records were never kept.
func TestHealthOfAPoolBeyondOneMessage(t *testing.T) {
	const n = provisioner.MaxCount + 50
	ctx := context.Background()
	st, err := provstore.Open(ctx, filepath.Join(t.TempDir(), "prov.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	jobs := provisionertest.Jobs("web")
	p, err := provisioner.New(provisioner.Config{Run: "r1", Driver: provisionertest.NewDriver("r1"), Store: st, Jobs: jobs,
		Log: slog.New(slog.DiscardHandler), ReconcileEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-p.Ready()
	for i, count := range []int{provisioner.MaxCount, n - provisioner.MaxCount} {
		if _, err := p.Launch(ctx, provisionertest.Launch(jobs, fmt.Sprintf("L%d", i), "web", count)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	var ids []string
	status, err := p.Describe(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range status.Instances {
		if in.State == nightshift.StateRunning {
			ids = append(ids, in.ID)
		}
	}
	if len(ids) != n {
		t.Fatalf("%d workers running in the provisioner, want %d", len(ids), n)
	}

	r := newRig(t, dnsJob(t, "web", n, true))
	r.prov.seedIDs("web", ids, nightshift.StateRunning, t0.Add(-time.Hour))
	r.prov.onHealth = func(b provisioner.HealthBody) error {
		if rep := p.Handle(ctx, &b); rep.Error != "" {
			return fmt.Errorf("provisioner: %s", rep.Error)
		}
		return nil
	}
	r.restart()
	for _, id := range ids {
		r.heartbeat("web", id, false)
	}
	r.tick()
	if sent := r.prov.healthSent(); len(sent) < 2 {
		t.Fatalf("%d health messages accepted, want the %d workers in several", len(sent), n)
	}
	recs, err := st.Instances(ctx, provisioner.Filter{Job: "web"})
	if err != nil {
		t.Fatal(err)
	}
	healthy := 0
	for _, in := range recs {
		if in.Health == provisioner.HealthHealthy {
			healthy++
		}
	}
	if healthy != n {
		t.Fatalf("the provisioner holds %d workers healthy, want all %d", healthy, n)
	}
}
