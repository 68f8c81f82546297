// Package amqpbus owns Nightshift's connection to RabbitMQ: the per-run
// topology, commands, RPC, events and queue metrics that the provisioner,
// controllers, sitters and mgmt are built on. Message bodies are
// envelope.Envelope JSON; this package moves bytes and leaves decoding to the
// consumer (see DecodeOrReject).
//
// # Topology
//
// Everything is scoped by run so two runs on one broker never see each
// other's messages:
//
//	nightshift.<run>.events          topic exchange, durable (Publish, Subscribe)
//	nightshift.<run>.cmd.<component> durable queue, dead-letters to the dlx (SendCommand, Call, Consume)
//	nightshift.<run>.sub.<name>      durable queue bound to events (SubscribeDurable)
//	nightshift.<run>.dlx             fanout exchange, durable
//	nightshift.<run>.dead            durable queue bound to the dlx: refused and malformed messages
//
// Declarations are idempotent and repeated after every reconnect, so either
// side may start first.
//
// On a cluster (Config.URL lists more than one node) every durable queue
// above, and a job's work queue (DeclareQueue, QueueArgs), is a quorum
// queue (x-queue-type=quorum): replicated by Raft on the cluster's nodes,
// it keeps its messages and its consumers when one node of three is lost,
// where a classic queue lives and dies with one node. Subscribe's queue
// stays classic, exclusive and auto-delete: a quorum queue can be none of
// those, and that queue belongs to one connection anyway (events missed
// while it is down are missed on any broker). Call's direct reply-to is no
// queue at all. A queue's type is fixed when it is first declared and the
// broker refuses a redeclaration of another type, so every client of a
// clustered run must be given the whole list; one URL means one node and
// classic queues, as before.
//
// # Identity
//
// Every message the Bus publishes (commands, events, requests, replies)
// carries the connection's user name as the AMQP user_id, which the broker
// refuses to pass on when it is not the connection's user; consumers read
// it as Delivery.UserID and decide with package busid whether that sender
// may say what it says. A Passive bus declares nothing it does not own
// (passive declares only), for a worker whose user may not configure the
// run's topology.
//
// # Delivery guarantees
//
// Commands are persistent and publisher-confirmed: SendCommand returns nil
// only once the broker has taken responsibility for the message. If the
// connection drops before the confirm arrives the message is published again
// on the next connection, so a command is delivered AT LEAST ONCE. On a
// cluster a nack is retried the same way (a quorum queue nacks while it
// elects a leader or lacks a majority); on one node it is ErrNacked. Consumers
// must dedupe by envelope ID. While disconnected, every publishing call blocks
// until the bus reconnects or its ctx ends; nothing is dropped silently.
//
// Consumers use manual acks on their own channel. A Handler's result decides
// the message's fate: nil acks it; an error wrapping ErrReject nacks it
// without requeue, so the broker dead-letters it (to nightshift.<run>.dead for
// command and durable subscription queues, dropped for plain Subscribe
// queues); any other error nacks it with requeue after Config.RequeueDelay, so
// a transient failure is retried without spinning. A panicking handler is
// treated as ErrReject: a message that crashes its consumer would otherwise
// crash it again forever. Each Consume/Subscribe call runs its handler for one
// message at a time, in delivery order; run several calls for parallelism.
// SubscribeBatch, for high-rate transient events (heartbeats), hands its
// handler what has already arrived, up to a batch, and acks a batch that
// succeeded whole with one ack (multiple).
// Consume and Subscribe block until ctx ends (returning ctx.Err()) or the bus
// is closed (ErrClosed), re-declaring their queue, bindings and consumer after
// every reconnect.
//
// # RPC
//
// Call uses RabbitMQ's direct reply-to (amq.rabbitmq.reply-to) on one
// channel per connection rather than a private reply queue: there is no queue
// to declare, name or clean up on a shared broker, and a reply can never
// outlive the caller's connection. The cost is that a reply in flight when
// the connection drops is lost; Call then returns ErrConnectionLost and the
// caller decides whether the request is safe to repeat. Call requires a ctx
// deadline; the request carries it as a per-message TTL so a server that
// comes up late does not act on a request its caller has abandoned.
//
// # Reconnection
//
// One goroutine per Bus watches the connection and redials with jittered,
// capped exponential back-off (Config.MinBackoff..MaxBackoff). Each redial
// tries every node of the list once, starting with the one after the node
// just lost, and keeps the first that answers: a client of a cluster fails
// over to a live node at the first retry. amqp091-go's
// own Recovery option is not used: it retries a fixed number of times at a
// fixed interval and would hide the reconnect from the consumers that must
// re-declare their exclusive queues. Every connect and disconnect is logged
// with the URL passed through redact.
package amqpbus
