// Package client is the typed caller side of the provisioner's bus
// protocol: Launch, Terminate, TerminateAll, Enable and Describe as RPCs
// over AMQP, destructive ones signed with the run secret, and
// SubscribeEvents for instance state changes.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/provisioner"
)

// DefaultTimeout bounds a call whose ctx has no deadline.
const DefaultTimeout = 30 * time.Second

// MaxReplySize caps a reply; describe replies for big pools exceed the bus's
// 1 MiB command limit, and the provisioner is trusted more than commands.
const MaxReplySize = 64 << 20

// Client calls a provisioner over a Bus.
type Client struct {
	bus    *amqpbus.Bus
	signer *envelope.Signer
	sender string
	reg    *envelope.Registry
	clock  clockwork.Clock
	log    *slog.Logger
}

// New returns a client that identifies itself as sender. signer may be nil
// for a client that only launches and describes; destructive calls then
// fail without reaching the bus.
func New(bus *amqpbus.Bus, signer *envelope.Signer, sender string, log *slog.Logger) *Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{bus: bus, signer: signer, sender: sender, reg: provisioner.Messages(), clock: clockwork.NewRealClock(), log: log}
}

// ErrRemote marks errors the provisioner reported (as opposed to transport
// errors); errors.Is(err, provisioner.ErrNotFound) also works for unknown
// instances.
var ErrRemote = errors.New("provisioner refused")

func (c *Client) call(ctx context.Context, typ string, body any) (provisioner.Reply, error) {
	r, err := amqpbus.Ask[provisioner.Reply](ctx, c.bus, amqpbus.Request{Registry: c.reg, Signer: c.signer, Sender: c.sender,
		Component: provisioner.Component, Type: typ, Body: body, Now: c.clock.Now(), Timeout: DefaultTimeout,
		ReplyType: provisioner.TypeReply, MaxReply: MaxReplySize})
	if err != nil {
		return provisioner.Reply{}, err
	}
	if r.Error != "" {
		if r.NotFound {
			return r, fmt.Errorf("%s: %w: %s: %w", typ, ErrRemote, r.Error, provisioner.ErrNotFound)
		}
		return r, fmt.Errorf("%s: %w: %s", typ, ErrRemote, r.Error)
	}
	return r, nil
}

// Launch asks for req.Count instances; it returns the recorded (usually
// requested) instances. Repeating a call with the same LaunchID is safe.
func (c *Client) Launch(ctx context.Context, req provisioner.LaunchRequest) ([]provisioner.Instance, error) {
	r, err := c.call(ctx, provisioner.TypeLaunch, req)
	return r.Instances, err
}

// Terminate asks for instances to be terminated.
func (c *Client) Terminate(ctx context.Context, ids []string) ([]provisioner.Instance, error) {
	r, err := c.call(ctx, provisioner.TypeTerminate, provisioner.TerminateBody{InstanceIDs: ids})
	return r.Instances, err
}

// TerminateAll disables launches and terminates everything; poll it until
// live is 0.
func (c *Client) TerminateAll(ctx context.Context) (live int, err error) {
	r, err := c.call(ctx, provisioner.TypeTerminateAll, provisioner.TerminateAllBody{})
	return r.Live, err
}

// Revise hands the provisioner a revision of a job's worker spec, which
// launches may then name by its digest. Repeating it is safe.
func (c *Client) Revise(ctx context.Context, b provisioner.ReviseBody) error {
	_, err := c.call(ctx, provisioner.TypeRevise, b)
	return err
}

// Health tells the provisioner the controller's judgement of a job's
// workers, which their DNS records follow. Repeating it is safe.
func (c *Client) Health(ctx context.Context, b provisioner.HealthBody) error {
	_, err := c.call(ctx, provisioner.TypeHealth, b)
	return err
}

// Enable accepts launches again.
func (c *Client) Enable(ctx context.Context) error {
	_, err := c.call(ctx, provisioner.TypeEnable, provisioner.EnableBody{})
	return err
}

// Describe returns the records q selects; Live counts all live instances
// of q.Job whatever q.LiveOnly says, and DNSProblem why the DNS records
// are not being kept.
func (c *Client) Describe(ctx context.Context, q provisioner.DescribeBody) (provisioner.Status, error) {
	r, err := c.call(ctx, provisioner.TypeDescribe, q)
	return provisioner.Status{Disabled: r.Disabled, Live: r.Live, Instances: r.Instances, DNSProblem: r.DNSProblem}, err
}

// SubscribeEvents calls h for each instance event matching keys (topic
// patterns such as "instance.web.*"; all instance events when empty) until
// ctx ends. Malformed events are dropped and logged.
func (c *Client) SubscribeEvents(ctx context.Context, keys []string, h func(context.Context, provisioner.Instance) error) error {
	if len(keys) == 0 {
		keys = []string{"instance.#"}
	}
	return c.bus.Subscribe(ctx, keys, func(ctx context.Context, d amqpbus.Delivery) error {
		env, body, err := amqpbus.DecodeOrReject(c.reg, c.log, d)
		if err != nil {
			return err
		}
		ev, ok := body.(*provisioner.InstanceEvent)
		if !ok {
			return fmt.Errorf("%w: event type %q on %s, want %q", amqpbus.ErrReject, env.Type, d.RoutingKey, provisioner.TypeInstance)
		}
		return h(ctx, ev.Instance)
	})
}
