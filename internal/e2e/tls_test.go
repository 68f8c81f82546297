package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nightshift/internal/pki"
	"nightshift/internal/runlayout"
	"nightshift/mgmt"
)

// TestLocalPlanOverTLSEndToEnd runs plans/local.toml with its broker on
// AMQPS only (testdata/local-tls.toml): every daemon, sitter and worker must
// verify the broker against the run's CA for the pools to reach policy at
// all, the controller must read queue depth over HTTPS for the work pool to
// follow its queue, and teardown must leave nothing behind.
func TestLocalPlanOverTLSEndToEnd(t *testing.T) {
	requireRuns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	r := env.NewRun(t, "internal/e2e/testdata/local-tls.toml", "tls")
	r.Launch(ctx)

	st := mustWait(t, r, ctx, "3 sleepers and 1 worker running and healthy over TLS", 90*time.Second, atPolicy)
	broker := service(st, "broker")
	if broker == nil {
		t.Fatal("no broker in status")
	}
	caFile := filepath.Join(runlayout.Of(r.Home, r.Name).PKI(), pki.CACertFile)
	if u := broker.Attributes["url"]; !strings.HasPrefix(u, "amqps://") {
		t.Errorf("broker url %q: want amqps://", u)
	}
	if m := broker.Attributes["management_url"]; !strings.HasPrefix(m, "https://") {
		t.Errorf("broker management_url %q: want https://", m)
	}
	if got := broker.Attributes["ca_file"]; got != caFile {
		t.Errorf("broker ca_file %q, want the run's CA %s", got, caFile)
	}
	if fi, err := os.Stat(filepath.Join(runlayout.Of(r.Home, r.Name).PKI(), pki.CAKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("run CA key: %v, mode %v; want 0600", err, fi)
	}
	assertAgrees(t, r, ctx, "after launch over TLS")

	// The producer and the queue workers use the broker over TLS too, and
	// the queue depth the pool follows comes from the HTTPS management API.
	if err := r.Publish(ctx, 60); err != nil {
		t.Fatal(err)
	}
	mustWait(t, r, ctx, "work pool grows with its queue", 60*time.Second, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "work")
		return len(Running(j)) >= 2, jobLine(j)
	})
	mustWait(t, r, ctx, "queue drains and work pool shrinks to 1", 90*time.Second, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "work")
		return j != nil && j.QueueDepth != nil && *j.QueueDepth == 0 && len(Running(j)) == 1, jobLine(j)
	})

	if res := r.Teardown(ctx); res.Code != 0 {
		t.Fatalf("teardown exit %d", res.Code)
	}
	r.AssertNoProcesses()
	if st, err := r.Status(ctx); err != nil || st.State != "terminated" {
		t.Errorf("after teardown: status %v, err %v; want state terminated", stateOf(st), err)
	}
}

func service(st *mgmt.RunStatus, name string) *mgmt.ServiceStatus {
	for _, l := range st.Levels {
		for i := range l.Services {
			if l.Services[i].Name == name {
				return &l.Services[i]
			}
		}
	}
	return nil
}
