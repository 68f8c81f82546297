package sitterbus_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"nightshift/controller/ctlbus"
	"nightshift/internal/amqpbus"
	"nightshift/internal/process"
	"nightshift/internal/testsupport"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/internal/testsupport/syncbuf"
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
		top.Queues = append(top.Queues, amqpbus.CommandQueue(run, ctlbus.SitterComponent(id)))
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

// eventually waits until cond holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testsupport.Eventually(t, timeout, func() error {
		if !cond() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
}

func alive(pid int) bool { return process.Alive(pid) }
