package provisioner_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"nightshift"
	"nightshift/internal/jobspec"
	"nightshift/internal/leader"
	"nightshift/internal/store/pgdb/pgtest"
	"nightshift/internal/store/provstore"
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

// healthWrites counts the ledger's health writes.
type healthWrites struct {
	provisioner.Store
	mu    sync.Mutex
	calls int
}

func (s *healthWrites) SetHealths(ctx context.Context, job string, healths map[string]string) ([]string, error) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	return s.Store.SetHealths(ctx, job, healths)
}

func (s *healthWrites) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// A report on a whole pool is one write to the ledger, on either backend,
// however many workers it names: the first report on thousands of workers
// after a controller restart used to write one transaction per worker
// while every launch and termination waited behind it. Every worker gets
// its word all the same, and the zone is synced once for the lot.
func TestSetHealthOfAPoolIsOneWrite(t *testing.T) {
	const n = 1000
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			zone := &countZone{}
			var st *healthWrites
			h := newHarness(t, func(c *provisioner.Config) {
				if backend == "postgres" {
					pg, err := provstore.OpenPG(ctx, pgtest.Need(t), pgtest.Schema(t, "provhealth"), leader.Fence{})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { pg.Close() })
					c.Store = pg
				}
				st = &healthWrites{Store: c.Store}
				c.Store = st
				web := c.Jobs["web"]
				web.DNS = &jobspec.DNS{Zone: "example.internal", Name: "${job}-${index}.example.internal", Pool: "web.example.internal", TTL: 60, Address: jobspec.AddressPriv}
				c.Jobs["web"] = web
				c.DNS = map[string]provisioner.DNSZone{"web": zone}
			})
			h.start()
			web := h.launch("L1", "web", n)
			h.idle()
			report := provisioner.HealthBody{Job: "web"}
			for i, in := range web {
				if i%4 == 0 {
					report.Unhealthy = append(report.Unhealthy, in.ID)
				} else {
					report.Healthy = append(report.Healthy, in.ID)
				}
			}
			check := func(what string, writes int, want func(i int) string) {
				t.Helper()
				syncs := zone.count()
				if err := h.p.SetHealth(ctx, report); err != nil {
					t.Fatal(err)
				}
				if got := st.count(); got != writes {
					t.Errorf("%s: %d health writes to the ledger, want %d", what, got, writes)
				}
				if got := zone.count() - syncs; got != 1 {
					t.Errorf("%s: %d DNS syncs, want 1", what, got)
				}
				recs, err := st.Instances(ctx, provisioner.Filter{Job: "web"})
				if err != nil {
					t.Fatal(err)
				}
				health := map[string]string{}
				for _, r := range recs {
					health[r.ID] = r.Health
				}
				for i, in := range web {
					if health[in.ID] != want(i) {
						t.Fatalf("%s: worker %d health %q, want %q", what, i, health[in.ID], want(i))
					}
				}
			}
			// Never healthy, the unhealthy quarter has nothing to lose.
			check("first report", 1, func(i int) string {
				if i%4 == 0 {
					return ""
				}
				return provisioner.HealthHealthy
			})
			report.Healthy, report.Unhealthy = report.Unhealthy, report.Healthy
			check("turned around", 2, func(i int) string {
				if i%4 == 0 {
					return provisioner.HealthHealthy
				}
				return provisioner.HealthUnhealthy
			})
		})
	}
}

// gateZone is a provisioner.DNSZone whose first incremental sync calls
// during before returning, and that counts the syncs and the most ever in
// flight at once.
type gateZone struct {
	during func()
	mu     sync.Mutex
	once   bool
	syncs  int
	in     int
	maxIn  int
}

func (z *gateZone) Sync(_ context.Context, _ string, _ []provisioner.DNSRecord, full bool) (provisioner.DNSChanges, error) {
	z.mu.Lock()
	z.syncs++
	z.in++
	z.maxIn = max(z.maxIn, z.in)
	first := !full && !z.once
	if first {
		z.once = true
	}
	z.mu.Unlock()
	if first {
		z.during()
	}
	z.mu.Lock()
	z.in--
	z.mu.Unlock()
	return provisioner.DNSChanges{}, nil
}

// A pool's health report arriving in chunks while a DNS sync is under way
// (Route 53 calls take seconds) neither waits for that sync nor costs a
// sync per chunk: the chunks are recorded at once, and one more sync after
// the running one takes them all up. SetHealth used to hold its lock
// through the sync, so each chunk waited for the one before and then ran a
// full sync of its own.
func TestSetHealthChunksShareOneDNSSync(t *testing.T) {
	const chunks = 5
	zone := &gateZone{}
	h := newHarness(t, func(c *provisioner.Config) {
		web := c.Jobs["web"]
		web.DNS = &jobspec.DNS{Zone: "example.internal", Name: "${job}-${index}.example.internal", Pool: "web.example.internal", TTL: 60, Address: jobspec.AddressPriv}
		c.Jobs["web"] = web
		c.DNS = map[string]provisioner.DNSZone{"web": zone}
	})
	h.start()
	ctx := context.Background()
	web := h.launch("L1", "web", chunks)
	h.idle()
	chunk := func(i int) provisioner.HealthBody {
		return provisioner.HealthBody{Job: "web", Healthy: []string{web[i].ID}}
	}
	// While the first chunk's sync is in the zone, the other chunks
	// arrive. They must return without waiting for it; the guard only
	// keeps a regression from hanging the test.
	zone.during = func() {
		done := make(chan error, chunks)
		for i := 1; i < chunks; i++ {
			go func() { done <- h.p.SetHealth(ctx, chunk(i)) }()
		}
		for i := 1; i < chunks; i++ {
			select {
			case err := <-done:
				if err != nil {
					t.Error(err)
				}
			case <-time.After(time.Minute):
				t.Error("a health chunk waited for another chunk's DNS sync")
				return
			}
		}
	}
	zone.mu.Lock()
	base := zone.syncs
	zone.mu.Unlock()
	if err := h.p.SetHealth(ctx, chunk(0)); err != nil {
		t.Fatal(err)
	}
	zone.mu.Lock()
	syncs, maxIn := zone.syncs-base, zone.maxIn
	zone.mu.Unlock()
	if syncs != 2 {
		t.Errorf("%d DNS syncs for %d health chunks, the later ones arriving during the first sync; want 2 (the first, then one for the rest)", syncs, chunks)
	}
	if maxIn > 1 {
		t.Errorf("%d DNS syncs in flight at once, want 1", maxIn)
	}
	for i, in := range web {
		if got := h.get(in.ID).Health; got != provisioner.HealthHealthy {
			t.Errorf("chunk %d: %s health %q, want healthy", i, in.ID, got)
		}
	}
}
