// Package ctlbus binds a controller.Controller to the AMQP bus: Server
// consumes the controller's command queue (reconfigure, freeze, unfreeze,
// status, decisions), refusing malformed, foreign and unsigned destructive
// commands, and feeds the controller the provisioner's instance events and
// the sitters' heartbeats; Client calls it; BusDrainer sends drains to
// sitters; HeartbeatPublisher publishes heartbeats where Server listens;
// MgmtAPI reads queue depths from the RabbitMQ management API. It is the
// only controller code that knows about AMQP or HTTP.
package ctlbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jonboulle/clockwork"
	"golang.org/x/sync/errgroup"

	"nightshift/controller"
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
	Controller *controller.Controller
	// Signer verifies reconfigure, freeze and unfreeze; it needs Secret.
	Signer *envelope.Signer
	// Ledger records those commands by id (ctlstore.Store.Commands), so a
	// repeat is answered, never applied again.
	Ledger cmdledger.Ledger
	Log    *slog.Logger
	Clock  clockwork.Clock
	// HeartbeatBatch is the most heartbeats ingested at once (0:
	// amqpbus.DefaultBatch).
	HeartbeatBatch int

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
	for _, n := range s.Controller.Jobs() {
		hbKeys = append(hbKeys, HeartbeatKey(n, "*"))
		instKeys = append(instKeys, "instance."+n+".*")
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return s.Bus.Consume(ctx, controller.Component, func(ctx context.Context, d amqpbus.Delivery) error {
			return s.command(ctx, reg, d)
		})
	})
	if len(hbKeys) > 0 {
		g.Go(func() error {
			return s.Bus.SubscribeBatch(ctx, hbKeys, s.HeartbeatBatch, s.Controller.HeartbeatMaxAge(), func(ctx context.Context, ds []amqpbus.Delivery) []error {
				return s.heartbeats(reg, ds)
			})
		})
		// Each time the instance subscription is bound (a new queue: at
		// start, after a standby took over, after a reconnect), the
		// controller is told (Controller.Bound), and reads the records
		// again: an instance that ended before it was bound sent its
		// event to nobody, and would otherwise be noticed only by its
		// silence (missing_timeout) or the periodic resync. The first
		// bind's read is Recover's when the controller awaits it
		// (Config.AwaitBind). bound must not block, so the reads are
		// made here.
		resync := make(chan struct{}, 1)
		bound := func() {
			select {
			case resync <- struct{}{}:
			default: // one pending resync reads everything already
			}
		}
		g.Go(func() error {
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-resync:
					s.Controller.Bound(ctx)
				}
			}
		})
		g.Go(func() error {
			return s.Bus.SubscribeBound(ctx, instKeys, bound, func(ctx context.Context, d amqpbus.Delivery) error {
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

// Heartbeats checks and ingests a batch of heartbeat deliveries, as Serve
// does with what its heartbeat subscription hands it, and returns what
// amqpbus.BatchHandler returns. The batch goes in under one lock of the
// controller (Controller.IngestHeartbeats): at 10,000 workers beating
// every second, taking it per beat and acking each beat on its own left
// the consumer seconds behind, and late beats made healthy workers
// missing. Each beat is still checked against its own publisher; a
// malformed or forged one is refused alone and the rest of its batch goes
// in.
func (s *Server) Heartbeats(ds []amqpbus.Delivery) []error {
	return s.heartbeats(Messages(), ds)
}

func (s *Server) heartbeats(reg *envelope.Registry, ds []amqpbus.Delivery) []error {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	hbs := make([]sitter.Heartbeat, 0, len(ds))
	refuse := func(i int, err error) {
		if errs == nil {
			errs = make([]error, len(ds))
		}
		errs[i] = err
	}
	for i, d := range ds {
		hb, err := DecodeHeartbeat(reg, d.Body)
		if err != nil {
			log.Warn("malformed heartbeat dropped", "routing_key", d.RoutingKey, "err", err)
			refuse(i, fmt.Errorf("%w: %w", amqpbus.ErrReject, err))
			continue
		}
		if err := s.heartbeatOrigin(d, hb.Job, hb.InstanceID); err != nil {
			log.Warn("forged heartbeat dropped", "instance", hb.InstanceID, "err", err)
			refuse(i, err)
			continue
		}
		hbs = append(hbs, hb)
	}
	s.Controller.IngestHeartbeats(hbs)
	return errs
}

// heartbeatOrigin accepts a heartbeat from the instance's own user, or,
// for a job this controller holds as simulated, from the run's simulator
// (busid.Origin.SimHeartbeat), whose broker permissions allow only those
// jobs' routing keys.
func (s *Server) heartbeatOrigin(d amqpbus.Delivery, job, instanceID string) error {
	o := busid.For(s.Bus)
	// The simulator's beats are all its run's beats at size: judge them by
	// its rule first rather than build the refusal of the worker rule.
	if s.Controller.Simulated(job) && d.UserID == busid.SimulatorUser(o.Run) {
		return o.SimHeartbeat(TypeHeartbeat, d.UserID, d.RoutingKey, job, instanceID)
	}
	return o.Heartbeat(TypeHeartbeat, d.UserID, instanceID)
}

func (s *Server) command(ctx context.Context, reg *envelope.Registry, d amqpbus.Delivery) error {
	env, body, err := amqpbus.DecodeOrReject(reg, s.Log, d)
	if err == nil && env.Run != s.Bus.Run() {
		err = fmt.Errorf("%w: message %q for run %q on run %q", amqpbus.ErrReject, env.Type, env.Run, s.Bus.Run())
	}
	if err == nil {
		err = busid.For(s.Bus).From(env.Type, d.UserID, busid.RoleMgmt)
	}
	var r controller.Reply
	if err == nil && reg.Destructive(env.Type) {
		r, _, err = cmdledger.Do(ctx, s.guard, env, func(ctx context.Context) (controller.Reply, bool) { return s.Handle(ctx, env, body), true })
	} else if err == nil {
		r = s.Handle(ctx, env, body)
	}
	if err != nil {
		if errors.Is(err, amqpbus.ErrReject) {
			s.reply(ctx, d, controller.Reply{Error: err.Error()})
		}
		return err
	}
	s.reply(ctx, d, r)
	return nil
}

// Handle executes one decoded, authenticated command.
func (s *Server) Handle(ctx context.Context, env envelope.Envelope, body any) controller.Reply {
	c := s.Controller
	var r controller.Reply
	var err error
	switch b := body.(type) {
	case *controller.ReconfigureBody:
		err = c.Reconfigure(ctx, b.Job, b.Values, env.Sender)
	case *controller.FreezeBody:
		err = c.Freeze(ctx, env.Sender)
	case *controller.UnfreezeBody:
		err = c.Unfreeze(ctx, env.Sender)
	case *controller.UnblockBody:
		err = c.Unblock(b.Job, env.Sender)
	case *controller.RolloutBody:
		var ro controller.Rollout
		if b.Action == controller.RolloutUndo {
			ro, err = c.UndoRollout(ctx, b.Job, env.Sender)
		} else {
			ro, err = c.StartRollout(ctx, b.Job, b.Request, env.Sender)
		}
		if err == nil {
			r.Rollout = &ro
		}
	case *controller.StatusBody:
		r.Jobs, err = c.Status(b.Job)
		if b.Summary {
			// Outside the controller's lock: heartbeats wait for none
			// of it.
			for i := range r.Jobs {
				r.Jobs[i].Summarize()
			}
		}
	case *controller.DecisionsBody:
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

func (s *Server) reply(ctx context.Context, d amqpbus.Delivery, r controller.Reply) {
	err := s.Bus.Answer(ctx, d, controller.TypeReply, controller.Component, r, s.Clock.Now())
	if err != nil {
		s.Log.Warn("reply failed", "correlation_id", d.CorrelationID, "err", err)
	}
}
