package controller_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"nightshift"
	"nightshift/controller"
	"nightshift/controller/ctlbus"
	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/internal/testsupport"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/provisioner/provbus"
	"nightshift/sitter"
)

// dialTestBus connects to the shared broker under a unique run, or skips
// (fails under NIGHTSHIFT_TEST_STRICT=1) when it is not there.
func dialTestBus(t testing.TB) (*amqpbus.Bus, string) {
	t.Helper()
	amqptest.NeedBroker(t)
	return dialNamedBus(t, "controller-test")
}

// dialNamedBus is dialTestBus with the connection named name, which
// amqptest.KillConnection finds.
func dialNamedBus(t testing.TB, name string) (*amqpbus.Bus, string) {
	t.Helper()
	run := amqptest.UniqueName(t, "ctlbus-")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bus, err := amqpbus.Dial(ctx, amqpbus.Config{URL: amqptest.URL(), Name: name, Run: run, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bus.Close()
		amqptest.Delete(t, amqptest.Topology{
			Queues: []string{amqpbus.CommandQueue(run, controller.Component),
				amqpbus.CommandQueue(run, ctlbus.SitterComponent("web-seed-1")), amqpbus.DeadQueue(run)},
			Exchanges: []string{amqpbus.EventsExchange(run), amqpbus.DeadLetterExchange(run)},
		})
	})
	return bus, run
}

func TestServeOverBus(t *testing.T) {
	bus, _ := dialTestBus(t)
	secret := []byte(strings.Repeat("k", 32))
	r := newRig(t, npJob(t, 2))
	ids := r.prov.seed("web", 2, nightshift.StateRunning, t0)
	r.restart()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := r.clock
	srv := &ctlbus.Server{Bus: bus, Controller: r.c, Clock: clock, Ledger: r.store.Commands(),
		Signer: &envelope.Signer{Secret: secret, Now: clock.Now}}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	cl := &ctlbus.Client{Bus: bus, Signer: &envelope.Signer{Secret: secret}, Sender: "ops@test", Clock: clock, Timeout: 10 * time.Second}

	// Status answers once the command consumer is up.
	var st []controller.JobStatus
	testsupport.Eventually(t, 10*time.Second, func() error {
		cctx, c := context.WithTimeout(ctx, time.Second)
		defer c()
		var err error
		st, err = cl.Status(cctx, "web")
		return err
	})
	if len(st) != 1 || st[0].Name != "web" || len(st[0].Workers) != 2 {
		t.Fatalf("status %+v", st)
	}
	if _, err := cl.Status(ctx, "nope"); !errors.Is(err, ctlbus.ErrRemote) {
		t.Fatalf("status of unknown job: %v, want ErrRemote", err)
	}

	// A bad value is refused with the engine's error; the old config stays.
	err := cl.Reconfigure(ctx, "web", map[string]any{"n": -3})
	if !errors.Is(err, ctlbus.ErrRemote) || !strings.Contains(err.Error(), "npreserving: n:") {
		t.Fatalf("bad reconfigure: %v, want the engine's error", err)
	}
	if err := cl.Reconfigure(ctx, "web", map[string]any{"n": 3}); err != nil {
		t.Fatal(err)
	}
	st, _ = cl.Status(ctx, "web")
	if st[0].Policy["n"] != 3.0 {
		t.Fatalf("policy after reconfigure %v, want n=3", st[0].Policy)
	}

	// Wrong secret: destructive commands are refused.
	forger := &ctlbus.Client{Bus: bus, Signer: &envelope.Signer{Secret: []byte(strings.Repeat("x", 32))}, Sender: "mallory", Clock: clock}
	if err := forger.Freeze(ctx); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("forged freeze: %v, want a signature error", err)
	}
	if r.c.Frozen() {
		t.Fatal("forged freeze froze the controller")
	}
	if err := cl.Freeze(ctx); err != nil || !r.c.Frozen() {
		t.Fatalf("freeze: %v (frozen %v)", err, r.c.Frozen())
	}
	if err := cl.Unfreeze(ctx); err != nil || r.c.Frozen() {
		t.Fatalf("unfreeze: %v (frozen %v)", err, r.c.Frozen())
	}
	// Unblock (mgmt repair) is signed like freeze; an unknown job is named.
	if err := forger.Unblock(ctx, ""); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("forged unblock: %v, want a signature error", err)
	}
	if err := cl.Unblock(ctx, ""); err != nil {
		t.Fatalf("unblock: %v", err)
	}
	if err := cl.Unblock(ctx, "nope"); !errors.Is(err, ctlbus.ErrRemote) || !strings.Contains(err.Error(), `unknown job`) {
		t.Fatalf("unblock of an unknown job: %v, want it refused", err)
	}

	// Heartbeats published by a sitter reach the controller.
	pub := ctlbus.HeartbeatPublisher{Bus: bus, Sender: "sitter@h", Clock: clock}
	testsupport.Eventually(t, 10*time.Second, func() error {
		hb := sitter.Heartbeat{InstanceID: ids[0], Job: "web", Host: "h0", Time: clock.Now(),
			Tasks: []sitter.TaskStatus{{Name: "work", State: sitter.StateRunning, Work: sitter.WorkIdle}}}
		if err := pub.SendHeartbeat(ctx, hb); err != nil {
			t.Fatal(err)
		}
		st, _ := r.c.Status("web")
		for _, w := range st[0].Workers {
			if w.ID == ids[0] && w.HeartbeatAgeS != nil && w.Host == "h0" {
				return nil
			}
		}
		return fmt.Errorf("workers %+v: no heartbeat from %s on h0 yet", st[0].Workers, ids[0])
	})

	// Decisions history over RPC.
	r.tick()
	ds, err := cl.Decisions(ctx, "web", 5)
	if err != nil || len(ds) == 0 || ds[0].Reason == "" {
		t.Fatalf("decisions %+v err %v", ds, err)
	}

	// A drain is a signed command on the sitter's queue.
	dr := ctlbus.BusDrainer{Bus: bus, Signer: &envelope.Signer{Secret: secret}, Sender: "controller", Clock: clock}
	if err := dr.Drain(ctx, "web", ids[1], "scale in"); err != nil {
		t.Fatal(err)
	}
	got := make(chan ctlbus.DrainBody, 1)
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	reg := ctlbus.Messages()
	verifier := &envelope.Signer{Secret: secret, Seen: envelope.NewReplayCache(10), Now: clock.Now}
	go bus.Consume(cctx, ctlbus.SitterComponent(ids[1]), func(ctx context.Context, d amqpbus.Delivery) error {
		env, body, err := amqpbus.DecodeOrReject(reg, slog.New(slog.DiscardHandler), d)
		if err != nil {
			return err
		}
		if err := verifier.Verify(env); err != nil {
			return fmt.Errorf("%w: %w", amqpbus.ErrReject, err)
		}
		got <- *body.(*ctlbus.DrainBody)
		return nil
	})
	select {
	case b := <-got:
		if b.InstanceID != ids[1] || b.Job != "web" || b.Reason != "scale in" {
			t.Fatalf("drain body %+v", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no drain command on the sitter's queue")
	}
	cancel()
	// Closing the connection unblocks consumers still closing channels.
	bus.Close()
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, amqpbus.ErrClosed) {
		t.Fatalf("Serve returned %v", err)
	}
}

// TestReplayedReconfigureDoesNotRevert is the audit's replay finding on
// the controller: an old signed reconfigure published again after a later
// one, with its id, is answered with its recorded reply and changes
// nothing, before and after the controller restarts on its store.
func TestReplayedReconfigureDoesNotRevert(t *testing.T) {
	bus, run := dialTestBus(t)
	secret := []byte(strings.Repeat("k", 32))
	r := newRig(t, npJob(t, 2))
	clock := r.clock
	serve := func() context.CancelFunc {
		ctx, cancel := context.WithCancel(context.Background())
		srv := &ctlbus.Server{Bus: bus, Controller: r.c, Clock: clock, Ledger: r.store.Commands(),
			Signer: &envelope.Signer{Secret: secret, Now: clock.Now}}
		done := make(chan struct{})
		go func() { srv.Serve(ctx); close(done) }()
		return func() { cancel(); <-done }
	}
	stop := serve()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := ctlbus.Messages()
	signed := func(n int) envelope.Envelope {
		env, err := envelope.NewEnvelope(controller.TypeReconfigure, 1, run, "ops@test", controller.ReconfigureBody{Job: "web", Values: map[string]any{"n": n}}, clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := (&envelope.Signer{Secret: secret}).Sign(&env); err != nil {
			t.Fatal(err)
		}
		return env
	}
	call := func(env envelope.Envelope) controller.Reply {
		t.Helper()
		var rep controller.Reply
		testsupport.Eventually(t, 20*time.Second, func() error {
			cctx, c := context.WithTimeout(ctx, 2*time.Second)
			defer c()
			raw, err := bus.Call(cctx, controller.Component, env)
			if err != nil {
				return err
			}
			_, body, err := reg.Decode(raw, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			rep = *body.(*controller.Reply)
			return nil
		})
		return rep
	}
	policyN := func() string {
		st, err := r.c.Status("web")
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(st[0].Policy["n"])
	}
	old := signed(5)
	if rep := call(old); rep.Error != "" {
		t.Fatalf("reconfigure n=5: %+v", rep)
	}
	if rep := call(signed(2)); rep.Error != "" || policyN() != "2" {
		t.Fatalf("reconfigure n=2: %+v, n=%v", rep, policyN())
	}
	if rep := call(old); rep.Error != "" || policyN() != "2" {
		t.Fatalf("replayed n=5: reply %+v, n=%v; want the recorded reply and n still 2", rep, policyN())
	}
	stop()
	r.restart()
	stop = serve()
	defer stop()
	if rep := call(old); rep.Error != "" || policyN() != "2" {
		t.Fatalf("replayed n=5 after a restart: reply %+v, n=%v; want n still 2", rep, policyN())
	}
}

// TestInstanceEndedBeforeSubscribingIsSeen is a standby's takeover: the
// new active controller recovered its view from the provisioner, and a
// worker died before its instance subscription was bound, so the
// provisioner's event went to nobody. Binding the subscription rereads the
// records, so the death is seen (and the worker replaced) at once, not by
// missing_timeout of silence; the fake clock never gets there.
func TestInstanceEndedBeforeSubscribingIsSeen(t *testing.T) {
	bus, _ := dialTestBus(t)
	r := newRig(t, npJob(t, 2))
	ids := r.prov.seed("web", 2, nightshift.StateRunning, t0)
	r.restart() // recovered: both running
	// Died after the recovery's describe, before any subscription.
	r.prov.setState(ids[0], nightshift.StateFailed)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &ctlbus.Server{Bus: bus, Controller: r.c, Clock: r.clock, Ledger: r.store.Commands(),
		Signer: &envelope.Signer{Secret: []byte(strings.Repeat("k", 32)), Now: r.clock.Now}}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	testsupport.Eventually(t, 15*time.Second, func() error {
		st, err := r.c.Status("web")
		if err != nil {
			return err
		}
		for _, w := range st[0].Workers {
			if w.ID == ids[0] && w.State != string(nightshift.StateFailed) {
				return fmt.Errorf("worker %s is %s, want failed", w.ID, w.State)
			}
		}
		return nil
	})
	r.tick()
	if n, _ := r.prov.launched(); n != 1 {
		t.Fatalf("%d instances launched after the death was seen, want 1 replacement", n)
	}
	cancel()
	bus.Close()
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, amqpbus.ErrClosed) {
		t.Fatalf("Serve returned %v", err)
	}
}

// TestRecordsReadOncePerBindOverBus is TestRecordsReadOncePerBind as the
// daemon runs it: Serve binds the instance subscription and Run recovers
// after that bind, reading the provisioner's records once at start; a
// lost connection binds a new subscription, which reads them once more,
// so a worker that died meanwhile, its event sent to nobody, is replaced.
func TestRecordsReadOncePerBindOverBus(t *testing.T) {
	amqptest.NeedRabbitmqctl(t)
	name := amqptest.UniqueName(t, "controller-test-")
	bus, _ := dialNamedBus(t, name)
	r := newRig(t, npJob(t, 1))
	ids := r.prov.seed("web", 1, nightshift.StateRunning, t0)
	r.restartAwaitingBind()
	base := r.prov.describeCount()
	reads := func() int { return r.prov.describeCount() - base }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &ctlbus.Server{Bus: bus, Controller: r.c, Clock: r.clock, Ledger: r.store.Commands(),
		Signer: &envelope.Signer{Secret: []byte(strings.Repeat("k", 32)), Now: r.clock.Now}}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	r.run()
	testsupport.Eventually(t, 15*time.Second, func() error {
		st, err := r.c.Status("web")
		if err != nil {
			return err
		}
		if len(st[0].Workers) != 1 {
			return fmt.Errorf("workers %+v, want %s once recovered", st[0].Workers, ids[0])
		}
		return nil
	})
	// An event heard is one of a bound subscription: the bind is past.
	ev := r.prov.setState(ids[0], nightshift.StateRunning)
	ev.DNSName = "w0.example.internal"
	if err := (provbus.Events{Bus: bus, Clock: r.clock}).InstanceChanged(ctx, ev); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, 15*time.Second, func() error {
		st, _ := r.c.Status("web")
		if w := st[0].Workers; len(w) != 1 || w[0].DNSName != ev.DNSName {
			return fmt.Errorf("workers %+v, want %s named %s by its event", w, ids[0], ev.DNSName)
		}
		return nil
	})
	if got := reads(); got != 1 {
		t.Fatalf("records read %d times at start, want once (recovery and first bind together)", got)
	}
	// Died while the connection is down: its event reaches nobody.
	r.prov.setState(ids[0], nightshift.StateFailed)
	amqptest.KillConnection(t, name)
	testsupport.Eventually(t, 30*time.Second, func() error {
		if n, _ := r.prov.launched(); n != 1 {
			return fmt.Errorf("%d instances launched, want 1 replacing %s", n, ids[0])
		}
		return nil
	})
	if got := reads(); got != 2 {
		t.Fatalf("records read %d times after a reconnect, want twice: once at start, once for the new bind", got)
	}
	cancel()
	bus.Close()
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, amqpbus.ErrClosed) {
		t.Fatalf("Serve returned %v", err)
	}
}

// TestStatusSummaryOverBus: a status asked for with Summary (the table of
// `mgmt status`) brings a big pool's counts and its first problem workers
// only; one asked for without (`mgmt status --json`) still brings every
// worker; a small pool comes whole either way.
func TestStatusSummaryOverBus(t *testing.T) {
	bus, _ := dialTestBus(t)
	const n = 200
	small := mustJob(t, "small", map[string]any{
		"engine": "npreserving", "policy": map[string]any{"n": 2, "deployable": "worker"},
		"worker": map[string]any{"command": []any{"/bin/worker"}},
	})
	r := newRig(t, npJob(t, n), small)
	ids := r.prov.seed("web", n, nightshift.StateRunning, t0.Add(-time.Hour))
	smallIDs := r.prov.seed("small", 2, nightshift.StateRunning, t0.Add(-time.Hour))
	r.restart()
	silent := map[string]bool{}
	for i, id := range ids {
		if i%3 == 0 {
			silent[id] = true // never heard: not healthy
			continue
		}
		r.heartbeat("web", id, i%2 == 0)
	}
	for _, id := range smallIDs {
		r.heartbeat("small", id, false)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &ctlbus.Server{Bus: bus, Controller: r.c, Clock: r.clock, Ledger: r.store.Commands(),
		Signer: &envelope.Signer{Secret: []byte(strings.Repeat("k", 32)), Now: r.clock.Now}}
	go srv.Serve(ctx)
	cl := &ctlbus.Client{Bus: bus, Sender: "mgmt", Clock: r.clock, Timeout: 10 * time.Second}
	var whole []controller.JobStatus
	testsupport.Eventually(t, 10*time.Second, func() error {
		cctx, c := context.WithTimeout(ctx, time.Second)
		defer c()
		var err error
		whole, err = cl.Status(cctx, "")
		return err
	})
	sum, err := cl.Summary(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	byName := func(js []controller.JobStatus, name string) controller.JobStatus {
		for _, j := range js {
			if j.Name == name {
				return j
			}
		}
		t.Fatalf("no job %s in %+v", name, js)
		return controller.JobStatus{}
	}
	if w := byName(whole, "web"); len(w.Workers) != n || w.Summary != nil {
		t.Fatalf("whole status: %d workers, summary %v; want every one of %d and no summary", len(w.Workers), w.Summary, n)
	}
	web := byName(sum, "web")
	s := web.Summary
	if s == nil {
		t.Fatalf("summarized status of %d workers has no summary (%d workers listed)", n, len(web.Workers))
	}
	if s.Workers != n || s.Problems != len(silent) || s.Healthy != n-len(silent) {
		t.Errorf("summary %+v: want %d workers, %d problems, %d healthy", *s, n, len(silent), n-len(silent))
	}
	if len(web.Workers) != controller.MaxWorkerRows {
		t.Fatalf("summarized status lists %d workers, want the first %d problem ones", len(web.Workers), controller.MaxWorkerRows)
	}
	var firstSilent []string
	for _, w := range byName(whole, "web").Workers {
		if silent[w.ID] && len(firstSilent) < controller.MaxWorkerRows {
			firstSilent = append(firstSilent, w.ID)
		}
	}
	for i, w := range web.Workers {
		if w.ID != firstSilent[i] {
			t.Fatalf("summarized row %d is %s, want %s (the first problem workers in order)", i, w.ID, firstSilent[i])
		}
	}
	if sm := byName(sum, "small"); sm.Summary != nil || len(sm.Workers) != 2 {
		t.Errorf("small pool summarized: summary %v, %d workers; want both workers, no summary", sm.Summary, len(sm.Workers))
	}
}
