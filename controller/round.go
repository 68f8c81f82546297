package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"nightshift"
	"nightshift/decision"
	"nightshift/internal/redact"
	"nightshift/provisioner"
)

// tickJob is one decision round of j: read the queue depth, send launches
// still pending, build the snapshot, ask the engine, and carry out the
// pool's plan for its decision.
func (c *Controller) tickJob(ctx context.Context, j *job) error {
	if ctx.Err() != nil {
		return nil
	}
	c.mu.Lock()
	ready := c.recovered && !c.frozen
	c.mu.Unlock()
	if !ready {
		return nil
	}
	if c.cfg.Link != nil {
		now, connected := c.cfg.Clock.Now(), c.cfg.Link.Connected()
		c.mu.Lock()
		if connected {
			j.pool.Hearing(now)
		} else {
			j.pool.Deaf(now)
		}
		c.mu.Unlock()
		if !connected {
			// Nothing can be sent, and every silence is our own.
			return nil
		}
	}
	depth := c.readDepth(ctx, j.def)
	c.act.RLock()
	defer c.act.RUnlock()
	j.acting.Lock()
	defer j.acting.Unlock()
	if err := c.flushLaunches(ctx, j); err != nil {
		return err
	}
	c.mu.Lock()
	if c.frozen {
		c.mu.Unlock()
		return nil
	}
	now := c.cfg.Clock.Now()
	j.pool.Observe(depth.Depth, depth.Source, depth.Why)
	j.pool.JudgeSilence(now)
	snap := j.pool.Snapshot(now)
	j.pool.Prune(now)
	c.mu.Unlock()
	c.reportHealth(ctx, j, snap)

	d := decision.Run(ctx, j.engine, snap)
	d, _, err := c.rolloutRound(ctx, j, d, now)
	if err != nil {
		return err
	}
	c.mu.Lock()
	plan, err := j.pool.Plan(d, now)
	c.mu.Unlock()
	if err != nil || plan.Skip {
		return errors.Join(err, c.saveSilent(ctx, j))
	}
	return errors.Join(c.apply(ctx, j, plan), c.saveSilent(ctx, j))
}

// saveSilent stores the job's block after silent workers when a round
// changed it (a worker counted, a probe sent, a heartbeat or a person
// ending it), so that a restarted controller does not allow
// block_after_silent more silent launches. The caller holds j.acting.
func (c *Controller) saveSilent(ctx context.Context, j *job) error {
	c.mu.Lock()
	s := j.pool.Silent()
	c.mu.Unlock()
	if s.Equal(j.savedSilent) {
		return nil
	}
	if err := c.cfg.Store.SetSilent(ctx, j.def.Name, s); err != nil {
		return fmt.Errorf("job %s: store silent workers: %w", j.def.Name, err)
	}
	j.savedSilent = s
	return nil
}

// apply persists plan's decision with its reason, then executes its
// actions. Launch ids are written in the same transaction as the decision,
// before any launch is sent.
func (c *Controller) apply(ctx context.Context, j *job, plan Plan) error {
	name, d, now := j.def.Name, plan.Decision, plan.Record.Time
	rev := j.rev.Number
	idFor := func(seq int64, i int) string { return LaunchID(name, c.epoch, rev, seq, i) }
	var acts []actionRecord
	seq, ids, err := c.cfg.Store.RecordDecision(ctx, plan.Record, plan.Launches, idFor, func(ids []string) (json.RawMessage, error) {
		acts = actionRecords(d.Actions, ids)
		return encodeActions(acts)
	})
	if err != nil {
		return err
	}
	c.observeDecision(name, acts)
	c.cfg.Log.Info("decision", "job", name, "seq", seq, "engine", d.Engine, "reason", d.Reason,
		"target", d.Target, "actions", len(d.Actions), "error", d.Error)
	c.mu.Lock()
	j.pool.Recorded(plan, seq, ids)
	c.mu.Unlock()
	if d.Scaled {
		if err := c.cfg.Store.SetLastScaleAt(ctx, name, now); err != nil {
			return err
		}
	}
	var errs []error
	for _, a := range d.Actions {
		switch a := a.(type) {
		case decision.Terminate:
			errs = append(errs, c.terminate(ctx, j, a.IDs))
		case decision.Drain:
			errs = append(errs, c.drain(ctx, j, a, now))
		}
	}
	errs = append(errs, c.flushLaunches(ctx, j))
	return errors.Join(errs...)
}

// flushLaunches sends every pending launch of j (again). A launch whose
// records are already in the view is settled without sending.
func (c *Controller) flushLaunches(ctx context.Context, j *job) error {
	c.mu.Lock()
	steps := j.pool.LaunchSteps()
	c.mu.Unlock()
	var errs []error
	for _, s := range steps {
		l := s.Launch
		if s.Settle {
			errs = append(errs, c.settle(ctx, j, l.LaunchID, LaunchDone, "instance records seen"))
			continue
		}
		// A launch runs the revision it was decided for, which its id
		// names: one recorded before a rollout (or its rollback) and
		// resent after it must not take the new revision's digest, or its
		// workers would run one revision while counted as another.
		rev, def, err := c.launchRevision(ctx, j, l.LaunchID)
		if errors.Is(err, errRevisionGone) {
			// Nothing can send it as decided; the engine decides afresh.
			c.cfg.Log.Warn("launch dropped", "job", l.Job, "launch_id", l.LaunchID, "err", err)
			errs = append(errs, c.settle(ctx, j, l.LaunchID, LaunchRefused, err.Error()))
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("job %s: launch %s: %w", l.Job, l.LaunchID, err))
			continue
		}
		req, err := launchRequest(def, l)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// A revision other than the plan's in force must have been handed
		// over: a provisioner that never got it (or a plan revision older
		// than its jobs file) would refuse the launch for good. Once is
		// enough, as it keeps what it is handed in its ledger; handing it
		// over before every launch was a signed, confirmed round trip per
		// launch, all through a rollout and after it.
		trusted := false // not handed over now, on the strength of an earlier ack
		if rev.Who != WhoPlan || rev.Number != j.rev.Number {
			trusted = j.acks.has(c.provGen.Load(), rev.Digest)
			if !trusted {
				if err := c.revise(ctx, j, rev); err != nil {
					errs = append(errs, fmt.Errorf("job %s: launch %s: %w", l.Job, l.LaunchID, err))
					continue
				}
			}
		}
		insts, err := c.launch(ctx, req)
		if trusted && err != nil && c.cfg.RemoteRefused(err) {
			// The provisioner may not hold the revision after all (one
			// whose ledger was lost, which the controller cannot tell from
			// the one that acknowledged it): hand it over and send the
			// launch once more, which a refusal for another reason refuses
			// again. Nothing was recorded of the refused launch, so its id
			// is still free.
			c.cfg.Log.Info("launch refused; handing its revision over again", "job", l.Job, "launch_id", l.LaunchID,
				"revision", rev.Number, "err", redact.String(err.Error()))
			j.acks.forget(rev.Digest)
			if rerr := c.revise(ctx, j, rev); rerr != nil {
				errs = append(errs, fmt.Errorf("job %s: launch %s: %w", l.Job, l.LaunchID, rerr))
				continue
			}
			insts, err = c.launch(ctx, req)
		}
		switch {
		case err == nil:
			c.applyInstances(j, insts)
			c.cfg.Log.Info("launch sent", "job", l.Job, "launch_id", l.LaunchID, "count", l.Count, "instances", len(insts))
			errs = append(errs, c.settle(ctx, j, l.LaunchID, LaunchDone, ""))
		case c.cfg.RemoteRefused(err):
			c.cfg.Log.Warn("launch refused", "job", l.Job, "launch_id", l.LaunchID, "err", redact.String(err.Error()))
			errs = append(errs, c.settle(ctx, j, l.LaunchID, LaunchRefused, redact.String(err.Error())))
		default:
			// Unknown outcome: keep it pending (it counts toward the pool
			// size) and resend the same id next round.
			errs = append(errs, fmt.Errorf("job %s: launch %s: %w", l.Job, l.LaunchID, err))
		}
	}
	return errors.Join(errs...)
}

// launchRevision is the revision launchID was made for and the job's
// definition with its spec: the revision in force for an id that names it
// or names none (an older controller's), else the stored one.
func (c *Controller) launchRevision(ctx context.Context, j *job, launchID string) (Revision, Job, error) {
	n := RevisionOfLaunch(launchID)
	if n == 0 || n == j.rev.Number {
		return j.rev, j.def, nil
	}
	r, ok := j.revs[n]
	if !ok {
		// One made since the cache was filled (by a rollout) or not
		// stored at all: only the store can tell.
		revs, err := c.cfg.Store.Revisions(ctx, j.def.Name)
		if err != nil {
			return Revision{}, Job{}, err
		}
		for _, r := range revs {
			j.revs[r.Number] = r
		}
		if r, ok = j.revs[n]; !ok {
			return Revision{}, Job{}, fmt.Errorf("revision %d: %w", n, errRevisionGone)
		}
	}
	spec, err := SpecOfRevision(r)
	if err != nil {
		return Revision{}, Job{}, err
	}
	def := j.def
	def.Driver, def.Instance, def.Worker = spec.Driver, spec.Instance, spec.Worker
	return r, def, nil
}

// launch sends one launch request.
func (c *Controller) launch(ctx context.Context, req provisioner.LaunchRequest) ([]provisioner.Instance, error) {
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	return c.cfg.Provisioner.Launch(cctx, req)
}

// errRevisionGone: a pending launch names a revision the store does not
// hold (its store was replaced), so it cannot be sent as it was decided.
var errRevisionGone = errors.New("the revision the launch was decided for is not stored")

func (c *Controller) settle(ctx context.Context, j *job, launchID, state, note string) error {
	if err := c.cfg.Store.SetLaunchState(ctx, launchID, state, note); err != nil {
		return err
	}
	c.mu.Lock()
	j.pool.Settled(launchID)
	c.mu.Unlock()
	return nil
}

// applyInstances applies the records a provisioner call returned.
func (c *Controller) applyInstances(j *job, insts []provisioner.Instance) {
	if len(insts) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Clock.Now()
	for _, inst := range insts {
		j.pool.ApplyInstance(inst, now)
	}
}

// terminateChunk is the most ids one terminate request carries: well
// under the message's limit (provisioner.MaxCount), and small enough that
// each call ends within CallTimeout however slow the driver; a failed
// chunk leaves the others done.
const terminateChunk = 1000

func (c *Controller) terminate(ctx context.Context, j *job, ids []string) error {
	var errs []error
	for chunk := range slices.Chunk(ids, terminateChunk) {
		cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
		insts, err := c.cfg.Provisioner.Terminate(cctx, chunk)
		cancel()
		c.applyInstances(j, insts)
		if err != nil {
			errs = append(errs, fmt.Errorf("job %s: terminate %d workers (%s ...): %w", j.def.Name, len(chunk), chunk[0], err))
		}
	}
	return errors.Join(errs...)
}

func (c *Controller) drain(ctx context.Context, j *job, a decision.Drain, now time.Time) error {
	var errs []error
	for _, id := range a.IDs {
		if c.cfg.Drainer == nil {
			errs = append(errs, fmt.Errorf("job %s: drain %s: no drainer configured", j.def.Name, id))
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
		err := c.cfg.Drainer.Drain(cctx, j.def.Name, id, a.Reason)
		cancel()
		if err != nil {
			// Not marked draining, so the next decision picks a victim again.
			errs = append(errs, fmt.Errorf("job %s: drain %s: %w", j.def.Name, id, err))
			continue
		}
		if err := c.cfg.Store.SetDraining(ctx, j.def.Name, id, now); err != nil {
			errs = append(errs, err)
		}
		c.mu.Lock()
		j.pool.Drained(id, now)
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}

// reportHealth tells the provisioner, for a job with a dns table, which of
// its running workers are healthy and which unhealthy, when that changed
// since it last accepted it: the workers' DNS records follow health, and
// only the controller hears the heartbeats and probes that decide it. A
// worker neither (booting, or not yet heard since a restart) is left out,
// so the provisioner keeps what it had. A failure is retried next round,
// and so is the unchanged word after a bind (Bound).
// The caller holds j.acting.
func (c *Controller) reportHealth(ctx context.Context, j *job, snap decision.Snapshot) {
	if !j.def.DNS {
		return
	}
	b := provisioner.HealthBody{Job: j.def.Name}
	for _, in := range snap.Instances {
		if in.State != nightshift.StateRunning {
			continue
		}
		switch {
		case in.Health == nightshift.HealthOK:
			b.Healthy = append(b.Healthy, in.ID)
		case in.Health.Unhealthy():
			b.Unhealthy = append(b.Unhealthy, in.ID)
		}
	}
	// The generation before sending: a bind while it is under way makes
	// this word one to a provisioner the controller then doubts.
	gen := c.provGen.Load()
	sent := j.healthSent && j.healthGen == gen
	if sent && slices.Equal(b.Healthy, j.sentHealth.Healthy) && slices.Equal(b.Unhealthy, j.sentHealth.Unhealthy) ||
		!sent && len(b.Healthy)+len(b.Unhealthy) == 0 {
		return
	}
	// A pool of more than one message's worth goes in chunks, each a
	// complete word on its own ids; after a failure the next round sends
	// them all again, which changes nothing for those already taken.
	for _, chunk := range b.Chunks() {
		cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
		err := c.cfg.Provisioner.Health(cctx, chunk)
		cancel()
		if err != nil {
			c.cfg.Log.Warn("telling the provisioner the workers' health failed; the next round retries", "job", j.def.Name, "err", redact.String(err.Error()))
			return
		}
	}
	j.sentHealth, j.healthSent, j.healthGen = b, true, gen
}
