package amqpbus

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift/internal/envelope"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/internal/testsupport/syncbuf"
)

// syncBuffer is the shared concurrent-safe test buffer.
type syncBuffer = syncbuf.Buffer

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type fixture struct {
	t    *testing.T
	run  string
	logs *syncBuffer
	log  *slog.Logger
}

// newFixture gives a test its own run and deletes the run's topology at the
// end so the shared broker stays clean.
func newFixture(t *testing.T, components ...string) *fixture {
	t.Helper()
	amqptest.NeedBroker(t)
	f := &fixture{t: t, run: amqptest.UniqueName(t, "t"), logs: &syncBuffer{}}
	f.log = newTestLogger(f.logs)
	t.Cleanup(func() {
		f.deleteTopology(components...)
		if t.Failed() {
			t.Logf("bus logs:\n%s", f.logs.String())
		}
	})
	return f
}

func (f *fixture) config(name string) Config {
	return Config{URL: amqptest.URL(), Name: name, Run: f.run, Log: f.log, MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond, RequeueDelay: 20 * time.Millisecond}
}

func (f *fixture) dial(cfg Config) *Bus {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Dial(ctx, cfg)
	if err != nil {
		f.t.Fatalf("Dial: %v", err)
	}
	f.t.Cleanup(func() { _ = b.Close() })
	return b
}

func (f *fixture) raw() (*amqp.Connection, *amqp.Channel) {
	f.t.Helper()
	conn, err := amqp.Dial(amqptest.URL())
	if err != nil {
		f.t.Fatalf("raw dial: %v", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		f.t.Fatalf("raw channel: %v", err)
	}
	return conn, ch
}

func (f *fixture) deleteTopology(components ...string) {
	top := amqptest.Topology{Queues: []string{DeadQueue(f.run)}, Exchanges: []string{EventsExchange(f.run), DeadLetterExchange(f.run)}}
	for _, c := range components {
		top.Queues = append(top.Queues, CommandQueue(f.run, c), SubscriptionQueue(f.run, c))
	}
	amqptest.Delete(f.t, top)
}

// rawPublish puts body on queue without any envelope, as a buggy or hostile
// sender would.
func (f *fixture) rawPublish(queue string, body []byte) {
	f.t.Helper()
	conn, ch := f.raw()
	defer conn.Close()
	if err := ch.Publish("", queue, false, false, amqp.Publishing{Body: body}); err != nil {
		f.t.Fatalf("raw publish: %v", err)
	}
}

// deadLetters returns n messages from the run's dead queue, failing after timeout.
func (f *fixture) deadLetters(n int, timeout time.Duration) []amqp.Delivery {
	f.t.Helper()
	conn, ch := f.raw()
	defer conn.Close()
	ds, err := ch.Consume(DeadQueue(f.run), "", true, false, false, false, nil)
	if err != nil {
		f.t.Fatalf("consume dead queue: %v", err)
	}
	var out []amqp.Delivery
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case d := <-ds:
			out = append(out, d)
		case <-deadline:
			f.t.Fatalf("dead queue: got %d messages within %s, want %d", len(out), timeout, n)
		}
	}
	return out
}

// killConnection force-closes the broker side of b's connection, found by
// its client port, touching no other connection on the shared broker.
func (f *fixture) killConnection(b *Bus) {
	f.t.Helper()
	b.mu.Lock()
	conn := b.conn
	b.mu.Unlock()
	if conn == nil {
		f.t.Fatal("killConnection: bus is not connected")
	}
	_, port, err := net.SplitHostPort(conn.LocalAddr().String())
	if err != nil {
		f.t.Fatal(err)
	}
	f.checkConnectionName(port, b.cfg.Name)
	amqptest.KillConnectionOnPort(f.t, port)
}

// checkConnectionName asserts the broker shows the connection from port
// under Config.Name, which is how an operator finds a component's connection.
func (f *fixture) checkConnectionName(port, name string) {
	f.t.Helper()
	out, err := exec.Command("rabbitmqctl", "-q", "list_connections", "peer_port", "client_properties", "--formatter", "json").Output()
	if err != nil {
		f.t.Fatalf("rabbitmqctl list_connections: %v", err)
	}
	var conns []struct {
		PeerPort         int     `json:"peer_port"`
		ClientProperties [][]any `json:"client_properties"`
	}
	if err := json.Unmarshal(out, &conns); err != nil {
		f.t.Fatalf("parse list_connections: %v\n%s", err, out)
	}
	for _, c := range conns {
		if fmt.Sprint(c.PeerPort) != port {
			continue
		}
		for _, p := range c.ClientProperties {
			if len(p) == 3 && p[0] == "connection_name" {
				if p[2] != name {
					f.t.Errorf("connection_name = %v, want %q", p[2], name)
				}
				return
			}
		}
		f.t.Errorf("connection from port %s has no connection_name", port)
		return
	}
	f.t.Errorf("no connection from port %s in list_connections", port)
}

func (f *fixture) envelope(typ string, body any) envelope.Envelope {
	f.t.Helper()
	e, err := envelope.NewEnvelope(typ, 1, f.run, "test", body, time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return e
}

// consume runs Consume in the background until the test ends, returning a
// channel that fires each time the consumer is (re)started.
func (f *fixture) consume(b *Bus, component string, h Handler) {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Consume(ctx, component, h) }()
	f.t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			f.t.Errorf("Consume returned %v, want context.Canceled", err)
		}
	})
}

// readyCounter is an OnConsume hook that reports each consumer start.
type readyCounter chan string

func (r readyCounter) hook(queue string) { r <- queue }

func (r readyCounter) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-r:
		case <-time.After(10 * time.Second):
			t.Fatal("consumer did not start within 10s")
		}
	}
}

func receive[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func decodeEnv(t *testing.T, d Delivery) envelope.Envelope {
	t.Helper()
	var e envelope.Envelope
	if err := json.Unmarshal(d.Body, &e); err != nil {
		t.Fatalf("delivery body is not an envelope: %v: %s", err, d.Body)
	}
	return e
}

func noPassword(t *testing.T, s string) {
	t.Helper()
	if strings.Contains(s, "guest:guest@") {
		t.Errorf("password leaked: %s", s)
	}
}

// proxy is a TCP relay in front of the broker that a test can cut and
// restore, simulating an outage without touching the shared broker.
type proxy struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
}

func startProxy(t *testing.T) *proxy {
	t.Helper()
	uri, err := amqp.ParseURI(amqptest.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, target: net.JoinHostPort(uri.Host, fmt.Sprint(uri.Port))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

// url is testURL with the host replaced by the proxy.
func (p *proxy) url() string {
	uri, _ := amqp.ParseURI(amqptest.URL())
	return fmt.Sprintf("amqp://%s:%s@%s/", uri.Username, uri.Password, p.addr)
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				_ = down.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, down, up)
			p.mu.Unlock()
			relay := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				_ = dst.Close()
				_ = src.Close()
			}
			go relay(up, down)
			go relay(down, up)
		}
	}()
}

// cut stops accepting and drops every relayed connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// restore listens again on the same address.
func (p *proxy) restore() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy relisten on %s: %v", p.addr, err)
	}
	p.serve(ln)
}
