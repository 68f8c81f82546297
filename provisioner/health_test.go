package provisioner_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"nightshift"
	"nightshift/internal/jobspec"
	"nightshift/provisioner"
)

// SetHealth records the controller's word on running workers only: a
// worker is healthy when said so, unhealthy only once it was healthy (a
// worker never healthy has no record to keep), and ids of another job,
// of no worker, or of a worker not running are stale news, ignored.
func TestSetHealthRecordsTheControllersWord(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	ctx := context.Background()
	web := h.launch("L1", "web", 3)
	db := h.launch("L2", "db", 1)
	h.idle()
	if _, err := h.p.Terminate(ctx, []string{web[2].ID}); err != nil {
		t.Fatal(err)
	}
	h.idle()
	a, b, gone := web[0].ID, web[1].ID, web[2].ID
	steps := []struct {
		name string
		body provisioner.HealthBody
		want map[string]string // id: Instance.Health
		err  error
	}{
		{"an unknown job", provisioner.HealthBody{Job: "nope", Healthy: []string{a}}, map[string]string{a: ""}, provisioner.ErrInvalid},
		{"never healthy is not unhealthy", provisioner.HealthBody{Job: "web", Unhealthy: []string{a}}, map[string]string{a: ""}, nil},
		{"healthy", provisioner.HealthBody{Job: "web", Healthy: []string{a, b}}, map[string]string{a: provisioner.HealthHealthy, b: provisioner.HealthHealthy}, nil},
		{"unhealthy after healthy", provisioner.HealthBody{Job: "web", Unhealthy: []string{b}}, map[string]string{a: provisioner.HealthHealthy, b: provisioner.HealthUnhealthy}, nil},
		{"left out keeps what it had", provisioner.HealthBody{Job: "web", Healthy: []string{b}}, map[string]string{a: provisioner.HealthHealthy, b: provisioner.HealthHealthy}, nil},
		{"stale ids", provisioner.HealthBody{Job: "web", Healthy: []string{db[0].ID, "web-nobody-0", gone}},
			map[string]string{db[0].ID: "", gone: ""}, nil},
	}
	for _, s := range steps {
		err := h.p.SetHealth(ctx, s.body)
		if !errors.Is(err, s.err) || (s.err == nil) != (err == nil) {
			t.Fatalf("%s: SetHealth = %v, want %v", s.name, err, s.err)
		}
		for id, want := range s.want {
			got := h.get(id)
			if got.Health != want {
				t.Errorf("%s: %s (%s) health %q, want %q", s.name, id, got.State, got.Health, want)
			}
			if id == gone && got.State != nightshift.StateTerminated {
				t.Fatalf("%s is %s, want terminated", id, got.State)
			}
		}
	}
}

// countZone is a provisioner.DNSZone that counts its syncs.
type countZone struct {
	mu    sync.Mutex
	syncs int
}

func (z *countZone) Sync(context.Context, string, []provisioner.DNSRecord, bool) (provisioner.DNSChanges, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.syncs++
	return provisioner.DNSChanges{}, nil
}

func (z *countZone) count() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.syncs
}

// Workers the controller has not judged yet have no record, so launching
// them and their reaching running sync nothing: each such sync reads the
// whole ledger, and a burst of N would do it N times. The controller's
// word, and a judged worker ending, do sync.
func TestUnjudgedWorkersCostNoDNSSync(t *testing.T) {
	zone := &countZone{}
	h := newHarness(t, func(c *provisioner.Config) {
		web := c.Jobs["web"]
		web.DNS = &jobspec.DNS{Zone: "example.internal", Name: "${job}-${index}.example.internal", TTL: 60, Address: jobspec.AddressPriv}
		c.Jobs["web"] = web
		c.DNS = map[string]provisioner.DNSZone{"web": zone}
	})
	h.start()
	h.idle()
	ctx := context.Background()
	base := zone.count() // the start's repair
	web := h.launch("L1", "web", 20)
	h.idle()
	if n := zone.count() - base; n != 0 {
		t.Fatalf("%d DNS syncs for 20 launches no one has judged, want 0", n)
	}
	if err := h.p.SetHealth(ctx, provisioner.HealthBody{Job: "web", Healthy: []string{web[0].ID, web[1].ID}}); err != nil {
		t.Fatal(err)
	}
	after := zone.count()
	if after == 0 {
		t.Fatal("the controller's word synced nothing")
	}
	if _, err := h.p.Terminate(ctx, []string{web[0].ID}); err != nil {
		t.Fatal(err)
	}
	h.idle()
	if zone.count() == after {
		t.Fatal("a judged worker ended and nothing synced its record away")
	}
}
