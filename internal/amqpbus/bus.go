package amqpbus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift/internal/backoff"
	"nightshift/internal/brokerurl"
	"nightshift/internal/pki"
	"nightshift/internal/redact"
)

// Defaults for zero Config fields. The reconnect cap is short because a
// run's broker is back within seconds of a crash (its keeper restarts it),
// and every component must be back with it: a 30 s cap left sitters and
// the controller away for up to half a minute after a 10 s outage. Jitter
// spreads a large fleet's reconnects over the cap.
const (
	DefaultMinBackoff   = 100 * time.Millisecond
	DefaultMaxBackoff   = 5 * time.Second
	DefaultPrefetch     = 32
	DefaultRequeueDelay = time.Second
	dialTimeout         = 30 * time.Second
	heartbeat           = 10 * time.Second
)

// Errors callers can test for with errors.Is.
var (
	// ErrClosed is returned by every call once Close has been called.
	ErrClosed = errors.New("bus closed")
	// ErrReject, returned (wrapped) by a Handler, dead-letters the message.
	ErrReject = errors.New("message rejected")
	// ErrNacked means the broker refused to take a published message.
	ErrNacked = errors.New("broker nacked publish")
	// ErrConnectionLost means a Call's reply could no longer arrive.
	ErrConnectionLost = errors.New("connection lost before reply")
	// ErrNotConnected means PublishTransient found no live connection and
	// dropped the message rather than wait for the reconnect.
	ErrNotConnected = errors.New("no live connection; message dropped")
	// ErrQueueNotFound is returned by QueueDepth for a missing queue.
	ErrQueueNotFound = errors.New("queue not found")
)

// Config says where and who to connect as. Only URL and Run are required.
type Config struct {
	// URL is amqp://user:pass@host:port/vhost, or amqps://, or several
	// nodes of one cluster joined by commas (package brokerurl), all with
	// the same user and vhost. The password is never logged.
	URL  string
	Name string // connection_name client property shown by the broker, e.g. "provisioner@host"
	Run  string // scopes every exchange and queue name
	Log  *slog.Logger

	// CAFile names the PEM CA an amqps:// broker's certificate must chain
	// to (the run's CA, the broker's ca_file attribute); RootCAs, if set,
	// is used instead. With neither, an amqps:// broker is verified against
	// the system's roots. Verification is never skipped, and a CA given with
	// a plain amqp:// URL is refused rather than silently unused.
	CAFile  string
	RootCAs *x509.CertPool

	MinBackoff, MaxBackoff time.Duration // reconnect back-off bounds
	Clock                  clockwork.Clock

	Prefetch     int           // unacked deliveries per consumer (QoS); default 32
	RequeueDelay time.Duration // pause before requeueing a failed delivery; default 1s

	// Passive makes the bus declare nothing it does not own: the events
	// exchange, the dead-letter path and command queues are checked with
	// passive declares instead. A worker's sitter, whose broker user has no
	// configure rights on the run's topology, sets it; the provisioner
	// declares the worker's command queue before the worker starts.
	Passive bool

	// OnConsume, if set, is called each time a consumer starts or restarts
	// after a reconnect, with the queue it consumes. Useful for readiness
	// reporting, and for tests that must not publish events before a
	// subscription is bound. It runs on the consumer's goroutine: keep it
	// short and non-blocking.
	OnConsume func(queue string)
}

// validName keeps run and component names safe inside exchange and queue
// names and free of topic wildcards.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_@.-]{0,99}$`)

func (c Config) withDefaults() (Config, error) {
	if c.URL == "" {
		return c, errors.New("amqp config: empty URL")
	}
	if err := CheckURL(c.URL); err != nil {
		return c, fmt.Errorf("amqp config: %w", err)
	}
	uri, _ := amqp.ParseURI(brokerurl.First(c.URL)) // checked by CheckURL
	if uri.Scheme != "amqps" && (c.CAFile != "" || c.RootCAs != nil) {
		return c, fmt.Errorf("amqp config: a CA is given but URL %s is not amqps://", Redacted(c.URL))
	}
	if c.CAFile != "" && c.RootCAs == nil {
		var err error
		if c.RootCAs, err = pki.LoadPool(c.CAFile); err != nil {
			return c, fmt.Errorf("amqp config: %w", err)
		}
	}
	if !validName.MatchString(c.Run) {
		return c, fmt.Errorf("amqp config: run %q: want letters, digits, '_', '-', '.', '@'", c.Run)
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.Prefetch <= 0 {
		c.Prefetch = DefaultPrefetch
	}
	if c.RequeueDelay <= 0 {
		c.RequeueDelay = DefaultRequeueDelay
	}
	return c, nil
}

// Redacted returns url (or a list of them) with its passwords masked, for
// logs and errors.
func Redacted(url string) string { return redact.URL(url) }

// CheckURL checks a broker URL, or a cluster's list of them, as Dial will
// take it: each an AMQP URI, all with one scheme, user and vhost. Its
// errors never hold a password.
func CheckURL(list string) error {
	if err := brokerurl.Check(list); err != nil {
		return err
	}
	us := brokerurl.Split(list)
	for i, u := range us {
		if _, err := amqp.ParseURI(u); err != nil {
			return fmt.Errorf("broker URL %d of %d (%s): %s", i+1, len(us), Redacted(u), redact.String(err.Error()))
		}
	}
	return nil
}

// Clustered reports whether a broker URL list names more than one node.
// Such a bus declares its durable queues as quorum queues: replicated on
// the cluster's nodes, they outlive the loss of any one of them, which a
// classic queue (living on one node) does not.
func Clustered(list string) bool { return len(brokerurl.Split(list)) > 1 }

// QueueArgs returns the arguments a durable, shared queue (a job's work
// queue) is declared with on the broker that list names: x-queue-type
// quorum on a cluster, none on one node. Every declarer of a queue must
// agree (the broker refuses a redeclaration of another type), so the
// examples' producer and worker, which declare the work queue with their
// own AMQP client, call this too.
func QueueArgs(list string) amqp.Table {
	if Clustered(list) {
		return amqp.Table{"x-queue-type": "quorum"}
	}
	return nil
}

// Topology names. Exported so tools (and the queue-length engine) can name
// queues without a Bus.

// EventsExchange is the run's topic exchange.
func EventsExchange(run string) string { return "nightshift." + run + ".events" }

// CommandQueue is the durable queue a component consumes commands from.
func CommandQueue(run, component string) string { return "nightshift." + run + ".cmd." + component }

// SubscriptionQueue is the durable queue behind SubscribeDurable(name).
func SubscriptionQueue(run, name string) string { return "nightshift." + run + ".sub." + name }

// DeadLetterExchange receives every rejected message of the run.
func DeadLetterExchange(run string) string { return "nightshift." + run + ".dlx" }

// DeadQueue holds the run's dead-lettered messages for inspection.
func DeadQueue(run string) string { return "nightshift." + run + ".dead" }

// Bus is a self-healing connection to RabbitMQ for one run. All methods are
// safe for concurrent use.
type Bus struct {
	cfg   Config
	log   *slog.Logger
	clock clockwork.Clock

	// life is cancelled by Close; every wait also selects on it.
	life   context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the supervisor has exited

	mu      sync.Mutex
	conn    *amqp.Connection // nil while disconnected
	changed chan struct{}    // closed and replaced whenever conn changes

	pubMu    sync.Mutex
	pub      *amqp.Channel // shared confirm-mode channel for publishing
	pubConn  *amqp.Connection
	declared map[string]*amqp.Channel // once-per-channel declarations
	// fire and fireConn are the channel PublishTransient uses: without
	// confirms, so its publishes never wait on the broker's acks.
	fire     *amqp.Channel
	fireConn *amqp.Connection

	rpcMu sync.Mutex
	rpc   *rpcSession

	user string // the URL's user name, stamped on every publish as user_id

	// urls are the nodes to dial, in order; node is the index of the one
	// the next dial tries first (the supervisor's alone). quorum is
	// Clustered(cfg.URL).
	urls   []string
	node   atomic.Int32
	quorum bool
}

// Dial connects and starts the supervisor that keeps the connection alive.
// The first connection is retried with back-off until ctx ends, because at
// boot the broker may still be starting; a refused login or bad URL fails at
// once. Later reconnects happen in the background until Close.
func Dial(ctx context.Context, cfg Config) (*Bus, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	urls := brokerurl.Split(cfg.URL)
	uri, _ := amqp.ParseURI(urls[0]) // checked by withDefaults
	life, cancel := context.WithCancel(context.Background())
	b := &Bus{user: uri.Username, urls: urls, quorum: len(urls) > 1,
		cfg: cfg, log: cfg.Log.With("component", "amqpbus", "run", cfg.Run, "name", cfg.Name), clock: cfg.Clock,
		life: life, cancel: cancel, done: make(chan struct{}),
		changed: make(chan struct{}), declared: make(map[string]*amqp.Channel),
	}
	conn, err := b.connect(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	// Connected from the moment Dial returns, not from when the
	// supervisor first runs: callers that drop rather than wait while
	// disconnected (heartbeat sinks, PublishTransient) would otherwise
	// lose their first message to the race.
	b.setConn(conn)
	go b.supervise(conn)
	return b, nil
}

// Close shuts the connection and stops reconnecting. Blocked calls return
// ErrClosed. It is safe to call more than once.
func (b *Bus) Close() error {
	b.cancel()
	<-b.done
	return nil
}

// Connected reports whether the bus currently has a live connection.
func (b *Bus) Connected() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conn != nil && !b.conn.IsClosed()
}

// User returns the broker user this bus connects as. Every message it
// publishes carries it as the AMQP user_id, which the broker validates.
func (b *Bus) User() string { return b.user }

// Run returns the run this bus is scoped to.
func (b *Bus) Run() string { return b.cfg.Run }

func (b *Bus) setConn(c *amqp.Connection) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.conn = c
	close(b.changed)
	b.changed = make(chan struct{})
}

// awaitConn returns the live connection, waiting for a reconnect if needed.
func (b *Bus) awaitConn(ctx context.Context) (*amqp.Connection, error) {
	for {
		if b.life.Err() != nil {
			return nil, ErrClosed
		}
		b.mu.Lock()
		conn, changed := b.conn, b.changed
		b.mu.Unlock()
		if conn != nil && !conn.IsClosed() {
			return conn, nil
		}
		// A closed but not yet replaced conn means the supervisor is about
		// to swap it; changed fires then, so this does not spin.
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-b.life.Done():
			return nil, ErrClosed
		}
	}
}

// supervise owns the connection for the Bus's lifetime.
func (b *Bus) supervise(conn *amqp.Connection) {
	defer close(b.done)
	for {
		lost := conn.NotifyClose(make(chan *amqp.Error, 1))
		blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
		b.setConn(conn)
	watch:
		for {
			select {
			case <-b.life.Done():
				b.setConn(nil)
				if err := conn.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
					b.log.Warn("amqp close", "err", err)
				}
				b.log.Info("amqp closed", "url", b.nodeURL())
				return
			case e := <-lost:
				reason := "closed"
				if e != nil {
					reason = redact.String(e.Error())
				}
				b.log.Warn("amqp disconnected", "url", b.nodeURL(), "reason", reason)
				// Try the other nodes first: the one just lost is
				// the least likely to answer now.
				b.node.Store((b.node.Load() + 1) % int32(len(b.urls)))
				break watch
			case bl, ok := <-blocked:
				if !ok {
					blocked = nil
					continue
				}
				// Publishes stall while the broker is blocked (memory or
				// disk alarm); say so, or stuck publishers look like a bug.
				b.log.Warn("amqp connection blocked by broker", "active", bl.Active, "reason", bl.Reason)
			}
		}
		b.setConn(nil)
		conn = b.reconnect()
		if conn == nil {
			return
		}
	}
}

// reconnect redials until it succeeds or the bus is closed (nil).
func (b *Bus) reconnect() *amqp.Connection {
	for attempt := 1; ; attempt++ {
		wait := b.retryDelay(attempt, rand.Float64())
		select {
		case <-b.clock.After(wait):
		case <-b.life.Done():
			return nil
		}
		conn, err := b.dialAny(b.life)
		if err == nil {
			b.log.Info("amqp reconnected", "url", b.nodeURL(), "attempt", attempt)
			return conn
		}
		if b.life.Err() != nil {
			return nil
		}
		b.log.Warn("amqp reconnect failed", "url", Redacted(b.cfg.URL), "attempt", attempt, "err", redact.String(err.Error()))
	}
}

// connect makes the first connection, retrying transient failures until ctx ends.
func (b *Bus) connect(ctx context.Context) (*amqp.Connection, error) {
	url := Redacted(b.cfg.URL)
	for attempt := 1; ; attempt++ {
		conn, err := b.dialAny(ctx)
		if err == nil {
			b.log.Info("amqp connected", "url", b.nodeURL())
			return conn, nil
		}
		msg := redact.String(err.Error())
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dial amqp %s: %w (after %d attempts)", url, ctx.Err(), attempt)
		}
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.AccessRefused {
			return nil, fmt.Errorf("dial amqp %s: %s", url, msg)
		}
		// A certificate that does not verify will not verify on retry.
		var ve *tls.CertificateVerificationError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("dial amqp %s: broker certificate refused: %w", url, err)
		}
		wait := b.retryDelay(attempt, rand.Float64())
		b.log.Warn("amqp connect failed", "url", url, "attempt", attempt, "retry_in", wait, "err", msg)
		select {
		case <-b.clock.After(wait):
		case <-ctx.Done():
			return nil, fmt.Errorf("dial amqp %s: %w (last error: %s)", url, ctx.Err(), msg)
		}
	}
}

// nodeURL is the node the bus is (or was last) connected to, redacted.
func (b *Bus) nodeURL() string { return Redacted(b.urls[b.node.Load()]) }

// Node returns the URL of the node the bus is connected to (or was last),
// its password redacted: one of Config.URL's list.
func (b *Bus) Node() string { return b.nodeURL() }

// dialAny dials the nodes once each, from b.node on, and returns the first
// connection; b.node is then the node it reached. A refused login or a
// certificate that does not verify ends the round at once: the nodes of a
// cluster share their users and certificate authority, so the next node
// would refuse too, and the caller decides whether that is fatal. Otherwise
// the error is the last node's, every node having been tried.
func (b *Bus) dialAny(ctx context.Context) (*amqp.Connection, error) {
	var errs []error
	first := int(b.node.Load())
	for i := range b.urls {
		n := (first + i) % len(b.urls)
		conn, err := b.dialOnce(ctx, b.urls[n])
		if err == nil {
			b.node.Store(int32(n))
			return conn, nil
		}
		if ctx.Err() != nil || refusedForGood(err) {
			return nil, err
		}
		if len(b.urls) > 1 {
			b.log.Debug("amqp node did not answer; trying the next", "url", Redacted(b.urls[n]), "err", redact.String(err.Error()))
			err = fmt.Errorf("node %d of %d: %w", n+1, len(b.urls), err)
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// refusedForGood reports dial errors that another attempt will not cure.
func refusedForGood(err error) bool {
	var ae *amqp.Error
	var ve *tls.CertificateVerificationError
	return (errors.As(err, &ae) && ae.Code == amqp.AccessRefused) || errors.As(err, &ve)
}

// dialOnce dials url in a goroutine because amqp091-go takes no ctx; if ctx ends
// first, a connection that arrives late is closed rather than leaked.
func (b *Bus) dialOnce(ctx context.Context, url string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	if b.cfg.Name != "" {
		props["connection_name"] = b.cfg.Name
	}
	cfg := amqp.Config{Properties: props, Heartbeat: heartbeat, Locale: "en_US", Dial: amqp.DefaultDial(dialTimeout)}
	if tc, err := TLSConfig(url, b.cfg.RootCAs); err != nil {
		return nil, err
	} else if tc != nil {
		cfg.TLSClientConfig = tc
	}
	type result struct {
		conn *amqp.Connection
		err  error
	}
	res := make(chan result, 1)
	go func() {
		c, err := amqp.DialConfig(url, cfg)
		res <- result{c, err}
	}()
	select {
	case r := <-res:
		return r.conn, r.err
	case <-ctx.Done():
		go func() {
			if r := <-res; r.conn != nil {
				_ = r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// TLSConfig is the client TLS configuration for url: nil for amqp://; for
// amqps:// one that verifies the chain against roots (nil: the system's)
// and the host name of the URL, or the URL's server_name_indication when it
// names the certificate's host instead (a broker reached by address whose
// certificate carries a name). amqp091-go's own URL-driven TLS setup is not
// used: it reads the CA file on every dial and cannot take a pool.
func TLSConfig(url string, roots *x509.CertPool) (*tls.Config, error) {
	uri, err := amqp.ParseURI(url)
	if err != nil {
		return nil, fmt.Errorf("amqp URL %s: %s", Redacted(url), redact.String(err.Error()))
	}
	if uri.Scheme != "amqps" {
		return nil, nil
	}
	name := uri.ServerName
	if name == "" {
		name = uri.Host
	}
	return pki.ClientConfig(roots, name), nil
}

// retryDelay is the wait before attempt (1-based) of a reconnect, a
// consumer restart or a publish: MinBackoff doubled per attempt up to
// MaxBackoff, with "equal jitter" (between half and all of it) so that many
// clients dropped together do not reconnect in lockstep. r is a random
// number in [0,1).
func (b *Bus) retryDelay(attempt int, r float64) time.Duration {
	return backoff.Policy{Initial: b.cfg.MinBackoff, Max: b.cfg.MaxBackoff, Jitter: 0.5}.Delay(attempt, r)
}

// isFatal reports broker errors that retrying cannot fix: refused access and
// declarations that clash with an existing queue or exchange.
func isFatal(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && (ae.Code == amqp.AccessRefused || ae.Code == amqp.PreconditionFailed)
}

// DialAny connects a plain amqp091-go client (the examples' producer and
// worker, which keep their own connection) to the first node of list that
// answers, each amqps:// node verified against roots as the Bus verifies
// it. cfg's TLSClientConfig is set per node. Reconnecting callers call it
// again: a lost node refuses at once and the next is tried.
func DialAny(list string, roots *x509.CertPool, cfg amqp.Config) (*amqp.Connection, error) {
	if err := CheckURL(list); err != nil {
		return nil, err
	}
	var errs []error
	for _, u := range brokerurl.Split(list) {
		tc, err := TLSConfig(u, roots)
		if err != nil {
			return nil, err
		}
		c := cfg
		c.TLSClientConfig = tc
		conn, err := amqp.DialConfig(u, c)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, fmt.Errorf("%s: %s", Redacted(u), redact.String(err.Error())))
		if refusedForGood(err) {
			break
		}
	}
	return nil, errors.Join(errs...)
}
