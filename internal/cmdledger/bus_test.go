package cmdledger

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/internal/testsupport/amqptest"
)

type outcome struct {
	redelivered, replayed, ran bool
	err                        error
}

// TestRedeliveryOverRealBroker: a signed command whose handling fails for
// a passing reason is requeued by the broker and handled on its
// redelivery; once handled, the same command published again (as a
// consumer with broker credentials could) is acked and answered from the
// ledger, never run again, including by a consumer started afresh on the
// same ledger.
func TestRedeliveryOverRealBroker(t *testing.T) {
	amqptest.NeedBroker(t)
	run := amqptest.UniqueName(t, "ledger")
	amqptest.DeleteAtEnd(t, amqptest.Topology{
		Queues:    []string{amqpbus.CommandQueue(run, "worker"), amqpbus.DeadQueue(run)},
		Exchanges: []string{amqpbus.DeadLetterExchange(run)},
	})
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(name string) *amqpbus.Bus {
		b, err := amqpbus.Dial(ctx, amqpbus.Config{URL: amqptest.URL(), Name: name, Run: run, Log: log, RequeueDelay: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	reg := &envelope.Registry{}
	reg.Register("test.reconfigure", 1, func() envelope.Validator { return &body{} }, true)
	ledger := &Dir{Path: filepath.Join(t.TempDir(), "commands")}
	runs := 0
	got := make(chan outcome, 8)
	serve := func(b *amqpbus.Bus) context.CancelFunc {
		g := &Guard{Ledger: ledger, Signer: &envelope.Signer{Secret: secret}, Log: log}
		cctx, stop := context.WithCancel(ctx)
		go b.Consume(cctx, "worker", func(ctx context.Context, d amqpbus.Delivery) error {
			env, _, err := amqpbus.DecodeOrReject(reg, log, d)
			if err != nil {
				return err
			}
			ran := false
			_, replayed, err := g.Run(ctx, env, func(context.Context) ([]byte, bool) {
				ran = true
				runs++
				return []byte(`{}`), runs > 1 // the first attempt fails, as a busy store would
			})
			got <- outcome{redelivered: d.Redelivered, replayed: replayed, ran: ran, err: err}
			if err == nil && ran && runs == 1 {
				return errors.New("store is busy, try again")
			}
			return err
		})
		return stop
	}
	consumer := dial("consumer")
	stop := serve(consumer)
	sender := dial("sender")
	env := signedFor(t, run, time.Now(), 5)
	if err := sender.SendCommand(ctx, "worker", env); err != nil {
		t.Fatal(err)
	}
	recv := func(what string) outcome {
		t.Helper()
		select {
		case o := <-got:
			return o
		case <-ctx.Done():
			t.Fatalf("no %s", what)
			return outcome{}
		}
	}
	if o := recv("first attempt"); !o.ran || o.redelivered || o.err != nil {
		t.Fatalf("first attempt: %+v", o)
	}
	if o := recv("redelivery"); !o.ran || !o.redelivered || o.replayed || o.err != nil {
		t.Fatalf("redelivery after a passing failure: %+v, want handled again", o)
	}
	// Re-published copy: a new delivery, not marked redelivered.
	if err := sender.SendCommand(ctx, "worker", env); err != nil {
		t.Fatal(err)
	}
	if o := recv("re-published copy"); o.ran || !o.replayed || o.err != nil {
		t.Fatalf("re-published copy: %+v, want answered from the ledger", o)
	}
	// A restarted consumer on the same ledger.
	stop()
	stop = serve(dial("consumer-2"))
	defer stop()
	if err := sender.SendCommand(ctx, "worker", env); err != nil {
		t.Fatal(err)
	}
	if o := recv("copy after restart"); o.ran || !o.replayed || o.err != nil {
		t.Fatalf("copy after a restart: %+v, want answered from the ledger", o)
	}
	if runs != 2 {
		t.Errorf("handler ran %d times, want 2 (one failed attempt, one success)", runs)
	}
}
