package amqpbus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift/internal/testsupport/amqptest"
)

// TestClusterURLFailsOverToNextNode: a bus given two nodes (two relays to
// the test broker, so the queue behind them is one) connects to the
// first, and when that node is lost for good it carries on through the
// other: the consumer resumes and a command sent after the loss arrives.
func TestClusterURLFailsOverToNextNode(t *testing.T) {
	f := newFixture(t, "worker")
	p1, p2 := startProxy(t), startProxy(t)
	ready := make(readyCounter, 4)
	cfg := f.config("failover-" + f.run)
	cfg.URL = p1.url() + "," + p2.url()
	cfg.OnConsume = ready.hook
	b := f.dial(cfg)
	if !strings.Contains(b.Node(), p1.addr) {
		t.Fatalf("connected to %s, want the first node %s", b.Node(), p1.addr)
	}
	handled := make(chan string, 8)
	f.consume(b, "worker", func(ctx context.Context, d Delivery) error { handled <- d.MessageID; return nil })
	ready.wait(t, 1)

	p1.cut() // and never restored
	ready.wait(t, 1)
	if !strings.Contains(b.Node(), p2.addr) {
		t.Fatalf("after losing the first node connected to %s, want %s", b.Node(), p2.addr)
	}
	env := f.envelope("launch", launch{Count: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.SendCommand(ctx, "worker", env); err != nil {
		t.Fatalf("SendCommand after failover: %v", err)
	}
	if got := receive(t, handled, "command after failover"); got != env.ID {
		t.Fatalf("handled %s, want %s", got, env.ID)
	}
	logs := f.logs.String()
	noPassword(t, logs)
	if !strings.Contains(logs, "amqp reconnected") || !strings.Contains(logs, p2.addr) {
		t.Errorf("failover not logged with the node reached:\n%s", logs)
	}
}

// TestDialSkipsNodeThatDoesNotAnswer: the first dial goes on to the next
// node when one refuses connections, and the error of a list where none
// answers says how many were tried, without a password.
func TestDialSkipsNodeThatDoesNotAnswer(t *testing.T) {
	f := newFixture(t)
	p := startProxy(t)
	cfg := f.config("skip-" + f.run)
	cfg.URL = "amqp://guest:guest@127.0.0.1:1/," + p.url()
	b := f.dial(cfg)
	if !strings.Contains(b.Node(), p.addr) {
		t.Fatalf("connected to %s, want %s", b.Node(), p.addr)
	}
	noPassword(t, b.Node())

	cfg.URL = "amqp://guest:guest@127.0.0.1:1/,amqp://guest:guest@127.0.0.1:2/"
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, cfg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to dead nodes = %v, want DeadlineExceeded", err)
	}
	noPassword(t, err.Error())
	noPassword(t, f.logs.String())
	if !strings.Contains(f.logs.String(), "node 2 of 2") {
		t.Errorf("connect failure does not say every node was tried:\n%s", f.logs.String())
	}
}

func TestConfigRefusesMixedNodes(t *testing.T) {
	cases := []struct{ name, url, want string }{
		{"two users", "amqp://a:secretpw@h:1/,amqp://b:secretpw@h:2/", "user differs"},
		{"two vhosts", "amqp://a:secretpw@h:1/x,amqp://a:secretpw@h:2/y", "vhost differs"},
		{"mixed schemes", "amqp://a:secretpw@h:1/,amqps://a:secretpw@h:2/", "scheme"},
		{"not amqp", "http://a:secretpw@h:1/,http://a:secretpw@h:2/", "URL 1 of 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Dial(context.Background(), Config{URL: c.url, Run: "r"})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Dial error = %v, want %q", err, c.want)
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Errorf("error leaks a password: %v", err)
			}
		})
	}
}

// TestClusterDeclaresQuorumQueues: on a cluster (a URL list) the command,
// subscription, dead-letter and work queues are quorum queues, which a
// classic redeclaration proves (the broker refuses it, naming
// x-queue-type); commands, RPC, and dead-lettering out of a quorum queue
// work as on one node. A single-node bus keeps classic queues.
func TestClusterDeclaresQuorumQueues(t *testing.T) {
	f := newFixture(t, "svc", "events")
	work := "nightshift." + f.run + ".work"
	t.Cleanup(func() { f.deleteRaw(work) })
	p1, p2 := startProxy(t), startProxy(t)
	ready := make(readyCounter, 4)
	cfg := f.config("quorum-" + f.run)
	cfg.URL = p1.url() + "," + p2.url()
	cfg.OnConsume = ready.hook
	b := f.dial(cfg)
	f.consume(b, "svc", func(ctx context.Context, d Delivery) error {
		if decodeEnv(t, d).Type == "reject-me" {
			return ErrReject
		}
		return b.Reply(ctx, d, []byte("ok"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = b.SubscribeDurable(ctx, "events", []string{"x.#"}, func(context.Context, Delivery) error { return nil })
	}()
	ready.wait(t, 2)
	if err := b.DeclareQueue(context.Background(), work); err != nil {
		t.Fatal(err)
	}
	dlx := amqp.Table{"x-dead-letter-exchange": DeadLetterExchange(f.run)}
	for q, args := range map[string]amqp.Table{CommandQueue(f.run, "svc"): dlx, SubscriptionQueue(f.run, "events"): dlx, DeadQueue(f.run): nil, work: nil} {
		err := f.declareRaw(q, args)
		var ae *amqp.Error
		if !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed || !strings.Contains(ae.Reason, "'quorum'") {
			t.Errorf("classic redeclare of %s = %v, want a refusal naming its quorum type", q, err)
		}
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if reply, err := b.Call(cctx, "svc", f.envelope("launch", launch{Count: 1})); err != nil || string(reply) != "ok" {
		t.Fatalf("Call over a quorum queue = %q, %v", reply, err)
	}
	if err := b.SendCommand(cctx, "svc", f.envelope("reject-me", launch{Count: 1})); err != nil {
		t.Fatal(err)
	}
	if dead := f.deadLetters(1, 10*time.Second); len(dead) != 1 {
		t.Fatalf("dead letters %d, want 1", len(dead))
	}

	// One node: classic, as before.
	single := f.dial(f.config("single-" + f.run))
	other := "nightshift." + f.run + ".classic"
	t.Cleanup(func() { f.deleteRaw(other) })
	if err := single.DeclareQueue(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	if err := f.declareRaw(other, nil); err != nil {
		t.Errorf("a single-node bus declared %s as something other than a classic queue", other)
	}
}

func TestQueueArgs(t *testing.T) {
	if QueueArgs("amqp://h:1/") != nil {
		t.Error("one node: want no arguments (a classic queue)")
	}
	if got := QueueArgs("amqp://h:1/,amqp://h:2/"); got["x-queue-type"] != "quorum" {
		t.Errorf("two nodes: got %v, want x-queue-type quorum", got)
	}
}

// declareRaw declares a durable queue with args on a connection of its own.
func (f *fixture) declareRaw(queue string, args amqp.Table) error {
	conn, ch := f.raw()
	defer conn.Close()
	_, err := ch.QueueDeclare(queue, true, false, false, false, args)
	return err
}

func (f *fixture) deleteRaw(queue string) {
	conn, ch := f.raw()
	defer conn.Close()
	_, _ = ch.QueueDelete(queue, false, false, false)
}

// TestDialAnyPassesOverALostNode: the plain-client helper the examples use
// connects to the first node that answers, and says which failed without
// their passwords when none does.
func TestDialAnyPassesOverALostNode(t *testing.T) {
	amqptest.NeedBroker(t)
	p := startProxy(t)
	conn, err := DialAny("amqp://guest:guest@127.0.0.1:1/,"+p.url(), nil, amqp.Config{})
	if err != nil {
		t.Fatalf("DialAny: %v", err)
	}
	_ = conn.Close()
	_, err = DialAny("amqp://guest:guest@127.0.0.1:1/,amqp://guest:guest@127.0.0.1:2/", nil, amqp.Config{})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:2") {
		t.Fatalf("DialAny to lost nodes: %v, want an error naming them", err)
	}
	noPassword(t, err.Error())
}
