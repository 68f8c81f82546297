package alert

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Pool is what the evaluator needs to know of one worker pool at one
// moment; the controller reads it from its pools (controller.AlertPools).
type Pool struct {
	Job string
	// Desired is the last decision's target; Healthy counts running
	// workers judged healthy.
	Desired, Healthy int
	// Frozen pools are being torn down or held by a person: not below
	// policy.
	Frozen bool
	// Blocked is set while the pool's launches keep failing.
	Blocked *Blocked
	// DeafSince is when the controller lost its bus (zero while it has it).
	DeafSince time.Time
	// Workers are the pool's live workers; a worker that disappears while
	// it was last seen unhealthy was replaced.
	Workers []Worker
	// RolledBack is set while the pool's latest rollout is rolling back or
	// rolled back.
	RolledBack *RolledBack
	// Silence is set during a mass silence of the pool's workers.
	Silence *Silence
}

// Silence is a mass silence: Silent of Running workers silent at once since
// Since; their replacement is held until Until (Held).
type Silence struct {
	Silent, Running int
	Since, Until    time.Time
	Held            bool
}

// RolledBack is a rollout that was turned back.
type RolledBack struct {
	From, To int
	Reason   string
}

// Blocked is why a pool's launches are held.
type Blocked struct {
	// Cause is controller.BlockedNoHeartbeat ("no_heartbeat": workers
	// reach running and never send a heartbeat) or "launch_failures".
	Cause          string
	FailedLaunches int
	LastCause      string
	// Check says what a person should look at.
	Check string
}

// Worker is one live worker of a pool.
type Worker struct {
	ID        string
	Unhealthy bool
}

// Daemon is the keeper's account of one of the run's daemons.
type Daemon struct {
	Service string
	Up      bool
	// Restarts is how many restarts the keeper made in all (it only
	// grows); GaveUp is set when it stopped restarting, with why.
	Restarts int
	GaveUp   string
	LastExit string
}

// Input is one look at what a process watches: a controller passes its
// pools, a keeper its daemons.
type Input struct {
	Pools   []Pool
	Daemons []Daemon
}

// Evaluator turns successive Inputs into alert transitions. It keeps what
// it saw (when a pool fell below policy, which workers were unhealthy,
// when replacements and restarts happened) and which alerts fire, so each
// episode fires once and resolves once. It is not safe for concurrent use.
type Evaluator struct {
	run    string
	cfg    Config
	firing map[string]*Event

	belowSince   map[string]time.Time
	unhealthy    map[string]map[string]bool
	replacements map[string][]time.Time
	restarts     map[string]int
	restartTimes map[string][]time.Time
}

// NewEvaluator returns an evaluator for run with cfg's thresholds (unset
// ones take their defaults).
func NewEvaluator(run string, cfg Config) *Evaluator {
	return &Evaluator{
		run: run, cfg: cfg.WithDefaults(), firing: map[string]*Event{},
		belowSince: map[string]time.Time{}, unhealthy: map[string]map[string]bool{},
		replacements: map[string][]time.Time{}, restarts: map[string]int{}, restartTimes: map[string][]time.Time{},
	}
}

// SetConfig changes the thresholds from the next Evaluate on.
func (e *Evaluator) SetConfig(cfg Config) { e.cfg = cfg.WithDefaults() }

// Restore takes alerts that were firing before a restart (the journal's
// account), so that a condition still true does not fire again and one
// that cleared meanwhile resolves at the next Evaluate.
func (e *Evaluator) Restore(firing []Event) {
	for _, ev := range firing {
		if ev.Status == Firing && ev.Run == e.run {
			c := ev
			e.firing[ev.Key] = &c
		}
	}
}

// Firing returns the alerts firing now, by key.
func (e *Evaluator) Firing() []Event {
	out := make([]Event, 0, len(e.firing))
	for _, k := range slices.Sorted(maps.Keys(e.firing)) {
		out = append(out, *e.firing[k])
	}
	return out
}

// cond is one condition seen true at this Evaluate.
type cond struct {
	kind     Kind
	subject  string
	severity Severity
	summary  string
	details  map[string]any
}

// Evaluate looks at in at now and returns the transitions, sorted by key:
// a firing event for each condition that became true, a resolved event
// for each firing alert whose condition is no longer true. A condition
// that stays true returns nothing (its LastSeen moves on).
func (e *Evaluator) Evaluate(now time.Time, in Input) []Event {
	var conds []cond
	var deafSince time.Time
	deafJobs := []string{}
	for _, p := range in.Pools {
		conds = append(conds, e.pool(now, p)...)
		if !p.DeafSince.IsZero() {
			deafJobs = append(deafJobs, p.Job)
			if deafSince.IsZero() || p.DeafSince.Before(deafSince) {
				deafSince = p.DeafSince
			}
		}
	}
	if !deafSince.IsZero() && now.Sub(deafSince) >= e.cfg.BrokerUnreachableFor {
		conds = append(conds, cond{kind: BrokerUnreachable, severity: Critical,
			summary: fmt.Sprintf("the controller has been cut off from the run's broker for %s (threshold %s): no pool can be healed",
				now.Sub(deafSince).Round(time.Second), e.cfg.BrokerUnreachableFor),
			details: map[string]any{"since": deafSince, "jobs": deafJobs, "threshold": e.cfg.BrokerUnreachableFor.String()}})
	}
	for _, d := range in.Daemons {
		if c, ok := e.daemon(now, d); ok {
			conds = append(conds, c)
		}
	}

	var out []Event
	seen := map[string]bool{}
	for _, c := range conds {
		key := Key(e.run, c.kind, c.subject)
		seen[key] = true
		if ev, ok := e.firing[key]; ok {
			ev.LastSeen, ev.Summary, ev.Details = now, c.summary, c.details
			continue
		}
		ev := Event{Version: Version, Key: key, Run: e.run, Job: c.subject, Kind: c.kind, Severity: c.severity,
			Status: Firing, Summary: c.summary, Details: c.details, FirstSeen: now, LastSeen: now}
		e.firing[key] = &ev
		out = append(out, ev)
	}
	for _, key := range slices.Sorted(maps.Keys(e.firing)) {
		if seen[key] {
			continue
		}
		ev := *e.firing[key]
		delete(e.firing, key)
		ev.Status, ev.LastSeen = Resolved, now
		ev.Summary = "resolved: " + ev.Summary
		out = append(out, ev)
	}
	slices.SortFunc(out, func(a, b Event) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	return out
}

func (e *Evaluator) pool(now time.Time, p Pool) []cond {
	var out []cond
	if b := p.Blocked; b != nil {
		summary := fmt.Sprintf("pool %s is blocked: %d launches failed in a row and none became healthy; last cause: %s", p.Job, b.FailedLaunches, b.LastCause)
		if b.Cause == "no_heartbeat" {
			summary = fmt.Sprintf("pool %s is blocked: %d workers in a row reached running and never sent a heartbeat; launches stop but for a probe now and then; last: %s", p.Job, b.FailedLaunches, b.LastCause)
		}
		if b.Check != "" {
			summary += "; " + b.Check
		}
		details := map[string]any{"failed_launches": b.FailedLaunches, "last_cause": b.LastCause}
		if b.Cause != "" {
			details["cause"] = b.Cause
		}
		if b.Check != "" {
			details["check"] = b.Check
		}
		out = append(out, cond{kind: PoolBlocked, subject: p.Job, severity: Critical, summary: summary, details: details})
	}
	if m := p.Silence; m != nil {
		what := fmt.Sprintf("not replaced until %s", m.Until.UTC().Format(time.RFC3339))
		if !m.Held {
			what = "the hold ended and they are being replaced"
		}
		out = append(out, cond{kind: MassSilence, subject: p.Job, severity: Critical,
			summary: fmt.Sprintf("pool %s: %d of %d running workers went silent at once; more likely the broker, the controller or the network than the workers: %s; check the controller's heartbeat queue and the broker",
				p.Job, m.Silent, m.Running, what),
			details: map[string]any{"silent": m.Silent, "running": m.Running, "since": m.Since, "until": m.Until, "held": m.Held}})
	}
	if rb := p.RolledBack; rb != nil {
		out = append(out, cond{kind: RolloutRolledBack, subject: p.Job, severity: Warning,
			summary: fmt.Sprintf("pool %s: the rollout to revision %d was turned back to revision %d: %s", p.Job, rb.To, rb.From, rb.Reason),
			details: map[string]any{"from": rb.From, "to": rb.To, "reason": rb.Reason}})
	}

	if !p.Frozen && p.DeafSince.IsZero() && p.Healthy < p.Desired {
		since, ok := e.belowSince[p.Job]
		if !ok {
			since = now
			e.belowSince[p.Job] = now
		}
		if now.Sub(since) >= e.cfg.PoolBelowPolicyFor {
			out = append(out, cond{kind: PoolBelowPolicy, subject: p.Job, severity: Warning,
				summary: fmt.Sprintf("pool %s has had %d of %d healthy workers for %s (threshold %s)",
					p.Job, p.Healthy, p.Desired, now.Sub(since).Round(time.Second), e.cfg.PoolBelowPolicyFor),
				details: map[string]any{"desired": p.Desired, "healthy": p.Healthy, "since": since, "threshold": e.cfg.PoolBelowPolicyFor.String()}})
		}
	} else if p.DeafSince.IsZero() {
		// A deaf controller cannot judge health; the episode neither
		// starts nor ends while it is.
		delete(e.belowSince, p.Job)
	}

	prev := e.unhealthy[p.Job]
	cur := make(map[string]bool, len(p.Workers))
	for _, w := range p.Workers {
		cur[w.ID] = w.Unhealthy
	}
	times := e.replacements[p.Job]
	for id, bad := range prev {
		if _, live := cur[id]; bad && !live {
			times = append(times, now)
		}
	}
	times = slices.DeleteFunc(times, func(t time.Time) bool { return now.Sub(t) > e.cfg.FlappingWindow })
	e.replacements[p.Job], e.unhealthy[p.Job] = times, cur
	if len(times) > e.cfg.FlappingReplacements {
		out = append(out, cond{kind: ReplacementFlapping, subject: p.Job, severity: Warning,
			summary: fmt.Sprintf("pool %s replaced %d unhealthy workers within %s (more than %d): replacements are not fixing it",
				p.Job, len(times), e.cfg.FlappingWindow, e.cfg.FlappingReplacements),
			details: map[string]any{"replacements": len(times), "window": e.cfg.FlappingWindow.String(), "threshold": e.cfg.FlappingReplacements}})
	}
	return out
}

func (e *Evaluator) daemon(now time.Time, d Daemon) (cond, bool) {
	times := e.restartTimes[d.Service]
	if prev, ok := e.restarts[d.Service]; ok && d.Restarts > prev {
		for range min(d.Restarts-prev, e.cfg.RestartLoopRestarts+1) {
			times = append(times, now)
		}
	}
	e.restarts[d.Service] = d.Restarts
	times = slices.DeleteFunc(times, func(t time.Time) bool { return now.Sub(t) > e.cfg.RestartLoopWindow })
	e.restartTimes[d.Service] = times
	details := map[string]any{"service": d.Service, "restarts_in_window": len(times), "window": e.cfg.RestartLoopWindow.String(),
		"restarts_total": d.Restarts, "up": d.Up}
	if d.LastExit != "" {
		details["last_exit"] = d.LastExit
	}
	switch {
	case d.GaveUp != "":
		details["gave_up"] = d.GaveUp
		return cond{kind: DaemonRestartLoop, subject: d.Service, severity: Critical, details: details,
			summary: fmt.Sprintf("the keeper gave up restarting %s: %s", d.Service, d.GaveUp)}, true
	case len(times) > e.cfg.RestartLoopRestarts:
		return cond{kind: DaemonRestartLoop, subject: d.Service, severity: Critical, details: details,
			summary: fmt.Sprintf("%s was restarted %d times within %s (more than %d); last exit: %s",
				d.Service, len(times), e.cfg.RestartLoopWindow, e.cfg.RestartLoopRestarts, d.LastExit)}, true
	}
	return cond{}, false
}
