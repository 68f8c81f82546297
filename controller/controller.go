package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift/decision"
	"nightshift/internal/redact"
	"nightshift/provisioner"
	"nightshift/sitter"
)

// Defaults.
const (
	DefaultTick        = time.Second
	DefaultCallTimeout = 10 * time.Second
)

// Config holds a Controller's dependencies.
type Config struct {
	Jobs        []Job
	Registry    *decision.Registry
	Store       Store
	Provisioner Provisioner
	Drainer     Drainer
	// Meter reads depths by passive declare; nil leaves depth unavailable
	// for jobs without a management URL.
	Meter QueueMeter
	// MgmtAPI reads depths from the management API for jobs with a
	// management URL; nil leaves their depth unavailable.
	MgmtAPI QueueStats
	Clock   clockwork.Clock
	Log     *slog.Logger
	// Tick is the decision period (default 1s); CallTimeout bounds each
	// provisioner, drain and depth call (default 10s).
	Tick        time.Duration
	CallTimeout time.Duration
	// ResyncEvery is how often the instance view is refreshed from the
	// provisioner's records (default 30s).
	ResyncEvery time.Duration
	// RemoteRefused reports whether a provisioner error is a definite
	// refusal (never resend) rather than a transport failure. nil means
	// errors.Is(err, ErrRefused).
	RemoteRefused func(error) bool
}

// Controller keeps every job of one run at its engine's policy: it is the
// executor around each job's Pool, doing the I/O its rules ask for. All
// exported methods are safe for concurrent use.
type Controller struct {
	cfg     Config
	started time.Time
	epoch   string

	// act orders deciding and acting with Freeze: rounds of different
	// jobs hold it shared and run at once, Freeze holds it alone, so once
	// Freeze returns no action is in progress or will start.
	act sync.RWMutex

	mu        sync.Mutex // guards frozen, recovered and every job's pool
	frozen    bool
	recovered bool
	names     []string
	jobs      map[string]*job
}

// job is one job's loop state around its Pool.
type job struct {
	def Job
	// pool is the job's view and rules; guarded by Controller.mu.
	pool *Pool
	// engine decides and is reconfigured under acting.
	engine decision.Engine
	// acting serialises this job's decision rounds with Reconfigure; each
	// job has its own, so a provisioner call that hangs for one job holds
	// up no other.
	acting sync.Mutex
	// trigger wakes the job's loop for a prompt round; it holds one.
	trigger chan struct{}
}

// New builds a controller: it validates the configuration, opens each
// job's engine with the policy in force (the stored one when the job's
// definition is unchanged since a reconfigure, else the file's) and reads
// the frozen flag. It does not talk to the provisioner; Run does.
func New(ctx context.Context, cfg Config) (*Controller, error) {
	if cfg.Registry == nil || cfg.Store == nil || cfg.Provisioner == nil {
		return nil, errors.New("new controller: Registry, Store and Provisioner are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.ResyncEvery <= 0 {
		cfg.ResyncEvery = 30 * time.Second
	}
	if cfg.RemoteRefused == nil {
		cfg.RemoteRefused = func(err error) bool { return errors.Is(err, ErrRefused) }
	}
	c := &Controller{cfg: cfg, started: cfg.Clock.Now(), jobs: map[string]*job{}}
	epoch, err := cfg.Store.Epoch(ctx)
	if err != nil {
		return nil, fmt.Errorf("new controller: %w", err)
	}
	c.epoch = epoch
	if c.frozen, err = cfg.Store.Frozen(ctx); err != nil {
		return nil, fmt.Errorf("new controller: %w", err)
	}
	for _, j := range cfg.Jobs {
		if _, dup := c.jobs[j.Name]; dup {
			return nil, fmt.Errorf("new controller: job %s defined twice", j.Name)
		}
		jb, err := c.openJob(ctx, j)
		if err != nil {
			return nil, fmt.Errorf("new controller: %w", err)
		}
		c.jobs[j.Name] = jb
		c.names = append(c.names, j.Name)
	}
	slices.Sort(c.names)
	return c, nil
}

func (c *Controller) openJob(ctx context.Context, j Job) (*job, error) {
	e, err := c.cfg.Registry.New(j.Engine)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", j.Name, err)
	}
	fileCfg, err := json.Marshal(j.raw)
	if err != nil {
		return nil, fmt.Errorf("job %s: encode definition: %w", j.Name, err)
	}
	jb := &job{def: j, engine: e, pool: NewPool(j, c.started), trigger: make(chan struct{}, 1)}
	policy := j.Policy
	var lastScaleAt time.Time
	rec, err := c.cfg.Store.Job(ctx, j.Name)
	switch {
	case err == nil && string(rec.FileConfig) == string(fileCfg):
		// The operator has not edited the job since: live reconfigurations
		// survive the restart.
		var stored map[string]any
		if err := json.Unmarshal(rec.Policy, &stored); err != nil {
			return nil, fmt.Errorf("job %s: stored policy: %w", j.Name, err)
		}
		policy = stored
		lastScaleAt = rec.LastScaleAt
	case err == nil:
		c.cfg.Log.Info("job definition changed; stored reconfigurations dropped", "job", j.Name)
		lastScaleAt = rec.LastScaleAt
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}
	if err := e.Configure(policy); err != nil {
		return nil, fmt.Errorf("job %s: policy: %w", j.Name, err)
	}
	pol, err := json.Marshal(e.Config())
	if err != nil {
		return nil, fmt.Errorf("job %s: encode policy: %w", j.Name, err)
	}
	if err := c.cfg.Store.PutJob(ctx, j.Name, fileCfg, pol, c.cfg.Clock.Now()); err != nil {
		return nil, err
	}
	latest, err := c.cfg.Store.Decisions(ctx, j.Name, 1)
	if err != nil {
		// The last decision only spares an identical one; a fresh
		// controller has none either.
		latest = nil
	}
	jb.pool.Restore(lastScaleAt, latest)
	return jb, nil
}

// Jobs returns the names of the controller's jobs, sorted.
func (c *Controller) Jobs() []string { return slices.Clone(c.names) }

// Recover rebuilds every job's instance view from the provisioner and
// settles launches recorded before a crash: a pending launch id found in the
// provisioner's records is done and is not resent; one not found stays
// pending and is resent with the same id on the next tick (the provisioner
// dedupes it if it did arrive after all). No decision is taken before
// Recover has succeeded for every job.
func (c *Controller) Recover(ctx context.Context) error {
	for _, name := range c.names {
		if err := c.recoverJob(ctx, c.jobs[name]); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.recovered = true
	c.mu.Unlock()
	return nil
}

func (c *Controller) recoverJob(ctx context.Context, j *job) error {
	name := j.def.Name
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	st, err := c.cfg.Provisioner.Describe(cctx, name)
	cancel()
	if err != nil {
		return fmt.Errorf("recover job %s: describe: %w", name, err)
	}
	pending, err := c.cfg.Store.PendingLaunches(ctx, name)
	if err != nil {
		return fmt.Errorf("recover job %s: %w", name, err)
	}
	drains, err := c.cfg.Store.Draining(ctx, name)
	if err != nil {
		return fmt.Errorf("recover job %s: %w", name, err)
	}
	done, still := SortRecovered(st.Instances, pending)
	for _, l := range done {
		if err := c.cfg.Store.SetLaunchState(ctx, l.LaunchID, LaunchDone, "found in provisioner records after restart"); err != nil {
			return fmt.Errorf("recover job %s: %w", name, err)
		}
	}
	c.mu.Lock()
	gone := j.pool.Recover(st.Instances, still, drains, c.cfg.Clock.Now())
	c.mu.Unlock()
	c.cfg.Log.Info("job recovered", "job", name, "instances", len(st.Instances), "pending_launches", len(still))
	for _, id := range gone {
		// Drains of instances that ended are finished business.
		if err := c.cfg.Store.ClearDraining(ctx, name, id); err != nil {
			return fmt.Errorf("recover job %s: %w", name, err)
		}
	}
	return nil
}

// Run recovers (retrying until the provisioner answers) and then decides
// every Tick and promptly after relevant events, until ctx ends. Each job
// has its own loop, so one job's slow provisioner call (up to
// CallTimeout) does not delay another's decisions.
func (c *Controller) Run(ctx context.Context) error {
	delay := c.cfg.Tick
	for {
		err := c.Recover(ctx)
		if err == nil {
			break
		}
		c.cfg.Log.Warn("recover failed; retrying", "err", redact.String(err.Error()), "in", delay)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.cfg.Clock.After(delay):
		}
		delay = min(delay*2, 30*time.Second)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		// Events are best effort (missed while disconnected); the
		// provisioner's records are the truth.
		t := c.cfg.Clock.NewTicker(c.cfg.ResyncEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.Chan():
				c.resync(ctx)
			}
		}
	})
	for _, name := range c.names {
		j := c.jobs[name]
		wg.Go(func() { c.jobLoop(ctx, j) })
	}
	wg.Wait()
	return ctx.Err()
}

// jobLoop runs j's decision rounds every Tick and on its trigger.
func (c *Controller) jobLoop(ctx context.Context, j *job) {
	t := c.cfg.Clock.NewTicker(c.cfg.Tick)
	defer t.Stop()
	for {
		c.round(ctx, j)
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		case <-j.trigger:
		}
	}
}

// round runs one decision round of j and logs its failure.
func (c *Controller) round(ctx context.Context, j *job) {
	if err := c.tickJob(ctx, j); err != nil {
		c.cfg.Log.Warn("decision round failed", "job", j.def.Name, "err", redact.String(err.Error()))
	}
}

func (c *Controller) resync(ctx context.Context) {
	for _, name := range c.names {
		cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
		st, err := c.cfg.Provisioner.Describe(cctx, name)
		cancel()
		if err != nil {
			c.cfg.Log.Warn("resync failed", "job", name, "err", redact.String(err.Error()))
			continue
		}
		for _, inst := range st.Instances {
			c.HandleInstance(inst)
		}
	}
}

// Trigger asks for a decision round of every job as soon as possible;
// requests made while one is pending coalesce.
func (c *Controller) Trigger() {
	for _, j := range c.jobs {
		j.poke()
	}
}

func (j *job) poke() {
	select {
	case j.trigger <- struct{}{}:
	default:
	}
}

// Tick runs one decision round for every job, at once, and returns when
// all are done. A failing job is logged and does not stop the others.
func (c *Controller) Tick(ctx context.Context) {
	var wg sync.WaitGroup
	for _, name := range c.names {
		j := c.jobs[name]
		wg.Go(func() { c.round(ctx, j) })
	}
	wg.Wait()
}

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
	depth, source := c.readDepth(ctx, j.def)
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
	j.pool.Observe(depth, source)
	snap := j.pool.Snapshot(now)
	j.pool.Prune(now)
	c.mu.Unlock()

	d := decision.Run(ctx, j.engine, snap)
	c.mu.Lock()
	plan, err := j.pool.Plan(d, now)
	c.mu.Unlock()
	if err != nil || plan.Skip {
		return err
	}
	return c.apply(ctx, j, plan)
}

// apply persists plan's decision with its reason, then executes its
// actions. Launch ids are written in the same transaction as the decision,
// before any launch is sent.
func (c *Controller) apply(ctx context.Context, j *job, plan Plan) error {
	name, d, now := j.def.Name, plan.Decision, plan.Record.Time
	idFor := func(seq int64, i int) string { return LaunchID(name, c.epoch, seq, i) }
	seq, ids, err := c.cfg.Store.RecordDecision(ctx, plan.Record, plan.Launches, idFor, func(ids []string) (json.RawMessage, error) {
		return encodeActions(actionRecords(d.Actions, ids))
	})
	if err != nil {
		return err
	}
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
		req, err := launchRequest(j.def, l)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
		insts, err := c.cfg.Provisioner.Launch(cctx, req)
		cancel()
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

func (c *Controller) terminate(ctx context.Context, j *job, ids []string) error {
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	insts, err := c.cfg.Provisioner.Terminate(cctx, ids)
	cancel()
	c.applyInstances(j, insts)
	if err != nil {
		return fmt.Errorf("job %s: terminate %v: %w", j.def.Name, ids, err)
	}
	return nil
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

// Reconfigure applies a partial policy update to a job through its
// engine's Reconfigure and records who asked. A bad value is refused with
// the engine's error and the old configuration stays in force.
func (c *Controller) Reconfigure(ctx context.Context, job string, values map[string]any, who string) error {
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
	c.cfg.Log.Info("reconfigured", "job", job, "who", who, "keys", slices.Sorted(maps.Keys(values)))
	j.poke()
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
		out = append(out, j.pool.Status(now, j.engine.Config(), c.frozen))
	}
	return out, nil
}

// redactPolicy hides secret-looking values (vars may carry credentials).
func redactPolicy(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case string:
			out[k] = redact.Value(k, v)
		case map[string]string:
			out[k] = redact.Map(v)
		case map[string]any:
			out[k] = redactPolicy(v)
		default:
			out[k] = v
		}
	}
	return out
}
