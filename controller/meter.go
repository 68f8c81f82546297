package controller

import (
	"context"
	"errors"
	"fmt"

	"nightshift/decision"
	"nightshift/internal/redact"
)

// depthReading is one measurement of a job's queue. Depth nil means
// unavailable, and then Why says, for a person, what stopped the reading.
type depthReading struct {
	Depth  *int
	Source decision.DepthSource
	Why    string
}

// readDepth measures a job's queue: the management API (ready+unacked) when
// configured, else a passive declare (ready only). Any error leaves the
// depth unavailable, which makes engines hold the pool size.
func (c *Controller) readDepth(ctx context.Context, j Job) depthReading {
	if j.Queue.Name == "" {
		return depthReading{}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	if j.Queue.ManagementURL != "" {
		if c.cfg.MgmtAPI == nil {
			c.cfg.Log.Warn("queue depth unavailable", "job", j.Name, "source", decision.SourceMgmtAPI, "err", "no management API client configured")
			return depthReading{Why: "no management API client configured"}
		}
		n, err := c.cfg.MgmtAPI.QueueDepth(ctx, j.Queue.ManagementURL, j.Queue.VHost, j.Queue.Name)
		if err != nil {
			c.cfg.Log.Warn("queue depth unavailable", "job", j.Name, "source", decision.SourceMgmtAPI, "err", redact.String(err.Error()))
			// The API has not sampled a new queue yet, or is down while
			// AMQP works: the ready count a passive declare gives now is
			// a reading, if a narrower one (engines know the source).
			if c.cfg.Meter != nil && !errors.Is(err, ErrQueueMissing) {
				if live, lerr := c.cfg.Meter.QueueDepth(ctx, j.Queue.Name); lerr == nil {
					return depthReading{Depth: &live, Source: decision.SourcePassiveDeclare}
				}
			}
			return depthReading{Why: unavailable(j.Queue.Name, err)}
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
		return depthReading{Depth: &n, Source: decision.SourceMgmtAPI}
	}
	if c.cfg.Meter == nil {
		return depthReading{Why: "no queue meter configured"}
	}
	n, err := c.cfg.Meter.QueueDepth(ctx, j.Queue.Name)
	if err != nil {
		c.cfg.Log.Warn("queue depth unavailable", "job", j.Name, "source", decision.SourcePassiveDeclare, "err", redact.String(err.Error()))
		return depthReading{Why: unavailable(j.Queue.Name, err)}
	}
	return depthReading{Depth: &n, Source: decision.SourcePassiveDeclare}
}

// unavailable says in a few words why a queue could not be read. A missing
// queue is named as such (the pool holds its size until a producer or a
// worker declares it); anything else is the broker's error, redacted.
func unavailable(queue string, err error) string {
	if errors.Is(err, ErrQueueMissing) {
		return fmt.Sprintf("queue %q not declared yet; the pool holds its size until a producer or worker declares it", queue)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "broker did not answer in time"
	}
	return redact.String(err.Error())
}
