package route53dns_test

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"nightshift"
	"nightshift/internal/jobspec"
	"nightshift/internal/route53dns"
	"nightshift/internal/store/provstore"
	"nightshift/provisioner"
	"nightshift/provisioner/provisionertest"
)

// flaky fails every upsert while down, as Route 53 unreachable (or the
// provisioner killed between a launch and its record) would leave things.
type flaky struct {
	*route53dns.Zone
	down atomic.Bool
}

func (f *flaky) UpsertRecord(ctx context.Context, run, name string, addrs []string, ttl int64) error {
	if f.down.Load() {
		return errors.New("route53 unreachable")
	}
	return f.Zone.UpsertRecord(ctx, run, name, addrs, ttl)
}

type dnsHarness struct {
	t     *testing.T
	cfg   provisioner.Config
	drv   *provisionertest.Driver
	store *provstore.Store
	p     *provisioner.Provisioner
	stop  func()
}

func (h *dnsHarness) start() {
	h.t.Helper()
	p, err := provisioner.New(h.cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Ready()
	h.p = p
	h.stop = func() { cancel(); <-done; h.stop = nil }
	h.t.Cleanup(func() {
		if h.stop != nil {
			h.stop()
		}
	})
}

func (h *dnsHarness) idle() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.p.WaitIdle(ctx); err != nil {
		h.t.Fatal(err)
	}
}

func (h *dnsHarness) instanceNamed(name string) provisioner.Instance {
	h.t.Helper()
	recs, _ := h.store.Instances(context.Background(), provisioner.Filter{LiveOnly: true})
	for _, r := range recs {
		if r.DNSName == name {
			return r
		}
	}
	h.t.Fatalf("no live worker named %s", name)
	return provisioner.Instance{}
}

// TestRecordsFollowThePool is issue 20's "done when" on moto: a pool of 3
// has 3 records with the right names and addresses; a worker killed behind
// the run's back loses its record at the next reconcile and its
// replacement takes the name; scale-in deletes the record; a record lost
// to a crash between a launch and its record is repaired by the restarted
// provisioner's reconcile; a sweep with the provisioner dead leaves none.
func TestRecordsFollowThePool(t *testing.T) {
	api, _, zname := newZone(t)
	ctx := context.Background()
	zone, err := route53dns.OpenZone(ctx, api, zname, nil)
	if err != nil {
		t.Fatal(err)
	}
	run := "r" + newID()
	st, err := provstore.Open(ctx, filepath.Join(t.TempDir(), "prov.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	jobs := provisionertest.Jobs("web")
	web := jobs["web"]
	web.DNS = &jobspec.DNS{Zone: zname, Name: "${job}-${index}.${run}." + zname, Pool: "${job}.${run}." + zname,
		TTL: 30, Address: jobspec.AddressPriv}
	jobs["web"] = web
	fz := &flaky{Zone: zone}
	h := &dnsHarness{t: t, drv: provisionertest.NewDriver(run), store: st}
	h.cfg = provisioner.Config{Run: run, Driver: h.drv, Store: st, Jobs: jobs, DNS: map[string]provisioner.DNSZone{"web": fz},
		Log: slog.New(slog.DiscardHandler), ReconcileEvery: -1, RetryDelay: time.Second, CallTimeout: 10 * time.Second}
	h.start()
	name := func(i string) string { return "web-" + i + "." + run + "." + zname }
	poolName := "web." + run + "." + zname
	check := func(names ...string) {
		t.Helper()
		got, err := zone.RecordAddresses(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		recs, _ := st.Instances(ctx, provisioner.Filter{LiveOnly: true})
		var all []string
		want := map[string][]string{}
		for _, r := range recs {
			if r.State == nightshift.StateRunning {
				want[r.DNSName] = []string{r.DNSAddress}
				all = append(all, r.DNSAddress)
			}
		}
		if len(all) > 0 {
			slices.Sort(all)
			want[poolName] = all
		}
		if g, w := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)); !slices.Equal(g, w) {
			t.Fatalf("records %v, want %v", g, w)
		}
		for n, a := range want {
			if !slices.Equal(got[n], a) || a[0] == "" {
				t.Errorf("record %s = %v, want %v", n, got[n], a)
			}
		}
		for _, n := range names {
			if _, ok := got[n]; !ok {
				t.Errorf("no record %s", n)
			}
		}
	}

	// A pool of 3.
	if _, err := h.p.Launch(ctx, provisionertest.Launch(jobs, "L1", "web", 3)); err != nil {
		t.Fatal(err)
	}
	h.idle()
	check(name("0"), name("1"), name("2"))
	old := h.instanceNamed(name("1"))

	// Worker 1 dies behind the run's back: one reconcile fails it and
	// deletes its record; its replacement takes the name.
	h.drv.Vanish(old.ID)
	if err := h.p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	check(name("0"), name("2"))
	if _, err := h.p.Launch(ctx, provisionertest.Launch(jobs, "L2", "web", 1)); err != nil {
		t.Fatal(err)
	}
	h.idle()
	check(name("0"), name("1"), name("2"))
	repl := h.instanceNamed(name("1"))
	if repl.ID == old.ID || repl.DNSAddress == old.DNSAddress {
		t.Fatalf("name %s still on %s (%s), want the replacement", name("1"), old.ID, old.DNSAddress)
	}

	// Scale in: worker 2's record goes with it.
	if _, err := h.p.Terminate(ctx, []string{h.instanceNamed(name("2")).ID}); err != nil {
		t.Fatal(err)
	}
	h.idle()
	check(name("0"), name("1"))

	// The record of a worker launched while Route 53 failed (as after a
	// crash between the launch and the record) is missing ...
	fz.down.Store(true)
	if _, err := h.p.Launch(ctx, provisionertest.Launch(jobs, "L3", "web", 1)); err != nil {
		t.Fatal(err)
	}
	h.idle()
	if got, _ := zone.RecordAddresses(ctx, run); got[name("2")] != nil {
		t.Fatalf("record %s written while Route 53 was down", name("2"))
	}
	// ... and a restarted provisioner's first reconcile repairs it.
	h.stop()
	fz.down.Store(false)
	h.start()
	check(name("0"), name("1"), name("2"))

	// Teardown with the provisioner dead: the sweep finds the records by
	// their TXT owners alone.
	h.stop()
	deleted, remaining, err := route53dns.Sweeper{Zone: zone}.Sweep(ctx, run, false)
	if err != nil || len(remaining) != 0 || len(deleted) != 4 {
		t.Fatalf("sweep: deleted %v, remaining %v, %v; want 4 deleted", deleted, remaining, err)
	}
	if got, _ := zone.RecordAddresses(ctx, run); len(got) != 0 {
		t.Fatalf("records left after the sweep: %v", got)
	}
}
