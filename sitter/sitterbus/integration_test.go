package sitterbus_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift/controller"
	"nightshift/controller/ctlbus"
	"nightshift/internal/amqpbus"
	"nightshift/internal/cmdledger"
	"nightshift/internal/envelope"
	"nightshift/internal/ping"
	"nightshift/internal/psutil"
	"nightshift/internal/testsupport"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/sitter"
	"nightshift/sitter/sitterbus"
)

// drainWorker honours the drain protocol: busy until the drain file
// appears, then exit 0.
const drainWorker = `echo busy > "$NIGHTSHIFT_STATUS_FILE"
echo started
while [ ! -e "$NIGHTSHIFT_DRAIN_FILE" ]; do sleep 0.05; done
echo drained
exit 0`

type agentFixture struct {
	run, job, inst string
	secret         []byte             // the run's HMAC secret: the sitter must not accept it
	key            ed25519.PrivateKey // the run's command key; the sitter holds its public half
	s              *sitter.Sitter
	bus            *amqpbus.Bus // the agent's
	obs            *amqpbus.Bus // the test's, standing in for controller and operator
	beats          chan sitter.Heartbeat
	logs           *syncBuffer
}

// startAgent wires a real Sitter, Sink and Server to the real broker the
// way `sitter agent` does, and subscribes to its heartbeats. The agent's
// bus waits at least reconnect before redialling after a lost connection.
func startAgent(t *testing.T, reconnect time.Duration) *agentFixture {
	t.Helper()
	return startAgentKeyed(t, reconnect, true)
}

// startAgentKeyed is startAgent; withKey false leaves the sitter without
// the run's command public key.
func startAgentKeyed(t *testing.T, reconnect time.Duration, withKey bool) *agentFixture {
	t.Helper()
	amqptest.NeedBroker(t)
	f := &agentFixture{job: "crunch", inst: amqptest.UniqueName(t, "i-"), beats: make(chan sitter.Heartbeat, 1000), logs: &syncBuffer{}}
	f.run = newRun(t, f.inst)
	f.secret = make([]byte, envelope.SecretSize)
	_, _ = rand.Read(f.secret)
	_, f.key, _ = ed25519.GenerateKey(rand.Reader)
	log := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("agent logs:\n%s", f.logs.String())
		}
	})

	// Subscribe before the agent publishes anything: events reach only
	// subscriptions bound at that moment.
	obsReady := make(chan string, 4)
	f.obs = dialBus(t, f.run, "sbtest-observer-"+f.inst, slog.New(slog.DiscardHandler), func(q string) { obsReady <- q })
	ctx, cancel := context.WithCancel(context.Background())
	obsDone := make(chan error, 1)
	go func() {
		obsDone <- f.obs.Subscribe(ctx, []string{ctlbus.HeartbeatKey(f.job, "*")}, func(_ context.Context, d amqpbus.Delivery) error {
			hb, err := ctlbus.DecodeHeartbeat(ctlbus.Messages(), d.Body)
			if err != nil {
				t.Errorf("heartbeat on %s does not decode: %v", d.RoutingKey, err)
				return nil
			}
			select {
			case f.beats <- hb:
			default:
			}
			return nil
		})
	}()
	select {
	case <-obsReady:
	case <-time.After(15 * time.Second):
		t.Fatal("heartbeat subscription did not start")
	}

	ready := make(chan string, 4)
	cfg := amqpbus.Config{URL: amqptest.URL(), Name: sitterbus.Component(f.inst), Run: f.run, Log: log,
		MinBackoff: 2 * reconnect, MaxBackoff: 2 * reconnect, RequeueDelay: 20 * time.Millisecond,
		OnConsume: func(q string) { ready <- q }}
	dctx, dcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer dcancel()
	var err error
	if f.bus, err = amqpbus.Dial(dctx, cfg); err != nil {
		t.Fatal(err)
	}
	f.s, err = sitter.New(sitter.Config{StateDir: t.TempDir(), Sampler: psutil.New(), Logger: log,
		SampleInterval: 100 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond,
		InstanceID: f.inst, Job: f.job, Sink: &sitterbus.Sink{Bus: f.bus, Sender: sitterbus.Component(f.inst)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.AddTask(ctx, sitter.Task{Name: f.job, Shell: drainWorker, Restart: sitter.RestartAlways,
		BackoffInitial: sitter.Duration(100 * time.Millisecond), StopGrace: sitter.Duration(2 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	srv := &sitterbus.Server{Bus: f.bus, Sitter: f.s, InstanceID: f.inst, Job: f.job, Log: log,
		Ledger: &cmdledger.Dir{Path: filepath.Join(t.TempDir(), "commands")}}
	if withKey {
		srv.Signer = &envelope.Signer{PublicKey: f.key.Public().(ed25519.PublicKey)}
	}
	serveDone, srvDone := make(chan error, 1), make(chan error, 1)
	go func() { serveDone <- f.s.Serve(ctx) }()
	go func() { srvDone <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		for name, c := range map[string]chan error{"sitter": serveDone, "server": srvDone, "observer": obsDone} {
			select {
			case err := <-c:
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("%s: %v", name, err)
				}
			case <-time.After(20 * time.Second):
				var sb strings.Builder
				_ = pprof.Lookup("goroutine").WriteTo(&sb, 1)
				t.Errorf("%s did not stop: %s", name, sb.String())
			}
		}
		_ = f.bus.Close()
	})
	select {
	case <-ready:
	case <-time.After(15 * time.Second):
		t.Fatal("command consumer did not start")
	}
	return f
}

// nextBeat returns the next heartbeat satisfying cond.
func (f *agentFixture) nextBeat(t *testing.T, timeout time.Duration, what string, cond func(sitter.Heartbeat) bool) sitter.Heartbeat {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case hb := <-f.beats:
			if cond(hb) {
				return hb
			}
		case <-deadline:
			t.Fatalf("no heartbeat with %s within %s", what, timeout)
		}
	}
}

func running(hb sitter.Heartbeat) bool {
	return len(hb.Tasks) == 1 && hb.Tasks[0].State == sitter.StateRunning && hb.Tasks[0].PID > 0
}

func (f *agentFixture) client(signed bool) *sitterbus.Client {
	c := &sitterbus.Client{Bus: f.obs, InstanceID: f.inst, Sender: "sbtest", Timeout: 15 * time.Second}
	if signed {
		c.Signer = &envelope.Signer{Key: f.key, Seen: envelope.NewReplayCache(10)}
	}
	return c
}

// sendUnsigned puts a destructive command on the sitter's queue without a
// signature, as an attacker or a misconfigured tool would.
func (f *agentFixture) sendUnsigned(t *testing.T, typ string, body any) {
	t.Helper()
	env, err := envelope.NewEnvelope(typ, 1, f.run, "intruder", body, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.obs.SendCommand(ctx, sitterbus.Component(f.inst), env); err != nil {
		t.Fatal(err)
	}
}

// deadTypes returns the types of the messages in the run's dead queue
// once it holds n.
func deadTypes(t *testing.T, run string, n int) []string {
	t.Helper()
	conn, err := amqp.Dial(amqptest.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	testsupport.Eventually(t, 10*time.Second, func() error {
		for len(types) < n {
			d, ok, err := ch.Get(amqpbus.DeadQueue(run), true)
			if err != nil {
				t.Fatalf("get from dead queue: %v", err)
			}
			if !ok {
				return fmt.Errorf("dead queue has %d messages %q, want %d", len(types), types, n)
			}
			types = append(types, d.Type)
		}
		return nil
	})
	return types
}

func TestHeartbeatsReachBroker(t *testing.T) {
	f := startAgent(t, 20*time.Millisecond)
	hb := f.nextBeat(t, 15*time.Second, "the task running", running)
	if hb.InstanceID != f.inst || hb.Job != f.job || hb.Host == "" || hb.Tasks[0].Name != f.job || hb.LimitMode == "" {
		t.Errorf("heartbeat %+v", hb)
	}
}

func TestCommandsOverBroker(t *testing.T) {
	f := startAgent(t, 20*time.Millisecond)
	first := f.nextBeat(t, 15*time.Second, "the task running", running).Tasks[0]
	ctx := context.Background()

	st, err := f.client(false).Status(ctx)
	if err != nil || len(st.Tasks) != 1 || st.Tasks[0].PID != first.PID {
		t.Fatalf("status %+v, %v", st, err)
	}
	eventually(t, 10*time.Second, "log line", func() bool {
		lt, err := f.client(false).Tail(ctx, f.job, 5)
		return err == nil && len(lt.Stdout) > 0 && lt.Stdout[len(lt.Stdout)-1] == "started"
	})
	if _, err := f.client(false).Tail(ctx, "nope", 5); !errors.Is(err, sitterbus.ErrRemote) || !strings.Contains(err.Error(), "no such task") {
		t.Errorf("tail of unknown task: %v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pr, err := ping.Call(pctx, f.obs, "sbtest", sitterbus.Component(f.inst))
	if err != nil || pr.Component != sitterbus.Component(f.inst) || pr.PID <= 0 {
		t.Errorf("ping %+v, %v", pr, err)
	}

	// An unsigned restart is refused and answered with the reason; the
	// task keeps its pid.
	if err := f.client(false).Control(ctx, sitterbus.ActionRestart, f.job); err == nil || !strings.Contains(err.Error(), "needs a signer") {
		t.Fatalf("client sent an unsigned control: %v", err)
	}
	env, _ := envelope.NewEnvelope(sitterbus.TypeControl, 1, f.run, "intruder", sitterbus.ControlBody{Action: "restart", Task: f.job}, time.Now())
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	raw, err := f.obs.Call(cctx, sitterbus.Component(f.inst), env)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := sitterbus.DecodeReply(sitterbus.Messages(), raw); err != nil || !strings.Contains(r.Error, "missing signature") {
		t.Errorf("unsigned control answered %+v, %v", r, err)
	}
	// Malformed input is dead-lettered and the server keeps serving.
	if err := f.obs.SendCommand(ctx, sitterbus.Component(f.inst), envelope.Envelope{Type: sitterbus.TypeTail, Version: 1, ID: "x", Run: f.run, Time: time.Now(), Sender: "t", Body: json.RawMessage(`{"task":7}`)}); err != nil {
		t.Fatal(err)
	}
	if got := deadTypes(t, f.run, 2); !(got[0] == sitterbus.TypeControl && got[1] == sitterbus.TypeTail) {
		t.Errorf("dead-lettered %q, want the unsigned control then the malformed tail", got)
	}
	if st, _ := f.client(false).Status(ctx); st.Tasks[0].PID != first.PID {
		t.Errorf("refused restart changed the pid %d -> %d", first.PID, st.Tasks[0].PID)
	}

	// Signed, it is obeyed.
	if err := f.client(true).Control(ctx, sitterbus.ActionRestart, f.job); err != nil {
		t.Fatal(err)
	}
	st, err = f.client(false).Status(ctx)
	if err != nil || st.Tasks[0].PID == first.PID || st.Tasks[0].State != sitter.StateRunning {
		t.Errorf("after signed restart: %+v, %v (old pid %d)", st.Tasks, err, first.PID)
	}
}

func TestDrainOverBroker(t *testing.T) {
	f := startAgent(t, 20*time.Millisecond)
	first := f.nextBeat(t, 15*time.Second, "the task running", running).Tasks[0]

	// Unsigned: dead-lettered, the task runs on.
	f.sendUnsigned(t, ctlbus.TypeDrain, ctlbus.DrainBody{InstanceID: f.inst, Job: f.job, Reason: "forged"})
	if got := deadTypes(t, f.run, 1); got[0] != ctlbus.TypeDrain {
		t.Errorf("dead-lettered %q", got)
	}
	hb := f.nextBeat(t, 10*time.Second, "a beat after the forged drain", func(sitter.Heartbeat) bool { return true })
	if !running(hb) || hb.Tasks[0].PID != first.PID {
		t.Fatalf("forged drain disturbed the task: %+v", hb.Tasks)
	}
	if !strings.Contains(f.logs.String(), "refusing unauthenticated command") {
		t.Error("refusal not logged")
	}

	// Signed, as the controller sends it: the worker finishes and the
	// sitter does not restart it although restart=always.
	drainer := ctlbus.BusDrainer{Bus: f.obs, Sender: controller.Component,
		Signer: &envelope.Signer{Key: f.key, Seen: envelope.NewReplayCache(10)}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := drainer.Drain(ctx, f.job, f.inst, "scale down"); err != nil {
		t.Fatal(err)
	}
	hb = f.nextBeat(t, 15*time.Second, "the task drained", func(hb sitter.Heartbeat) bool {
		return len(hb.Tasks) == 1 && hb.Tasks[0].State == sitter.StateExited
	})
	if ts := hb.Tasks[0]; !strings.HasPrefix(ts.Reason, "drained") || ts.Restarts != 0 {
		t.Errorf("after drain: %+v", ts)
	}
	eventually(t, 5*time.Second, "worker gone", func() bool { return !alive(first.PID) })
}

// TestDrainNeedsTheRunsCommandKey: the publisher is a user the sitter's
// user_id check accepts, so only the signature stands between a forged
// drain and the task. A drain signed with another Ed25519 key, with the
// run's HMAC secret (the scheme daemons use among themselves), unsigned, or
// stale is dead-lettered and the task runs on; the same drain signed with
// the run's command key is obeyed.
func TestDrainNeedsTheRunsCommandKey(t *testing.T) {
	f := startAgent(t, 20*time.Millisecond)
	first := f.nextBeat(t, 15*time.Second, "the task running", running).Tasks[0]
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	body := ctlbus.DrainBody{InstanceID: f.inst, Job: f.job, Reason: "forged"}
	forge := func(signer *envelope.Signer, at time.Time, relabel string) envelope.Envelope {
		env, err := envelope.NewEnvelope(ctlbus.TypeDrain, 1, f.run, controller.Component, body, at)
		if err != nil {
			t.Fatal(err)
		}
		if signer != nil {
			if err := signer.Sign(&env); err != nil {
				t.Fatal(err)
			}
		}
		if relabel != "" {
			env.Alg = relabel
		}
		return env
	}
	now := time.Now()
	forged := []struct {
		name, log string
		env       envelope.Envelope
	}{
		{"another key", "bad signature", forge(&envelope.Signer{Key: otherKey}, now, "")},
		{"the run's HMAC secret", "signature scheme not accepted", forge(&envelope.Signer{Secret: f.secret}, now, "")},
		{"HMAC relabelled ed25519", "bad signature", forge(&envelope.Signer{Secret: f.secret}, now, envelope.AlgEd25519)},
		{"unsigned", "missing signature", forge(nil, now, "")},
		{"stale", "time outside allowed skew", forge(&envelope.Signer{Key: f.key}, now.Add(-time.Hour), "")},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range forged {
		if err := f.obs.SendCommand(ctx, sitterbus.Component(f.inst), c.env); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	got := deadTypes(t, f.run, len(forged))
	for i, typ := range got {
		if typ != ctlbus.TypeDrain {
			t.Errorf("dead-lettered %d: %q, want %q (%s)", i, typ, ctlbus.TypeDrain, forged[i].name)
		}
	}
	logs := f.logs.String()
	for _, c := range forged {
		if !strings.Contains(logs, c.log) {
			t.Errorf("%s: refusal %q not logged", c.name, c.log)
		}
	}
	hb := f.nextBeat(t, 10*time.Second, "a beat after the forged drains", func(sitter.Heartbeat) bool { return true })
	if !running(hb) || hb.Tasks[0].PID != first.PID {
		t.Fatalf("a forged drain disturbed the task: %+v", hb.Tasks)
	}

	drainer := ctlbus.BusDrainer{Bus: f.obs, Sender: controller.Component, Signer: &envelope.Signer{Key: f.key}}
	if err := drainer.Drain(ctx, f.job, f.inst, "scale down"); err != nil {
		t.Fatal(err)
	}
	hb = f.nextBeat(t, 15*time.Second, "the task drained", func(hb sitter.Heartbeat) bool {
		return len(hb.Tasks) == 1 && hb.Tasks[0].State == sitter.StateExited
	})
	if ts := hb.Tasks[0]; !strings.HasPrefix(ts.Reason, "drained") {
		t.Errorf("after the signed drain: %+v", ts)
	}
}

// TestSitterWithoutCommandKeyFailsClosed: a sitter that was not given the
// run's command public key refuses even a correctly signed drain and
// control, and says why; status still works.
func TestSitterWithoutCommandKeyFailsClosed(t *testing.T) {
	f := startAgentKeyed(t, 20*time.Millisecond, false)
	first := f.nextBeat(t, 15*time.Second, "the task running", running).Tasks[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.client(true).Control(ctx, sitterbus.ActionRestart, f.job); !errors.Is(err, sitterbus.ErrRemote) || !strings.Contains(err.Error(), "no command public key") {
		t.Fatalf("signed control to a sitter without the key: %v", err)
	}
	drainer := ctlbus.BusDrainer{Bus: f.obs, Sender: controller.Component, Signer: &envelope.Signer{Key: f.key}}
	if err := drainer.Drain(ctx, f.job, f.inst, "scale down"); err != nil {
		t.Fatal(err)
	}
	if got := deadTypes(t, f.run, 2); got[0] != sitterbus.TypeControl || got[1] != ctlbus.TypeDrain {
		t.Errorf("dead-lettered %q, want the control then the drain", got)
	}
	st, err := f.client(false).Status(ctx)
	if err != nil || st.Tasks[0].PID != first.PID || st.Tasks[0].State != sitter.StateRunning {
		t.Errorf("task after refused commands: %+v, %v (pid was %d)", st.Tasks, err, first.PID)
	}
	logs := f.logs.String()
	for _, want := range []string{"no command public key: refusing every drain and control (fail closed)", "refusing command: no command public key to verify it"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// TestBrokerOutage force-closes only the agent's own connection: the task
// keeps its process, and heartbeats resume once amqpbus has reconnected.
func TestBrokerOutage(t *testing.T) {
	amqptest.NeedRabbitmqctl(t)
	f := startAgent(t, time.Second)
	first := f.nextBeat(t, 15*time.Second, "the task running", running).Tasks[0]

	amqptest.KillConnection(t, sitterbus.Component(f.inst))
	killed := time.Now()
	eventually(t, 10*time.Second, "the agent to notice the outage", func() bool {
		return strings.Contains(f.logs.String(), "amqp disconnected")
	})
	hb := f.nextBeat(t, 20*time.Second, "a beat built after the outage", func(hb sitter.Heartbeat) bool { return hb.Time.After(killed) })
	if !running(hb) || hb.Tasks[0].PID != first.PID || hb.Tasks[0].Restarts != 0 {
		t.Errorf("task disturbed by the outage: before %+v, after %+v", first, hb.Tasks)
	}
	// The reconnect waits at least a second, so ten beats fell into the
	// outage: dropped, logged once, and the recovery logged.
	eventually(t, 10*time.Second, "the recovery logged", func() bool {
		return strings.Contains(f.logs.String(), "heartbeats flowing again")
	})
	logs := f.logs.String()
	if n := strings.Count(logs, "send heartbeat failed; supervision continues"); n != 1 {
		t.Errorf("outage logged %d times at warn level, want once", n)
	}
	if strings.Contains(logs, "guest:guest@") {
		t.Error("broker password in the logs")
	}
	if !alive(first.PID) {
		t.Errorf("task pid %d died", first.PID)
	}
	// Commands are served again too.
	st, err := f.client(false).Status(context.Background())
	if err != nil || st.Tasks[0].PID != first.PID {
		t.Errorf("status after outage: %+v, %v", st, err)
	}
}

// TestReplayedControlIsNotObeyedAgain: a signed "stop" published again with
// its id after a later "start" is answered from the ledger and the task
// keeps running.
func TestReplayedControlIsNotObeyedAgain(t *testing.T) {
	f := startAgent(t, 20*time.Millisecond)
	f.nextBeat(t, 15*time.Second, "the task running", running)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stop, err := envelope.NewEnvelope(sitterbus.TypeControl, 1, f.run, "sbtest", sitterbus.ControlBody{Action: "stop", Task: f.job}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := (&envelope.Signer{Key: f.key}).Sign(&stop); err != nil {
		t.Fatal(err)
	}
	call := func() sitterbus.Reply {
		t.Helper()
		raw, err := f.obs.Call(ctx, sitterbus.Component(f.inst), stop)
		if err != nil {
			t.Fatal(err)
		}
		r, err := sitterbus.DecodeReply(sitterbus.Messages(), raw)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := call(); r.Error != "" {
		t.Fatalf("stop: %+v", r)
	}
	f.nextBeat(t, 15*time.Second, "the task stopped", func(hb sitter.Heartbeat) bool {
		return len(hb.Tasks) == 1 && hb.Tasks[0].State == sitter.StateStopped
	})
	if err := f.client(true).Control(ctx, "start", f.job); err != nil {
		t.Fatal(err)
	}
	f.nextBeat(t, 15*time.Second, "the task running again", running)
	if r := call(); r.Error != "" {
		t.Fatalf("replayed stop: %+v, want the recorded reply", r)
	}
	// Several heartbeats after the replay: had it been obeyed, the task
	// would be stopping or stopped by now.
	for range 5 {
		if hb := f.nextBeat(t, 15*time.Second, "a heartbeat", func(sitter.Heartbeat) bool { return true }); !running(hb) {
			t.Fatalf("after the replayed stop the task is %+v: it was obeyed again", hb.Tasks)
		}
	}
	if !strings.Contains(f.logs.String(), "answering with the recorded result") {
		t.Error("the log does not say the repeat was answered from the ledger")
	}
}
