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
	// Unconfirmed publishes each heartbeat at most once, without waiting
	// for the broker's confirm (amqpbus.Bus.PublishTransient), when Bus
	// can. The message, its routing key and user_id are the same; only
	// the wait goes. The worker simulator sets it: it multiplexes
	// thousands of sitters over one connection, where a wait per beat
	// made it, not the controller, the bottleneck. A lost beat is covered
	// by the next one, as for any heartbeat.
	Unconfirmed bool
}

// TransientBus is what Sink uses when Unconfirmed; *amqpbus.Bus is one.
type TransientBus interface {
	PublishTransient(ctx context.Context, routingKey string, env envelope.Envelope) error
}

var _ sitter.HeartbeatSink = (*Sink)(nil)

// SendHeartbeat publishes hb, or drops it with an error when the broker is
// unreachable or does not confirm within Timeout.
func (s *Sink) SendHeartbeat(ctx context.Context, hb sitter.Heartbeat) error {
	what := "heartbeat of " + hb.InstanceID
	if hb.InstanceID == "" || hb.Job == "" {
		return fmt.Errorf("%s: instance id and job are required (job %q)", what, hb.Job)
	}
	// Publish would wait for the reconnect; a heartbeat that waits is stale
	// by the time it arrives, so drop it now.
	if !s.Bus.Connected() {
		return fmt.Errorf("%s: %w", what, ErrDisconnected)
	}
	var now time.Time
	if s.Clock != nil {
		now = s.Clock.Now()
	} else {
		now = time.Now()
	}
	env, err := NewHeartbeat(s.Bus.Run(), s.Sender, hb, now)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if tb, ok := s.Bus.(TransientBus); ok && s.Unconfirmed {
		if err := tb.PublishTransient(ctx, HeartbeatKey(hb.Job, hb.InstanceID), env); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
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
