package amqpbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift/internal/envelope"
	"nightshift/internal/redact"
)

// MaxMessageSize caps the body DecodeOrReject accepts.
const MaxMessageSize = 1 << 20

// Handler processes one delivery. nil acks it; an error wrapping ErrReject
// dead-letters it; any other error requeues it after Config.RequeueDelay.
type Handler func(ctx context.Context, d Delivery) error

// Delivery is one received message.
type Delivery struct {
	Body          []byte
	ReplyTo       string // set by Call; answer with Bus.Reply
	CorrelationID string
	Redelivered   bool // a previous attempt was requeued or its consumer died
	Headers       map[string]any
	RoutingKey    string // the event's key, or the command queue name
	MessageID     string // the envelope ID, as set by the sender
	// UserID is the broker user that published the message. The broker
	// refuses a publish whose user_id is not its connection's user, and
	// every Bus sets it, so it identifies the sender; empty means a
	// publisher that is not a Nightshift bus (refuse it where it matters).
	UserID string
}

// Consume runs h for every command sent to component until ctx ends (it then
// returns ctx.Err()) or the bus closes (ErrClosed). It survives reconnects.
// It returns early only for errors retrying cannot fix, such as the queue
// existing with different arguments.
func (b *Bus) Consume(ctx context.Context, component string, h Handler) error {
	if !validName.MatchString(component) {
		return fmt.Errorf("consume %q: invalid component name", component)
	}
	queue := CommandQueue(b.cfg.Run, component)
	return b.serve(ctx, "consume "+queue, func(ch *amqp.Channel) (string, error) {
		if b.cfg.Passive {
			return queue, declarePassive(ch, queue)
		}
		if err := b.declareDead(ch); err != nil {
			return "", err
		}
		return queue, b.declareDurableQueue(ch, queue)
	}, h)
}

// Subscribe runs h for every event whose routing key matches one of
// bindingKeys (topic syntax: "instance.*.running", "instance.#"). Its queue is
// exclusive to this connection and vanishes with it, so events published
// while disconnected are missed; use SubscribeDurable when that matters.
func (b *Bus) Subscribe(ctx context.Context, bindingKeys []string, h Handler) error {
	what := fmt.Sprintf("subscribe %q", bindingKeys)
	if len(bindingKeys) == 0 {
		return fmt.Errorf("%s: no binding keys", what)
	}
	exchange := EventsExchange(b.cfg.Run)
	return b.serve(ctx, what, func(ch *amqp.Channel) (string, error) {
		if err := declareEvents(ch, exchange); err != nil {
			return "", err
		}
		q, err := ch.QueueDeclare("", false, true, true, false, nil)
		if err != nil {
			return "", fmt.Errorf("declare subscription queue: %w", err)
		}
		return q.Name, bind(ch, q.Name, exchange, bindingKeys)
	}, h)
}

// SubscribeDurable is Subscribe with a named durable queue
// (SubscriptionQueue(run, queue)) that keeps collecting events while no
// consumer is connected. Rejected events are dead-lettered. Bindings are only
// ever added: a key dropped from bindingKeys stays bound until the queue is
// deleted.
func (b *Bus) SubscribeDurable(ctx context.Context, queue string, bindingKeys []string, h Handler) error {
	what := fmt.Sprintf("subscribe %s %q", queue, bindingKeys)
	if !validName.MatchString(queue) {
		return fmt.Errorf("%s: invalid queue name", what)
	}
	if len(bindingKeys) == 0 {
		return fmt.Errorf("%s: no binding keys", what)
	}
	exchange, name := EventsExchange(b.cfg.Run), SubscriptionQueue(b.cfg.Run, queue)
	return b.serve(ctx, what, func(ch *amqp.Channel) (string, error) {
		if err := declareEvents(ch, exchange); err != nil {
			return "", err
		}
		if err := b.declareDead(ch); err != nil {
			return "", err
		}
		if err := b.declareDurableQueue(ch, name); err != nil {
			return "", err
		}
		return name, bind(ch, name, exchange, bindingKeys)
	}, h)
}

func bind(ch *amqp.Channel, queue, exchange string, keys []string) error {
	for _, k := range keys {
		if err := ch.QueueBind(queue, k, exchange, false, nil); err != nil {
			return fmt.Errorf("bind %s to %s as %q: %w", queue, exchange, k, err)
		}
	}
	return nil
}

// serve keeps one consumer alive across reconnects. declare runs on each new
// channel and returns the queue to consume.
func (b *Bus) serve(ctx context.Context, what string, declare func(*amqp.Channel) (string, error), h Handler) error {
	failures := 0
	for {
		conn, err := b.awaitConn(ctx)
		if err != nil {
			return err
		}
		started, err := b.serveChannel(ctx, conn, declare, h)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case b.life.Err() != nil:
			return ErrClosed
		case isFatal(err):
			return fmt.Errorf("%s: %w", what, err)
		}
		b.log.Warn("consumer interrupted; resuming", "op", what, "err", redact.String(fmt.Sprint(err)))
		if started {
			// It worked before; most likely the connection dropped and
			// awaitConn will wait for the reconnect.
			failures = 0
			continue
		}
		failures++
		if err := b.sleep(ctx, b.retryDelay(failures, 0.5)); err != nil {
			return err
		}
	}
}

var errConsumerEnded = errors.New("delivery stream ended (channel closed or consumer cancelled by broker)")

// serveChannel consumes on a fresh channel until it fails. started reports
// whether consuming began, which tells serve whether to back off.
func (b *Bus) serveChannel(ctx context.Context, conn *amqp.Connection, declare func(*amqp.Channel) (string, error), h Handler) (started bool, err error) {
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	var deliveries <-chan amqp.Delivery
	defer func() {
		// amqp091-go's dispatcher blocks handing a buffered delivery to a
		// reader that is gone, and Close waits for the dispatcher: drain
		// what is left (closing requeues it anyway) so Close can finish.
		if deliveries != nil {
			go func() {
				for range deliveries {
				}
			}()
		}
		_ = ch.Close()
	}()
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Qos(b.cfg.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("set prefetch: %w", err)
	}
	queue, err := declare(ch)
	if err != nil {
		return false, err
	}
	// Not ConsumeWithContext: its cancel goroutine races our ch.Close for
	// the channel's single RPC slot and can leave Close waiting forever.
	// Closing the channel cancels the consumer and requeues unacked messages.
	deliveries, err = ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume %s: %w", queue, err)
	}
	b.log.Info("consuming", "queue", queue, "prefetch", b.cfg.Prefetch)
	if b.cfg.OnConsume != nil {
		b.cfg.OnConsume(queue)
	}
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-b.life.Done():
			return true, ErrClosed
		case d, ok := <-deliveries:
			if !ok {
				select {
				case e := <-closed:
					if e != nil {
						return true, e
					}
				default:
				}
				return true, errConsumerEnded
			}
			b.handle(ctx, queue, d, h)
		}
	}
}

// handle runs h and settles d. An ack that fails (channel gone) is only
// logged: the broker redelivers unacked messages, which is why consumers
// dedupe.
func (b *Bus) handle(ctx context.Context, queue string, d amqp.Delivery, h Handler) {
	del := Delivery{
		Body: d.Body, ReplyTo: d.ReplyTo, CorrelationID: d.CorrelationId, Redelivered: d.Redelivered,
		Headers: map[string]any(d.Headers), RoutingKey: d.RoutingKey, MessageID: d.MessageId,
		UserID: d.UserId,
	}
	log := b.log.With("queue", queue, "message_id", d.MessageId, "type", d.Type, "user_id", d.UserId)
	err := runHandler(ctx, h, del, log)
	var settle error
	switch {
	case err == nil:
		settle = d.Ack(false)
	case errors.Is(err, ErrReject):
		log.Warn("message rejected; dead-lettering", "err", redact.String(err.Error()))
		settle = d.Nack(false, false)
	default:
		log.Warn("handler failed; requeueing", "err", redact.String(err.Error()), "delay", b.cfg.RequeueDelay)
		// Wait before requeueing so a failing dependency is not hammered;
		// on shutdown requeue at once so another consumer can take it.
		_ = b.sleep(ctx, b.cfg.RequeueDelay)
		settle = d.Nack(false, true)
	}
	if settle != nil {
		log.Warn("could not settle delivery; broker will redeliver it", "err", settle)
	}
}

func runHandler(ctx context.Context, h Handler, d Delivery, log *slog.Logger) (err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("handler panicked; dead-lettering message", "panic", redact.String(fmt.Sprint(r)), "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: handler panic: %v", ErrReject, r)
		}
	}()
	return h(ctx, d)
}

// DecodeOrReject decodes d with reg. A malformed message is logged (type,
// field and reason, no body) and returned as an error wrapping both ErrReject
// and the *envelope.DecodeError, so a Handler can return it as is to
// dead-letter the message and carry on.
func DecodeOrReject(reg *envelope.Registry, log *slog.Logger, d Delivery) (envelope.Envelope, any, error) {
	env, body, err := reg.Decode(d.Body, MaxMessageSize)
	if err != nil {
		log.Warn("malformed message; dead-lettering", "err", redact.String(err.Error()),
			"routing_key", d.RoutingKey, "message_id", d.MessageID, "bytes", len(d.Body))
		return env, nil, fmt.Errorf("%w: %w", ErrReject, err)
	}
	return env, body, nil
}

// QueueDepth returns the number of ready (not unacknowledged) messages in
// queue, a full queue name such as CommandQueue(run, "worker"). It uses a
// passive declare on a throwaway channel because a missing queue closes the
// channel it was asked on.
func (b *Bus) QueueDepth(ctx context.Context, queue string) (int, error) {
	what := "queue depth of " + queue
	conn, err := b.awaitConn(ctx)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	// amqp091-go calls take no ctx; run it aside so ctx still bounds the wait.
	go func() {
		ch, err := conn.Channel()
		if err != nil {
			res <- result{err: fmt.Errorf("open channel: %w", err)}
			return
		}
		defer func() { _ = ch.Close() }()
		q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			err = fmt.Errorf("%w: %w", ErrQueueNotFound, err)
		}
		res <- result{q.Messages, err}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			return 0, fmt.Errorf("%s: %w", what, r.err)
		}
		return r.n, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("%s: %w", what, ctx.Err())
	}
}
