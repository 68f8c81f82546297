package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/sync/errgroup"

	"nightshift/internal/amqpbus"
	"nightshift/internal/busid"
	"nightshift/internal/cmdledger"
	"nightshift/internal/envelope"
	"nightshift/provisioner"
	"nightshift/sitter"
)

// Server connects a Controller to the bus: it serves the controller's
// commands and feeds it provisioner instance events and sitter heartbeats.
type Server struct {
	Bus        *amqpbus.Bus
	Controller *Controller
	// Signer verifies reconfigure, freeze and unfreeze; it needs Secret.
	Signer *envelope.Signer
	// Ledger records those commands by id (ctlstore.Store.Commands), so a
	// repeat is answered, never applied again.
	Ledger cmdledger.Ledger
	Log    *slog.Logger
	Clock  clockwork.Clock

	guard *cmdledger.Guard
}

// Serve runs until ctx ends or a consumer fails for good.
func (s *Server) Serve(ctx context.Context) error {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.Clock == nil {
		s.Clock = clockwork.NewRealClock()
	}
	s.guard = &cmdledger.Guard{Ledger: s.Ledger, Signer: s.Signer, Log: s.Log}
	reg := Messages()
	var hbKeys, instKeys []string
	for _, n := range s.Controller.names {
		hbKeys = append(hbKeys, HeartbeatKey(n, "*"))
		instKeys = append(instKeys, "instance."+n+".*")
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return s.Bus.Consume(ctx, Component, func(ctx context.Context, d amqpbus.Delivery) error {
			return s.command(ctx, reg, d)
		})
	})
	if len(hbKeys) > 0 {
		g.Go(func() error {
			return s.Bus.Subscribe(ctx, hbKeys, func(ctx context.Context, d amqpbus.Delivery) error {
				hb, err := DecodeHeartbeat(reg, d.Body)
				if err != nil {
					s.Log.Warn("malformed heartbeat dropped", "routing_key", d.RoutingKey, "err", err)
					return fmt.Errorf("%w: %w", amqpbus.ErrReject, err)
				}
				if err := busid.For(s.Bus).Heartbeat(TypeHeartbeat, d.UserID, hb.InstanceID); err != nil {
					s.Log.Warn("forged heartbeat dropped", "instance", hb.InstanceID, "err", err)
					return err
				}
				s.Controller.IngestHeartbeat(hb)
				return nil
			})
		})
		g.Go(func() error {
			return s.Bus.Subscribe(ctx, instKeys, func(ctx context.Context, d amqpbus.Delivery) error {
				env, body, err := amqpbus.DecodeOrReject(reg, s.Log, d)
				if err != nil {
					return err
				}
				ev, ok := body.(*provisioner.InstanceEvent)
				if !ok {
					return fmt.Errorf("%w: event %q on %s, want %q", amqpbus.ErrReject, env.Type, d.RoutingKey, provisioner.TypeInstance)
				}
				if err := busid.For(s.Bus).From(env.Type, d.UserID, busid.RoleProvisioner); err != nil {
					s.Log.Warn("forged instance event dropped", "instance", ev.Instance.ID, "err", err)
					return err
				}
				s.Controller.HandleInstance(ev.Instance)
				return nil
			})
		})
	}
	return g.Wait()
}

func (s *Server) command(ctx context.Context, reg *envelope.Registry, d amqpbus.Delivery) error {
	env, body, err := amqpbus.DecodeOrReject(reg, s.Log, d)
	if err == nil && env.Run != s.Bus.Run() {
		err = fmt.Errorf("%w: message %q for run %q on run %q", amqpbus.ErrReject, env.Type, env.Run, s.Bus.Run())
	}
	if err == nil {
		err = busid.For(s.Bus).From(env.Type, d.UserID, busid.RoleMgmt)
	}
	var r Reply
	if err == nil && reg.Destructive(env.Type) {
		r, _, err = cmdledger.Do(ctx, s.guard, env, func(ctx context.Context) (Reply, bool) { return s.Handle(ctx, env, body), true })
	} else if err == nil {
		r = s.Handle(ctx, env, body)
	}
	if err != nil {
		if errors.Is(err, amqpbus.ErrReject) {
			s.reply(ctx, d, Reply{Error: err.Error()})
		}
		return err
	}
	s.reply(ctx, d, r)
	return nil
}

// Handle executes one decoded, authenticated command.
func (s *Server) Handle(ctx context.Context, env envelope.Envelope, body any) Reply {
	c := s.Controller
	var r Reply
	var err error
	switch b := body.(type) {
	case *ReconfigureBody:
		err = c.Reconfigure(ctx, b.Job, b.Values, env.Sender)
	case *FreezeBody:
		err = c.Freeze(ctx, env.Sender)
	case *UnfreezeBody:
		err = c.Unfreeze(ctx, env.Sender)
	case *StatusBody:
		r.Jobs, err = c.Status(b.Job)
	case *DecisionsBody:
		r.Decisions, err = c.Decisions(ctx, b.Job, b.Limit)
	default:
		err = fmt.Errorf("message %q is not a controller command", env.Type)
	}
	r.Frozen = c.Frozen()
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

func (s *Server) reply(ctx context.Context, d amqpbus.Delivery, r Reply) {
	if d.ReplyTo == "" {
		return
	}
	env, err := envelope.NewEnvelope(TypeReply, 1, s.Bus.Run(), Component, r, s.Clock.Now())
	if err == nil {
		var b []byte
		if b, err = json.Marshal(env); err == nil {
			err = s.Bus.Reply(ctx, d, b)
		}
	}
	if err != nil {
		s.Log.Warn("reply failed", "correlation_id", d.CorrelationID, "err", err)
	}
}

// Client calls a controller over the bus.
type Client struct {
	Bus    *amqpbus.Bus
	Signer *envelope.Signer // needed for Reconfigure, Freeze, Unfreeze
	Sender string
	Clock  clockwork.Clock
	// Timeout bounds a call whose ctx has no deadline (default 30s).
	Timeout time.Duration
}

// ErrRemote marks errors the controller reported, as opposed to transport
// errors.
var ErrRemote = errors.New("controller refused")

func (c *Client) call(ctx context.Context, typ string, body any) (Reply, error) {
	clock := c.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	reg := Messages()
	raw, err := c.Bus.Request(ctx, amqpbus.Request{Registry: reg, Signer: c.Signer, Sender: c.Sender,
		Component: Component, Type: typ, Body: body, Now: clock.Now(), Timeout: c.Timeout})
	if err != nil {
		return Reply{}, err
	}
	renv, rbody, err := reg.Decode(raw, amqpbus.MaxMessageSize)
	if err != nil {
		return Reply{}, fmt.Errorf("%s: reply: %w", typ, err)
	}
	r, ok := rbody.(*Reply)
	if !ok {
		return Reply{}, fmt.Errorf("%s: reply has type %q, want %q", typ, renv.Type, TypeReply)
	}
	if r.Error != "" {
		return *r, fmt.Errorf("%s: %w: %s", typ, ErrRemote, r.Error)
	}
	return *r, nil
}

// Reconfigure merges values into job's engine configuration.
func (c *Client) Reconfigure(ctx context.Context, job string, values map[string]any) error {
	_, err := c.call(ctx, TypeReconfigure, ReconfigureBody{Job: job, Values: values})
	return err
}

// Freeze stops the controller acting.
func (c *Client) Freeze(ctx context.Context) error {
	_, err := c.call(ctx, TypeFreeze, FreezeBody{})
	return err
}

// Unfreeze resumes acting.
func (c *Client) Unfreeze(ctx context.Context) error {
	_, err := c.call(ctx, TypeUnfreeze, UnfreezeBody{})
	return err
}

// Status returns one job's status, or every job's when job is empty.
func (c *Client) Status(ctx context.Context, job string) ([]JobStatus, error) {
	r, err := c.call(ctx, TypeStatus, StatusBody{Job: job})
	return r.Jobs, err
}

// Decisions returns a job's decision history, newest first.
func (c *Client) Decisions(ctx context.Context, job string, limit int) ([]DecisionRecord, error) {
	r, err := c.call(ctx, TypeDecisions, DecisionsBody{Job: job, Limit: limit})
	return r.Decisions, err
}

// BusDrainer sends signed drain commands to sitters.
type BusDrainer struct {
	Bus    *amqpbus.Bus
	Signer *envelope.Signer
	Sender string
	Clock  clockwork.Clock
}

// Drain implements Drainer.
func (b BusDrainer) Drain(ctx context.Context, job, instanceID, reason string) error {
	clock := b.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	env, err := envelope.NewEnvelope(TypeDrain, 1, b.Bus.Run(), b.Sender, DrainBody{InstanceID: instanceID, Job: job, Reason: reason}, clock.Now())
	if err != nil {
		return fmt.Errorf("drain %s: %w", instanceID, err)
	}
	if err := b.Signer.Sign(&env); err != nil {
		return fmt.Errorf("drain %s: sign: %w", instanceID, err)
	}
	return b.Bus.SendCommand(ctx, SitterComponent(instanceID), env)
}

// HeartbeatPublisher publishes sitter heartbeats where the controller
// listens; it implements sitter.HeartbeatSink.
type HeartbeatPublisher struct {
	Bus    *amqpbus.Bus
	Sender string
	Clock  clockwork.Clock
}

// SendHeartbeat implements sitter.HeartbeatSink.
func (h HeartbeatPublisher) SendHeartbeat(ctx context.Context, hb sitter.Heartbeat) error {
	clock := h.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	env, err := envelope.NewEnvelope(TypeHeartbeat, 1, h.Bus.Run(), h.Sender, HeartbeatBody(hb), clock.Now())
	if err != nil {
		return fmt.Errorf("heartbeat of %s: %w", hb.InstanceID, err)
	}
	return h.Bus.Publish(ctx, HeartbeatKey(hb.Job, hb.InstanceID), env)
}
