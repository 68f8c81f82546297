package route53dns_test

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/smithy-go"

	"nightshift"
	"nightshift/internal/amqpbus"
	"nightshift/internal/backoff"
	"nightshift/internal/ec2/ec2test"
	"nightshift/internal/envelope"
	"nightshift/internal/jobspec"
	"nightshift/internal/route53dns"
	"nightshift/internal/store/provstore"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/provisioner"
	"nightshift/provisioner/client"
	"nightshift/provisioner/provbus"
	"nightshift/provisioner/provisionertest"
)

// flaky fails every sync while down, as Route 53 unreachable (or the
// provisioner killed between a launch and its record) would leave things.
type flaky struct {
	*route53dns.Zone
	down atomic.Bool
}

func (f *flaky) Sync(ctx context.Context, run string, want []provisioner.DNSRecord, full bool) (provisioner.DNSChanges, error) {
	if f.down.Load() {
		return provisioner.DNSChanges{}, errors.New("route53 unreachable")
	}
	return f.Zone.Sync(ctx, run, want, full)
}

// counting counts the Route 53 requests a zone makes, and answers the
// first throttle changes with Throttling, as Route 53 does beyond 5
// requests a second.
type counting struct {
	route53dns.API
	lists, changes, throttle atomic.Int32
}

func (c *counting) ListResourceRecordSets(ctx context.Context, in *route53.ListResourceRecordSetsInput, opts ...func(*route53.Options)) (*route53.ListResourceRecordSetsOutput, error) {
	c.lists.Add(1)
	return c.API.ListResourceRecordSets(ctx, in, opts...)
}

func (c *counting) ChangeResourceRecordSets(ctx context.Context, in *route53.ChangeResourceRecordSetsInput, opts ...func(*route53.Options)) (*route53.ChangeResourceRecordSetsOutput, error) {
	c.changes.Add(1)
	if c.throttle.Add(-1) >= 0 {
		return nil, &smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded"}
	}
	return c.API.ChangeResourceRecordSets(ctx, in, opts...)
}

func (c *counting) reset() (lists, changes int32) {
	return c.lists.Swap(0), c.changes.Swap(0)
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

// healthy tells the provisioner the controller's judgement of web's
// workers, as the controller's signed provisioner.health does.
func (h *dnsHarness) health(healthy, unhealthy []string) {
	h.t.Helper()
	if err := h.p.SetHealth(context.Background(), provisioner.HealthBody{Job: "web", Healthy: healthy, Unhealthy: unhealthy}); err != nil {
		h.t.Fatal(err)
	}
}

// allHealthy judges every running worker of web healthy.
func (h *dnsHarness) allHealthy() {
	h.t.Helper()
	recs, _ := h.store.Instances(context.Background(), provisioner.Filter{Job: "web", LiveOnly: true})
	var ids []string
	for _, r := range recs {
		if r.State == nightshift.StateRunning {
			ids = append(ids, r.ID)
		}
	}
	h.health(ids, nil)
}

// busClient serves p on the shared broker under run, as the provisioner
// daemon does, and returns a client of it (the controller's side).
func busClient(t *testing.T, p *provisioner.Provisioner, st *provstore.Store, run string) *client.Client {
	t.Helper()
	amqptest.NeedBroker(t)
	amqptest.DeleteAtEnd(t, amqptest.Topology{
		Queues:    []string{amqpbus.CommandQueue(run, provisioner.Component), amqpbus.DeadQueue(run)},
		Exchanges: []string{amqpbus.EventsExchange(run), amqpbus.DeadLetterExchange(run)},
	})
	dial := func(name string, onConsume func(string)) *amqpbus.Bus {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := amqpbus.Dial(dctx, amqpbus.Config{URL: amqptest.URL(), Name: name, Run: run, Log: slog.New(slog.DiscardHandler), OnConsume: onConsume})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	consuming := make(chan string, 1)
	srvBus := dial("route53dns-test-provisioner", func(q string) {
		select {
		case consuming <- q:
		default:
		}
	})
	secret := []byte("0123456789abcdef0123456789abcdef")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	srv := &provbus.Server{Bus: srvBus, Provisioner: p, Signer: &envelope.Signer{Secret: secret}, Ledger: st.Commands()}
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-consuming:
	case <-time.After(10 * time.Second):
		t.Fatal("provisioner bus server never started consuming")
	}
	return client.New(dial("route53dns-test-client", nil), &envelope.Signer{Secret: secret}, "test", nil)
}

// TestRecordsFollowThePool is issue 20's "done when" on moto: a pool of 3
// gets no record while running but not yet healthy, then 3 records with
// the right names and addresses and a pool record once the controller
// judges them healthy; a worker judged unhealthy keeps its name but leaves
// the pool record; a worker killed behind the run's back loses its record
// at the next reconcile and its healthy replacement takes the name;
// scale-in deletes the record; a record lost to a crash between a launch
// and its record is repaired by the restarted provisioner's reconcile; a
// sweep with the provisioner dead leaves none. Each change after the
// first reconcile costs one ChangeResourceRecordSets and no listing.
func TestRecordsFollowThePool(t *testing.T) {
	raw, _, zname := newZone(t)
	api := &counting{API: raw}
	ctx := context.Background()
	zone, err := route53dns.OpenZone(ctx, api, zname, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The test looks through a zone of its own, so that only the
	// provisioner's requests are counted.
	seen, err := route53dns.OpenZone(ctx, raw, zname, nil)
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
	// check: a record per running worker ever judged healthy, the pool
	// record of those healthy now, and nothing else of the run's.
	check := func(names ...string) {
		t.Helper()
		got, err := seen.RecordAddresses(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		recs, _ := st.Instances(ctx, provisioner.Filter{LiveOnly: true})
		var pool []string
		want := map[string][]string{}
		for _, r := range recs {
			if r.State == nightshift.StateRunning && r.Health != "" {
				want[r.DNSName] = []string{r.DNSAddress}
			}
			if r.State == nightshift.StateRunning && r.Health == provisioner.HealthHealthy {
				pool = append(pool, r.DNSAddress)
			}
		}
		if len(pool) > 0 {
			slices.Sort(pool)
			want[poolName] = pool
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
	api.reset()
	requests := func(what string, wantChanges int32) {
		t.Helper()
		lists, changes := api.reset()
		if lists != 0 || changes != wantChanges {
			t.Errorf("%s: %d lists and %d changes of the zone, want 0 and %d", what, lists, changes, wantChanges)
		}
	}

	// A pool of 3: running earns no record yet ...
	if _, err := h.p.Launch(ctx, provisionertest.Launch(jobs, "L1", "web", 3)); err != nil {
		t.Fatal(err)
	}
	h.idle()
	requests("launch of 3, not yet healthy", 0)
	check()
	// ... healthy does, in one batch.
	h.allHealthy()
	requests("3 workers healthy", 1)
	check(name("0"), name("1"), name("2"), poolName)
	api.reset()

	// Worker 0 turns unhealthy: it keeps its name, but leaves the pool
	// record; healthy again, it is back in it.
	w0 := h.instanceNamed(name("0"))
	h.health(nil, []string{w0.ID})
	requests("worker 0 unhealthy", 1)
	if got, _ := seen.RecordAddresses(ctx, run); slices.Contains(got[poolName], w0.DNSAddress) || got[name("0")] == nil {
		t.Fatalf("after worker 0 turned unhealthy: %v; want its record kept and it out of the pool record", got)
	}
	check(name("0"))
	api.reset()
	h.health([]string{w0.ID}, nil)
	check(name("0"))
	if got, _ := seen.RecordAddresses(ctx, run); !slices.Contains(got[poolName], w0.DNSAddress) {
		t.Fatalf("worker 0 healthy again but not in the pool record: %v", got)
	}
	api.reset()
	// The same judgement again changes nothing and costs nothing.
	h.allHealthy()
	requests("the same judgement again", 0)

	old := h.instanceNamed(name("1"))

	// Worker 1 dies behind the run's back: one reconcile fails it and
	// deletes its record; its replacement takes the name once healthy.
	h.drv.Vanish(old.ID)
	if err := h.p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	check(name("0"), name("2"))
	if _, err := h.p.Launch(ctx, provisionertest.Launch(jobs, "L2", "web", 1)); err != nil {
		t.Fatal(err)
	}
	h.idle()
	h.allHealthy()
	check(name("0"), name("1"), name("2"))
	repl := h.instanceNamed(name("1"))
	if repl.ID == old.ID || repl.DNSAddress == old.DNSAddress {
		t.Fatalf("name %s still on %s (%s), want the replacement", name("1"), old.ID, old.DNSAddress)
	}

	// Scale in: worker 2's record goes with it.
	api.reset()
	if _, err := h.p.Terminate(ctx, []string{h.instanceNamed(name("2")).ID}); err != nil {
		t.Fatal(err)
	}
	h.idle()
	requests("scale-in of one", 1)
	check(name("0"), name("1"))

	// The record of a worker launched while Route 53 failed (as after a
	// crash between the launch and the record) is missing ...
	fz.down.Store(true)
	if _, err := h.p.Launch(ctx, provisionertest.Launch(jobs, "L3", "web", 1)); err != nil {
		t.Fatal(err)
	}
	h.idle()
	h.allHealthy()
	if got, _ := seen.RecordAddresses(ctx, run); got[name("2")] != nil {
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
	if got, _ := seen.RecordAddresses(ctx, run); len(got) != 0 {
		t.Fatalf("records left after the sweep: %v", got)
	}
}

// dnsSeen records what the provisioner tells its observer of DNS syncs.
type dnsSeen struct {
	mu   sync.Mutex
	errs []error
}

func (o *dnsSeen) InstanceChanged(provisioner.Instance, nightshift.InstanceState) {}

func (o *dnsSeen) DNSSynced(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errs = append(o.errs, err)
}

func (o *dnsSeen) last() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.errs) == 0 {
		return errors.New("no sync seen")
	}
	return o.errs[len(o.errs)-1]
}

// A hosted zone that does not resolve when the provisioner starts does not
// stop it: its pools launch and run, the problem is reported (log,
// DNSProblem, the metrics observer, Describe, also over the bus as the
// controller asks it), and once the zone exists a reconcile
// past the look-up's back-off writes the records.
func TestZoneMissingAtStartPoolsStillRun(t *testing.T) {
	raw, _, _ := newZone(t)
	ctx := context.Background()
	missing := "late-" + newID() + ".example.internal"
	run := "r" + newID()
	jobs := provisionertest.Jobs("web")
	web := jobs["web"]
	web.DNS = &jobspec.DNS{Zone: missing, Name: "${job}-${index}.${run}." + missing, TTL: 30, Address: jobspec.AddressPriv}
	web.Instance = map[string]any{"endpoint_url": ec2test.URL(t)}
	jobs["web"] = web
	zones, err := route53dns.JobZones(ctx, jobs, nil)
	if err != nil {
		t.Fatalf("JobZones with a zone that does not resolve: %v, want the provisioner to start", err)
	}
	now := time.Now()
	var nowMu sync.Mutex
	route53dns.SetRetry(zones["web"], backoff.Policy{}, 1, nil, func() time.Time { nowMu.Lock(); defer nowMu.Unlock(); return now })
	st, err := provstore.Open(ctx, filepath.Join(t.TempDir(), "prov.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	obs := &dnsSeen{}
	h := &dnsHarness{t: t, drv: provisionertest.NewDriver(run), store: st}
	h.cfg = provisioner.Config{Run: run, Driver: h.drv, Store: st, Jobs: jobs, DNS: map[string]provisioner.DNSZone{"web": zones["web"]},
		Log: slog.New(slog.DiscardHandler), ReconcileEvery: -1, RetryDelay: time.Second, CallTimeout: 10 * time.Second, Observer: obs}
	h.start()
	if _, err := h.p.Launch(ctx, provisionertest.Launch(jobs, "L1", "web", 2)); err != nil {
		t.Fatal(err)
	}
	h.idle()
	h.allHealthy()
	recs, _ := st.Instances(ctx, provisioner.Filter{Job: "web", LiveOnly: true})
	if len(recs) != 2 || recs[0].State != nightshift.StateRunning || recs[1].State != nightshift.StateRunning {
		t.Fatalf("workers %+v: want 2 running without their zone", recs)
	}
	if p := h.p.DNSProblem(); !strings.Contains(p, "no hosted zone") || !errors.Is(obs.last(), route53dns.ErrNoZone) {
		t.Fatalf("DNSProblem %q, observer told %v; want the missing zone reported", p, obs.last())
	}
	// What the controller shows in mgmt status comes through Describe,
	// which it calls over the bus.
	if d, err := h.p.Describe(ctx, "web"); err != nil || !strings.Contains(d.DNSProblem, "no hosted zone") {
		t.Fatalf("Describe: dns_problem %q (%v), want the missing zone", d.DNSProblem, err)
	}
	t.Run("over the bus", func(t *testing.T) {
		d, err := busClient(t, h.p, st, run).Describe(ctx, provisioner.DescribeBody{Job: "web"})
		if err != nil || !strings.Contains(d.DNSProblem, "no hosted zone") {
			t.Fatalf("Describe over the bus: dns_problem %q (%v), want the missing zone", d.DNSProblem, err)
		}
	})

	if _, err := raw.(*route53.Client).CreateHostedZone(ctx, &route53.CreateHostedZoneInput{
		Name: aws.String(missing), CallerReference: aws.String(newID()),
	}); err != nil {
		t.Fatal(err)
	}
	nowMu.Lock()
	now = now.Add(time.Hour)
	nowMu.Unlock()
	if err := h.p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if p := h.p.DNSProblem(); p != "" || obs.last() != nil {
		t.Fatalf("DNSProblem %q, observer told %v after the zone appeared; want none", p, obs.last())
	}
	seen, err := route53dns.OpenZone(ctx, raw, missing, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := seen.RecordAddresses(ctx, run)
	if err != nil || len(got) != 2 || got["web-0."+run+"."+missing] == nil || got["web-1."+run+"."+missing] == nil {
		t.Fatalf("records %v (%v), want web-0 and web-1", got, err)
	}
}
