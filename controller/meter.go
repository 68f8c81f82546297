package controller

import (
	"context"

	"nightshift/decision"
	"nightshift/internal/redact"
)

// readDepth measures a job's queue: the management API (ready+unacked) when
// configured, else a passive declare (ready only). Any error leaves the
// depth unavailable, which makes engines hold the pool size.
func (c *Controller) readDepth(ctx context.Context, j Job) (*int, decision.DepthSource) {
	if j.Queue.Name == "" {
		return nil, decision.SourceNone
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	if j.Queue.ManagementURL != "" {
		if c.cfg.MgmtAPI == nil {
			c.cfg.Log.Warn("queue depth unavailable", "job", j.Name, "source", decision.SourceMgmtAPI, "err", "no management API client configured")
			return nil, decision.SourceNone
		}
		n, err := c.cfg.MgmtAPI.QueueDepth(ctx, j.Queue.ManagementURL, j.Queue.VHost, j.Queue.Name)
		if err != nil {
			c.cfg.Log.Warn("queue depth unavailable", "job", j.Name, "source", decision.SourceMgmtAPI, "err", redact.String(err.Error()))
			return nil, decision.SourceNone
		}
		// The management API's figures are sampled (every few seconds), so
		// a backlog that just arrived shows there late; a passive declare
		// counts ready messages now. The larger of the two is the depth:
		// ready+unacked once the API catches up, the live ready count
		// before it does.
		if c.cfg.Meter != nil {
			if live, err := c.cfg.Meter.QueueDepth(ctx, j.Queue.Name); err == nil && live > n {
				n = live
			}
		}
		return &n, decision.SourceMgmtAPI
	}
	if c.cfg.Meter == nil {
		return nil, decision.SourceNone
	}
	n, err := c.cfg.Meter.QueueDepth(ctx, j.Queue.Name)
	if err != nil {
		c.cfg.Log.Warn("queue depth unavailable", "job", j.Name, "source", decision.SourcePassiveDeclare, "err", redact.String(err.Error()))
		return nil, decision.SourceNone
	}
	return &n, decision.SourcePassiveDeclare
}
