package sitterbus_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift/decision/controller"
	"nightshift/internal/amqpbus"
	"nightshift/internal/redact"
)

func testURL() string {
	if u := os.Getenv("NIGHTSHIFT_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// skipOrFail skips, or fails under NIGHTSHIFT_TEST_STRICT=1 (CI), when a
// service the test needs is missing.
func skipOrFail(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("NIGHTSHIFT_TEST_STRICT") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func needBroker(t *testing.T) {
	t.Helper()
	uri, err := amqp.ParseURI(testURL())
	if err != nil {
		t.Fatalf("NIGHTSHIFT_AMQP_URL: %v", err)
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(uri.Host, fmt.Sprint(uri.Port)), 2*time.Second)
	if err != nil {
		skipOrFail(t, fmt.Sprintf("RabbitMQ not reachable at %s (%v); start it with `rabbitmq-server -detached`", redact.URL(testURL()), err))
	}
	_ = c.Close()
}

func needRabbitmqctl(t *testing.T) {
	t.Helper()
	needBroker(t)
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		skipOrFail(t, "rabbitmqctl not on PATH; cannot force-close a connection")
	}
}

func randomSuffix(t testing.TB) string {
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newRun returns a run name no other test uses and deletes its topology
// when the test ends. instances are the sitters whose command queues to
// delete.
func newRun(t *testing.T, instances ...string) string {
	t.Helper()
	run := "sbtest-" + randomSuffix(t)
	t.Cleanup(func() { deleteTopology(t, run, instances...) })
	return run
}

func deleteTopology(t *testing.T, run string, instances ...string) {
	conn, err := amqp.Dial(testURL())
	if err != nil {
		t.Logf("cleanup: dial: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Logf("cleanup: channel: %v", err)
		return
	}
	defer ch.Close()
	for _, id := range instances {
		_, _ = ch.QueueDelete(amqpbus.CommandQueue(run, controller.SitterComponent(id)), false, false, false)
	}
	_, _ = ch.QueueDelete(amqpbus.DeadQueue(run), false, false, false)
	_ = ch.ExchangeDelete(amqpbus.DeadLetterExchange(run), false, false)
	_ = ch.ExchangeDelete(amqpbus.EventsExchange(run), false, false)
}

func dialBus(t *testing.T, run, name string, log *slog.Logger, onConsume func(string)) *amqpbus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b, err := amqpbus.Dial(ctx, amqpbus.Config{URL: testURL(), Name: name, Run: run, Log: log,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, RequeueDelay: 20 * time.Millisecond, OnConsume: onConsume})
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// killConnection force-closes the broker side of the one connection whose
// connection_name is name, touching no other connection on the shared
// broker. This RabbitMQ's list_connections has no user_provided_name
// column and its JSON output prints pids in a form close_connection does
// not take, so the table output is matched on client_properties.
func killConnection(t *testing.T, name string) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "client_properties").Output()
	if err != nil {
		t.Fatalf("rabbitmqctl list_connections: %v", err)
	}
	want := `{"connection_name","` + name + `"}`
	var pids []string
	for _, line := range strings.Split(string(out), "\n") {
		pid, props, ok := strings.Cut(line, "\t")
		if ok && strings.Contains(props, want) {
			pids = append(pids, strings.TrimSpace(pid))
		}
	}
	if len(pids) != 1 {
		t.Fatalf("found %d connections named %q, want exactly 1", len(pids), name)
	}
	if out, err := exec.Command("rabbitmqctl", "-q", "close_connection", pids[0], "test: simulated broker outage").CombinedOutput(); err != nil {
		t.Fatalf("close_connection %s: %v\n%s", pids[0], err, out)
	}
}

// syncBuffer is a log destination the test reads while others write.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually polls cond every 20ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
