// Package amqptest owns what tests need to use the shared RabbitMQ broker
// politely: which broker (NIGHTSHIFT_AMQP_URL or the local default), skipping
// when it is missing (failing instead under NIGHTSHIFT_TEST_STRICT=1, as CI
// runs), run names no other test uses, removing a test's queues and
// exchanges afterwards, and force-closing exactly one connection with
// rabbitmqctl to simulate its loss. It never touches connections or
// topology it was not named.
//
// It deliberately does not import amqpbus, so amqpbus's own tests can use
// it; callers name their queues and exchanges with amqpbus's functions.
package amqptest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift/internal/nsenv"
	"nightshift/internal/redact"
)

// DefaultURL is the broker on the development machine and in CI.
const DefaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// URL is the broker tests use: NIGHTSHIFT_AMQP_URL, or DefaultURL.
func URL() string {
	if u := os.Getenv(nsenv.AMQPURL); u != "" {
		return u
	}
	return DefaultURL
}

// Strict reports whether a missing external service must fail the test
// (NIGHTSHIFT_TEST_STRICT=1, set by CI) rather than skip it.
func Strict() bool { return os.Getenv(nsenv.TestStrict) == "1" }

// SkipOrFail skips the test, or fails it when Strict, because a service it
// needs is missing. Like Skip and Fatal it does not return on a real test.
func SkipOrFail(t testing.TB, msg string) {
	t.Helper()
	if Strict() {
		t.Fatal(msg + " (NIGHTSHIFT_TEST_STRICT=1)")
		return
	}
	t.Skip(msg)
}

// NeedBroker skips (or, when Strict, fails) unless the broker at URL
// accepts TCP connections.
func NeedBroker(t testing.TB) {
	t.Helper()
	needBrokerAt(t, URL())
}

func needBrokerAt(t testing.TB, url string) {
	t.Helper()
	uri, err := amqp.ParseURI(url)
	if err != nil {
		t.Fatal(fmt.Sprintf("NIGHTSHIFT_AMQP_URL %s: %v", redact.URL(url), err))
		return
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(uri.Host, fmt.Sprint(uri.Port)), 2*time.Second)
	if err != nil {
		SkipOrFail(t, fmt.Sprintf("RabbitMQ not reachable at %s (%v); start it with `rabbitmq-server -detached`", redact.URL(url), err))
		return
	}
	_ = c.Close()
}

// NeedRabbitmqctl is NeedBroker plus the rabbitmqctl CLI, which
// KillConnection uses.
func NeedRabbitmqctl(t testing.TB) {
	t.Helper()
	NeedBroker(t)
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		SkipOrFail(t, "rabbitmqctl not on PATH; cannot force-close a connection")
	}
}

// UniqueName is prefix followed by ten random hex digits: a run (or
// instance) name no other test on the shared broker uses.
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// Topology is what a test declared on the shared broker and must remove.
type Topology struct {
	Queues    []string
	Exchanges []string
}

// Delete removes top's queues and exchanges now, over a connection of its
// own. Failures are logged, not fatal: cleanup must not hide the result.
func Delete(t testing.TB, top Topology) {
	t.Helper()
	conn, err := amqp.Dial(URL())
	if err != nil {
		t.Logf("clean up broker topology: %v", redact.String(err.Error()))
		return
	}
	defer conn.Close()
	// Any channel error (even for a missing queue in some RabbitMQ versions)
	// closes the channel, so each delete gets its own.
	del := func(fn func(*amqp.Channel) error) {
		ch, err := conn.Channel()
		if err != nil {
			t.Logf("clean up broker topology: channel: %v", err)
			return
		}
		_ = fn(ch)
		_ = ch.Close()
	}
	for _, q := range top.Queues {
		del(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
	}
	for _, x := range top.Exchanges {
		del(func(ch *amqp.Channel) error { return ch.ExchangeDelete(x, false, false) })
	}
}

// DeleteAtEnd removes top's queues and exchanges when the test ends.
func DeleteAtEnd(t testing.TB, top Topology) {
	t.Cleanup(func() { Delete(t, top) })
}

// KillConnection force-closes the broker side of the one connection whose
// connection_name is name, touching no other connection on the shared
// broker. list_connections on this RabbitMQ has no user_provided_name
// column and its JSON output prints pids in a form close_connection does
// not take, so the table output is matched on client_properties.
func KillConnection(t testing.TB, name string) {
	t.Helper()
	out := rabbitmqctl(t, "-q", "list_connections", "--no-table-headers", "pid", "client_properties")
	want := `{"connection_name","` + name + `"}`
	var pids []string
	for _, line := range strings.Split(out, "\n") {
		pid, props, ok := strings.Cut(line, "\t")
		if ok && strings.Contains(props, want) {
			pids = append(pids, strings.TrimSpace(pid))
		}
	}
	if len(pids) != 1 {
		t.Fatalf("found %d connections named %q, want exactly 1", len(pids), name)
		return
	}
	closeConnection(t, pids[0])
}

// KillConnectionOnPort force-closes the broker side of the one connection
// whose client port (on the test's side) is port: the way to single out a
// connection whose name other tests may share.
func KillConnectionOnPort(t testing.TB, port string) {
	t.Helper()
	out := rabbitmqctl(t, "-q", "--no-table-headers", "list_connections", "pid", "peer_port")
	var pids []string
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 2 && fields[1] == port {
			pids = append(pids, fields[0])
		}
	}
	if len(pids) != 1 {
		t.Fatalf("found %d connections from port %s, want exactly 1:\n%s", len(pids), port, out)
		return
	}
	closeConnection(t, pids[0])
}

func closeConnection(t testing.TB, pid string) {
	t.Helper()
	rabbitmqctl(t, "-q", "close_connection", pid, "test: simulated connection loss")
}

func rabbitmqctl(t testing.TB, args ...string) string {
	t.Helper()
	// Stdout only: warnings on stderr would otherwise be parsed as rows.
	out, err := exec.Command("rabbitmqctl", args...).Output()
	if err != nil {
		var stderr []byte
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("rabbitmqctl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}
