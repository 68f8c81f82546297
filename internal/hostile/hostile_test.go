package hostile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift/internal/amqpbus"
	"nightshift/internal/busid"
	"nightshift/internal/e2e"
	"nightshift/internal/envelope"
	"nightshift/internal/runlayout"
	"nightshift/internal/worker/localworker"
	"nightshift/mgmt"
	"nightshift/provisioner"
	"nightshift/sitter"
	"nightshift/sitter/sitterbus"
)

var env *e2e.Env

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	for _, a := range os.Args[1:] {
		if a == "-test.short" || a == "-test.short=true" {
			return m.Run()
		}
	}
	dir, err := os.MkdirTemp("", "nshostile-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	env, err = e2e.NewEnv(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		return 1
	}
	return m.Run()
}

func requireRun(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("launches a whole run of plans/local.toml; skipped under -short")
	}
	for _, tool := range []string{"rabbitmq-server", "rabbitmqctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("NIGHTSHIFT_TEST_STRICT") == "1" {
				t.Fatalf("%s not found and NIGHTSHIFT_TEST_STRICT=1", tool)
			}
			t.Skipf("%s not found: the private broker of plans/local.toml cannot start", tool)
		}
	}
}

// snapshot is what must not change under attack.
type snapshot struct {
	running map[string][]string // job -> running instance ids
	known   map[string][]string // job -> every instance id in status
	sitters map[string]int      // instance -> sitter pid
}

func take(t *testing.T, ctx context.Context, r *e2e.Run) snapshot {
	t.Helper()
	st, err := r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := snapshot{running: map[string][]string{}, known: map[string][]string{}}
	for _, j := range st.Jobs {
		s.running[j.Name] = e2e.Running(&j)
		for _, w := range j.Workers {
			s.known[j.Name] = append(s.known[j.Name], w.ID)
		}
		slices.Sort(s.known[j.Name])
	}
	if s.sitters, err = r.Sitters(); err != nil {
		t.Fatal(err)
	}
	return s
}

// worker is one compromised worker: its instance id and its own URL.
type worker struct{ id, url string }

func workerOf(t *testing.T, r *e2e.Run, id string) worker {
	t.Helper()
	b, err := os.ReadFile(localworker.WorkerFile(r.Home, r.Name, id, runlayout.URLFile))
	if err != nil {
		t.Fatalf("worker %s has no URL file of its own: %v", id, err)
	}
	return worker{id: id, url: strings.TrimSpace(string(b))}
}

// attempt is one AMQP client with a confirm-mode channel that reports
// whether the broker took each action.
type attempt struct {
	t    *testing.T
	conn *amqp.Connection
}

func dial(t *testing.T, url string) *attempt {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial as %s: %v", amqpbus.Redacted(url), err)
	}
	t.Cleanup(func() { conn.Close() })
	return &attempt{t: t, conn: conn}
}

// do runs f on a fresh channel and returns the broker's refusal, if any.
// A refusal closes the channel, sometimes only after the call returned, so
// it waits briefly for a close.
func (a *attempt) do(f func(ch *amqp.Channel) error) error {
	ch, err := a.conn.Channel()
	if err != nil {
		a.t.Fatalf("open channel: %v", err)
	}
	defer ch.Close()
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Confirm(false); err != nil {
		return err
	}
	if err := f(ch); err != nil {
		if !errors.Is(err, errNacked) {
			return err
		}
		// The broker nacks, then closes the channel with the reason.
		select {
		case e := <-closed:
			if e != nil {
				return e
			}
		case <-time.After(2 * time.Second):
		}
		return err
	}
	select {
	case e := <-closed:
		if e != nil {
			return e
		}
		return errors.New("channel closed")
	case <-time.After(300 * time.Millisecond):
		return nil
	}
}

var errNacked = errors.New("publish nacked")

func publish(exchange, key string, p amqp.Publishing) func(ch *amqp.Channel) error {
	return func(ch *amqp.Channel) error {
		dc, err := ch.PublishWithDeferredConfirm(exchange, key, false, false, p)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return errNacked
		}
		return nil
	}
}

func envelopeOf(t *testing.T, typ, run, sender string, body any) []byte {
	t.Helper()
	env, err := envelope.NewEnvelope(typ, 1, run, sender, body, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func refused(t *testing.T, what string, err error) {
	t.Helper()
	var ae *amqp.Error
	if !errors.As(err, &ae) || (ae.Code != amqp.AccessRefused && ae.Code != amqp.PreconditionFailed) {
		t.Errorf("%s: want the broker to refuse it (access refused or precondition failed), got %v", what, err)
		return
	}
	t.Logf("%s: refused by the broker: %s", what, ae.Reason)
}

// TestHostileWorker launches plans/local.toml, takes over one sleeper's
// broker credentials and attacks the run with them.
func TestHostileWorker(t *testing.T) {
	requireRun(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r := env.NewRun(t, "plans/local.toml", "hst")
	r.Launch(ctx)
	st, err := r.WaitFor(ctx, "pools at policy", 60*time.Second, func(st *mgmt.RunStatus) (bool, string) {
		s, w := e2e.Healthy(e2e.Job(st, "sleeper")), e2e.Healthy(e2e.Job(st, "work"))
		return len(s) == 3 && len(w) == 1, fmt.Sprintf("healthy sleepers %v workers %v", s, w)
	})
	if err != nil {
		t.Fatal(err)
	}
	run := r.Name
	sleepers := e2e.Running(e2e.Job(st, "sleeper"))
	workers := e2e.Running(e2e.Job(st, "work"))
	me, victim := workerOf(t, r, sleepers[0]), sleepers[1]
	before := take(t, ctx, r)
	// Where a worker user could write, so a command that ran would show.
	marker := filepath.Join(e2e.WorkerWritableDir(t), "pwned")
	w := dial(t, me.url)
	events := amqpbus.EventsExchange(run)
	provQ := amqpbus.CommandQueue(run, provisioner.Component)
	asMe := func(typ string, body any) amqp.Publishing {
		return amqp.Publishing{ContentType: "application/json", UserId: busid.WorkerUser(run, me.id), Type: typ,
			Body: envelopeOf(t, typ, run, "controller", body)}
	}

	t.Run("the worker holds only its own identity and no run secret", func(t *testing.T) {
		if u, _ := amqp.ParseURI(me.url); u.Username != busid.WorkerUser(run, me.id) {
			t.Errorf("worker URL user %q, want its own %q", u.Username, busid.WorkerUser(run, me.id))
		}
		secret, err := os.ReadFile(runlayout.Of(r.Home, run).Secret())
		if err != nil {
			t.Fatal(err)
		}
		pid := before.sitters[me.id]
		for _, f := range []string{"cmdline", "environ"} {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
			if strings.Contains(string(b), "secret") || (len(secret) > 0 && strings.Contains(string(b), string(secret))) {
				t.Errorf("sitter %s's %s mentions the run secret: %q", me.id, f, b)
			}
		}
	})

	t.Run("no credentials, or guest, cannot connect", func(t *testing.T) {
		u, _ := amqp.ParseURI(me.url)
		for _, creds := range []string{"", "guest:guest@", "nightshift:@"} {
			url := fmt.Sprintf("amqp://%s%s:%d/", creds, u.Host, u.Port)
			if conn, err := amqp.Dial(url); err == nil {
				conn.Close()
				t.Errorf("connected to the run's broker as %q", creds)
			}
		}
	})

	t.Run("forged user_id is refused by the broker", func(t *testing.T) {
		for _, as := range []string{busid.ComponentUser(run, busid.RoleController, "controller"), busid.MgmtUser(run)} {
			p := asMe(provisioner.TypeTerminateAll, provisioner.TerminateAllBody{})
			p.UserId = as
			refused(t, "publish as "+as, w.do(publish("", provQ, p)))
		}
	})

	t.Run("launch with a command of the worker's choice", func(t *testing.T) {
		// The request as a launch of before signed launches looked, with a
		// worker spec of the attacker's choice.
		spec := json.RawMessage(fmt.Sprintf(`{"driver":"local","worker":{"name":"evil","command":["/bin/sh","-c","touch %s"]}}`, marker))
		body := map[string]any{"launch_id": "evil-1", "job": "sleeper", "count": 1, "spec": spec}
		// A worker has no write on the default exchange, the only way to
		// a command queue.
		refused(t, "launch on the provisioner's queue", w.do(publish("", provQ, asMe(provisioner.TypeLaunch, body))))
		// Nor through the events exchange, even under its own key: the
		// provisioner does not consume events, and the controller refuses
		// a launch posing as a heartbeat.
		if err := w.do(publish(events, sitterbus.HeartbeatKey("sleeper", me.id), asMe(provisioner.TypeLaunch, body))); err != nil {
			t.Errorf("publish under its own key: %v", err)
		}
		// Consuming the provisioner's queue to steal or reorder commands
		// is refused outright.
		refused(t, "consume the provisioner's command queue", w.do(func(ch *amqp.Channel) error {
			_, err := ch.Consume(provQ, "", false, false, false, false, nil)
			return err
		}))
	})

	t.Run("a signed command replayed by the worker", func(t *testing.T) {
		// A command the worker captured, validly signed with the run's
		// secret (as the controller or mgmt would), put back by the worker.
		secret, err := envelope.LoadOrCreateSecret(runlayout.Of(r.Home, run).Secret())
		if err != nil {
			t.Fatal(err)
		}
		s := &envelope.Signer{Secret: secret}
		for _, c := range []struct {
			typ  string
			body any
		}{
			{provisioner.TypeTerminate, provisioner.TerminateBody{InstanceIDs: []string{victim}}},
			{provisioner.TypeTerminateAll, provisioner.TerminateAllBody{}},
		} {
			env, err := envelope.NewEnvelope(c.typ, 1, run, "mgmt", c.body, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Sign(&env); err != nil {
				t.Fatal(err)
			}
			raw, _ := json.Marshal(env)
			p := amqp.Publishing{ContentType: "application/json", UserId: busid.WorkerUser(run, me.id), Type: c.typ, Body: raw}
			for i := 0; i < 2; i++ {
				refused(t, "replay "+c.typ, w.do(publish("", provQ, p)))
			}
		}
	})

	t.Run("forged heartbeats and instance events", func(t *testing.T) {
		failed := sitterbus.HeartbeatBody{InstanceID: victim, Job: "sleeper", Host: "x", Time: time.Now(),
			Tasks: []sitter.TaskStatus{{Name: "sleeper", State: sitter.StateFailed, Reason: "forged"}}}
		// With the victim's routing key: the topic permission refuses it.
		refused(t, "heartbeat with another worker's key", w.do(publish(events, sitterbus.HeartbeatKey("sleeper", victim), asMe(sitterbus.TypeHeartbeat, failed))))
		// With its own key but the victim's id inside: delivered, and
		// the controller refuses it (user_id is not the victim's).
		if err := w.do(publish(events, sitterbus.HeartbeatKey("sleeper", me.id), asMe(sitterbus.TypeHeartbeat, failed))); err != nil {
			t.Errorf("own heartbeat key: %v", err)
		}
		now := time.Now()
		phantom := provisioner.Instance{ID: "sleeper-phantom-0", Job: "sleeper", LaunchID: "phantom", Driver: "local",
			State: "running", Created: now, Updated: now}
		kill := provisioner.Instance{ID: victim, Job: "sleeper", LaunchID: "x", Driver: "local", State: "failed", Created: now, Updated: now}
		for _, inst := range []provisioner.Instance{phantom, kill} {
			ev := asMe(provisioner.TypeInstance, provisioner.InstanceEvent{Instance: inst})
			refused(t, "instance event "+inst.ID, w.do(publish(events, provisioner.EventKey(inst), ev)))
			// Under its own heartbeat key the controller sees a heartbeat
			// type mismatch and the wrong sender.
			if err := w.do(publish(events, sitterbus.HeartbeatKey("sleeper", me.id), ev)); err != nil {
				t.Errorf("instance event under own key: %v", err)
			}
		}
	})

	t.Run("purges", func(t *testing.T) {
		for _, q := range []string{amqpbus.DeadQueue(run), provQ, amqpbus.CommandQueue(run, "controller"),
			amqpbus.CommandQueue(run, sitterbus.Component(victim)), "nightshift." + run + ".work"} {
			refused(t, "purge "+q, w.do(func(ch *amqp.Channel) error { _, err := ch.QueuePurge(q, false); return err }))
			refused(t, "delete "+q, w.do(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err }))
		}
	})

	t.Run("command another worker's sitter", func(t *testing.T) {
		q := amqpbus.CommandQueue(run, sitterbus.Component(victim))
		for _, m := range []struct {
			typ  string
			body any
		}{
			{sitterbus.TypeControl, sitterbus.ControlBody{Action: sitterbus.ActionStop, Task: "sleeper"}},
			{sitterbus.TypeDrain, sitterbus.DrainBody{InstanceID: victim, Job: "sleeper", Reason: "forged"}},
		} {
			refused(t, "publish "+m.typ+" to another worker's sitter", w.do(publish("", q, asMe(m.typ, m.body))))
		}
		// Nor its own sitter's queue: commands come from the controller
		// or mgmt only.
		own := amqpbus.CommandQueue(run, sitterbus.Component(me.id))
		refused(t, "publish to its own sitter", w.do(publish("", own, asMe(sitterbus.TypeControl, sitterbus.ControlBody{Action: sitterbus.ActionStop, Task: "sleeper"}))))
	})

	// Long enough for a forged failure to be acted on: missing_timeout 3s,
	// a 1s tick, and a launch or a terminate.
	time.Sleep(8 * time.Second)
	after := take(t, ctx, r)
	for job, ids := range before.running {
		if !slices.Equal(ids, after.running[job]) {
			t.Errorf("job %s: running %v before the attacks, %v after", job, ids, after.running[job])
		}
		if !slices.Equal(before.known[job], after.known[job]) {
			t.Errorf("job %s: instances %v before, %v after: one was invented or lost", job, before.known[job], after.known[job])
		}
	}
	for _, id := range append(slices.Clone(sleepers), workers...) {
		if before.sitters[id] != after.sitters[id] || !e2e.Alive(after.sitters[id]) {
			t.Errorf("sitter of %s: pid %d before, %d after", id, before.sitters[id], after.sitters[id])
		}
	}
	if ws, err := r.Workers("sleeper"); err != nil || len(ws) != 3 {
		t.Errorf("want the 3 sleeper processes still running, found %d (err %v)", len(ws), err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the worker's launch ran its command: %s exists", marker)
	}
	st, err = r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range st.Jobs {
		for _, wk := range j.Workers {
			if wk.State == "running" && wk.Health != "ok" {
				t.Errorf("worker %s health %q after forged heartbeats", wk.ID, wk.Health)
			}
		}
	}
	// The messages the broker delivered were refused by their consumer,
	// which says so with the type and the user_id field.
	logs := map[string][]string{
		filepath.Join("controller", "controller", "daemon.log"): {`forged heartbeat dropped`, `field user_id`, `is not \"sitter.heartbeat\"`},
	}
	for file, wants := range logs {
		b, err := os.ReadFile(filepath.Join(r.RunDir(), "work", file))
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		for _, want := range wants {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s does not say %q", file, want)
			}
		}
	}
	if res := r.Teardown(ctx); res.Code != 0 {
		t.Fatalf("teardown exit %d: %s", res.Code, res.Stderr)
	}
	r.AssertNoProcesses()
}
