// Package provbus binds a provisioner.Provisioner to the AMQP bus: Serve
// consumes the provisioner's command queue, refuses malformed and foreign
// commands, commands from a broker user that is not a controller's or
// mgmt's, and unsigned ones, handles each signed command id at most once
// (its Ledger answers a repeat with the recorded reply), and replies to RPC
// callers; Events publishes instance state changes on the run's events
// exchange; WorkerUsers gives every worker instance a broker user of its
// own. It is the only provisioner code that knows about AMQP.
package provbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift/internal/amqpbus"
	"nightshift/internal/busid"
	"nightshift/internal/cmdledger"
	"nightshift/internal/envelope"
	"nightshift/internal/ping"
	"nightshift/provisioner"
)

// commands are the types Serve executes; replies and events sent to the
// command queue by mistake are refused.
var commands = []string{
	provisioner.TypeLaunch, provisioner.TypeTerminate, provisioner.TypeTerminateAll,
	provisioner.TypeEnable, provisioner.TypeDescribe, provisioner.TypeRevise,
	provisioner.TypeHealth,
}

// Server serves one Provisioner on one Bus.
type Server struct {
	Bus         *amqpbus.Bus
	Provisioner *provisioner.Provisioner
	// Signer verifies signed commands (every one that changes anything,
	// launch included); it needs Secret.
	Signer *envelope.Signer
	// Ledger records signed commands by id; provstore.Store.Commands.
	Ledger cmdledger.Ledger
	Log    *slog.Logger
	Clock  clockwork.Clock

	started time.Time
	guard   *cmdledger.Guard
}

// Serve handles commands until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.Clock == nil {
		s.Clock = clockwork.NewRealClock()
	}
	if s.Signer == nil || s.Ledger == nil {
		return errors.New("provisioner bus server: Signer and Ledger are required")
	}
	s.guard = &cmdledger.Guard{Ledger: s.Ledger, Signer: s.Signer, Log: s.Log}
	reg := provisioner.Messages()
	ping.Register(reg)
	started := s.Clock.Now()
	s.started = started
	return s.Bus.Consume(ctx, provisioner.Component, func(ctx context.Context, d amqpbus.Delivery) error {
		return s.handle(ctx, reg, d)
	})
}

func (s *Server) handle(ctx context.Context, reg *envelope.Registry, d amqpbus.Delivery) error {
	env, body, err := amqpbus.DecodeOrReject(reg, s.Log, d)
	if err == nil && env.Type == ping.Type {
		// Liveness for launch plans' ready checks; it changes nothing.
		return ping.Answer(ctx, s.Bus, d, ping.Reply{Component: provisioner.Component, PID: os.Getpid(), Started: s.started})
	}
	if err == nil && env.Run != s.Bus.Run() {
		err = fmt.Errorf("%w: message %q for run %q on run %q", amqpbus.ErrReject, env.Type, env.Run, s.Bus.Run())
	}
	if err == nil && !slices.Contains(commands, env.Type) {
		err = fmt.Errorf("%w: message %q is not a provisioner command", amqpbus.ErrReject, env.Type)
	}
	if err == nil {
		// The broker validated user_id: only a controller or mgmt may
		// command the provisioner, and only the controller, which hears
		// the heartbeats, speaks for workers' health.
		roles := []string{busid.RoleController, busid.RoleMgmt}
		if env.Type == provisioner.TypeHealth {
			roles = roles[:1]
		}
		if err = busid.For(s.Bus).From(env.Type, d.UserID, roles...); err != nil {
			s.Log.Warn("refusing command from a sender that may not command the provisioner; dead-lettering",
				"type", env.Type, "user_id", d.UserID, "sender", env.Sender)
		}
	}
	if err != nil {
		// Tell an RPC caller now rather than letting it time out.
		s.reply(ctx, d, provisioner.Reply{Error: err.Error()})
		return err
	}
	var r provisioner.Reply
	if reg.Destructive(env.Type) {
		r, _, err = cmdledger.Do(ctx, s.guard, env, func(ctx context.Context) (provisioner.Reply, bool) {
			s.Log.Info("provisioner command", "type", env.Type, "id", env.ID, "sender", env.Sender)
			r := s.Provisioner.Handle(ctx, body)
			return r, !r.Retryable
		})
		if err != nil {
			if errors.Is(err, amqpbus.ErrReject) {
				s.reply(ctx, d, provisioner.Reply{Error: err.Error()})
			}
			return err
		}
	} else {
		r = s.Provisioner.Handle(ctx, body)
	}
	if r.Retryable && d.ReplyTo == "" {
		// A fire-and-forget command has nobody to tell; requeue it so it
		// is not lost to a passing store failure.
		return fmt.Errorf("%s %s: %s", env.Type, env.ID, r.Error)
	}
	s.reply(ctx, d, r)
	return nil
}

func (s *Server) reply(ctx context.Context, d amqpbus.Delivery, r provisioner.Reply) {
	err := s.Bus.Answer(ctx, d, provisioner.TypeReply, provisioner.Component, r, s.Clock.Now())
	if err != nil {
		s.Log.Warn("reply failed", "correlation_id", d.CorrelationID, "err", err)
	}
}

// Events publishes instance events; it implements provisioner.Events.
type Events struct {
	Bus   *amqpbus.Bus
	Clock clockwork.Clock
	// Timeout bounds each publish, because publishing blocks while the
	// broker is unreachable and events are best effort; default 5s.
	Timeout time.Duration
}

var _ provisioner.Events = Events{}

// InstanceChanged implements provisioner.Events.
func (e Events) InstanceChanged(ctx context.Context, inst provisioner.Instance) error {
	clock, timeout := e.Clock, e.Timeout
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	env, err := envelope.NewEnvelope(provisioner.TypeInstance, 1, e.Bus.Run(), provisioner.Component,
		provisioner.InstanceEvent{Instance: inst}, clock.Now())
	if err != nil {
		return fmt.Errorf("instance event %s: %w", inst.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return e.Bus.Publish(ctx, provisioner.EventKey(inst), env)
}
