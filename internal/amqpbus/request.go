package amqpbus

import (
	"context"
	"fmt"
	"time"

	"nightshift/internal/envelope"
)

// Request is one typed RPC to a component, as every Nightshift client makes
// it: wrapped in an envelope, signed when the registry says the type is
// destructive, and bounded in time.
type Request struct {
	Registry  *envelope.Registry
	Signer    *envelope.Signer // required for destructive types
	Sender    string
	Component string
	Type      string
	Body      any
	Now       time.Time
	// Timeout bounds the wait when ctx has no deadline of its own.
	Timeout time.Duration
}

// Request sends r and returns the raw reply for the caller to decode.
// Errors name the message type.
func (b *Bus) Request(ctx context.Context, r Request) ([]byte, error) {
	env, err := envelope.NewEnvelope(r.Type, 1, b.Run(), r.Sender, r.Body, r.Now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.Type, err)
	}
	if r.Registry != nil && r.Registry.Destructive(r.Type) {
		if r.Signer == nil {
			return nil, fmt.Errorf("%s: a destructive command needs a signer (the run's secret)", r.Type)
		}
		if err := r.Signer.Sign(&env); err != nil {
			return nil, fmt.Errorf("%s: sign: %w", r.Type, err)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		t := r.Timeout
		if t <= 0 {
			t = 30 * time.Second
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	raw, err := b.Call(ctx, r.Component, env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.Type, err)
	}
	return raw, nil
}
