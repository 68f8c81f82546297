package ctlbus

import (
	"context"
	"fmt"

	"github.com/jonboulle/clockwork"

	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/sitter"
	"nightshift/sitter/sitterbus"
)

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
	env, err := sitterbus.NewHeartbeat(h.Bus.Run(), h.Sender, hb, clock.Now())
	if err != nil {
		return fmt.Errorf("heartbeat of %s: %w", hb.InstanceID, err)
	}
	return h.Bus.Publish(ctx, HeartbeatKey(hb.Job, hb.InstanceID), env)
}
