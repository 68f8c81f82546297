package sitterbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift/internal/envelope"
	"nightshift/sitter"
)

// DefaultPublishTimeout bounds one heartbeat publish when Sink.Timeout is
// zero. It is well under the default heartbeat interval so a slow broker
// costs at most one beat.
const DefaultPublishTimeout = 500 * time.Millisecond

// ErrDisconnected means the heartbeat was dropped because the bus had no
// live connection; amqpbus reconnects by itself and the next beat goes out.
var ErrDisconnected = errors.New("broker unreachable; heartbeat dropped")

// EventBus is what Sink needs of *amqpbus.Bus.
type EventBus interface {
	Publish(ctx context.Context, routingKey string, env envelope.Envelope) error
	Run() string
	Connected() bool
}

// Sink publishes heartbeats as TypeHeartbeat events with
// routing key HeartbeatKey(job, instance). It implements
// sitter.HeartbeatSink and never blocks longer than Timeout.
type Sink struct {
	Bus     EventBus
	Sender  string        // envelope sender, e.g. "sitter@<instance>"
	Timeout time.Duration // default DefaultPublishTimeout
	Clock   clockwork.Clock
}

var _ sitter.HeartbeatSink = (*Sink)(nil)

// SendHeartbeat publishes hb, or drops it with an error when the broker is
// unreachable or does not confirm within Timeout.
func (s *Sink) SendHeartbeat(ctx context.Context, hb sitter.Heartbeat) error {
	what := fmt.Sprintf("heartbeat of %s", hb.InstanceID)
	if hb.InstanceID == "" || hb.Job == "" {
		return fmt.Errorf("%s: instance id and job are required (job %q)", what, hb.Job)
	}
	// Publish would wait for the reconnect; a heartbeat that waits is stale
	// by the time it arrives, so drop it now.
	if !s.Bus.Connected() {
		return fmt.Errorf("%s: %w", what, ErrDisconnected)
	}
	clock := s.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	env, err := NewHeartbeat(s.Bus.Run(), s.Sender, hb, clock.Now())
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultPublishTimeout
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.Bus.Publish(pctx, HeartbeatKey(hb.Job, hb.InstanceID), env); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
