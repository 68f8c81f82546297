package provbus_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"nightshift"
	"nightshift/controller"
	"nightshift/decision"
	"nightshift/internal/jobspec"
	"nightshift/internal/store/ctlstore"
	"nightshift/provisioner"
	"nightshift/provisioner/client"
	"nightshift/provisioner/provisionertest"
)

// brokenZone is a DNS zone whose changes fail while err is set, as Route 53
// refusing them or a zone that does not resolve would.
type brokenZone struct {
	mu  sync.Mutex
	err error
}

func (z *brokenZone) Sync(context.Context, string, []provisioner.DNSRecord, bool) (provisioner.DNSChanges, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	return provisioner.DNSChanges{}, z.err
}

func (z *brokenZone) set(err error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.err = err
}

// ctlProv is the controller's provisioner over the bus client, as the
// controller daemon wires it (cmd/controller's provClient).
type ctlProv struct{ *client.Client }

func (p ctlProv) Describe(ctx context.Context, job string) (provisioner.Status, error) {
	return p.Client.Describe(ctx, provisioner.DescribeBody{Job: job})
}

// A provisioner whose DNS sync failed says why in its describe reply over
// the bus, so a controller whose provisioner is a bus client shows it in
// status (dns_error, mgmt status's "DNS RECORDS NOT KEPT"), and both stop
// saying so once a sync works. The reply had no such field, so over the
// bus the problem never reached status.
func TestDescribeOverBusCarriesDNSProblem(t *testing.T) {
	zone := &brokenZone{err: errors.New("hosted zone example.internal not resolved")}
	f := startWith(t, func(cfg *provisioner.Config) {
		web := cfg.Jobs["web"]
		web.DNS = &jobspec.DNS{Zone: "example.internal", Name: "${job}-${index}.example.internal", TTL: 30, Address: jobspec.AddressPriv}
		cfg.Jobs["web"] = web
		cfg.DNS = map[string]provisioner.DNSZone{"web": zone}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.client.Launch(ctx, provisionertest.Launch(f.jobs, "L1", "web", 1)); err != nil {
		t.Fatal(err)
	}
	if err := f.p.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := f.client.Describe(ctx, provisioner.DescribeBody{Job: "web"})
	if err != nil || len(st.Instances) != 1 || st.Instances[0].State != nightshift.StateRunning {
		t.Fatalf("describe: %+v %v, want one running worker", st, err)
	}
	// The worker judged healthy gets its record: the sync that fails.
	if err := f.client.Health(ctx, provisioner.HealthBody{Job: "web", Healthy: []string{st.Instances[0].ID}}); err != nil {
		t.Fatal(err)
	}
	want := f.p.DNSProblem()
	if !strings.Contains(want, "not resolved") {
		t.Fatalf("provisioner's DNSProblem %q after a failed sync, want the zone's error", want)
	}
	for _, q := range []provisioner.DescribeBody{{Job: "web"}, {}, {Job: "web", LiveOnly: true}} {
		if st, err := f.client.Describe(ctx, q); err != nil || st.DNSProblem != want {
			t.Errorf("describe %+v over the bus: dns_problem %q (%v), want %q", q, st.DNSProblem, err, want)
		}
	}

	job, err := controller.ParseJob("web", map[string]any{
		"engine": "npreserving", "policy": map[string]any{"n": 1},
		"worker": map[string]any{"command": []any{"/bin/worker"}},
		"dns":    map[string]any{"zone": "example.internal", "name": "${job}-${index}.example.internal"},
	}, decision.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	cst, err := ctlstore.Open(ctx, filepath.Join(t.TempDir(), "controller.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cst.Close() })
	c, err := controller.New(ctx, controller.Config{Jobs: []controller.Job{job}, Registry: decision.NewRegistry(), Store: cst,
		Provisioner: ctlProv{f.client}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if got := dnsError(t, c); got != want {
		t.Fatalf("controller status after recovery: dns_error %q, want %q", got, want)
	}

	zone.set(nil)
	if err := f.p.SyncDNS(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := f.client.Describe(ctx, provisioner.DescribeBody{Job: "web"}); err != nil || st.DNSProblem != "" {
		t.Errorf("describe after a sync that worked: dns_problem %q (%v), want none", st.DNSProblem, err)
	}
	c.Resync(ctx)
	if got := dnsError(t, c); got != "" {
		t.Fatalf("controller status after a resync with DNS kept: dns_error %q, want none", got)
	}
}

// dnsError is what c's status says of job web's DNS records.
func dnsError(t *testing.T, c *controller.Controller) string {
	t.Helper()
	js, err := c.Status("web")
	if err != nil || len(js) != 1 {
		t.Fatalf("controller status: %+v %v", js, err)
	}
	return js[0].DNSError
}
