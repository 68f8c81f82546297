package amqpbus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"nightshift/internal/envelope"
	"nightshift/internal/testsupport/amqptest"
)

type launch struct {
	Count int `json:"count"`
}

func (l *launch) Validate() error { return envelope.Check("count", l.Count >= 1, "must be >= 1") }

func testRegistry() *envelope.Registry {
	r := &envelope.Registry{}
	r.Register("launch", 1, func() envelope.Validator { return &launch{} }, false)
	return r
}

// TestRetryDelay: the bus waits by the shared curve (internal/backoff)
// between its configured bounds, with equal jitter.
func TestRetryDelay(t *testing.T) {
	b := &Bus{cfg: Config{MinBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second}}
	cases := []struct {
		attempt int
		r       float64
		want    time.Duration
	}{
		{1, 0, 50 * time.Millisecond},
		{1, 0.999999, 100 * time.Millisecond},
		{4, 0, 400 * time.Millisecond},
		{5, 0.5, 1200 * time.Millisecond},
		{1000, 0.999999, 2 * time.Second},
	}
	for _, c := range cases {
		got := b.retryDelay(c.attempt, c.r)
		if diff := got - c.want; diff > time.Millisecond || diff < -time.Millisecond {
			t.Errorf("retryDelay(%d, r=%v) = %v, want %v", c.attempt, c.r, got, c.want)
		}
	}
}

func TestConfigRefusesBadInput(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"empty url", Config{Run: "r"}, "empty URL"},
		{"bad scheme", Config{URL: "http://guest:secretpw@h/", Run: "r"}, "URL"},
		{"empty run", Config{URL: "amqp://h/"}, "run"},
		{"wildcard in run", Config{URL: "amqp://h/", Run: "a*b"}, "run"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Dial(context.Background(), c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Dial error = %v, want one mentioning %q", err, c.want)
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Errorf("error leaks password: %v", err)
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	if got := Redacted("amqp://guest:hunter2@h:5672/v"); got != "amqp://guest:xxxxx@h:5672/v" {
		t.Errorf("Redacted = %q", got)
	}
}

func TestDialUnreachableHonoursCtx(t *testing.T) {
	f := &fixture{t: t, logs: &syncBuffer{}}
	cfg := Config{URL: "amqp://guest:guest@127.0.0.1:1/", Run: "r", MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	cfg.Log = newTestLogger(f.logs)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, cfg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial error = %v, want DeadlineExceeded", err)
	}
	noPassword(t, err.Error())
	noPassword(t, f.logs.String())
	if !strings.Contains(f.logs.String(), "amqp connect failed") {
		t.Errorf("retries not logged:\n%s", f.logs.String())
	}
}

func TestDialBadCredentialsFailsFast(t *testing.T) {
	amqptest.NeedBroker(t)
	cfg := Config{URL: strings.Replace(amqptest.URL(), "guest:guest", "guest:wrongpw", 1), Run: "r", Log: newTestLogger(&syncBuffer{})}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Dial(ctx, cfg)
	if err == nil {
		t.Fatal("Dial with a wrong password succeeded")
	}
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial kept retrying a refused login until ctx expired: %v", err)
	}
	if strings.Contains(err.Error(), "wrongpw") {
		t.Errorf("error leaks password: %v", err)
	}
}

func TestCommandRoundTrip(t *testing.T) {
	f := newFixture(t, "worker")
	ready := make(readyCounter, 4)
	cfg := f.config("roundtrip-" + f.run)
	cfg.OnConsume = ready.hook
	b := f.dial(cfg)
	got := make(chan Delivery, 1)
	f.consume(b, "worker", func(ctx context.Context, d Delivery) error { got <- d; return nil })
	ready.wait(t, 1)

	env := f.envelope("launch", launch{Count: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.SendCommand(ctx, "worker", env); err != nil {
		t.Fatal(err)
	}
	d := receive(t, got, "command")
	if e := decodeEnv(t, d); e.ID != env.ID || e.Type != "launch" {
		t.Errorf("received envelope %+v, want id %s", e, env.ID)
	}
	if d.MessageID != env.ID || d.RoutingKey != CommandQueue(f.run, "worker") || d.Redelivered {
		t.Errorf("delivery metadata = %+v", d)
	}
	if !b.Connected() {
		t.Error("Connected() = false on a live bus")
	}
	logs := f.logs.String()
	noPassword(t, logs)
	if !strings.Contains(logs, "amqp connected") || !strings.Contains(logs, "guest:xxxxx@") {
		t.Errorf("connect not logged with redacted URL:\n%s", logs)
	}
}

func TestSendCommandRefusesForeignRun(t *testing.T) {
	f := newFixture(t, "worker")
	b := f.dial(f.config(""))
	env := f.envelope("launch", launch{Count: 1})
	env.Run = "other"
	if err := b.SendCommand(context.Background(), "worker", env); err == nil || !strings.Contains(err.Error(), `run "other"`) {
		t.Errorf("SendCommand with foreign run: %v", err)
	}
	if err := b.SendCommand(context.Background(), "bad name", f.envelope("launch", launch{Count: 1})); err == nil {
		t.Error("SendCommand to component with a space succeeded")
	}
}

func TestHandlerErrorRequeues(t *testing.T) {
	f := newFixture(t, "worker")
	b := f.dial(f.config(""))
	var mu sync.Mutex
	attempts := 0
	got := make(chan Delivery, 2)
	f.consume(b, "worker", func(ctx context.Context, d Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		got <- d
		if attempts == 1 {
			return errors.New("database is down")
		}
		return nil
	})
	env := f.envelope("launch", launch{Count: 1})
	if err := b.SendCommand(context.Background(), "worker", env); err != nil {
		t.Fatal(err)
	}
	first, second := receive(t, got, "first attempt"), receive(t, got, "redelivery")
	if first.MessageID != env.ID || second.MessageID != env.ID {
		t.Fatalf("attempts carried ids %s and %s, want %s", first.MessageID, second.MessageID, env.ID)
	}
	if first.Redelivered || !second.Redelivered {
		t.Errorf("Redelivered = %v then %v, want false then true", first.Redelivered, second.Redelivered)
	}
	if !strings.Contains(f.logs.String(), "database is down") {
		t.Errorf("handler error not logged")
	}
}

// Each case must end with the first message dead-lettered and the consumer
// still serving: the second, well-formed message is handled.
func TestBadMessagesAreDeadLettered(t *testing.T) {
	reg := testRegistry()
	cases := []struct {
		name    string
		send    func(f *fixture, b *Bus) // sends the bad message
		handler func(f *fixture) Handler
		wantLog string
	}{
		{
			name: "handler returns ErrReject",
			send: func(f *fixture, b *Bus) {
				if err := b.SendCommand(context.Background(), "worker", f.envelope("launch", launch{Count: 99})); err != nil {
					f.t.Fatal(err)
				}
			},
			handler: func(f *fixture) Handler {
				return func(ctx context.Context, d Delivery) error {
					if strings.Contains(string(decodeEnv(f.t, d).Body), "99") {
						return fmt.Errorf("too many: %w", ErrReject)
					}
					return nil
				}
			},
			wantLog: "too many",
		},
		{
			name: "handler panics",
			send: func(f *fixture, b *Bus) {
				if err := b.SendCommand(context.Background(), "worker", f.envelope("launch", launch{Count: 99})); err != nil {
					f.t.Fatal(err)
				}
			},
			handler: func(f *fixture) Handler {
				return func(ctx context.Context, d Delivery) error {
					if strings.Contains(string(decodeEnv(f.t, d).Body), "99") {
						panic("boom")
					}
					return nil
				}
			},
			wantLog: "handler panicked",
		},
		{
			name: "malformed JSON",
			send: func(f *fixture, b *Bus) { f.rawPublish(CommandQueue(f.run, "worker"), []byte("this is not json")) },
			handler: func(f *fixture) Handler {
				return func(ctx context.Context, d Delivery) error {
					_, _, err := DecodeOrReject(reg, f.log, d)
					return err
				}
			},
			wantLog: "message: bad JSON",
		},
		{
			name: "invalid body",
			send: func(f *fixture, b *Bus) {
				if err := b.SendCommand(context.Background(), "worker", f.envelope("launch", launch{Count: 0})); err != nil {
					f.t.Fatal(err)
				}
			},
			handler: func(f *fixture) Handler {
				return func(ctx context.Context, d Delivery) error {
					_, _, err := DecodeOrReject(reg, f.log, d)
					return err
				}
			},
			wantLog: `field \"count\": must be >= 1`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, "worker")
			ready := make(readyCounter, 4)
			cfg := f.config("")
			cfg.OnConsume = ready.hook
			b := f.dial(cfg)
			handled := make(chan string, 4)
			h := c.handler(f)
			f.consume(b, "worker", func(ctx context.Context, d Delivery) error {
				err := h(ctx, d)
				if err == nil {
					handled <- d.MessageID
				}
				return err
			})
			ready.wait(t, 1)
			c.send(f, b)
			good := f.envelope("launch", launch{Count: 1})
			if err := b.SendCommand(context.Background(), "worker", good); err != nil {
				t.Fatal(err)
			}
			if id := receive(t, handled, "good message after bad one"); id != good.ID {
				t.Errorf("handled %s, want the good message %s", id, good.ID)
			}
			dead := f.deadLetters(1, 10*time.Second)
			if _, ok := dead[0].Headers["x-death"]; !ok {
				t.Errorf("dead letter has no x-death header: %v", dead[0].Headers)
			}
			if !strings.Contains(f.logs.String(), c.wantLog) {
				t.Errorf("logs lack %q:\n%s", c.wantLog, f.logs.String())
			}
		})
	}
}

func TestRPC(t *testing.T) {
	f := newFixture(t, "svc")
	ready := make(readyCounter, 4)
	srvCfg := f.config("server")
	srvCfg.OnConsume = ready.hook
	server, client := f.dial(srvCfg), f.dial(f.config("client"))
	f.consume(server, "svc", func(ctx context.Context, d Delivery) error {
		e := decodeEnv(t, d)
		return server.Reply(ctx, d, []byte(`{"echo":"`+e.ID+`"}`))
	})
	ready.wait(t, 1)
	for i := range 3 { // several calls share one reply session
		env := f.envelope("launch", launch{Count: i + 1})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		reply, err := client.Call(ctx, "svc", env)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"echo":"` + env.ID + `"}`; string(reply) != want {
			t.Errorf("reply = %s, want %s", reply, want)
		}
	}
}

func TestRPCRefusals(t *testing.T) {
	f := newFixture(t, "nobody")
	b := f.dial(f.config(""))
	t.Run("timeout when nobody answers", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := b.Call(ctx, "nobody", f.envelope("launch", launch{Count: 1}))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Call error = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("no deadline", func(t *testing.T) {
		_, err := b.Call(context.Background(), "nobody", f.envelope("launch", launch{Count: 1}))
		if err == nil || !strings.Contains(err.Error(), "deadline") {
			t.Fatalf("Call without deadline: %v", err)
		}
	})
	t.Run("reply without reply-to", func(t *testing.T) {
		if err := b.Reply(context.Background(), Delivery{}, []byte("x")); err == nil {
			t.Fatal("Reply to a delivery without reply-to succeeded")
		}
	})
}

func TestEventsFanOut(t *testing.T) {
	f := newFixture(t)
	ready := make(readyCounter, 4)
	cfg := f.config("")
	cfg.OnConsume = ready.hook
	b := f.dial(cfg)
	running, all := make(chan string, 8), make(chan string, 8)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for keys, out := range map[string]chan string{"instance.*.running": running, "instance.#": all} {
		wg.Go(func() {
			err := b.Subscribe(ctx, []string{keys}, func(ctx context.Context, d Delivery) error {
				out <- d.RoutingKey
				return nil
			})
			if err != context.Canceled {
				t.Errorf("Subscribe returned %v", err)
			}
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	ready.wait(t, 2)
	for _, key := range []string{"instance.j1.running", "instance.j1.failed", "instance.j2.running"} {
		if err := b.Publish(context.Background(), key, f.envelope("launch", launch{Count: 1})); err != nil {
			t.Fatal(err)
		}
	}
	// Per-queue order is publish order, so if "failed" had reached the
	// running-only subscriber it would show up before j2.
	for _, want := range []string{"instance.j1.running", "instance.j2.running"} {
		if got := receive(t, running, want); got != want {
			t.Errorf("running subscriber got %s, want %s", got, want)
		}
	}
	for _, want := range []string{"instance.j1.running", "instance.j1.failed", "instance.j2.running"} {
		if got := receive(t, all, want); got != want {
			t.Errorf("catch-all subscriber got %s, want %s", got, want)
		}
	}
}

func TestSubscribeDurableKeepsEventsWhileAway(t *testing.T) {
	f := newFixture(t, "mgmt")
	ready := make(readyCounter, 4)
	cfg := f.config("")
	cfg.OnConsume = ready.hook
	b := f.dial(cfg)
	got := make(chan string, 4)
	h := func(ctx context.Context, d Delivery) error { got <- d.RoutingKey; return nil }
	// First subscription creates and binds the queue, then goes away.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.SubscribeDurable(ctx, "mgmt", []string{"node.#"}, h) }()
	ready.wait(t, 1)
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("SubscribeDurable returned %v", err)
	}
	if err := b.Publish(context.Background(), "node.n1.heartbeat", f.envelope("launch", launch{Count: 1})); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() { done <- b.SubscribeDurable(ctx2, "mgmt", []string{"node.#"}, h) }()
	if key := receive(t, got, "event published while unsubscribed"); key != "node.n1.heartbeat" {
		t.Errorf("got %s", key)
	}
	cancel2()
	<-done
}

// The core reliability test: the broker drops our connection; consumers
// and subscribers come back by themselves, and a command sent during the
// outage is neither lost nor (after dedupe by ID) handled twice.
func TestReconnectAfterConnectionLoss(t *testing.T) {
	amqptest.NeedRabbitmqctl(t)
	f := newFixture(t, "worker")
	name := "reconnect-" + f.run
	ready := make(readyCounter, 8)
	cfg := f.config(name)
	cfg.OnConsume = ready.hook
	b := f.dial(cfg)

	var mu sync.Mutex
	seen := map[string]int{} // handled count per envelope ID, after dedupe
	handled := make(chan string, 16)
	f.consume(b, "worker", func(ctx context.Context, d Delivery) error {
		id := decodeEnv(t, d).ID
		mu.Lock()
		defer mu.Unlock()
		if seen[id] > 0 {
			return nil // duplicate delivery: ack and ignore
		}
		seen[id]++
		handled <- id
		return nil
	})
	events := make(chan string, 8)
	subCtx, cancelSub := context.WithCancel(context.Background())
	subDone := make(chan error, 1)
	go func() {
		subDone <- b.Subscribe(subCtx, []string{"instance.#"}, func(ctx context.Context, d Delivery) error {
			events <- d.RoutingKey
			return nil
		})
	}()
	t.Cleanup(func() { cancelSub(); <-subDone })
	ready.wait(t, 2)

	before := f.envelope("launch", launch{Count: 1})
	if err := b.SendCommand(context.Background(), "worker", before); err != nil {
		t.Fatal(err)
	}
	if id := receive(t, handled, "command before outage"); id != before.ID {
		t.Fatalf("handled %s, want %s", id, before.ID)
	}

	f.killConnection(b)
	during := f.envelope("launch", launch{Count: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.SendCommand(ctx, "worker", during); err != nil {
		t.Fatalf("SendCommand during outage: %v", err)
	}
	if id := receive(t, handled, "command sent during outage"); id != during.ID {
		t.Fatalf("handled %s, want %s", id, during.ID)
	}
	ready.wait(t, 2) // both consumers re-declared and resumed

	if err := b.Publish(ctx, "instance.j1.running", f.envelope("launch", launch{Count: 1})); err != nil {
		t.Fatal(err)
	}
	if key := receive(t, events, "event after reconnect"); key != "instance.j1.running" {
		t.Errorf("event key %s", key)
	}
	after := f.envelope("launch", launch{Count: 3})
	if err := b.SendCommand(ctx, "worker", after); err != nil {
		t.Fatal(err)
	}
	if id := receive(t, handled, "command after outage"); id != after.ID {
		t.Fatalf("handled %s, want %s", id, after.ID)
	}
	mu.Lock()
	for _, id := range []string{before.ID, during.ID, after.ID} {
		if seen[id] != 1 {
			t.Errorf("command %s handled %d times, want 1", id, seen[id])
		}
	}
	mu.Unlock()
	logs := f.logs.String()
	for _, want := range []string{"amqp disconnected", "amqp reconnected"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q", want)
		}
	}
	noPassword(t, logs)
}

func TestDurableCommandSurvivesRedial(t *testing.T) {
	f := newFixture(t, "worker")
	sender := f.dial(f.config("sender"))
	env := f.envelope("launch", launch{Count: 1})
	if err := sender.SendCommand(context.Background(), "worker", env); err != nil {
		t.Fatal(err)
	}
	if err := sender.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sender.SendCommand(context.Background(), "worker", env); !errors.Is(err, ErrClosed) {
		t.Errorf("SendCommand after Close = %v, want ErrClosed", err)
	}
	receiver := f.dial(f.config("receiver"))
	got := make(chan Delivery, 1)
	f.consume(receiver, "worker", func(ctx context.Context, d Delivery) error { got <- d; return nil })
	if d := receive(t, got, "durable command"); d.MessageID != env.ID {
		t.Errorf("received %s, want %s", d.MessageID, env.ID)
	}
}

func TestCloseStopsConsumers(t *testing.T) {
	f := newFixture(t, "worker")
	ready := make(readyCounter, 2)
	cfg := f.config("")
	cfg.OnConsume = ready.hook
	b := f.dial(cfg)
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(context.Background(), "worker", func(context.Context, Delivery) error { return nil })
	}()
	ready.wait(t, 1)
	_ = b.Close()
	if err := receive(t, done, "Consume to return after Close"); !errors.Is(err, ErrClosed) {
		t.Errorf("Consume returned %v, want ErrClosed", err)
	}
	if b.Connected() {
		t.Error("Connected() after Close")
	}
}

func TestQueueDepth(t *testing.T) {
	f := newFixture(t, "worker")
	b := f.dial(f.config(""))
	ctx := context.Background()
	for i := range 3 {
		if err := b.SendCommand(ctx, "worker", f.envelope("launch", launch{Count: i + 1})); err != nil {
			t.Fatal(err)
		}
	}
	n, err := b.QueueDepth(ctx, CommandQueue(f.run, "worker"))
	if err != nil || n != 3 {
		t.Errorf("QueueDepth = %d, %v; want 3", n, err)
	}
	_, err = b.QueueDepth(ctx, CommandQueue(f.run, "absent"))
	if !errors.Is(err, ErrQueueNotFound) {
		t.Errorf("QueueDepth of missing queue = %v, want ErrQueueNotFound", err)
	}
	// The failed passive declare must not have broken publishing.
	if err := b.SendCommand(ctx, "worker", f.envelope("launch", launch{Count: 1})); err != nil {
		t.Errorf("SendCommand after QueueDepth error: %v", err)
	}
}

// BenchmarkSendCommand measures a confirmed, persistent command send.
func BenchmarkSendCommand(b *testing.B) {
	amqptest.NeedBroker(b)
	run := amqptest.UniqueName(b, "bench")
	amqptest.DeleteAtEnd(b, amqptest.Topology{Queues: []string{CommandQueue(run, "bench"), DeadQueue(run)},
		Exchanges: []string{EventsExchange(run), DeadLetterExchange(run)}})
	bus, err := Dial(context.Background(), Config{URL: amqptest.URL(), Run: run, Log: newTestLogger(&syncBuffer{})})
	if err != nil {
		b.Skipf("broker: %v", err)
	}
	defer bus.Close()
	env, _ := envelope.NewEnvelope("launch", 1, run, "bench", launch{Count: 1}, time.Now())
	b.ResetTimer()
	for b.Loop() {
		if err := bus.SendCommand(context.Background(), "bench", env); err != nil {
			b.Fatal(err)
		}
	}
}

// While the broker is unreachable a send blocks until its ctx ends (and
// says so), a later send waits for the reconnect, and nothing is dropped
// or duplicated.
func TestPublishWhileDisconnected(t *testing.T) {
	f := newFixture(t, "worker")
	p := startProxy(t)
	ready := make(readyCounter, 4)
	cfg := f.config("outage-" + f.run)
	cfg.URL = p.url()
	cfg.OnConsume = ready.hook
	b := f.dial(cfg)
	handled := make(chan string, 8)
	f.consume(b, "worker", func(ctx context.Context, d Delivery) error { handled <- d.MessageID; return nil })
	ready.wait(t, 1)

	p.cut()
	lost := f.envelope("launch", launch{Count: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := b.SendCommand(ctx, "worker", lost)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SendCommand during outage = %v, want DeadlineExceeded", err)
	}

	waiting := f.envelope("launch", launch{Count: 2})
	sent := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		sent <- b.SendCommand(ctx, "worker", waiting)
	}()
	p.restore()
	if err := receive(t, sent, "SendCommand to return after reconnect"); err != nil {
		t.Fatalf("SendCommand across reconnect: %v", err)
	}
	marker := f.envelope("launch", launch{Count: 3})
	if err := b.SendCommand(context.Background(), "worker", marker); err != nil {
		t.Fatal(err)
	}
	// Queue order is send order: the refused send must not show up, and the
	// waiting one exactly once, before the marker.
	for _, want := range []string{waiting.ID, marker.ID} {
		if got := receive(t, handled, "command after reconnect"); got != want {
			t.Fatalf("handled %s, want %s (lost=%s waiting=%s marker=%s)", got, want, lost.ID, waiting.ID, marker.ID)
		}
	}
	if !b.Connected() {
		t.Error("Connected() = false after reconnect")
	}
}

// PublishTransient delivers the message as Publish would (routing key,
// message id, the sender's user_id), and across a connection loss neither
// waits for the reconnect nor wedges: it fails at once while the bus is
// down, and works on a new channel once it is back.
func TestPublishTransientAcrossConnectionLoss(t *testing.T) {
	f := newFixture(t)
	ready := make(readyCounter, 4)
	scfg := f.config("sub-" + f.run)
	scfg.OnConsume = ready.hook
	sub := f.dial(scfg)
	got := make(chan Delivery, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sub.Subscribe(ctx, []string{"beat.#"}, func(_ context.Context, d Delivery) error { got <- d; return nil })
	}()
	t.Cleanup(func() { cancel(); <-done })
	ready.wait(t, 1)

	p := startProxy(t)
	pcfg := f.config("pub-" + f.run)
	pcfg.URL = p.url()
	pub := f.dial(pcfg)
	first := f.envelope("beat", launch{Count: 1})
	if err := pub.PublishTransient(ctx, "beat.j.i1", first); err != nil {
		t.Fatal(err)
	}
	d := receive(t, got, "first transient publish")
	if d.MessageID != first.ID || d.RoutingKey != "beat.j.i1" || d.UserID != pub.User() {
		t.Errorf("got %s as %q from %q, want %s as beat.j.i1 from %q", d.MessageID, d.RoutingKey, d.UserID, first.ID, pub.User())
	}

	p.cut()
	waitFor(t, "bus to notice the outage", func() bool { return !pub.Connected() })
	long, stop := context.WithTimeout(ctx, time.Minute)
	defer stop()
	if err := pub.PublishTransient(long, "beat.j.i1", f.envelope("beat", launch{Count: 2})); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("transient publish while disconnected = %v, want ErrNotConnected at once", err)
	}

	p.restore()
	waitFor(t, "bus to reconnect", pub.Connected)
	second := f.envelope("beat", launch{Count: 3})
	if err := pub.PublishTransient(ctx, "beat.j.i1", second); err != nil {
		t.Fatalf("transient publish after reconnect: %v", err)
	}
	if d := receive(t, got, "transient publish after reconnect"); d.MessageID != second.ID {
		t.Errorf("got %s after reconnect, want %s (the dropped one must not appear)", d.MessageID, second.ID)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
