package amqpbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"time"

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
	return b.SubscribeBound(ctx, bindingKeys, nil, h)
}

// SubscribeBound is Subscribe that calls bound (when not nil) each time its
// queue is bound and consuming: first, and again after every reconnect.
// The queue is a new one each time, so an event published before bound
// was called never reached it; a caller that must not miss what events
// report rereads the records they describe then (the controller resyncs
// its instances from the provisioner). bound runs on the consumer's
// goroutine before any delivery of that queue is handled: it must not
// block.
func (b *Bus) SubscribeBound(ctx context.Context, bindingKeys []string, bound func(), h Handler) error {
	what := fmt.Sprintf("subscribe %q", bindingKeys)
	if len(bindingKeys) == 0 {
		return fmt.Errorf("%s: no binding keys", what)
	}
	exchange := EventsExchange(b.cfg.Run)
	return b.serveWith(ctx, what, func(ch *amqp.Channel) (string, error) {
		if err := declareEvents(ch, exchange); err != nil {
			return "", err
		}
		q, err := ch.QueueDeclare("", false, true, true, false, nil)
		if err != nil {
			return "", fmt.Errorf("declare subscription queue: %w", err)
		}
		return q.Name, bind(ch, q.Name, exchange, bindingKeys)
	}, consumer{prefetch: b.cfg.Prefetch, batch: 1, one: h, bound: bound})
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

// BatchHandler processes deliveries that arrived together, in delivery
// order. It returns nil when every one is done, or one error per delivery
// with Handler's meaning (nil acks, ErrReject dead-letters, others requeue).
// ds is reused for the next batch: keep none of it after returning.
type BatchHandler func(ctx context.Context, ds []Delivery) []error

// DefaultBatch is SubscribeBatch's batch size when it is given none.
const DefaultBatch = 512

// SubscribeBatch is Subscribe for a high-rate stream of small transient
// events, such as heartbeats: at 10,000 a second, settling each one on its
// own (an ack frame each, a window of Config.Prefetch) leaves one consumer
// behind the stream. It hands h what has already arrived, up to most
// deliveries (DefaultBatch when most <= 0), without waiting to fill a
// batch, so a quiet stream sees batches of one and no added latency. The
// broker may keep 4 batches in flight, and a batch whose deliveries all
// succeeded is settled with one ack (multiple); most = 1 is Subscribe's
// path. Its queue is exclusive and auto-delete, as Subscribe's: a consumer
// that dies before acking takes the batch with its queue, so nothing it
// had is redelivered to anyone.
//
// maxAge > 0 has the broker drop an event that waited in the queue longer
// (x-message-ttl): for a stream where each event supersedes the last of
// its kind (a worker's heartbeat), a consumer slower than the stream then
// gets recent events late by at most maxAge, instead of every event later
// and later behind a backlog that only grows.
func (b *Bus) SubscribeBatch(ctx context.Context, bindingKeys []string, most int, maxAge time.Duration, h BatchHandler) error {
	what := fmt.Sprintf("subscribe batch %q", bindingKeys)
	if len(bindingKeys) == 0 {
		return fmt.Errorf("%s: no binding keys", what)
	}
	if most <= 0 {
		most = DefaultBatch
	}
	exchange := EventsExchange(b.cfg.Run)
	// Never a smaller window than Subscribe's: a batch of one is Subscribe.
	c := consumer{prefetch: max(4*most, b.cfg.Prefetch), batch: most, many: h}
	return b.serveWith(ctx, what, func(ch *amqp.Channel) (string, error) {
		if err := declareEvents(ch, exchange); err != nil {
			return "", err
		}
		var args amqp.Table
		if maxAge > 0 {
			args = amqp.Table{"x-message-ttl": int64(max(maxAge/time.Millisecond, 1))}
		}
		q, err := ch.QueueDeclare("", false, true, true, false, args)
		if err != nil {
			return "", fmt.Errorf("declare subscription queue: %w", err)
		}
		return q.Name, bind(ch, q.Name, exchange, bindingKeys)
	}, c)
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
	return b.serveWith(ctx, what, declare, consumer{prefetch: b.cfg.Prefetch, batch: 1, one: h})
}

// consumer is how serveChannel takes deliveries: one at a time with one,
// or up to batch at once with many. bound (nil for none) is called each
// time consuming has begun (SubscribeBound).
type consumer struct {
	prefetch, batch int
	one             Handler
	many            BatchHandler
	bound           func()
}

func (b *Bus) serveWith(ctx context.Context, what string, declare func(*amqp.Channel) (string, error), h consumer) error {
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
func (b *Bus) serveChannel(ctx context.Context, conn *amqp.Connection, declare func(*amqp.Channel) (string, error), h consumer) (started bool, err error) {
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
	if err := ch.Qos(h.prefetch, 0, false); err != nil {
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
	b.log.Info("consuming", "queue", queue, "prefetch", h.prefetch, "batch", h.batch)
	if b.cfg.OnConsume != nil {
		b.cfg.OnConsume(queue)
	}
	if h.bound != nil {
		h.bound()
	}
	var batch []amqp.Delivery
	var ds []Delivery
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-b.life.Done():
			return true, ErrClosed
		case d, ok := <-deliveries:
			if !ok {
				return true, ended(closed)
			}
			if h.many == nil {
				b.handle(ctx, queue, d, h.one)
				continue
			}
			// One buffer for every batch: a Delivery is large, and most
			// batches of a quiet stream hold one.
			batch = append(batch[:0], d)
			open := true
			for open && len(batch) < h.batch {
				select {
				case d, ok := <-deliveries:
					if !ok {
						open = false
						break
					}
					batch = append(batch, d)
				default:
					open = false
				}
			}
			// Handled even when the stream just ended: settling on a
			// closed channel fails harmlessly, and a live channel that
			// only lost its consumer still wants its acks.
			ds = b.handleBatch(ctx, queue, batch, ds, h.many)
			clear(batch)
		}
	}
}

// ended says why a delivery stream ended.
func ended(closed <-chan *amqp.Error) error {
	select {
	case e := <-closed:
		if e != nil {
			return e
		}
	default:
	}
	return errConsumerEnded
}

// handleBatch runs h on batch and settles it: with one ack for all when
// every delivery succeeded, else each delivery as handle would. It hands h
// ds[:len(batch)] and returns ds for the next batch to reuse.
func (b *Bus) handleBatch(ctx context.Context, queue string, batch []amqp.Delivery, ds []Delivery, h BatchHandler) []Delivery {
	ds = ds[:0]
	for _, d := range batch {
		ds = append(ds, toDelivery(d))
	}
	defer clear(ds) // let the bodies go with the batch
	errs := runBatch(ctx, h, ds, b.log.With("queue", queue, "batch", len(ds)))
	if !slices.ContainsFunc(errs, func(err error) bool { return err != nil }) {
		if err := batch[len(batch)-1].Ack(true); err != nil {
			b.log.Warn("could not settle delivery batch; broker will redeliver it", "queue", queue, "batch", len(batch), "err", err)
		}
		return ds
	}
	requeueWait := false
	for i, d := range batch {
		var err error
		if i < len(errs) {
			err = errs[i]
		}
		if err != nil && !errors.Is(err, ErrReject) && !requeueWait {
			// As handle: one pause for the batch before requeueing.
			requeueWait = true
			_ = b.sleep(ctx, b.cfg.RequeueDelay)
		}
		b.settle(d, err, b.log.With("queue", queue, "message_id", d.MessageId, "type", d.Type, "user_id", d.UserId))
	}
	return ds
}

func runBatch(ctx context.Context, h BatchHandler, ds []Delivery, log *slog.Logger) (errs []error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("batch handler panicked; dead-lettering the batch", "panic", redact.String(fmt.Sprint(r)), "stack", string(debug.Stack()))
			err := fmt.Errorf("%w: handler panic: %v", ErrReject, r)
			errs = make([]error, len(ds))
			for i := range errs {
				errs[i] = err
			}
		}
	}()
	errs = h(ctx, ds)
	if errs != nil && len(errs) != len(ds) {
		// A handler that miscounts must not ack what it did not look at.
		err := fmt.Errorf("batch handler returned %d results for %d deliveries", len(errs), len(ds))
		log.Error("batch handler broke its contract; requeueing the batch", "err", err)
		errs = make([]error, len(ds))
		for i := range errs {
			errs[i] = err
		}
	}
	return errs
}

func toDelivery(d amqp.Delivery) Delivery {
	return Delivery{
		Body: d.Body, ReplyTo: d.ReplyTo, CorrelationID: d.CorrelationId, Redelivered: d.Redelivered,
		Headers: map[string]any(d.Headers), RoutingKey: d.RoutingKey, MessageID: d.MessageId,
		UserID: d.UserId,
	}
}

// handle runs h and settles d. An ack that fails (channel gone) is only
// logged: the broker redelivers unacked messages, which is why consumers
// dedupe.
func (b *Bus) handle(ctx context.Context, queue string, d amqp.Delivery, h Handler) {
	log := b.log.With("queue", queue, "message_id", d.MessageId, "type", d.Type, "user_id", d.UserId)
	err := runHandler(ctx, h, toDelivery(d), log)
	if err != nil && !errors.Is(err, ErrReject) {
		// Wait before requeueing so a failing dependency is not hammered;
		// on shutdown requeue at once so another consumer can take it.
		_ = b.sleep(ctx, b.cfg.RequeueDelay)
	}
	b.settle(d, err, log)
}

// settle acks d (err nil), dead-letters it (ErrReject) or requeues it.
func (b *Bus) settle(d amqp.Delivery, err error, log *slog.Logger) {
	var settle error
	switch {
	case err == nil:
		settle = d.Ack(false)
	case errors.Is(err, ErrReject):
		log.Warn("message rejected; dead-lettering", "err", redact.String(err.Error()))
		settle = d.Nack(false, false)
	default:
		log.Warn("handler failed; requeueing", "err", redact.String(err.Error()), "delay", b.cfg.RequeueDelay)
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
