package sitterbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/sitter"
)

// ErrRemote marks errors the sitter reported (no such task), as opposed to
// transport errors.
var ErrRemote = errors.New("sitter refused")

// Client commands the sitter of one instance over the bus.
type Client struct {
	Bus        *amqpbus.Bus
	InstanceID string
	Sender     string
	Signer     *envelope.Signer // needed for Control and Drain
	Clock      clockwork.Clock
	// Timeout bounds a call whose ctx has no deadline (default 30s).
	Timeout time.Duration
}

// Status returns the status of every task.
func (c *Client) Status(ctx context.Context) (sitter.Status, error) {
	r, err := c.call(ctx, TypeStatus, StatusBody{})
	if err != nil {
		return sitter.Status{}, err
	}
	if r.Status == nil {
		return sitter.Status{}, fmt.Errorf("%s: reply without status", TypeStatus)
	}
	return *r.Status, nil
}

// Tail returns the last lines of a task's logs (0 means 20).
func (c *Client) Tail(ctx context.Context, task string, lines int) (sitter.LogTail, error) {
	r, err := c.call(ctx, TypeTail, TailBody{Task: task, Lines: lines})
	if err != nil {
		return sitter.LogTail{}, err
	}
	if r.Tail == nil {
		return sitter.LogTail{}, fmt.Errorf("%s: reply without tail", TypeTail)
	}
	return *r.Tail, nil
}

// Control stops, starts or restarts a task and waits for the sitter to act
// (a stop waits out the task's stop_grace).
func (c *Client) Control(ctx context.Context, action, task string) error {
	_, err := c.call(ctx, TypeControl, ControlBody{Action: action, Task: task})
	return err
}

// Drain asks the sitter to drain its tasks and waits for its answer. The
// controller sends drains fire-and-forget (ctlbus.BusDrainer); this is
// for operators who want to see what was drained.
func (c *Client) Drain(ctx context.Context, job, reason string) (Reply, error) {
	return c.call(ctx, TypeDrain, DrainBody{InstanceID: c.InstanceID, Job: job, Reason: reason})
}

func (c *Client) call(ctx context.Context, typ string, body any) (Reply, error) {
	clock := c.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	r, err := amqpbus.Ask[Reply](ctx, c.Bus, amqpbus.Request{Registry: Messages(), Signer: c.Signer, Sender: c.Sender,
		Component: Component(c.InstanceID), Type: typ, Body: body, Now: clock.Now(), Timeout: c.Timeout, ReplyType: TypeReply})
	if err != nil {
		return Reply{}, err
	}
	if r.Error != "" {
		return r, fmt.Errorf("%s: %w: %s", typ, ErrRemote, r.Error)
	}
	return r, nil
}

// DecodeReply decodes a sitter.reply envelope, naming type and field when
// it is malformed.
func DecodeReply(reg *envelope.Registry, raw []byte) (Reply, error) {
	return amqpbus.DecodeReply[Reply](reg, raw, TypeReply, 0)
}
