package cmdledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
)

// DefaultRetain is how long Guard keeps handled ids. It must exceed twice
// the signer's skew: past that, a repeat is refused as stale instead.
const DefaultRetain = 24 * time.Hour

// pruneEvery spaces out Guard's pruning.
const pruneEvery = time.Hour

// Guard authenticates signed commands and handles each id at most once.
// Ledger and Signer (with Secret) are required.
type Guard struct {
	Ledger Ledger
	Signer *envelope.Signer
	Log    *slog.Logger
	// Retain is how long handled ids are remembered (default
	// DefaultRetain, never less than twice the signer's skew).
	Retain time.Duration

	mu       sync.Mutex
	lastTidy time.Time
}

// Run authenticates env and runs handle unless env's id was handled before.
// handle returns the reply to record and whether the command is done: false
// (a passing failure) leaves the id started, so a redelivery or resend runs
// handle again.
//
// A repeat of a done id returns the recorded reply with replayed true, even
// when the command is by now older than the signer's skew: it is answered,
// not executed. An unsigned, forged or (when not yet handled) stale command
// is refused with an error wrapping amqpbus.ErrReject and the envelope
// error, so a consumer dead-letters it. Any other error is a failure of the
// ledger, which the consumer should requeue.
func (g *Guard) Run(ctx context.Context, env envelope.Envelope, handle func(context.Context) (reply []byte, done bool)) (reply []byte, replayed bool, err error) {
	log := g.log().With("type", env.Type, "id", env.ID, "sender", env.Sender)
	if g.Ledger == nil || g.Signer == nil {
		return nil, false, fmt.Errorf("command %q %s: guard has no ledger or signer", env.Type, env.ID)
	}
	if err := g.Signer.Authentic(env); err != nil {
		log.Warn("refusing unauthenticated command; dead-lettering", "err", err)
		return nil, false, fmt.Errorf("%w: %w", amqpbus.ErrReject, err)
	}
	prev, err := g.Ledger.Lookup(ctx, env.ID)
	switch {
	case err == nil:
		if rep, ok, err := g.repeat(prev, env, log); ok || err != nil {
			return rep, ok, err
		}
	case !errors.Is(err, ErrNotFound):
		return nil, false, err
	}
	if err := g.Signer.Fresh(env); err != nil {
		log.Warn("refusing stale command; dead-lettering", "err", err)
		return nil, false, fmt.Errorf("%w: %w", amqpbus.ErrReject, err)
	}
	now := g.now()
	e, err := g.Ledger.Start(ctx, Entry{ID: env.ID, Type: env.Type, Sig: env.Sig, Started: now})
	if err != nil {
		return nil, false, err
	}
	if rep, ok, err := g.repeat(e, env, log); ok || err != nil {
		return rep, ok, err
	}
	if e.Attempts > 1 {
		log.Info("command recorded but not finished before; handling it again", "attempt", e.Attempts)
	}
	reply, done := handle(ctx)
	if !done {
		return reply, false, nil
	}
	if err := g.Ledger.Finish(ctx, env.ID, reply, g.now()); err != nil {
		return nil, false, err
	}
	g.tidy(ctx, now, log)
	return reply, false, nil
}

// repeat decides about an id already recorded: a done one is answered from
// the ledger, one recorded with another signature is refused, and a started
// one (ok false) may run again.
func (g *Guard) repeat(prev Entry, env envelope.Envelope, log *slog.Logger) (reply []byte, ok bool, err error) {
	if prev.Sig != env.Sig || prev.Type != env.Type {
		log.Warn("refusing a command that reuses the id of another; dead-lettering", "recorded_type", prev.Type)
		return nil, false, fmt.Errorf("%w: message %q id %q: %w: the id belongs to another command", amqpbus.ErrReject, env.Type, env.ID, envelope.ErrReplay)
	}
	if prev.State != StateDone {
		return nil, false, nil
	}
	log.Info("command already handled; answering with the recorded result, not executing it again",
		"handled", prev.Updated.Format(time.RFC3339Nano))
	return prev.Reply, true, nil
}

func (g *Guard) tidy(ctx context.Context, now time.Time, log *slog.Logger) {
	g.mu.Lock()
	due := now.Sub(g.lastTidy) >= pruneEvery
	if due {
		g.lastTidy = now
	}
	g.mu.Unlock()
	if !due {
		return
	}
	if n, err := g.Ledger.Prune(ctx, now.Add(-g.retain())); err != nil {
		log.Warn("prune command ledger", "err", err)
	} else if n > 0 {
		log.Debug("pruned command ledger", "entries", n)
	}
}

func (g *Guard) retain() time.Duration {
	r := g.Retain
	if r <= 0 {
		r = DefaultRetain
	}
	skew := g.Signer.MaxSkew
	if skew <= 0 {
		skew = envelope.DefaultMaxSkew
	}
	return max(r, 2*skew+time.Minute)
}

func (g *Guard) now() time.Time {
	if g.Signer.Now != nil {
		return g.Signer.Now()
	}
	return time.Now()
}

func (g *Guard) log() *slog.Logger {
	if g.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return g.Log
}

// Do is Run for a typed reply R, recorded as JSON.
func Do[R any](ctx context.Context, g *Guard, env envelope.Envelope, handle func(context.Context) (R, bool)) (R, bool, error) {
	var zero R
	raw, replayed, err := g.Run(ctx, env, func(ctx context.Context) ([]byte, bool) {
		r, done := handle(ctx)
		b, err := json.Marshal(r)
		if err != nil {
			// A reply that cannot be recorded cannot be answered again;
			// leave the id started rather than record nothing as done.
			g.log().Error("encode command reply", "type", env.Type, "id", env.ID, "err", err)
			return nil, false
		}
		return b, done
	})
	if err != nil || raw == nil {
		return zero, replayed, err
	}
	var r R
	if err := json.Unmarshal(raw, &r); err != nil {
		return zero, replayed, fmt.Errorf("command %q %s: recorded reply: %w", env.Type, env.ID, err)
	}
	return r, replayed, nil
}
