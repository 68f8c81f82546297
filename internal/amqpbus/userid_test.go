package amqpbus

import (
	"context"
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestUserIDIsStampedAndDelivered: every command and event carries the
// connection's user as user_id, and the consumer sees it.
func TestUserIDIsStampedAndDelivered(t *testing.T) {
	f := newFixture(t, "worker")
	b := f.dial(f.config("userid"))
	u, _ := amqp.ParseURI(f.config("").URL)
	if b.User() != u.Username || b.User() == "" {
		t.Fatalf("User() = %q, want the URL's %q", b.User(), u.Username)
	}
	got := make(chan Delivery, 1)
	f.consume(b, "worker", func(ctx context.Context, d Delivery) error { got <- d; return nil })
	if err := b.SendCommand(context.Background(), "worker", f.envelope("launch", launch{Count: 1})); err != nil {
		t.Fatal(err)
	}
	if d := receive(t, got, "command"); d.UserID != b.User() {
		t.Errorf("delivery user_id %q, want %q", d.UserID, b.User())
	}
}

// TestForgedUserIDIsRefusedByTheBroker is the fact the origin checks rest
// on: a publish whose user_id is not its connection's user never arrives.
func TestForgedUserIDIsRefusedByTheBroker(t *testing.T) {
	f := newFixture(t, "worker")
	b := f.dial(f.config("forger"))
	got := make(chan Delivery, 1)
	f.consume(b, "worker", func(ctx context.Context, d Delivery) error { got <- d; return nil })
	conn, ch := f.raw()
	defer conn.Close()
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirm("", CommandQueue(f.run, "worker"), false, false,
		amqp.Publishing{UserId: "ns." + f.run + ".controller.controller", Body: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	dc.Wait()
	select {
	case e := <-closed:
		var ae *amqp.Error
		if !errors.As(error(e), &ae) || ae.Code != amqp.PreconditionFailed {
			t.Errorf("broker closed the channel with %v, want PRECONDITION_FAILED", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the broker took a message with a forged user_id")
	}
	select {
	case d := <-got:
		t.Errorf("a forged message arrived: user_id %q", d.UserID)
	case <-time.After(300 * time.Millisecond):
	}
}
