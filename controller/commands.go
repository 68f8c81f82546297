package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"nightshift/provisioner"
	"nightshift/sitter"
)

// HandleInstance applies a provisioner instance record or event (see
// Pool.ApplyInstance) and wakes the job's loop when the view changed.
func (c *Controller) HandleInstance(inst provisioner.Instance) {
	j, ok := c.jobs[inst.Job]
	if !ok {
		return
	}
	c.mu.Lock()
	changed := j.pool.ApplyInstance(inst, c.cfg.Clock.Now())
	c.mu.Unlock()
	if changed {
		j.poke()
	}
}

// HeartbeatMaxAge is how long a heartbeat may wait on the bus and still
// be worth delivering: half the shortest missing_timeout of the run's
// jobs. Heartbeats are timed on receipt, so a beat that waited longer
// would make a worker look fresher than it is; and when the controller
// falls behind the stream (thousands of workers), dropping such beats in
// the broker keeps what it does take recent instead of ever later.
func (c *Controller) HeartbeatMaxAge() time.Duration {
	var age time.Duration
	for _, j := range c.jobs {
		if half := j.def.Health.WithDefaults().MissingTimeout / 2; half > 0 && (age == 0 || half < age) {
			age = half
		}
	}
	return age
}

// IngestHeartbeat records a sitter heartbeat, timed by the controller's
// clock (see Pool.Heartbeat), and wakes the job's loop when it changed
// something an engine acts on.
func (c *Controller) IngestHeartbeat(hb sitter.Heartbeat) {
	j, ok := c.jobs[hb.Job]
	if !ok {
		return
	}
	now := c.cfg.Clock.Now()
	c.mu.Lock()
	changed := j.pool.Heartbeat(hb, now)
	c.mu.Unlock()
	if changed {
		j.poke()
	}
}

// IngestHeartbeats records heartbeats that arrived together, as
// IngestHeartbeat does each, under one lock and with one arrival time:
// taking the lock per beat at 10,000 beats a second contends with every
// round's snapshot. Each job whose view changed is woken once.
func (c *Controller) IngestHeartbeats(hbs []sitter.Heartbeat) {
	if len(hbs) == 0 {
		return
	}
	var changed []*job
	now := c.cfg.Clock.Now()
	c.mu.Lock()
	for _, hb := range hbs {
		j, ok := c.jobs[hb.Job]
		if ok && j.pool.Heartbeat(hb, now) && !slices.Contains(changed, j) {
			changed = append(changed, j)
		}
	}
	c.mu.Unlock()
	for _, j := range changed {
		j.poke()
	}
}

// Reconfigure applies a partial policy update to a job through its
// engine's Reconfigure and records who asked. A bad value is refused with
// the engine's error and the old configuration stays in force.
func (c *Controller) Reconfigure(ctx context.Context, job string, values map[string]any, who string) error {
	if job == AlertsJob {
		return c.reconfigureAlerts(values, who)
	}
	j, ok := c.jobs[job]
	if !ok {
		return fmt.Errorf("reconfigure job %q: unknown job", job)
	}
	what, err := json.Marshal(values)
	if err != nil {
		return fmt.Errorf("reconfigure job %s: encode values: %w", job, err)
	}
	rec := Reconfiguration{Time: c.cfg.Clock.Now(), Job: job, Who: who, What: what}
	c.act.RLock()
	defer c.act.RUnlock()
	j.acting.Lock()
	defer j.acting.Unlock()
	rerr := j.engine.Reconfigure(values)
	if rerr != nil {
		rec.Error = rerr.Error()
	}
	pol, err := json.Marshal(j.engine.Config())
	if err != nil {
		return fmt.Errorf("reconfigure job %s: encode policy: %w", job, err)
	}
	if err := c.cfg.Store.Reconfigured(ctx, rec, pol); err != nil {
		return err
	}
	if rerr != nil {
		c.cfg.Log.Warn("reconfigure refused", "job", job, "who", who, "err", rerr)
		return fmt.Errorf("reconfigure job %s: %w", job, rerr)
	}
	// A person who reconfigures a blocked job has looked at it: its
	// launches go again at once rather than at the next probe.
	c.mu.Lock()
	wasBlocked := j.pool.blocked() != nil
	j.pool.Unblock()
	c.mu.Unlock()
	c.cfg.Log.Info("reconfigured", "job", job, "who", who, "keys", slices.Sorted(maps.Keys(values)), "unblocked", wasBlocked)
	j.poke()
	return nil
}

// Unblock ends the block of job, or of every job when job is empty, at
// once (see Pool.Unblock); `mgmt repair` asks for it.
func (c *Controller) Unblock(job, who string) error {
	names := c.names
	if job != "" {
		if _, ok := c.jobs[job]; !ok {
			return fmt.Errorf("unblock job %q: unknown job", job)
		}
		names = []string{job}
	}
	for _, n := range names {
		j := c.jobs[n]
		c.mu.Lock()
		wasBlocked := j.pool.blocked() != nil
		j.pool.Unblock()
		c.mu.Unlock()
		if wasBlocked {
			c.cfg.Log.Info("unblocked", "job", n, "who", who)
			j.poke()
		}
	}
	return nil
}

func (c *Controller) reconfigureAlerts(values map[string]any, who string) error {
	if c.cfg.ReconfigureAlerts == nil {
		return fmt.Errorf("reconfigure %s: this controller raises no alerts", AlertsJob)
	}
	if err := c.cfg.ReconfigureAlerts(values); err != nil {
		c.cfg.Log.Warn("alerts reconfigure refused", "who", who, "err", err)
		return fmt.Errorf("reconfigure %s: %w", AlertsJob, err)
	}
	c.cfg.Log.Info("alerts reconfigured", "who", who, "keys", slices.Sorted(maps.Keys(values)))
	return nil
}

// Freeze stops all actions (teardown uses it before terminating workers).
// When it returns, no action is in progress and none will start until
// Unfreeze. The flag is stored, so a restart stays frozen.
func (c *Controller) Freeze(ctx context.Context, who string) error {
	c.act.Lock()
	defer c.act.Unlock()
	if err := c.cfg.Store.SetFrozen(ctx, true); err != nil {
		return fmt.Errorf("freeze: %w", err)
	}
	c.mu.Lock()
	c.frozen = true
	c.mu.Unlock()
	c.cfg.Log.Info("frozen", "who", who)
	return nil
}

// Unfreeze resumes acting.
func (c *Controller) Unfreeze(ctx context.Context, who string) error {
	c.act.Lock()
	defer c.act.Unlock()
	if err := c.cfg.Store.SetFrozen(ctx, false); err != nil {
		return fmt.Errorf("unfreeze: %w", err)
	}
	c.mu.Lock()
	c.frozen = false
	c.mu.Unlock()
	c.cfg.Log.Info("unfrozen", "who", who)
	c.Trigger()
	return nil
}

// Frozen reports whether the controller is frozen.
func (c *Controller) Frozen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frozen
}

// Decisions returns a job's decision history, newest first.
func (c *Controller) Decisions(ctx context.Context, job string, limit int) ([]Decision, error) {
	if _, ok := c.jobs[job]; !ok {
		return nil, fmt.Errorf("decisions of job %q: unknown job", job)
	}
	return c.cfg.Store.Decisions(ctx, job, limit)
}

// Status reports one job (or every job when job is empty) in the shape of
// mgmt.JobStatus.
func (c *Controller) Status(job string) ([]JobStatus, error) {
	names := c.names
	if job != "" {
		if _, ok := c.jobs[job]; !ok {
			return nil, fmt.Errorf("status of job %q: unknown job", job)
		}
		names = []string{job}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Clock.Now()
	out := make([]JobStatus, 0, len(names))
	for _, n := range names {
		j := c.jobs[n]
		js := j.pool.Status(now, j.engine.Config(), c.frozen)
		if j.rollout != nil {
			r := *j.rollout
			js.Rollout = &r
		}
		out = append(out, js)
	}
	return out, nil
}
