package sitterbus_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"nightshift/decision/controller"
	"nightshift/internal/amqpbus"
	"nightshift/internal/amqptest"
	"nightshift/internal/process"
	"nightshift/internal/syncbuf"
)

// newRun returns a run name no other test uses and deletes its topology
// when the test ends. instances are the sitters whose command queues to
// delete.
func newRun(t *testing.T, instances ...string) string {
	t.Helper()
	run := amqptest.UniqueName(t, "sbtest-")
	top := amqptest.Topology{Queues: []string{amqpbus.DeadQueue(run)},
		Exchanges: []string{amqpbus.DeadLetterExchange(run), amqpbus.EventsExchange(run)}}
	for _, id := range instances {
		top.Queues = append(top.Queues, amqpbus.CommandQueue(run, controller.SitterComponent(id)))
	}
	amqptest.DeleteAtEnd(t, top)
	return run
}

func dialBus(t *testing.T, run, name string, log *slog.Logger, onConsume func(string)) *amqpbus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b, err := amqpbus.Dial(ctx, amqpbus.Config{URL: amqptest.URL(), Name: name, Run: run, Log: log,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, RequeueDelay: 20 * time.Millisecond, OnConsume: onConsume})
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// syncBuffer is the shared concurrent-safe test buffer.
type syncBuffer = syncbuf.Buffer

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

func alive(pid int) bool { return process.Alive(pid) }
