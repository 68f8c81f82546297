package amqpbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift/internal/envelope"
	"nightshift/internal/redact"
)

// directReplyTo is RabbitMQ's pseudo-queue for RPC replies (see package doc).
const directReplyTo = "amq.rabbitmq.reply-to"

// SendCommand puts env on component's durable command queue and returns once
// the broker has confirmed it (at-least-once; see package doc).
func (b *Bus) SendCommand(ctx context.Context, component string, env envelope.Envelope) error {
	what := fmt.Sprintf("send command %q to %s", env.Type, component)
	if !validName.MatchString(component) {
		return fmt.Errorf("%s: invalid component name", what)
	}
	msg, err := b.message(env)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	msg.DeliveryMode = amqp.Persistent
	queue := CommandQueue(b.cfg.Run, component)
	prepare := func(ch *amqp.Channel) error { return b.declareCommandQueue(ch, queue) }
	return b.publish(ctx, what, b.publisher, prepare, "", queue, msg)
}

// Publish sends env to the run's events exchange with routingKey, e.g.
// "instance.<job>.<state>", and waits for the broker's confirm. Events go
// only to subscriptions bound at that moment.
func (b *Bus) Publish(ctx context.Context, routingKey string, env envelope.Envelope) error {
	what := fmt.Sprintf("publish event %q as %q", env.Type, routingKey)
	if routingKey == "" {
		return fmt.Errorf("%s: empty routing key", what)
	}
	msg, err := b.message(env)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	msg.DeliveryMode = amqp.Persistent
	exchange := EventsExchange(b.cfg.Run)
	prepare := func(ch *amqp.Channel) error {
		return b.declareOnce(ch, exchange, func() error { return b.declareEvents(ch, exchange) })
	}
	return b.publish(ctx, what, b.publisher, prepare, exchange, routingKey, msg)
}

// PublishTransient sends env to the run's events exchange with routingKey
// at most once: as a transient message, on a channel without publisher
// confirms, and without retrying. It returns once the message is written
// to the connection, or fails at once when there is no live channel. It is
// for messages whose loss the next one covers, such as heartbeats: waiting
// for a confirm buys them nothing, and a simulator that multiplexes
// thousands of sitters over one connection cannot afford the wait. The
// broker still checks user_id and the sender's write permission on
// routingKey; a refusal closes the channel (logged) and the next call
// opens a new one.
func (b *Bus) PublishTransient(ctx context.Context, routingKey string, env envelope.Envelope) error {
	if routingKey == "" {
		return fmt.Errorf("publish event %q: empty routing key", env.Type)
	}
	msg, err := b.message(env)
	if err != nil {
		return fmt.Errorf("publish event %q as %q: %w", env.Type, routingKey, err)
	}
	msg.DeliveryMode = amqp.Transient
	ch, err := b.fireChannel(ctx)
	if err != nil {
		return fmt.Errorf("publish event %q as %q: %w", env.Type, routingKey, err)
	}
	exchange := EventsExchange(b.cfg.Run)
	// Keyed apart from Publish's declaration, which is per confirm channel.
	if err := b.declareOnce(ch, "fire:"+exchange, func() error { return b.declareEvents(ch, exchange) }); err != nil {
		return fmt.Errorf("publish event %q as %q: declare: %w", env.Type, routingKey, err)
	}
	if err := ch.PublishWithContext(ctx, exchange, routingKey, false, false, msg); err != nil {
		return fmt.Errorf("publish event %q as %q: %w", env.Type, routingKey, err)
	}
	return nil
}

// fireChannel returns the shared channel without confirms, opening a new
// one after a reconnect or channel error. Unlike publisher it does not wait
// for a reconnect: PublishTransient's callers drop the message instead.
func (b *Bus) fireChannel(ctx context.Context) (*amqp.Channel, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	conn := b.conn
	b.mu.Unlock()
	if conn == nil || conn.IsClosed() {
		return nil, ErrNotConnected
	}
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	if b.fire != nil && b.fireConn == conn && !b.fire.IsClosed() {
		return b.fire, nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	// Without confirms, the broker's refusal of a publish (a forged
	// user_id, a routing key the user may not write) arrives only as the
	// channel's closing; say so, since the caller was told it was sent.
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		if e := <-closed; e != nil {
			b.log.Warn("transient publish channel closed by broker", "err", redact.String(e.Error()))
		}
	}()
	b.fire, b.fireConn = ch, conn
	return ch, nil
}

// Call sends env to component's command queue as a request and waits for
// the Reply. ctx must carry a deadline: it bounds the wait and becomes the
// request's TTL. If the connection drops after the request was sent, Call
// returns ErrConnectionLost (the request may or may not have been handled).
func (b *Bus) Call(ctx context.Context, component string, env envelope.Envelope) ([]byte, error) {
	what := fmt.Sprintf("call %q on %s", env.Type, component)
	if !validName.MatchString(component) {
		return nil, fmt.Errorf("%s: invalid component name", what)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil, fmt.Errorf("%s: ctx has no deadline", what)
	}
	msg, err := b.message(env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	ttl := time.Until(deadline).Milliseconds()
	if ttl < 1 {
		return nil, fmt.Errorf("%s: %w", what, context.DeadlineExceeded)
	}
	msg.Expiration = strconv.FormatInt(ttl, 10)
	msg.ReplyTo = directReplyTo
	msg.CorrelationId = uuid.NewString()
	queue := CommandQueue(b.cfg.Run, component)

	reply := make(chan []byte, 1)
	var sess *rpcSession
	defer func() {
		if sess != nil {
			sess.forget(msg.CorrelationId)
		}
	}()
	// The reply must be awaited on the channel that sent the request, so a
	// retry after reconnect re-registers on the new session.
	channel := func(ctx context.Context) (*amqp.Channel, error) {
		s, err := b.rpcSession(ctx)
		if err != nil {
			return nil, err
		}
		if s != sess {
			if sess != nil {
				sess.forget(msg.CorrelationId)
			}
			s.expect(msg.CorrelationId, reply)
			sess = s
		}
		return s.ch, nil
	}
	prepare := func(ch *amqp.Channel) error { return b.declareCommandQueue(ch, queue) }
	if err := b.publish(ctx, what, channel, prepare, "", queue, msg); err != nil {
		return nil, err
	}
	select {
	case body := <-reply:
		return body, nil
	case <-sess.dead:
		return nil, fmt.Errorf("%s: %w", what, ErrConnectionLost)
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: no reply: %w", what, ctx.Err())
	case <-b.life.Done():
		return nil, fmt.Errorf("%s: %w", what, ErrClosed)
	}
}

// Reply answers a delivery received from Call. body is sent as is (not an
// envelope), so callers may reply with whatever the request type defines.
func (b *Bus) Reply(ctx context.Context, d Delivery, body []byte) error {
	what := "reply to " + d.CorrelationID
	if d.ReplyTo == "" {
		return fmt.Errorf("%s: delivery has no reply-to (not sent by Call)", what)
	}
	msg := amqp.Publishing{
		ContentType:   "application/json",
		CorrelationId: d.CorrelationID,
		AppId:         b.cfg.Name,
		UserId:        b.user,
		Body:          body,
	}
	return b.publish(ctx, what, b.publisher, nil, "", d.ReplyTo, msg)
}

// message builds the AMQP publishing for env, refusing envelopes that are
// not from this run: a component holding the wrong bus is a wiring bug.
func (b *Bus) message(env envelope.Envelope) (amqp.Publishing, error) {
	switch {
	case env.Type == "":
		return amqp.Publishing{}, errors.New("envelope has empty type")
	case env.ID == "":
		return amqp.Publishing{}, errors.New("envelope has empty id")
	case env.Run != b.cfg.Run:
		return amqp.Publishing{}, fmt.Errorf("envelope run %q on bus for run %q", env.Run, b.cfg.Run)
	}
	body, err := json.Marshal(env)
	if err != nil {
		return amqp.Publishing{}, fmt.Errorf("marshal envelope: %w", err)
	}
	return amqp.Publishing{
		ContentType: "application/json",
		MessageId:   env.ID,
		Type:        env.Type,
		Timestamp:   env.Time,
		AppId:       b.cfg.Name,
		// The broker refuses a user_id that is not the connection's user,
		// so consumers can trust it as the sender's identity.
		UserId: b.user,
		Body:   body,
	}, nil
}

// publish sends msg on the channel from get and waits for its confirm. When
// the channel dies before the confirm, it publishes again on a new one: the
// broker may then hold two copies, which is the at-least-once contract.
func (b *Bus) publish(ctx context.Context, what string, get func(context.Context) (*amqp.Channel, error),
	prepare func(*amqp.Channel) error, exchange, key string, msg amqp.Publishing) error {
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			if err := b.sleep(ctx, b.retryDelay(attempt-1, 0.5)); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
		ch, err := get(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) || isFatal(err) {
				return fmt.Errorf("%s: %w", what, err)
			}
			// The connection died under us; the next get waits for the reconnect.
			b.log.Warn("no channel; retrying", "op", what, "attempt", attempt, "err", redact.String(err.Error()))
			continue
		}
		if prepare != nil {
			if err := prepare(ch); err != nil {
				if isFatal(err) {
					return fmt.Errorf("%s: declare: %w", what, err)
				}
				b.log.Warn("declare failed; retrying", "op", what, "attempt", attempt, "err", redact.String(err.Error()))
				continue
			}
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%s: %w", what, ctx.Err())
			}
			b.log.Warn("publish failed; retrying", "op", what, "attempt", attempt, "err", redact.String(err.Error()))
			continue
		}
		acked, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("%s: awaiting confirm (message may still arrive): %w", what, err)
		}
		if acked {
			return nil
		}
		if !ch.IsClosed() {
			if !b.quorum {
				return fmt.Errorf("%s: %w", what, ErrNacked)
			}
			// A quorum queue nacks what it cannot commit: while it elects
			// a new leader after losing a node, or while a majority of its
			// nodes is away. The broker took no responsibility for the
			// message, so publishing it again is the at-least-once
			// contract, until ctx says stop. On a new channel: RabbitMQ
			// 3.10 keeps nacking, long after the election, every publish
			// on a channel whose first publish found no leader.
			b.log.Warn("broker nacked publish; publishing again on a new channel", "op", what, "attempt", attempt)
			_ = ch.Close()
			if err := b.sleep(ctx, b.retryDelay(attempt, 0.5)); err != nil {
				return fmt.Errorf("%s: %w (%w)", what, ErrNacked, err)
			}
			continue
		}
		b.log.Warn("channel closed before confirm; publishing again", "op", what, "attempt", attempt)
	}
}

// sleep waits d on the bus clock, or until ctx ends or the bus closes.
func (b *Bus) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-b.clock.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-b.life.Done():
		return ErrClosed
	}
}

// publisher returns the shared confirm-mode channel, opening a new one after
// a reconnect or channel error.
func (b *Bus) publisher(ctx context.Context) (*amqp.Channel, error) {
	conn, err := b.awaitConn(ctx)
	if err != nil {
		return nil, err
	}
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	if b.pub != nil && b.pubConn == conn && !b.pub.IsClosed() {
		return b.pub, nil
	}
	ch, err := confirmChannel(conn)
	if err != nil {
		return nil, err
	}
	b.pub, b.pubConn = ch, conn
	return ch, nil
}

func confirmChannel(conn *amqp.Connection) (*amqp.Channel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("enable confirms: %w", err)
	}
	return ch, nil
}

// declareOnce runs declare the first time name is needed on ch, so a busy
// event publisher does not redeclare its exchange on every message.
func (b *Bus) declareOnce(ch *amqp.Channel, name string, declare func() error) error {
	b.pubMu.Lock()
	done := b.declared[name] == ch
	b.pubMu.Unlock()
	if done {
		return nil
	}
	if err := declare(); err != nil {
		return err
	}
	b.pubMu.Lock()
	b.declared[name] = ch
	b.pubMu.Unlock()
	return nil
}

// declareCommandQueue declares queue and its dead-letter path. The queue
// itself is declared on every send (one cheap round trip) so a queue deleted
// by an operator is recreated instead of silently swallowing commands.
func (b *Bus) declareCommandQueue(ch *amqp.Channel, queue string) error {
	if b.cfg.Passive {
		return declarePassive(ch, queue)
	}
	if err := b.declareOnce(ch, DeadLetterExchange(b.cfg.Run), func() error { return b.declareDead(ch) }); err != nil {
		return err
	}
	return b.declareDurableQueue(ch, queue)
}

// DeclareCommandQueue declares component's command queue and the run's
// dead-letter path, so that a consumer without configure rights (a worker's
// sitter on a Passive bus) finds its queue in place.
func (b *Bus) DeclareCommandQueue(ctx context.Context, component string) error {
	if !validName.MatchString(component) {
		return fmt.Errorf("declare command queue %q: invalid component name", component)
	}
	conn, err := b.awaitConn(ctx)
	if err != nil {
		return fmt.Errorf("declare command queue of %s: %w", component, err)
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("declare command queue of %s: open channel: %w", component, err)
	}
	defer func() { _ = ch.Close() }()
	if err := b.declareDead(ch); err != nil {
		return err
	}
	return b.declareDurableQueue(ch, CommandQueue(b.cfg.Run, component))
}

// DeclareQueue declares a plain durable queue, such as a job's work queue,
// as the examples' producer and worker declare it (a quorum queue on a
// cluster; see QueueArgs).
func (b *Bus) DeclareQueue(ctx context.Context, queue string) error {
	conn, err := b.awaitConn(ctx)
	if err != nil {
		return fmt.Errorf("declare queue %s: %w", queue, err)
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("declare queue %s: open channel: %w", queue, err)
	}
	defer func() { _ = ch.Close() }()
	if _, err := ch.QueueDeclare(queue, true, false, false, false, b.queueArgs(nil)); err != nil {
		return fmt.Errorf("declare queue %s: %w", queue, err)
	}
	return nil
}

// DeleteCommandQueue deletes component's command queue, for example a
// terminated worker's; a queue that is already gone is not an error.
func (b *Bus) DeleteCommandQueue(ctx context.Context, component string) error {
	if !validName.MatchString(component) {
		return fmt.Errorf("delete command queue %q: invalid component name", component)
	}
	conn, err := b.awaitConn(ctx)
	if err != nil {
		return fmt.Errorf("delete command queue of %s: %w", component, err)
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("delete command queue of %s: open channel: %w", component, err)
	}
	defer func() { _ = ch.Close() }()
	if _, err := ch.QueueDelete(CommandQueue(b.cfg.Run, component), false, false, false); err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return nil
		}
		return fmt.Errorf("delete command queue of %s: %w", component, err)
	}
	return nil
}

// declarePassive checks that queue exists without needing configure rights.
func declarePassive(ch *amqp.Channel, queue string) error {
	if _, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("queue %s (passive declare): %w", queue, err)
	}
	return nil
}

// queueArgs adds x-queue-type quorum to args on a cluster (see Clustered).
// Only durable, shared queues are declared with it: a quorum queue cannot
// be exclusive or auto-delete, so Subscribe's per-connection queue stays
// classic (it is lost with its connection on any broker anyway).
func (b *Bus) queueArgs(args amqp.Table) amqp.Table {
	if !b.quorum {
		return args
	}
	out := amqp.Table{"x-queue-type": "quorum"}
	for k, v := range args {
		out[k] = v
	}
	return out
}

func (b *Bus) declareDead(ch *amqp.Channel) error {
	dlx, dead := DeadLetterExchange(b.cfg.Run), DeadQueue(b.cfg.Run)
	if err := ch.ExchangeDeclare(dlx, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", dlx, err)
	}
	if _, err := ch.QueueDeclare(dead, true, false, false, false, b.queueArgs(nil)); err != nil {
		return fmt.Errorf("declare queue %s: %w", dead, err)
	}
	if err := ch.QueueBind(dead, "", dlx, false, nil); err != nil {
		return fmt.Errorf("bind %s to %s: %w", dead, dlx, err)
	}
	return nil
}

func (b *Bus) declareDurableQueue(ch *amqp.Channel, queue string) error {
	args := b.queueArgs(amqp.Table{"x-dead-letter-exchange": DeadLetterExchange(b.cfg.Run)})
	if _, err := ch.QueueDeclare(queue, true, false, false, false, args); err != nil {
		return fmt.Errorf("declare queue %s: %w", queue, err)
	}
	return nil
}

func (b *Bus) declareEvents(ch *amqp.Channel, exchange string) error {
	if b.cfg.Passive {
		if err := ch.ExchangeDeclarePassive(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return fmt.Errorf("exchange %s (passive declare): %w", exchange, err)
		}
		return nil
	}
	return declareEvents(ch, exchange)
}

func declareEvents(ch *amqp.Channel, exchange string) error {
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", exchange, err)
	}
	return nil
}

// rpcSession is one channel consuming direct replies, shared by all Calls
// on a connection and matched to callers by correlation id.
type rpcSession struct {
	conn *amqp.Connection
	ch   *amqp.Channel
	dead chan struct{} // closed when no more replies can arrive

	mu      sync.Mutex
	pending map[string]chan<- []byte
}

func (b *Bus) rpcSession(ctx context.Context) (*rpcSession, error) {
	conn, err := b.awaitConn(ctx)
	if err != nil {
		return nil, err
	}
	b.rpcMu.Lock()
	defer b.rpcMu.Unlock()
	if s := b.rpc; s != nil && s.conn == conn && !s.ch.IsClosed() {
		return s, nil
	}
	ch, err := confirmChannel(conn)
	if err != nil {
		return nil, err
	}
	replies, err := ch.Consume(directReplyTo, "", true, false, false, false, nil)
	if err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("consume %s: %w", directReplyTo, err)
	}
	s := &rpcSession{conn: conn, ch: ch, dead: make(chan struct{}), pending: make(map[string]chan<- []byte)}
	go s.dispatch(replies)
	b.rpc = s
	return s, nil
}

// dispatch hands each reply to its waiting Call; replies nobody waits for
// (the caller timed out) are dropped. It ends when the channel closes.
func (s *rpcSession) dispatch(replies <-chan amqp.Delivery) {
	defer close(s.dead)
	for d := range replies {
		s.mu.Lock()
		if c, ok := s.pending[d.CorrelationId]; ok {
			delete(s.pending, d.CorrelationId)
			c <- d.Body // buffered 1, and deleted first, so never blocks
		}
		s.mu.Unlock()
	}
}

func (s *rpcSession) expect(id string, c chan<- []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending[id] = c
}

func (s *rpcSession) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, id)
}
