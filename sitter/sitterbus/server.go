package sitterbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift/internal/amqpbus"
	"nightshift/internal/busid"
	"nightshift/internal/cmdledger"
	"nightshift/internal/envelope"
	"nightshift/internal/ping"
	"nightshift/internal/redact"
	"nightshift/sitter"
)

// replyTimeout bounds one RPC reply.
const replyTimeout = 5 * time.Second

// Supervisor is what Server needs of *sitter.Sitter.
type Supervisor interface {
	Handle(ctx context.Context, req sitter.ControlRequest) sitter.ControlResponse
}

// Server answers the commands sent to one instance's sitter on component
// Component(InstanceID). Bus, Sitter and InstanceID are required.
type Server struct {
	Bus    *amqpbus.Bus
	Sitter Supervisor
	// Signer verifies the signature of drain and control after the
	// broker-validated user_id: the public half of the run's command key
	// (envelope.AlgEd25519), so the sitter can check a command but not make
	// one. Without it the sitter refuses every drain and control (fail
	// closed); status, tail and ping need no signature.
	Signer *envelope.Signer
	// Ledger records drain and control by id (a cmdledger.Dir in the
	// state directory), so a repeat is answered, never obeyed again.
	Ledger     cmdledger.Ledger
	InstanceID string
	// Job, when set, must match a drain's job: a drain meant for another
	// job's instance is a routing bug, not an order to obey.
	Job     string
	Log     *slog.Logger
	Clock   clockwork.Clock
	Started time.Time // reported by ping; default when Serve starts

	guard *cmdledger.Guard
}

// Serve consumes commands until ctx ends or the bus closes. Malformed and
// unauthenticated commands are dead-lettered and serving goes on.
func (s *Server) Serve(ctx context.Context) error {
	if s.Bus == nil || s.Sitter == nil || s.Ledger == nil || s.InstanceID == "" {
		return errors.New("sitter bus server: Bus, Sitter, Ledger and InstanceID are required")
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.Clock == nil {
		s.Clock = clockwork.NewRealClock()
	}
	if s.Started.IsZero() {
		s.Started = s.Clock.Now()
	}
	if s.Signer != nil {
		alg, err := s.Signer.Scheme()
		if err != nil {
			return fmt.Errorf("sitter bus server: %w", err)
		}
		if alg != envelope.AlgEd25519 {
			return fmt.Errorf("sitter bus server: signer uses %s; commands to sitters are verified with the run's command key (%s)", alg, envelope.AlgEd25519)
		}
		s.guard = &cmdledger.Guard{Ledger: s.Ledger, Signer: s.Signer, Log: s.Log}
	} else {
		s.Log.Error("no command public key: refusing every drain and control (fail closed); give the sitter the run's command public key")
	}
	reg := Messages()
	component := Component(s.InstanceID)
	err := s.Bus.Consume(ctx, component, func(ctx context.Context, d amqpbus.Delivery) error {
		return s.command(ctx, reg, d)
	})
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, amqpbus.ErrClosed) {
		return fmt.Errorf("serve sitter commands on %s: %w", component, err)
	}
	return err
}

func (s *Server) command(ctx context.Context, reg *envelope.Registry, d amqpbus.Delivery) error {
	env, body, err := amqpbus.DecodeOrReject(reg, s.Log, d)
	if err == nil && env.Run != s.Bus.Run() {
		err = fmt.Errorf("%w: message %q for run %q on run %q", amqpbus.ErrReject, env.Type, env.Run, s.Bus.Run())
		s.Log.Warn("refusing message for another run; dead-lettering", "type", env.Type, "run", env.Run)
	}
	_, isPing := body.(*ping.Request)
	if err == nil && !isPing {
		// Only a controller or mgmt may command a sitter; the broker
		// validated user_id (and keeps workers off this queue anyway).
		if err = busid.For(s.Bus).From(env.Type, d.UserID, busid.RoleController, busid.RoleMgmt); err != nil {
			s.Log.Warn("refusing command from a sender that may not command this sitter; dead-lettering",
				"type", env.Type, "user_id", d.UserID)
		}
	}
	if err == nil && reg.Destructive(env.Type) {
		return s.guarded(ctx, reg, env, body, d)
	}
	if err != nil {
		s.reply(ctx, d, Reply{Error: err.Error()})
		return err
	}
	if isPing {
		if d.ReplyTo == "" {
			return nil
		}
		r := ping.Reply{Component: Component(s.InstanceID), PID: os.Getpid(), Started: s.Started, Detail: "job " + s.Job}
		pctx, cancel := context.WithTimeout(ctx, replyTimeout)
		defer cancel()
		if err := ping.Answer(pctx, s.Bus, d, r); err != nil {
			s.Log.Warn("ping reply failed", "correlation_id", d.CorrelationID, "err", redact.String(err.Error()))
		}
		return nil
	}
	r, err := s.Handle(ctx, env, body)
	if err != nil {
		s.Log.Warn("refusing command; dead-lettering", "type", env.Type, "sender", env.Sender, "err", err)
		s.reply(ctx, d, Reply{Error: err.Error()})
		return err
	}
	switch {
	case r.Error != "":
		s.Log.Warn("command failed", "type", env.Type, "sender", env.Sender, "err", r.Error)
	case reg.Destructive(env.Type):
		s.Log.Info("command done", "type", env.Type, "sender", env.Sender)
	default:
		// Status and tail are polled; at info they would drown the log.
		s.Log.Debug("command done", "type", env.Type, "sender", env.Sender)
	}
	s.reply(ctx, d, r)
	return nil
}

// guarded handles a signed command at most once by id, after the guard
// has verified its signature with the run's command public key.
func (s *Server) guarded(ctx context.Context, reg *envelope.Registry, env envelope.Envelope, body any, d amqpbus.Delivery) error {
	var herr error
	handle := func(ctx context.Context) (Reply, bool) {
		r, err := s.Handle(ctx, env, body)
		if err != nil {
			herr = err
			r = Reply{Error: err.Error()}
		}
		return r, true
	}
	if s.guard == nil {
		err := fmt.Errorf("%w: message %q: this sitter has no command public key to verify it", amqpbus.ErrReject, env.Type)
		s.Log.Warn("refusing command: no command public key to verify it (fail closed); dead-lettering",
			"type", env.Type, "id", env.ID, "sender", env.Sender)
		s.reply(ctx, d, Reply{Error: err.Error()})
		return err
	}
	r, _, err := cmdledger.Do(ctx, s.guard, env, handle)
	switch {
	case err != nil:
		if errors.Is(err, amqpbus.ErrReject) {
			s.reply(ctx, d, Reply{Error: err.Error()})
		}
		return err
	case herr != nil:
		s.Log.Warn("refusing command; dead-lettering", "type", env.Type, "sender", env.Sender, "err", herr)
		s.reply(ctx, d, r)
		return herr
	case r.Error != "":
		s.Log.Warn("command failed", "type", env.Type, "sender", env.Sender, "err", r.Error)
	default:
		s.Log.Info("command done", "type", env.Type, "sender", env.Sender)
	}
	s.reply(ctx, d, r)
	return nil
}

// Handle executes one decoded, authenticated command. Failures of the
// sitter (no such task) come back in Reply.Error; the error result, which
// wraps amqpbus.ErrReject, is for commands this sitter must not obey at all
// (a drain for another instance, a type that is not a command).
func (s *Server) Handle(ctx context.Context, env envelope.Envelope, body any) (Reply, error) {
	switch b := body.(type) {
	case *DrainBody:
		if b.InstanceID != s.InstanceID || (s.Job != "" && b.Job != s.Job) {
			return Reply{}, fmt.Errorf("%w: message %q: field instance_id/job: drain for %s/%s reached sitter of %s/%s",
				amqpbus.ErrReject, env.Type, b.Job, b.InstanceID, s.Job, s.InstanceID)
		}
		s.logger().Info("draining", "sender", env.Sender, "reason", b.Reason)
		return Drain(ctx, s.Sitter), nil
	case *ControlBody:
		return fromResponse(s.Sitter.Handle(ctx, sitter.ControlRequest{Op: b.Action, Task: b.Task})), nil
	case *TailBody:
		return fromResponse(s.Sitter.Handle(ctx, sitter.ControlRequest{Op: "tail", Task: b.Task, N: b.Lines})), nil
	case *StatusBody:
		return fromResponse(s.Sitter.Handle(ctx, sitter.ControlRequest{Op: "status"})), nil
	default:
		return Reply{}, fmt.Errorf("%w: message %q is not a sitter command", amqpbus.ErrReject, env.Type)
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func fromResponse(resp sitter.ControlResponse) Reply {
	if !resp.OK {
		return Reply{Error: resp.Error}
	}
	return Reply{Status: resp.Status, Tail: resp.Tail}
}

// Drain asks every task with a run in progress to finish it and exit, and
// stops the tasks waiting in back-off: they have no current item, and
// left alone they would start a new run after the drain.
func Drain(ctx context.Context, sv Supervisor) Reply {
	resp := sv.Handle(ctx, sitter.ControlRequest{Op: "status"})
	if !resp.OK || resp.Status == nil {
		return Reply{Error: "drain: status: " + resp.Error}
	}
	var r Reply
	var errs []error
	stop := func(name string) {
		if sr := sv.Handle(ctx, sitter.ControlRequest{Op: "stop", Task: name}); !sr.OK {
			errs = append(errs, fmt.Errorf("stop %s: %s", name, sr.Error))
			return
		}
		r.Stopped = append(r.Stopped, name)
	}
	for _, t := range resp.Status.Tasks {
		switch t.State {
		case sitter.StateRunning, sitter.StateStarting:
			dr := sv.Handle(ctx, sitter.ControlRequest{Op: "drain", Task: t.Name})
			if dr.OK {
				r.Drained = append(r.Drained, t.Name)
				continue
			}
			// The run may have ended between the status and the drain; a
			// task now in back-off must still not start again.
			switch taskState(ctx, sv, t.Name) {
			case sitter.StateBackoff, sitter.StateStarting:
				stop(t.Name)
			case sitter.StateRunning:
				errs = append(errs, fmt.Errorf("drain %s: %s", t.Name, dr.Error))
			}
		case sitter.StateBackoff:
			stop(t.Name)
		}
	}
	if err := errors.Join(errs...); err != nil {
		r.Error = err.Error()
	}
	return r
}

func taskState(ctx context.Context, sv Supervisor, name string) sitter.TaskState {
	resp := sv.Handle(ctx, sitter.ControlRequest{Op: "status"})
	if resp.Status == nil {
		return ""
	}
	for _, t := range resp.Status.Tasks {
		if t.Name == name {
			return t.State
		}
	}
	return ""
}

func (s *Server) reply(ctx context.Context, d amqpbus.Delivery, r Reply) {
	if d.ReplyTo == "" {
		return
	}
	// A worker's own broker user may not publish replies (see
	// busid.WorkerPermissions); bound the attempt so a refused reply
	// cannot hold up the commands behind it.
	ctx, cancel := context.WithTimeout(ctx, replyTimeout)
	defer cancel()
	err := s.Bus.Answer(ctx, d, TypeReply, Component(s.InstanceID), r, s.Clock.Now())
	if err != nil {
		s.Log.Warn("reply failed", "correlation_id", d.CorrelationID, "err", redact.String(err.Error()))
	}
}
