package controller

import (
	"context"
	"errors"

	"nightshift/provisioner"
)

// Provisioner is what the controller needs of the provisioner;
// provisioner/client.Client implements it.
type Provisioner interface {
	Launch(ctx context.Context, req provisioner.LaunchRequest) ([]provisioner.Instance, error)
	Terminate(ctx context.Context, ids []string) ([]provisioner.Instance, error)
	Describe(ctx context.Context, job string) (provisioner.Status, error)
	// Revise hands over a revision of a job's worker spec, which launches
	// may then name by its digest; again is harmless.
	Revise(ctx context.Context, b provisioner.ReviseBody) error
	// Health tells the provisioner which running workers of a job the
	// controller judges healthy and unhealthy (their DNS records follow
	// it); again is harmless.
	Health(ctx context.Context, b provisioner.HealthBody) error
}

// Drainer tells the sitter of one instance to drain; ctlbus.BusDrainer
// implements it.
type Drainer interface {
	Drain(ctx context.Context, job, instanceID, reason string) error
}

// QueueMeter reads a queue's ready-message count (a passive declare);
// ctlbus.Meter implements it over amqpbus.Bus. A queue that does not exist
// is an error wrapping ErrQueueMissing.
type QueueMeter interface {
	QueueDepth(ctx context.Context, queue string) (int, error)
}

// QueueStats reads a queue's ready plus unacknowledged messages from the
// RabbitMQ management API at base (credentials in its userinfo);
// ctlbus.MgmtAPI implements it. A queue that does not exist is an error
// wrapping ErrQueueMissing.
type QueueStats interface {
	QueueDepth(ctx context.Context, base, vhost, queue string) (int, error)
}

// ErrQueueMissing marks a depth reading refused because the queue does not
// exist on the broker: nothing has declared it yet (no producer or worker
// has run), or the plan names the wrong queue. Status says so instead of a
// bare "n/a", since the two need different fixes at 3 AM.
var ErrQueueMissing = errors.New("queue not declared on the broker")

// ErrRefused marks provisioner errors that resending cannot fix (the
// provisioner answered and said no). Provisioner implementations wrap it, or
// provisioner/client.ErrRemote, which the controller also recognises.
var ErrRefused = errors.New("refused")
