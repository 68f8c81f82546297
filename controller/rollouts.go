package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"nightshift/decision"
	"nightshift/internal/jobspec"
	"nightshift/provisioner"
	"nightshift/sitter"
)

// Revision outcomes a rollout gives.
const (
	// RevisionRolledBack: a rollout to it was turned back.
	RevisionRolledBack = "rolled_back"
)

// RolloutRequest is what a person asks a rollout to change: Set holds
// key=value changes to the spec in force (env.NAME, or a worker key such
// as command, whose value is JSON when it parses as JSON), Spec a whole
// spec instead (from a plan); Config how to proceed.
type RolloutRequest struct {
	Set    map[string]string `json:"set,omitempty"`
	Spec   *jobspec.Spec     `json:"spec,omitempty"`
	Config RolloutConfig     `json:"config"`
}

// ApplySet returns spec with set's changes: "env.NAME" sets a variable of
// the worker's environment (always a string), "instance.KEY" a key of the
// instance table, and any other key ("worker.KEY" or "KEY") a key of the
// worker table, its value JSON when it parses as JSON, else a string; a
// linked task's keys are "linked.TASK.KEY" ("linked.TASK.env.NAME").
func ApplySet(spec jobspec.Spec, set map[string]string) (jobspec.Spec, error) {
	out := jobspec.Spec{Driver: spec.Driver, Instance: cloneMap(spec.Instance), Worker: cloneMap(spec.Worker)}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		v := set[k]
		path := strings.Split(strings.TrimPrefix(k, "worker."), ".")
		table := out.Worker
		if path[0] == "instance" {
			if out.Instance == nil {
				out.Instance = map[string]any{}
			}
			table, path = out.Instance, path[1:]
		}
		if len(path) == 0 || slices.Contains(path, "") {
			return spec, fmt.Errorf("--set %s: want env.NAME, instance.KEY or a worker key", k)
		}
		for _, p := range path[:len(path)-1] {
			sub, ok := table[p].(map[string]any)
			if !ok {
				if _, exists := table[p]; exists {
					return spec, fmt.Errorf("--set %s: %s is not a table", k, p)
				}
				sub = map[string]any{}
				table[p] = sub
			}
			table = sub
		}
		// An environment's values are strings, the worker's own or a
		// linked task's (linked.NAME.env.VAR).
		var val any = v
		if len(path) < 2 || path[len(path)-2] != "env" {
			var j any
			if json.Unmarshal([]byte(v), &j) == nil {
				val = j
			}
		}
		table[path[len(path)-1]] = val
	}
	return out, nil
}

// cloneMap deep-copies a decoded table.
func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return maps.Clone(m)
	}
	var out map[string]any
	if json.Unmarshal(b, &out) != nil {
		return maps.Clone(m)
	}
	return out
}

// checkWorker refuses a worker table the sitter would refuse, its linked
// tasks included.
func checkWorker(job string, worker map[string]any) error {
	b, err := json.Marshal(worker)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var w sitter.Worker
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	if _, err := w.Tasks(job); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return nil
}

// StartRollout makes the next revision of job's worker spec from req,
// hands it to the provisioner, stores it and the rollout, and makes it
// the revision new workers run; the job's rounds then replace the old
// workers (Rollout.Step). who is the requester's verified identity.
func (c *Controller) StartRollout(ctx context.Context, job string, req RolloutRequest, who string) (Rollout, error) {
	j, ok := c.jobs[job]
	if !ok {
		return Rollout{}, fmt.Errorf("rollout: unknown job %q", job)
	}
	j.acting.Lock()
	defer j.acting.Unlock()
	if j.rollout != nil && j.rollout.Active() {
		return Rollout{}, fmt.Errorf("rollout of job %s: a rollout to revision %d is %s; undo it or wait", job, j.rollout.To, j.rollout.Phase)
	}
	spec := SpecOf(j.def)
	var err error
	switch {
	case req.Spec != nil && len(req.Set) > 0:
		return Rollout{}, errors.New("rollout: give --set or --from-plan, not both")
	case req.Spec != nil:
		spec = *req.Spec
	case len(req.Set) > 0:
		if spec, err = ApplySet(spec, req.Set); err != nil {
			return Rollout{}, fmt.Errorf("rollout of job %s: %w", job, err)
		}
	default:
		return Rollout{}, errors.New("rollout: nothing to change (--set key=value or --from-plan)")
	}
	if spec.Driver != j.def.Driver && !(spec.Driver == "" && j.def.Driver == DriverLocal) {
		return Rollout{}, fmt.Errorf("rollout of job %s: driver %q is not %q: a rollout changes what a worker runs, not where", job, spec.Driver, j.def.Driver)
	}
	if err := checkWorker(job, spec.Worker); err != nil {
		return Rollout{}, fmt.Errorf("rollout of job %s: %w", job, err)
	}
	now := c.cfg.Clock.Now()
	from := j.rev
	// The next number after every stored one, not after the one in force:
	// after a rollback the revision in force is older than the last, and
	// reusing a number would overwrite the rolled-back revision and make
	// its workers' launch ids name the new one.
	revs, err := c.cfg.Store.Revisions(ctx, job)
	if err != nil {
		return Rollout{}, err
	}
	next := from.Number + 1
	for _, r := range revs {
		next = max(next, r.Number+1)
	}
	to, err := NewRevision(job, next, spec, who, now)
	if err != nil {
		return Rollout{}, err
	}
	if to.Digest == from.Digest {
		return Rollout{}, fmt.Errorf("rollout of job %s: the spec is revision %d's already", job, from.Number)
	}
	// The provisioner first: a revision it refuses is never recorded.
	if err := c.revise(ctx, j, to); err != nil {
		return Rollout{}, fmt.Errorf("rollout of job %s: %w", job, err)
	}
	r := Rollout{Job: job, From: from.Number, To: to.Number, Phase: RolloutRolling, Config: req.Config.WithDefaults(), Who: who, Started: now}
	from.Outcome, from.Note, from.Updated = RevisionSuperseded, fmt.Sprintf("rolling out revision %d", to.Number), now
	for _, rev := range []Revision{to, from} {
		if err := c.cfg.Store.PutRevision(ctx, rev); err != nil {
			return Rollout{}, err
		}
	}
	if err := c.cfg.Store.PutRollout(ctx, r, now); err != nil {
		return Rollout{}, err
	}
	c.setRevision(j, to)
	j.rollout = &r
	c.cfg.Log.Info("rollout started", "job", job, "from", r.From, "to", r.To, "who", who, "digest", to.Digest)
	c.Trigger()
	return r, nil
}

// UndoRollout turns job's rollout back to the revision it came from.
func (c *Controller) UndoRollout(ctx context.Context, job, who string) (Rollout, error) {
	j, ok := c.jobs[job]
	if !ok {
		return Rollout{}, fmt.Errorf("rollout: unknown job %q", job)
	}
	j.acting.Lock()
	defer j.acting.Unlock()
	if j.rollout == nil {
		return Rollout{}, fmt.Errorf("rollout of job %s: none to undo", job)
	}
	r, err := j.rollout.Undo(who, c.cfg.Clock.Now())
	if err != nil {
		return Rollout{}, err
	}
	if err := c.turnBack(ctx, j, r); err != nil {
		return Rollout{}, err
	}
	c.Trigger()
	return r, nil
}

// RolloutOf returns job's latest rollout, if any.
func (c *Controller) RolloutOf(job string) (*Rollout, error) {
	j, ok := c.jobs[job]
	if !ok {
		return nil, fmt.Errorf("rollout: unknown job %q", job)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if j.rollout == nil {
		return nil, nil
	}
	r := *j.rollout
	return &r, nil
}

// turnBack makes r (rolling back) the job's rollout: From is in force
// again and To rolled back. Called under j.acting.
func (c *Controller) turnBack(ctx context.Context, j *job, r Rollout) error {
	now := c.cfg.Clock.Now()
	revs, err := c.cfg.Store.Revisions(ctx, j.def.Name)
	if err != nil {
		return err
	}
	var from *Revision
	for i := range revs {
		rev := revs[i]
		switch rev.Number {
		case r.From:
			rev.Outcome, rev.Note, rev.Updated = RevisionCurrent, fmt.Sprintf("in force again: revision %d rolled back", r.To), now
			from = &rev
		case r.To:
			rev.Outcome, rev.Note, rev.Updated = RevisionRolledBack, r.Reason, now
		default:
			continue
		}
		if err := c.cfg.Store.PutRevision(ctx, rev); err != nil {
			return err
		}
	}
	if from == nil {
		return fmt.Errorf("rollout of job %s: revision %d is not stored", j.def.Name, r.From)
	}
	if err := c.revise(ctx, j, *from); err != nil {
		return err
	}
	if err := c.cfg.Store.PutRollout(ctx, r, now); err != nil {
		return err
	}
	c.setRevision(j, *from)
	c.mu.Lock()
	j.rollout = &r
	c.mu.Unlock()
	c.cfg.Log.Warn("rollout turned back", "job", j.def.Name, "to", r.From, "reason", r.Reason)
	return nil
}

// setRevision makes rev the job's revision in force. Called under
// j.acting.
func (c *Controller) setRevision(j *job, rev Revision) {
	spec, err := SpecOfRevision(rev)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	j.def.Driver, j.def.Instance, j.def.Worker = spec.Driver, spec.Instance, spec.Worker
	j.rev = rev
	j.pool.SetRevision(rev)
}

// revise hands rev, a revision of j, to the provisioner; one it holds
// already (the plan's, or one handed over before) changes nothing there.
// Called under j.acting.
func (c *Controller) revise(ctx context.Context, j *job, rev Revision) error {
	spec, err := SpecOfRevision(rev)
	if err != nil {
		return err
	}
	// The generation before sending: a bind while it is under way makes
	// this ack one of the provisioner the controller then doubts.
	gen := c.provGen.Load()
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	if err := c.cfg.Provisioner.Revise(cctx, provisioner.ReviseBody{Job: rev.Job, Digest: rev.Digest, Spec: spec}); err != nil {
		return fmt.Errorf("hand revision %d to the provisioner: %w", rev.Number, err)
	}
	j.acks.add(gen, rev.Digest)
	return nil
}

// revisionAcks are the digests of the revisions of one job the
// provisioner acknowledged while the controller's view of it was at
// generation gen (Controller.provGen): an ack of an older generation
// counts for nothing.
type revisionAcks struct {
	gen     uint64
	digests map[string]bool
}

// has reports whether digest was acknowledged at generation gen.
func (a *revisionAcks) has(gen uint64, digest string) bool {
	return a.gen == gen && a.digests[digest]
}

// add records an ack of digest made at generation gen; one of a
// generation already past is dropped.
func (a *revisionAcks) add(gen uint64, digest string) {
	switch {
	case gen < a.gen:
		return
	case gen > a.gen || a.digests == nil:
		a.gen, a.digests = gen, map[string]bool{}
	}
	a.digests[digest] = true
}

// forget drops the ack of digest.
func (a *revisionAcks) forget(digest string) { delete(a.digests, digest) }

// rolloutRound replaces the engine's actions with the rollout's step while
// a rollout is active, keeping the engine's target as the pool's size.
// Called under j.acting; it stores a changed rollout before acting.
func (c *Controller) rolloutRound(ctx context.Context, j *job, d decision.Decision, now time.Time) (decision.Decision, int, error) {
	r := j.rollout
	if r == nil || !r.Active() {
		return d, j.rev.Number, nil
	}
	desired := d.Target
	c.mu.Lock()
	snap := j.pool.RolloutSnapshot(now, desired)
	c.mu.Unlock()
	st := r.Step(snap)
	next := st.Rollout
	if next.Phase != r.Phase || len(next.Failed) != len(r.Failed) {
		if next.Phase == RolloutRollingBack && r.Phase == RolloutRolling {
			if err := c.turnBack(ctx, j, next); err != nil {
				return d, 0, err
			}
		} else if err := c.cfg.Store.PutRollout(ctx, next, now); err != nil {
			return d, 0, err
		}
		c.mu.Lock()
		j.rollout = &next
		c.mu.Unlock()
	}
	out := decision.Decision{Engine: "rollout", Reason: st.Reason, Target: desired}
	if st.Launch > 0 {
		out.Actions = append(out.Actions, decision.Launch{Count: st.Launch, Reason: fmt.Sprintf("rollout: revision %d", next.Target())})
	}
	if len(st.Terminate) > 0 {
		out.Actions = append(out.Actions, decision.Terminate{IDs: st.Terminate, Reason: "rollout: old revision, drained or not serving"})
	}
	if len(st.Drain) > 0 {
		out.Actions = append(out.Actions, decision.Drain{IDs: st.Drain, Reason: "rollout: replaced by a ready worker of the new revision"})
	}
	return out, next.Target(), nil
}
