package provbus_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nightshift"
	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/internal/jobspec"
	"nightshift/internal/store/provstore"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/provisioner"
	"nightshift/provisioner/client"
	"nightshift/provisioner/provbus"
	"nightshift/provisioner/provisionertest"
)

type fixture struct {
	run    string
	secret []byte
	p      *provisioner.Provisioner
	drv    *provisionertest.Driver
	bus    *amqpbus.Bus // the caller's connection
	client *client.Client
	jobs   map[string]jobspec.Spec
}

func dial(t *testing.T, run, name string, onConsume func(string)) *amqpbus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := amqpbus.Dial(ctx, amqpbus.Config{URL: amqptest.URL(), Name: name, Run: run, Log: slog.New(slog.DiscardHandler), OnConsume: onConsume})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// start runs a provisioner with a fake driver behind a Server and returns a
// client for it.
func start(t *testing.T) *fixture {
	t.Helper()
	return startWith(t, nil)
}

// startWith is start with the provisioner's config (its Jobs are the
// fixture's) changed by edit first.
func startWith(t *testing.T, edit func(*provisioner.Config)) *fixture {
	t.Helper()
	amqptest.NeedBroker(t)
	f := &fixture{run: amqptest.UniqueName(t, "provtest"), secret: []byte("0123456789abcdef0123456789abcdef")}
	deleteTopology(t, f.run)
	st, err := provstore.Open(context.Background(), filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	consuming := make(chan string, 4)
	srvBus := dial(t, f.run, "provisioner-test", func(q string) { consuming <- q })
	f.drv = provisionertest.NewDriver(f.run)
	f.jobs = provisionertest.Jobs("web")
	cfg := provisioner.Config{Run: f.run, Driver: f.drv, Store: st, Events: provbus.Events{Bus: srvBus}, ReconcileEvery: -1, Jobs: f.jobs}
	if edit != nil {
		edit(&cfg)
	}
	f.p, err = provisioner.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &provbus.Server{Bus: srvBus, Provisioner: f.p, Log: slog.New(slog.DiscardHandler),
		Signer: &envelope.Signer{Secret: f.secret}, Ledger: st.Commands()}
	done := make(chan struct{}, 2)
	go func() { f.p.Run(ctx); done <- struct{}{} }()
	go func() { srv.Serve(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	select {
	case <-consuming:
	case <-time.After(10 * time.Second):
		t.Fatal("server never started consuming")
	}
	f.bus = dial(t, f.run, "client-test", nil)
	f.client = client.New(f.bus, &envelope.Signer{Secret: f.secret}, "test", nil)
	return f
}

func TestClientRoundTripAndEvents(t *testing.T) {
	f := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	running := make(chan provisioner.Instance, 10)
	subscribed := make(chan string, 1)
	subBus := dial(t, f.run, "sub-test", func(q string) { subscribed <- q })
	sub := client.New(subBus, nil, "sub", nil)
	go sub.SubscribeEvents(ctx, []string{"instance.web.running"}, func(_ context.Context, inst provisioner.Instance) error {
		running <- inst
		return nil
	})
	<-subscribed

	insts, err := f.client.Launch(ctx, provisionertest.Launch(f.jobs, "L1", "web", 2))
	if err != nil || len(insts) != 2 {
		t.Fatalf("launch: %v %+v", insts, err)
	}
	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case inst := <-running:
			if inst.State != nightshift.StateRunning {
				t.Errorf("event on instance.web.running carries %s", inst.State)
			}
			seen[inst.ID] = true
		case <-ctx.Done():
			t.Fatalf("saw running events for %v only", seen)
		}
	}
	st, err := f.client.Describe(ctx, provisioner.DescribeBody{Job: "web"})
	if err != nil || st.Live != 2 {
		t.Fatalf("describe: %+v %v", st, err)
	}
	if _, err := f.client.Terminate(ctx, []string{"missing-1"}); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("terminate unknown: %v, want ErrNotFound", err)
	}
	if _, err := f.client.Launch(ctx, provisionertest.Launch(f.jobs, "L2", "web", 0)); !errors.Is(err, client.ErrRemote) || !strings.Contains(err.Error(), "count") {
		t.Errorf("invalid launch: %v, want refusal naming count", err)
	}
	for live := -1; live != 0; {
		if live, err = f.client.TerminateAll(ctx); err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatal("terminate_all never finished")
		}
	}
	if len(f.drv.Live()) != 0 {
		t.Errorf("driver still has %v", f.drv.Live())
	}
	if err := f.client.Enable(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestUnsignedDestructiveCommandsAreRefused(t *testing.T) {
	f := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := f.client.Launch(ctx, provisionertest.Launch(f.jobs, "L1", "web", 1)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		secret []byte // nil: unsigned
	}{
		{"unsigned", nil},
		{"wrong secret", []byte("ffffffffffffffffffffffffffffffff")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env, err := envelope.NewEnvelope(provisioner.TypeTerminateAll, 1, f.run, "intruder", provisioner.TerminateAllBody{}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			launch, err := envelope.NewEnvelope(provisioner.TypeLaunch, 1, f.run, "intruder", provisionertest.Launch(f.jobs, "L-"+strings.ReplaceAll(c.name, " ", "-"), "web", 5), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			for _, env := range []envelope.Envelope{env, launch} {
				if c.secret != nil {
					(&envelope.Signer{Secret: c.secret}).Sign(&env)
				}
				raw, err := f.bus.Call(ctx, provisioner.Component, env)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(raw), "signature") {
					t.Errorf("%s: reply %s, want a signature refusal", env.Type, raw)
				}
			}
		})
	}
	st, err := f.client.Describe(ctx, provisioner.DescribeBody{})
	if err != nil || st.Disabled || len(st.Instances) != 1 {
		t.Fatalf("after refused commands: disabled=%v, %d instances (want 1), err=%v", st.Disabled, len(st.Instances), err)
	}
	if nc := client.New(f.bus, nil, "nosigner", nil); nc != nil {
		if _, err := nc.TerminateAll(ctx); err == nil {
			t.Error("client without signer sent a destructive command")
		}
	}
}

// deleteTopology removes the run's queues and exchanges from the shared
// broker when the test ends.
func deleteTopology(t *testing.T, run string) {
	amqptest.DeleteAtEnd(t, amqptest.Topology{
		Queues:    []string{amqpbus.CommandQueue(run, provisioner.Component), amqpbus.DeadQueue(run)},
		Exchanges: []string{amqpbus.EventsExchange(run), amqpbus.DeadLetterExchange(run)},
	})
}
