package amqpbus

import (
	"context"
	"encoding/json"
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
	// ReplyType is the registered type the answer must have (for Ask).
	ReplyType string
	// MaxReply bounds the answer's size (for Ask); 0 means MaxMessageSize.
	MaxReply int
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

// Ask sends r and decodes the answer as the reply R registered in
// r.Registry under r.ReplyType: the one call-and-reply path of every typed
// bus client. Whether the reply reports a refusal is the caller's to judge.
// Errors name the request type.
func Ask[R any](ctx context.Context, b *Bus, r Request) (R, error) {
	raw, err := b.Request(ctx, r)
	if err != nil {
		var zero R
		return zero, err
	}
	rep, err := DecodeReply[R](r.Registry, raw, r.ReplyType, r.MaxReply)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", r.Type, err)
	}
	return rep, nil
}

// Answer wraps body in an envelope of type replyType from sender and sends
// it back to whoever sent d with Call: the server side of Ask. A delivery
// that nobody waits on (no ReplyTo) gets no answer and no error. Failing to
// answer is the caller's to log: the request itself was already handled.
func (b *Bus) Answer(ctx context.Context, d Delivery, replyType, sender string, body any, now time.Time) error {
	if d.ReplyTo == "" {
		return nil
	}
	env, err := envelope.NewEnvelope(replyType, 1, b.Run(), sender, body, now)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(env)
	if err != nil {
		return err
	}
	return b.Reply(ctx, d, raw)
}

// DecodeReply decodes raw as the reply R registered in reg under
// replyType, at most maxSize bytes (0 means MaxMessageSize), naming the
// type and field when it is malformed. Unknown body fields are ignored (see
// envelope.Registry.DecodeReply) so a newer peer's additions do not break
// this process's reading of its answers.
func DecodeReply[R any](reg *envelope.Registry, raw []byte, replyType string, maxSize int) (R, error) {
	var zero R
	if maxSize <= 0 {
		maxSize = MaxMessageSize
	}
	env, body, err := reg.DecodeReply(raw, maxSize, replyType)
	if err != nil {
		return zero, fmt.Errorf("decode reply: %w", err)
	}
	r, ok := body.(*R)
	if !ok || env.Type != replyType {
		return zero, fmt.Errorf("decode reply: message %q is not %q", env.Type, replyType)
	}
	return *r, nil
}
