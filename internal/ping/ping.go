// Package ping is the liveness RPC every Nightshift daemon answers on its
// command queue. A plan's built-in service types use it as their ready
// check: a reply proves the daemon is connected and its handler loop runs,
// which a process check or an open port cannot.
package ping

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
)

// Type is the message type.
const Type = "ping"

// Request is the ping body; it carries nothing.
type Request struct{}

// Validate implements envelope.Validator.
func (*Request) Validate() error { return nil }

// Reply is what a daemon answers.
type Reply struct {
	Component string    `json:"component"`
	PID       int       `json:"pid"`
	Started   time.Time `json:"started"`
	Detail    string    `json:"detail,omitempty"`
}

// Register adds the ping type to a daemon's registry.
func Register(r *envelope.Registry) {
	r.Register(Type, 1, func() envelope.Validator { return &Request{} }, false)
}

// Answer replies to a ping delivery.
func Answer(ctx context.Context, bus *amqpbus.Bus, d amqpbus.Delivery, r Reply) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return bus.Reply(ctx, d, body)
}

// Call pings component and returns its reply. The reply is plain JSON, not
// an envelope: every daemon answers it the same way, registry or not.
func Call(ctx context.Context, bus *amqpbus.Bus, sender, component string) (Reply, error) {
	raw, err := bus.Request(ctx, amqpbus.Request{Sender: sender, Component: component, Type: Type, Body: Request{}, Now: time.Now()})
	if err != nil {
		return Reply{}, fmt.Errorf("ping %s: %w", component, err)
	}
	var r Reply
	if err := json.Unmarshal(raw, &r); err != nil {
		return Reply{}, fmt.Errorf("ping %s: bad reply: %w", component, err)
	}
	return r, nil
}
