package ctlbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift/controller"
	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
)

// Client calls a controller over the bus.
type Client struct {
	Bus    *amqpbus.Bus
	Signer *envelope.Signer // needed for Reconfigure, Freeze, Unfreeze, Unblock
	Sender string
	Clock  clockwork.Clock
	// Timeout bounds a call whose ctx has no deadline (default 30s).
	Timeout time.Duration
}

// MaxReplySize caps a reply: a status of a 10,000-worker pool (every
// worker, as `mgmt status --json` keeps them) is a few MiB, beyond the
// bus's 1 MiB command limit; the controller is trusted more than commands.
const MaxReplySize = 64 << 20

// ErrRemote marks errors the controller reported, as opposed to transport
// errors.
var ErrRemote = errors.New("controller refused")

func (c *Client) call(ctx context.Context, typ string, body any) (controller.Reply, error) {
	clock := c.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	r, err := amqpbus.Ask[controller.Reply](ctx, c.Bus, amqpbus.Request{Registry: Messages(), Signer: c.Signer, Sender: c.Sender,
		Component: controller.Component, Type: typ, Body: body, Now: clock.Now(), Timeout: c.Timeout, ReplyType: controller.TypeReply,
		MaxReply: MaxReplySize})
	if err != nil {
		return controller.Reply{}, err
	}
	if r.Error != "" {
		return r, fmt.Errorf("%s: %w: %s", typ, ErrRemote, r.Error)
	}
	return r, nil
}

// Reconfigure merges values into job's engine configuration.
func (c *Client) Reconfigure(ctx context.Context, job string, values map[string]any) error {
	_, err := c.call(ctx, controller.TypeReconfigure, controller.ReconfigureBody{Job: job, Values: values})
	return err
}

// Rollout starts a rollout of job (action start, with req) or turns it
// back (undo), and returns it.
func (c *Client) Rollout(ctx context.Context, job, action string, req controller.RolloutRequest) (controller.Rollout, error) {
	r, err := c.call(ctx, controller.TypeRollout, controller.RolloutBody{Job: job, Action: action, Request: req})
	if err != nil || r.Rollout == nil {
		return controller.Rollout{}, err
	}
	return *r.Rollout, nil
}

// Freeze stops the controller acting.
func (c *Client) Freeze(ctx context.Context) error {
	_, err := c.call(ctx, controller.TypeFreeze, controller.FreezeBody{})
	return err
}

// Unfreeze resumes acting.
func (c *Client) Unfreeze(ctx context.Context) error {
	_, err := c.call(ctx, controller.TypeUnfreeze, controller.UnfreezeBody{})
	return err
}

// Unblock ends job's block, or every job's when job is empty.
func (c *Client) Unblock(ctx context.Context, job string) error {
	_, err := c.call(ctx, controller.TypeUnblock, controller.UnblockBody{Job: job})
	return err
}

// Status returns one job's status, or every job's when job is empty.
func (c *Client) Status(ctx context.Context, job string) ([]controller.JobStatus, error) {
	r, err := c.call(ctx, controller.TypeStatus, controller.StatusBody{Job: job})
	return r.Jobs, err
}

// Summary is Status with each pool of more than controller.MaxWorkerRows
// workers summarized (controller.StatusBody.Summary): kilobytes where
// Status of 10,000 workers is megabytes.
func (c *Client) Summary(ctx context.Context, job string) ([]controller.JobStatus, error) {
	r, err := c.call(ctx, controller.TypeStatus, controller.StatusBody{Job: job, Summary: true})
	return r.Jobs, err
}

// Decisions returns a job's decision history, newest first.
func (c *Client) Decisions(ctx context.Context, job string, limit int) ([]controller.DecisionRecord, error) {
	r, err := c.call(ctx, controller.TypeDecisions, controller.DecisionsBody{Job: job, Limit: limit})
	return r.Decisions, err
}
