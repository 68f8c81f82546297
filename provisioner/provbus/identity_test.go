package provbus_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift/internal/amqpbus"
	"nightshift/internal/busid"
	"nightshift/internal/busid/busidtest"
	"nightshift/internal/cmdledger"
	"nightshift/internal/envelope"
	"nightshift/internal/jobspec"
	"nightshift/internal/store/provstore"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/provisioner"
	"nightshift/provisioner/client"
	"nightshift/provisioner/provbus"
	"nightshift/provisioner/provisionertest"
	"nightshift/sitter"
	"nightshift/sitter/sitterbus"
)

// rawTry runs f on a fresh channel of conn and returns the broker's
// refusal, if any (a refusal closes the channel, sometimes after a nack).
func rawTry(t *testing.T, conn *amqp.Connection, f func(ch *amqp.Channel) error) error {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Confirm(false); err != nil {
		return err
	}
	err = f(ch)
	select {
	case e := <-closed:
		if e != nil {
			return e
		}
	case <-time.After(500 * time.Millisecond):
	}
	return err
}

func rawPublish(exchange, key, userID string) func(ch *amqp.Channel) error {
	return func(ch *amqp.Channel) error {
		dc, err := ch.PublishWithDeferredConfirm(exchange, key, false, false, amqp.Publishing{UserId: userID, Body: []byte("{}")})
		if err != nil {
			return err
		}
		if !dc.Wait() {
			return errors.New("nacked")
		}
		return nil
	}
}

func wantRefused(t *testing.T, what string, err error) {
	t.Helper()
	var ae *amqp.Error
	if !errors.As(err, &ae) || (ae.Code != amqp.AccessRefused && ae.Code != amqp.PreconditionFailed) {
		t.Errorf("%s: want the broker to refuse it, got %v", what, err)
	}
}

func busAs(t *testing.T, url, run string, passive bool, onConsume func(string)) *amqpbus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := amqpbus.Dial(ctx, amqpbus.Config{URL: url, Run: run, Name: "identity-test", Passive: passive,
		Log: slog.New(slog.DiscardHandler), OnConsume: onConsume, RequeueDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

type supervisor struct {
	mu  sync.Mutex
	ops []string
}

func (s *supervisor) Handle(_ context.Context, req sitter.ControlRequest) sitter.ControlResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops = append(s.ops, req.Op)
	return sitter.ControlResponse{OK: true, Status: &sitter.Status{}}
}

func (s *supervisor) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ops...)
}

// TestIdentitiesOnAPrivateBroker runs a provisioner as its own broker user
// with WorkerUsers, launches a worker through the controller's user, and
// proves against the real broker what each identity may and may not do.
func TestIdentitiesOnAPrivateBroker(t *testing.T) {
	run := amqptest.UniqueName(t, "id")
	attrs := busidtest.PrivateBroker(t, run)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := busid.Admin{URL: attrs["management_url"]}
	user := func(role, svc string, p busid.Permissions) (amqpURL, mgmtURL string) {
		name := busid.ComponentUser(run, role, svc)
		pass := busid.Password([]byte("test"), name)
		if err := admin.EnsureUser(ctx, name, pass, p); err != nil {
			t.Fatal(err)
		}
		// Twice: creating a user is idempotent (re-boot, repair).
		if err := admin.EnsureUser(ctx, name, pass, p); err != nil {
			t.Fatal(err)
		}
		a, _ := busid.WithUser(attrs["url"], name, pass)
		m, _ := busid.WithUser(attrs["management_url"], name, pass)
		return a, m
	}
	provURL, provMgmt := user(busid.RoleProvisioner, "provisioner", busid.ProvisionerPermissions(run))
	ctlURL, _ := user(busid.RoleController, "controller", busid.ControllerPermissions(run))
	mgmtURL := attrs["mgmt_url"]
	if u, _ := amqp.ParseURI(mgmtURL); u.Username != busid.MgmtUser(run) {
		t.Fatalf("broker exported mgmt_url for %q, want mgmt's own user", u.Username)
	}

	// The provisioner, with WorkerUsers around a fake driver.
	secret := []byte("0123456789abcdef0123456789abcdef")
	_, cmdKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st, err := provstore.Open(ctx, filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	consuming := make(chan string, 4)
	provBus := busAs(t, provURL, run, false, func(q string) { consuming <- q })
	fake := provisionertest.NewDriver(run)
	urls := make(chan string, 4)
	fake.BeforeLaunch = func(_ context.Context, spec provisioner.InstanceSpec) error { urls <- spec.BrokerURL; return nil }
	wu := &provbus.WorkerUsers{Driver: fake, Bus: provBus, Run: run, Key: secret, BrokerURL: provURL,
		Admin: busid.Admin{URL: provMgmt}}
	workQ := "nightshift." + run + ".work"
	jobs := map[string]jobspec.Spec{"work": {Driver: "local", Worker: map[string]any{
		"command": []any{"/bin/true"}, "env": map[string]any{"NIGHTSHIFT_WORK_QUEUE": workQ}}}}
	p, err := provisioner.New(provisioner.Config{Run: run, Driver: wu, Store: st, Events: provbus.Events{Bus: provBus}, ReconcileEvery: -1, Jobs: jobs})
	if err != nil {
		t.Fatal(err)
	}
	srv := &provbus.Server{Bus: provBus, Provisioner: p, Signer: &envelope.Signer{Secret: secret}, Ledger: st.Commands()}
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.Run(sctx) }()
	go func() { defer wg.Done(); srv.Serve(sctx) }()
	defer func() { stop(); wg.Wait() }()
	select {
	case <-consuming:
	case <-ctx.Done():
		t.Fatal("provisioner never consumed")
	}

	// The controller launches one worker whose job has a work queue.
	ctlBus := busAs(t, ctlURL, run, false, nil)
	ctl := client.New(ctlBus, &envelope.Signer{Secret: secret}, "controller", nil)
	insts, err := ctl.Launch(ctx, provisionertest.Launch(jobs, "L1", "work", 1))
	if err != nil || len(insts) != 1 {
		t.Fatalf("launch as the controller: %v %v", insts, err)
	}
	id := insts[0].ID
	var workerURL string
	select {
	case workerURL = <-urls:
	case <-ctx.Done():
		t.Fatal("driver never launched")
	}
	if u, _ := amqp.ParseURI(workerURL); u.Username != busid.WorkerUser(run, id) || strings.Contains(workerURL, provURL) {
		t.Fatalf("driver got URL for %q, want the worker's own user", u.Username)
	}

	t.Run("the worker's sitter works with only its own rights", func(t *testing.T) {
		sv := &supervisor{}
		ready := make(chan string, 2)
		wb := busAs(t, workerURL, run, true, func(q string) { ready <- q })
		wctx, wstop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- (&sitterbus.Server{Bus: wb, Sitter: sv, InstanceID: id, Job: "work",
				Signer: &envelope.Signer{PublicKey: cmdKey.Public().(ed25519.PublicKey)},
				Ledger: &cmdledger.Dir{Path: t.TempDir()}}).Serve(wctx)
		}()
		defer func() { wstop(); <-done }()
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("sitter could not consume its own queue: %v", err)
		}
		sink := &sitterbus.Sink{Bus: wb, Sender: sitterbus.Component(id), Timeout: 5 * time.Second}
		if err := sink.SendHeartbeat(ctx, sitter.Heartbeat{InstanceID: id, Job: "work", Time: time.Now()}); err != nil {
			t.Errorf("own heartbeat: %v", err)
		}
		// A control from the provisioner's user (which may write to the
		// default exchange) is refused by the sitter, signed or not; the
		// controller's and mgmt's are obeyed when signed with the run's
		// command key, and refused, although their user_id passes, when
		// signed with another key, with the run's HMAC secret, or not at all.
		runKey := &envelope.Signer{Key: cmdKey}
		sendAs := func(b *amqpbus.Bus, action string, signer *envelope.Signer) envelope.Envelope {
			env, err := envelope.NewEnvelope(sitterbus.TypeControl, 1, run, "x", sitterbus.ControlBody{Action: action, Task: "t"}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if signer != nil {
				if err := signer.Sign(&env); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.SendCommand(ctx, sitterbus.Component(id), env); err != nil {
				t.Fatalf("send %s: %v", action, err)
			}
			return env
		}
		send := func(b *amqpbus.Bus, action string) envelope.Envelope { return sendAs(b, action, runKey) }
		_, otherKey, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		send(provBus, sitterbus.ActionRestart)
		sendAs(ctlBus, sitterbus.ActionRestart, &envelope.Signer{Key: otherKey})
		sendAs(ctlBus, sitterbus.ActionRestart, &envelope.Signer{Secret: secret})
		sendAs(ctlBus, sitterbus.ActionRestart, nil)
		stop := send(ctlBus, sitterbus.ActionStop)
		send(busAs(t, mgmtURL, run, false, nil), sitterbus.ActionStart)
		waitOps := func(n int) {
			deadline := time.Now().Add(10 * time.Second)
			for len(sv.seen()) < n && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)
		}
		waitOps(2)
		if got := strings.Join(sv.seen(), ","); got != "stop,start" {
			t.Errorf("sitter ran %q, want only the controller's stop and mgmt's start", got)
		}
		// Sent again with the same id, the stop is answered from the
		// sitter's ledger, not obeyed again.
		if err := ctlBus.SendCommand(ctx, sitterbus.Component(id), stop); err != nil {
			t.Fatal(err)
		}
		send(ctlBus, sitterbus.ActionRestart) // a new id: obeyed, and marks when the repeat is past
		waitOps(3)
		if got := strings.Join(sv.seen(), ","); got != "stop,start,restart" {
			t.Errorf("after a repeated stop the sitter ran %q, want stop,start,restart", got)
		}
	})

	t.Run("what the worker's user may not do", func(t *testing.T) {
		conn, err := amqp.Dial(workerURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		me, events := busid.WorkerUser(run, id), amqpbus.EventsExchange(run)
		wantRefused(t, "forged user_id", rawTry(t, conn, rawPublish(events, sitterbus.HeartbeatKey("work", id), busid.ComponentUser(run, busid.RoleController, "controller"))))
		wantRefused(t, "publish to the provisioner's command queue", rawTry(t, conn, rawPublish("", amqpbus.CommandQueue(run, provisioner.Component), me)))
		wantRefused(t, "heartbeat of another instance", rawTry(t, conn, rawPublish(events, sitterbus.HeartbeatKey("work", "other-0"), me)))
		wantRefused(t, "instance event", rawTry(t, conn, rawPublish(events, "instance.work.running", me)))
		for _, q := range []string{amqpbus.DeadQueue(run), amqpbus.CommandQueue(run, provisioner.Component), amqpbus.CommandQueue(run, sitterbus.Component("other-0"))} {
			wantRefused(t, "purge "+q, rawTry(t, conn, func(ch *amqp.Channel) error { _, err := ch.QueuePurge(q, false); return err }))
		}
		wantRefused(t, "declare the run's topology", rawTry(t, conn, func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare(amqpbus.DeadLetterExchange(run), "fanout", true, false, false, false, nil)
		}))
		// RabbitMQ lets whoever may consume a queue purge it: the worker
		// can purge its own job's work queue. Documented, and shown here.
		if err := rawTry(t, conn, func(ch *amqp.Channel) error { _, err := ch.QueuePurge(workQ, false); return err }); err != nil {
			t.Errorf("purge own job's work queue: %v (the docs say it is possible)", err)
		}
	})

	t.Run("who may command the provisioner and publish instance events", func(t *testing.T) {
		own := client.New(provBus, &envelope.Signer{Secret: secret}, "provisioner", nil)
		if _, err := own.Describe(ctx, provisioner.DescribeBody{}); err == nil || !strings.Contains(err.Error(), "user_id") {
			t.Errorf("describe from the provisioner's own user: %v, want refused for its user_id", err)
		}
		m := client.New(busAs(t, mgmtURL, run, false, nil), &envelope.Signer{Secret: secret}, "mgmt", nil)
		if _, err := m.Describe(ctx, provisioner.DescribeBody{}); err != nil {
			t.Errorf("describe from mgmt: %v", err)
		}
		// Workers' health decides their DNS records: only the controller,
		// which hears their heartbeats, speaks for it; mgmt, though it may
		// sign commands, may not.
		hb := provisioner.HealthBody{Job: "work", Healthy: []string{id}}
		if err := m.Health(ctx, hb); err == nil || !strings.Contains(err.Error(), "user_id") {
			t.Errorf("health from mgmt: %v, want refused for its user_id", err)
		}
		if err := ctl.Health(ctx, hb); err != nil {
			t.Errorf("health from the controller: %v", err)
		}
		env, _ := envelope.NewEnvelope(provisioner.TypeInstance, 1, run, "controller", provisioner.InstanceEvent{}, time.Now())
		pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
		defer pcancel()
		if err := ctlBus.Publish(pctx, "instance.work.running", env); err == nil {
			t.Error("the controller's user published an instance event")
		}
	})

	t.Run("terminate deletes the worker's user; reconcile deletes leftovers", func(t *testing.T) {
		if _, err := ctl.Terminate(ctx, []string{id}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			us, err := admin.Users(ctx, busid.WorkerUser(run, id))
			if err != nil {
				t.Fatal(err)
			}
			if len(us) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("worker user %v still there after terminate", us)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if c, err := amqp.Dial(workerURL); err == nil {
			c.Close()
			t.Error("the terminated worker's URL still connects")
		}
		// A user left by a crash between creating it and recording the
		// instance's end: the next reconcile (List) deletes it.
		ghost := busid.WorkerUser(run, "work-ghost-0")
		if err := admin.EnsureUser(ctx, ghost, "pw", busid.WorkerPermissions(run, "work", "work-ghost-0", "")); err != nil {
			t.Fatal(err)
		}
		if _, err := wu.List(ctx); err != nil {
			t.Fatal(err)
		}
		if us, _ := admin.Users(ctx, busid.WorkerPrefix(run)); len(us) != 0 {
			t.Errorf("leftover worker users after reconcile: %v", us)
		}
	})
}
