package controller

import (
	"time"

	"nightshift"
	"nightshift/alert"
)

// AlertsJob is the job name under which `mgmt reconfigure RUN @alerts
// key=value...` reaches Config.ReconfigureAlerts; no job can have it (job
// names start with a letter or digit).
const AlertsJob = "@alerts"

// AlertPools reads every job's pool as the alert evaluator sees it. It
// holds the controller's lock only to copy, so an evaluator reading it
// every second delays no decision round.
func (c *Controller) AlertPools() []alert.Pool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Clock.Now()
	out := make([]alert.Pool, 0, len(c.names))
	for _, n := range c.names {
		v := c.jobs[n].pool.AlertView(now, c.frozen || !c.recovered)
		if r := c.jobs[n].rollout; r != nil && (r.Phase == RolloutRollingBack || r.Phase == RolloutRolledBack) {
			v.RolledBack = &alert.RolledBack{From: r.From, To: r.To, Reason: r.Reason}
		}
		out = append(out, v)
	}
	return out
}

// AlertView is the pool at now for the alert evaluator; held says no
// decisions are taken (frozen, or not yet recovered), so a pool short of
// its target is not below policy.
func (p *Pool) AlertView(now time.Time, held bool) alert.Pool {
	v := alert.Pool{Job: p.job.Name, Desired: p.lastTarget, Frozen: held, DeafSince: p.deafSince}
	// A frozen or recovering controller takes no rounds, so its last
	// judgement of a silence is not current.
	if m := p.Silence(); m != nil && !held {
		v.Silence = &alert.Silence{Silent: m.Silent, Running: m.Running, Since: m.Since, Until: m.Until, Held: m.Held}
	}
	if b := p.blocked(); b != nil {
		v.Blocked = &alert.Blocked{Cause: b.Cause, FailedLaunches: b.FailedLaunches, LastCause: b.LastCause, Check: b.Check}
	}
	for _, w := range p.workers {
		if w.state.Terminal() {
			continue
		}
		h := p.health(w, now)
		if h == nightshift.HealthOK && w.state == nightshift.StateRunning {
			v.Healthy++
		}
		v.Workers = append(v.Workers, alert.Worker{ID: w.id, Unhealthy: h.Unhealthy() || w.state == nightshift.StateFailed})
	}
	return v
}
