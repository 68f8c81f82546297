package amqptest

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// recorder is a testing.TB that records Skip, Fatal and Log instead of
// ending the test, so the skip-or-fail decision itself can be checked.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()           {}
func (r *recorder) Skip(args ...any)  { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Fatal(args ...any) { r.failed = fmt.Sprint(args...) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestURL(t *testing.T) {
	t.Setenv("NIGHTSHIFT_AMQP_URL", "")
	if got := URL(); got != DefaultURL {
		t.Errorf("URL() = %q, want the default", got)
	}
	t.Setenv("NIGHTSHIFT_AMQP_URL", "amqp://u:p@elsewhere:5673/v")
	if got := URL(); got != "amqp://u:p@elsewhere:5673/v" {
		t.Errorf("URL() = %q, want NIGHTSHIFT_AMQP_URL", got)
	}
}

func TestMissingBrokerSkipsOrFails(t *testing.T) {
	// Port 1 on loopback refuses at once.
	const down = "amqp://guest:s3cret@127.0.0.1:1/"
	for _, c := range []struct {
		strict, wantSkip, wantFail bool
	}{{false, true, false}, {true, false, true}} {
		t.Run(fmt.Sprintf("strict=%v", c.strict), func(t *testing.T) {
			if c.strict {
				t.Setenv("NIGHTSHIFT_TEST_STRICT", "1")
			} else {
				t.Setenv("NIGHTSHIFT_TEST_STRICT", "")
			}
			r := &recorder{}
			needBrokerAt(r, down)
			if (r.skipped != "") != c.wantSkip || (r.failed != "") != c.wantFail {
				t.Fatalf("skipped %q failed %q; want skip %v fail %v", r.skipped, r.failed, c.wantSkip, c.wantFail)
			}
			msg := r.skipped + r.failed
			if !strings.Contains(msg, "127.0.0.1:1") || strings.Contains(msg, "s3cret") {
				t.Errorf("message %q should name the broker without its password", msg)
			}
		})
	}
}

func TestMalformedURLFails(t *testing.T) {
	r := &recorder{}
	needBrokerAt(r, "http://guest:s3cret@host/")
	if r.failed == "" || r.skipped != "" {
		t.Fatalf("skipped %q failed %q; a malformed URL is a broken setup, not a missing broker", r.skipped, r.failed)
	}
	if strings.Contains(r.failed, "s3cret") {
		t.Errorf("password in %q", r.failed)
	}
}

func TestUniqueName(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		n := UniqueName(t, "run-")
		if !strings.HasPrefix(n, "run-") || len(n) != len("run-")+10 {
			t.Fatalf("name %q, want run- and 10 hex digits", n)
		}
		if seen[n] {
			t.Fatalf("name %q given twice", n)
		}
		seen[n] = true
	}
}

func dial(t *testing.T, name string) *amqp.Connection {
	t.Helper()
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	conn, err := amqp.DialConfig(URL(), amqp.Config{Properties: props})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestDeleteRemovesOnlyNamedTopology(t *testing.T) {
	NeedBroker(t)
	run := UniqueName(t, "amqptest-")
	keep := run + ".keep"
	conn := dial(t, run)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{run + ".q", keep} {
		if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.ExchangeDeclare(run+".x", "topic", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Delete(t, Topology{Queues: []string{keep}}) })
	// Names that do not exist are not an error.
	Delete(t, Topology{Queues: []string{run + ".q", run + ".missing"}, Exchanges: []string{run + ".x", run + ".nox"}})

	exists := func(declare func(*amqp.Channel) error) bool {
		c, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return declare(c) == nil
	}
	if exists(func(c *amqp.Channel) error {
		_, err := c.QueueDeclarePassive(run+".q", false, false, false, false, nil)
		return err
	}) {
		t.Error("queue still exists after Delete")
	}
	if exists(func(c *amqp.Channel) error {
		return c.ExchangeDeclarePassive(run+".x", "topic", false, false, false, false, nil)
	}) {
		t.Error("exchange still exists after Delete")
	}
	if !exists(func(c *amqp.Channel) error {
		_, err := c.QueueDeclarePassive(keep, false, false, false, false, nil)
		return err
	}) {
		t.Error("Delete removed a queue it was not given")
	}
}

func TestKillConnectionClosesOnlyTheNamedOne(t *testing.T) {
	NeedRabbitmqctl(t)
	name := UniqueName(t, "amqptest-kill-")
	victim := dial(t, name)
	bystander := dial(t, name+"-bystander")
	closed := victim.NotifyClose(make(chan *amqp.Error, 1))
	KillConnection(t, name)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("named connection still open 10s after KillConnection")
	}
	if bystander.IsClosed() {
		t.Error("KillConnection closed another connection")
	}
}

func TestKillConnectionOnPort(t *testing.T) {
	NeedRabbitmqctl(t)
	victim := dial(t, UniqueName(t, "amqptest-port-"))
	closed := victim.NotifyClose(make(chan *amqp.Error, 1))
	_, port, err := net.SplitHostPort(victim.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	KillConnectionOnPort(t, port)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("connection still open 10s after KillConnectionOnPort")
	}
}

func TestKillConnectionRefusesUnknownName(t *testing.T) {
	NeedRabbitmqctl(t)
	r := &recorder{TB: t}
	KillConnection(r, UniqueName(t, "amqptest-nobody-"))
	if !strings.Contains(r.failed, "found 0 connections") {
		t.Errorf("failure %q, want one saying no connection has that name", r.failed)
	}
}
