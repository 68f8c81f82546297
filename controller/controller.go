package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift"
	"nightshift/decision"
	"nightshift/internal/ctlstore"
	"nightshift/internal/redact"
	"nightshift/provisioner"
	"nightshift/sitter"
)

// Provisioner is what the controller needs of the provisioner;
// provisioner/client.Client implements it.
type Provisioner interface {
	Launch(ctx context.Context, req provisioner.LaunchRequest) ([]provisioner.Instance, error)
	Terminate(ctx context.Context, ids []string) ([]provisioner.Instance, error)
	Describe(ctx context.Context, job string) (provisioner.Status, error)
}

// Drainer tells the sitter of one instance to drain.
type Drainer interface {
	Drain(ctx context.Context, job, instanceID, reason string) error
}

// QueueMeter reads a queue's ready-message count (a passive declare);
// amqpbus.Bus implements it.
type QueueMeter interface {
	QueueDepth(ctx context.Context, queue string) (int, error)
}

// ErrRefused marks provisioner errors that resending cannot fix (the
// provisioner answered and said no). Provisioner implementations wrap it, or
// provisioner/client.ErrRemote, which the controller also recognises.
var ErrRefused = errors.New("refused")

// Defaults.
const (
	DefaultTick        = time.Second
	DefaultCallTimeout = 10 * time.Second
	// terminalKeep is how long a gone instance stays in the view, so late
	// heartbeats from it can still be judged zombie.
	terminalKeep = 10 * time.Minute
)

// Config holds a Controller's dependencies.
type Config struct {
	Jobs        []Job
	Registry    *decision.Registry
	Store       *ctlstore.Store
	Provisioner Provisioner
	Drainer     Drainer
	// Meter reads depths by passive declare; nil leaves depth unavailable
	// for jobs without a management URL.
	Meter QueueMeter
	// HTTP is used for the management API; nil means a client with a 5s
	// timeout.
	HTTP  *http.Client
	Clock clockwork.Clock
	Log   *slog.Logger
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

// Controller keeps every job of one run at its engine's policy. All
// exported methods are safe for concurrent use.
type Controller struct {
	cfg     Config
	started time.Time
	epoch   string
	trigger chan struct{}

	// act orders deciding and acting with Freeze: rounds of different
	// jobs hold it shared and run at once, Freeze holds it alone, so once
	// Freeze returns no action is in progress or will start.
	act sync.RWMutex

	mu        sync.Mutex // guards everything below
	frozen    bool
	recovered bool
	names     []string
	pools     map[string]*pool
}

type pool struct {
	job    Job
	engine decision.Engine
	// acting serialises this job's decision rounds with Reconfigure; each
	// job has its own, so a provisioner call that hangs for one job holds
	// up no other.
	acting sync.Mutex
	// trigger wakes the job's loop for a prompt round; it holds one.
	trigger chan struct{}
	workers map[string]*worker
	pending []ctlstore.Launch
	// lastScaleAt feeds Snapshot.LastScaleAt (cooldowns).
	lastScaleAt time.Time
	depth       *int
	source      decision.DepthSource
	last        *LastDecision
	lastTarget  int
	lastError   string
	// Launch failures in a row (instances that failed before running):
	// launches then back off exponentially, as an Auto Scaling group does,
	// instead of asking every tick for an image that does not exist.
	launchFailures    int
	lastLaunchFailure time.Time
	launchFailReason  string
}

// launchBackoff is the pause after n launch failures in a row.
func launchBackoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := time.Second << min(n-1, 9)
	return min(d, 5*time.Minute)
}

// holdLaunches drops the launch actions of d while the pool backs off after
// failed launches, saying why; terminations and drains go ahead.
func holdLaunches(p *pool, d decision.Decision, now time.Time) decision.Decision {
	if p.launchFailures == 0 {
		return d
	}
	until := p.lastLaunchFailure.Add(launchBackoff(p.launchFailures))
	if !now.Before(until) {
		return d
	}
	kept := d.Actions[:0:0]
	held := false
	for _, a := range d.Actions {
		if _, ok := a.(decision.Launch); ok {
			held = true
			continue
		}
		kept = append(kept, a)
	}
	if !held {
		return d
	}
	d.Actions = kept
	d.Reason = fmt.Sprintf("launch back-off after %d failed launch(es) (last: %s): next launch in %s; engine: %s",
		p.launchFailures, p.launchFailReason, until.Sub(now).Round(100*time.Millisecond), d.Reason)
	return d
}

type worker struct {
	id, launchID, host string
	state              nightshift.InstanceState
	stateSince         time.Time
	launchedAt         time.Time
	lastHeartbeat      time.Time
	failedTasks        []string
	heartbeatError     string
	busy               bool
	restarts           int
	drainingSince      time.Time
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
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.RemoteRefused == nil {
		cfg.RemoteRefused = func(err error) bool { return errors.Is(err, ErrRefused) }
	}
	c := &Controller{cfg: cfg, started: cfg.Clock.Now(), pools: map[string]*pool{}}
	epoch, err := cfg.Store.Epoch(ctx)
	if err != nil {
		return nil, fmt.Errorf("new controller: %w", err)
	}
	c.epoch = epoch
	if c.frozen, err = cfg.Store.Frozen(ctx); err != nil {
		return nil, fmt.Errorf("new controller: %w", err)
	}
	for _, j := range cfg.Jobs {
		if _, dup := c.pools[j.Name]; dup {
			return nil, fmt.Errorf("new controller: job %s defined twice", j.Name)
		}
		p, err := c.openPool(ctx, j)
		if err != nil {
			return nil, fmt.Errorf("new controller: %w", err)
		}
		c.pools[j.Name] = p
		c.names = append(c.names, j.Name)
	}
	slices.Sort(c.names)
	return c, nil
}

func (c *Controller) openPool(ctx context.Context, j Job) (*pool, error) {
	e, err := c.cfg.Registry.New(j.Engine)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", j.Name, err)
	}
	fileCfg, err := json.Marshal(j.raw)
	if err != nil {
		return nil, fmt.Errorf("job %s: encode definition: %w", j.Name, err)
	}
	p := &pool{job: j, engine: e, workers: map[string]*worker{}, trigger: make(chan struct{}, 1)}
	policy := j.Policy
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
		p.lastScaleAt = rec.LastScaleAt
	case err == nil:
		c.cfg.Log.Info("job definition changed; stored reconfigurations dropped", "job", j.Name)
		p.lastScaleAt = rec.LastScaleAt
	case !errors.Is(err, ctlstore.ErrNotFound):
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
	if ds, err := c.cfg.Store.Decisions(ctx, j.Name, 1); err == nil && len(ds) == 1 {
		p.last = &LastDecision{Time: ds[0].Time, Reason: ds[0].Reason}
		p.lastTarget, p.lastError = ds[0].Target, ds[0].Error
	}
	return p, nil
}

// Recover rebuilds every job's instance view from the provisioner and
// settles launches recorded before a crash: a pending launch id found in the
// provisioner's records is done and is not resent; one not found stays
// pending and is resent with the same id on the next tick (the provisioner
// dedupes it if it did arrive after all). No decision is taken before
// Recover has succeeded for every job.
func (c *Controller) Recover(ctx context.Context) error {
	for _, name := range c.names {
		if err := c.recoverJob(ctx, name); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.recovered = true
	c.mu.Unlock()
	return nil
}

func (c *Controller) recoverJob(ctx context.Context, name string) error {
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
	known := map[string]bool{}
	for _, inst := range st.Instances {
		known[inst.LaunchID] = true
	}
	var still []ctlstore.Launch
	for _, l := range pending {
		if known[l.LaunchID] {
			if err := c.cfg.Store.SetLaunchState(ctx, l.LaunchID, ctlstore.LaunchDone, "found in provisioner records after restart"); err != nil {
				return fmt.Errorf("recover job %s: %w", name, err)
			}
			continue
		}
		still = append(still, l)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pools[name]
	p.pending = still
	for _, inst := range st.Instances {
		if inst.Job == name {
			c.applyInstanceLocked(p, inst)
		}
	}
	var gone []string
	for id, since := range drains {
		if w, ok := p.workers[id]; ok && !w.state.Terminal() {
			w.drainingSince = since
		} else {
			gone = append(gone, id)
		}
	}
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
		p := c.pools[name]
		wg.Go(func() { c.jobLoop(ctx, p) })
	}
	wg.Wait()
	return ctx.Err()
}

// jobLoop runs p's decision rounds every Tick and on its trigger.
func (c *Controller) jobLoop(ctx context.Context, p *pool) {
	t := c.cfg.Clock.NewTicker(c.cfg.Tick)
	defer t.Stop()
	for {
		c.round(ctx, p)
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		case <-p.trigger:
		}
	}
}

// round runs one decision round of p and logs its failure.
func (c *Controller) round(ctx context.Context, p *pool) {
	if err := c.tickJob(ctx, p); err != nil {
		c.cfg.Log.Warn("decision round failed", "job", p.job.Name, "err", redact.String(err.Error()))
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
	for _, p := range c.pools {
		p.poke()
	}
}

func (p *pool) poke() {
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

// Tick runs one decision round for every job, at once, and returns when
// all are done. A failing job is logged and does not stop the others.
func (c *Controller) Tick(ctx context.Context) {
	var wg sync.WaitGroup
	for _, name := range c.names {
		p := c.pools[name]
		wg.Go(func() { c.round(ctx, p) })
	}
	wg.Wait()
}

func (c *Controller) tickJob(ctx context.Context, p *pool) error {
	if ctx.Err() != nil {
		return nil
	}
	c.mu.Lock()
	job := p.job
	ready := c.recovered && !c.frozen
	c.mu.Unlock()
	if !ready {
		return nil
	}
	depth, source := c.readDepth(ctx, job)
	c.act.RLock()
	defer c.act.RUnlock()
	p.acting.Lock()
	defer p.acting.Unlock()
	if err := c.flushLaunches(ctx, p); err != nil {
		return err
	}
	c.mu.Lock()
	if c.frozen {
		c.mu.Unlock()
		return nil
	}
	now := c.cfg.Clock.Now()
	p.depth, p.source = depth, source
	snap := c.snapshotLocked(p, now)
	c.prune(p, now)
	c.mu.Unlock()

	d := decision.Run(ctx, p.engine, snap)
	c.mu.Lock()
	d = holdLaunches(p, d, now)
	c.mu.Unlock()
	if len(d.Actions) == 0 && p.last != nil && p.last.Reason == d.Reason && p.lastTarget == d.Target && p.lastError == d.Error {
		// Holding (or failing) for the same reason is not news; history
		// stays readable.
		return nil
	}
	return c.apply(ctx, p, d, now)
}

// snapshotLocked builds the engine's input from the pool's view.
func (c *Controller) snapshotLocked(p *pool, now time.Time) decision.Snapshot {
	s := decision.Snapshot{
		Pool: p.job.Name, Now: now, Queue: p.job.Queue.Name,
		Depth: p.depth, Source: p.source, LastScaleAt: p.lastScaleAt,
		Instances: make([]decision.Instance, 0, len(p.workers)),
	}
	for _, l := range p.pending {
		s.PendingLaunches += l.Count
	}
	for _, w := range p.workers {
		s.Instances = append(s.Instances, decision.Instance{
			ID: w.id, State: w.state, Health: c.health(p, w, now),
			Busy: w.busy, LaunchedAt: w.launchedAt, DrainingSince: w.drainingSince,
		})
	}
	// Map order is random; engines break ties by id, but a stable order
	// keeps persisted snapshots and reasons reproducible.
	slices.SortFunc(s.Instances, func(a, b decision.Instance) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return s
}

func (c *Controller) health(p *pool, w *worker, now time.Time) nightshift.Health {
	since := w.stateSince
	// Timers start no earlier than our own start, or every worker looks
	// missing right after a restart.
	if since.Before(c.started) && w.state == nightshift.StateRunning {
		since = c.started
	}
	hb := w.lastHeartbeat
	return decision.Assess(decision.InstanceView{
		ID: w.id, State: w.state, StateSince: since, LastHeartbeat: hb,
		FailedTasks: w.failedTasks, HeartbeatError: w.heartbeatError,
	}, now, p.job.Health)
}

func (c *Controller) prune(p *pool, now time.Time) {
	for id, w := range p.workers {
		if w.state.Terminal() && now.Sub(w.stateSince) > terminalKeep {
			delete(p.workers, id)
		}
	}
}

// apply persists d with its reason, then executes its actions. Launch ids
// are written in the same transaction as the decision, before any launch is
// sent.
func (c *Controller) apply(ctx context.Context, p *pool, d decision.Decision, now time.Time) error {
	job := p.job
	var launches []ctlstore.PendingLaunch
	for _, a := range d.Actions {
		if l, ok := a.(decision.Launch); ok {
			spec, err := json.Marshal(provisioner.EngineSpec{Deployable: l.Spec.Deployable, Site: l.Spec.Site, Allocation: l.Spec.Allocation, Vars: l.Spec.Vars})
			if err != nil {
				return fmt.Errorf("job %s: encode launch spec: %w", job.Name, err)
			}
			launches = append(launches, ctlstore.PendingLaunch{Count: l.Count, Spec: spec})
		}
	}
	rec := ctlstore.Decision{Time: now, Job: job.Name, Engine: d.Engine, Reason: d.Reason, Target: d.Target, Scaled: d.Scaled, Error: d.Error}
	idFor := func(seq int64, i int) string { return LaunchID(job.Name, c.epoch, seq, i) }
	seq, ids, err := c.cfg.Store.RecordDecision(ctx, rec, launches, idFor, func(ids []string) (json.RawMessage, error) {
		return encodeActions(actionRecords(d.Actions, ids))
	})
	if err != nil {
		return err
	}
	c.cfg.Log.Info("decision", "job", job.Name, "seq", seq, "engine", d.Engine, "reason", d.Reason,
		"target", d.Target, "actions", len(d.Actions), "error", d.Error)
	c.mu.Lock()
	p.last = &LastDecision{Time: now, Reason: d.Reason}
	p.lastTarget, p.lastError = d.Target, d.Error
	for i, l := range launches {
		p.pending = append(p.pending, ctlstore.Launch{LaunchID: ids[i], Job: job.Name, Seq: seq, Count: l.Count, Spec: l.Spec, State: ctlstore.LaunchPending, Created: now})
	}
	if d.Scaled {
		p.lastScaleAt = now
	}
	c.mu.Unlock()
	if d.Scaled {
		if err := c.cfg.Store.SetLastScaleAt(ctx, job.Name, now); err != nil {
			return err
		}
	}
	var errs []error
	for _, a := range d.Actions {
		switch a := a.(type) {
		case decision.Terminate:
			errs = append(errs, c.terminate(ctx, p, a.IDs))
		case decision.Drain:
			errs = append(errs, c.drain(ctx, p, a, now))
		}
	}
	errs = append(errs, c.flushLaunches(ctx, p))
	return errors.Join(errs...)
}

func actionRecords(acts []decision.Action, launchIDs []string) []actionRecord {
	out := make([]actionRecord, 0, len(acts))
	li := 0
	for _, a := range acts {
		switch a := a.(type) {
		case decision.Launch:
			r := actionRecord{Type: "launch", Count: a.Count, Reason: a.Reason}
			if li < len(launchIDs) {
				r.LaunchID = launchIDs[li]
			}
			li++
			out = append(out, r)
		case decision.Terminate:
			out = append(out, actionRecord{Type: "terminate", IDs: a.IDs, Reason: a.Reason})
		case decision.Drain:
			out = append(out, actionRecord{Type: "drain", IDs: a.IDs, Reason: a.Reason})
		}
	}
	return out
}

// flushLaunches sends every pending launch of p (again). A launch whose
// records are already in the view is settled without sending.
func (c *Controller) flushLaunches(ctx context.Context, p *pool) error {
	c.mu.Lock()
	if len(p.pending) == 0 {
		c.mu.Unlock()
		return nil
	}
	pending := slices.Clone(p.pending)
	seen := map[string]bool{}
	for _, w := range p.workers {
		seen[w.launchID] = true
	}
	c.mu.Unlock()
	var errs []error
	for _, l := range pending {
		if seen[l.LaunchID] {
			errs = append(errs, c.settle(ctx, p, l.LaunchID, ctlstore.LaunchDone, "instance records seen"))
			continue
		}
		req, err := launchRequest(p.job, l)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
		insts, err := c.cfg.Provisioner.Launch(cctx, req)
		cancel()
		switch {
		case err == nil:
			c.mu.Lock()
			for _, inst := range insts {
				c.applyInstanceLocked(p, inst)
			}
			c.mu.Unlock()
			c.cfg.Log.Info("launch sent", "job", l.Job, "launch_id", l.LaunchID, "count", l.Count, "instances", len(insts))
			errs = append(errs, c.settle(ctx, p, l.LaunchID, ctlstore.LaunchDone, ""))
		case c.cfg.RemoteRefused(err):
			c.cfg.Log.Warn("launch refused", "job", l.Job, "launch_id", l.LaunchID, "err", redact.String(err.Error()))
			errs = append(errs, c.settle(ctx, p, l.LaunchID, ctlstore.LaunchRefused, redact.String(err.Error())))
		default:
			// Unknown outcome: keep it pending (it counts toward the pool
			// size) and resend the same id next round.
			errs = append(errs, fmt.Errorf("job %s: launch %s: %w", l.Job, l.LaunchID, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Controller) settle(ctx context.Context, p *pool, launchID, state, note string) error {
	if err := c.cfg.Store.SetLaunchState(ctx, launchID, state, note); err != nil {
		return err
	}
	c.mu.Lock()
	p.pending = slices.DeleteFunc(p.pending, func(l ctlstore.Launch) bool { return l.LaunchID == launchID })
	c.mu.Unlock()
	return nil
}

func (c *Controller) terminate(ctx context.Context, p *pool, ids []string) error {
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	insts, err := c.cfg.Provisioner.Terminate(cctx, ids)
	cancel()
	c.mu.Lock()
	for _, inst := range insts {
		c.applyInstanceLocked(p, inst)
	}
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("job %s: terminate %v: %w", p.job.Name, ids, err)
	}
	return nil
}

func (c *Controller) drain(ctx context.Context, p *pool, a decision.Drain, now time.Time) error {
	var errs []error
	for _, id := range a.IDs {
		if c.cfg.Drainer == nil {
			errs = append(errs, fmt.Errorf("job %s: drain %s: no drainer configured", p.job.Name, id))
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
		err := c.cfg.Drainer.Drain(cctx, p.job.Name, id, a.Reason)
		cancel()
		if err != nil {
			// Not marked draining, so the next decision picks a victim again.
			errs = append(errs, fmt.Errorf("job %s: drain %s: %w", p.job.Name, id, err))
			continue
		}
		if err := c.cfg.Store.SetDraining(ctx, p.job.Name, id, now); err != nil {
			errs = append(errs, err)
		}
		c.mu.Lock()
		if w, ok := p.workers[id]; ok && w.drainingSince.IsZero() {
			w.drainingSince = now
		}
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}

// HandleInstance applies a provisioner instance record or event. Stale or
// duplicate states are ignored (the ladder only moves forward).
func (c *Controller) HandleInstance(inst provisioner.Instance) {
	c.mu.Lock()
	p, ok := c.pools[inst.Job]
	changed := false
	if ok {
		changed = c.applyInstanceLocked(p, inst)
	}
	c.mu.Unlock()
	if changed {
		p.poke()
	}
}

func (c *Controller) applyInstanceLocked(p *pool, inst provisioner.Instance) bool {
	since := inst.Updated
	if since.IsZero() {
		since = c.cfg.Clock.Now()
	}
	w, ok := p.workers[inst.ID]
	if !ok {
		launched := inst.Created
		if launched.IsZero() {
			launched = since
		}
		p.workers[inst.ID] = &worker{id: inst.ID, launchID: inst.LaunchID, host: inst.Host, state: inst.State, stateSince: since, launchedAt: launched}
		// First seen already failed: the launch itself failed (a refusal comes
		// back in the launch reply). Old failures read at recovery are older
		// than any back-off and only lengthen the next one a little.
		if inst.State == nightshift.StateFailed && c.cfg.Clock.Now().Sub(since) < 5*time.Minute {
			p.launchFailures++
			p.lastLaunchFailure = since
			p.launchFailReason = inst.Reason
		}
		return true
	}
	if inst.Host != "" {
		w.host = inst.Host
	}
	if w.state == inst.State || !w.state.CanMoveTo(inst.State) {
		return false
	}
	switch {
	case inst.State == nightshift.StateRunning:
		p.launchFailures = 0
	case inst.State == nightshift.StateFailed && w.state.Rank() < nightshift.StateRunning.Rank():
		p.launchFailures++
		p.lastLaunchFailure = since
		p.launchFailReason = inst.Reason
	}
	w.state, w.stateSince = inst.State, since
	return true
}

// IngestHeartbeat records a sitter heartbeat, timed by the controller's
// clock (hosts' clocks may be skewed). Heartbeats from instances the view
// does not know yet are dropped: the next one, after the launch reply or
// instance event, is not.
func (c *Controller) IngestHeartbeat(hb sitter.Heartbeat) {
	now := c.cfg.Clock.Now()
	busy, restarts := false, 0
	var failed []string
	for _, t := range hb.Tasks {
		if t.State == sitter.StateRunning && t.Work == sitter.WorkBusy {
			busy = true
		}
		if t.State == sitter.StateFailed {
			failed = append(failed, t.Name)
		}
		restarts += t.Restarts
	}
	c.mu.Lock()
	p, ok := c.pools[hb.Job]
	if !ok {
		c.mu.Unlock()
		return
	}
	w, ok := p.workers[hb.InstanceID]
	if !ok {
		c.mu.Unlock()
		return
	}
	// Only a change the engine would act on wakes the loop; steady
	// heartbeats wait for the tick.
	changed := w.lastHeartbeat.IsZero() || w.busy != busy || len(w.failedTasks) != len(failed)
	w.lastHeartbeat, w.busy, w.failedTasks, w.restarts = now, busy, failed, restarts
	if hb.Host != "" {
		w.host = hb.Host
	}
	c.mu.Unlock()
	if changed {
		p.poke()
	}
}

// Reconfigure applies a partial policy update to a job through its
// engine's Reconfigure and records who asked. A bad value is refused with
// the engine's error and the old configuration stays in force.
func (c *Controller) Reconfigure(ctx context.Context, job string, values map[string]any, who string) error {
	c.mu.Lock()
	p, ok := c.pools[job]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("reconfigure job %q: unknown job", job)
	}
	what, err := json.Marshal(values)
	if err != nil {
		return fmt.Errorf("reconfigure job %s: encode values: %w", job, err)
	}
	rec := ctlstore.Reconfiguration{Time: c.cfg.Clock.Now(), Job: job, Who: who, What: what}
	c.act.RLock()
	defer c.act.RUnlock()
	p.acting.Lock()
	defer p.acting.Unlock()
	rerr := p.engine.Reconfigure(values)
	if rerr != nil {
		rec.Error = rerr.Error()
	}
	pol, err := json.Marshal(p.engine.Config())
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
	p.poke()
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
func (c *Controller) Decisions(ctx context.Context, job string, limit int) ([]ctlstore.Decision, error) {
	c.mu.Lock()
	_, ok := c.pools[job]
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("decisions of job %q: unknown job", job)
	}
	return c.cfg.Store.Decisions(ctx, job, limit)
}

// Status reports one job (or every job when job is empty) in the shape of
// mgmt.JobStatus.
func (c *Controller) Status(job string) ([]JobStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := c.names
	if job != "" {
		if _, ok := c.pools[job]; !ok {
			return nil, fmt.Errorf("status of job %q: unknown job", job)
		}
		names = []string{job}
	}
	now := c.cfg.Clock.Now()
	out := make([]JobStatus, 0, len(names))
	for _, n := range names {
		p := c.pools[n]
		js := JobStatus{
			Name: n, Engine: p.job.Engine, Policy: redactPolicy(p.engine.Config()), Desired: p.lastTarget,
			Counts: map[string]int{}, QueueDepth: p.depth, QueueSource: string(p.source),
			LastDecision: p.last, Workers: []WorkerStatus{}, Frozen: c.frozen,
		}
		for _, l := range p.pending {
			js.Counts["pending_launch"] += l.Count
		}
		ids := slices.Sorted(maps.Keys(p.workers))
		for _, id := range ids {
			w := p.workers[id]
			h := c.health(p, w, now)
			js.Counts[string(w.state)]++
			if w.state.Terminal() {
				continue
			}
			if !w.drainingSince.IsZero() {
				js.Counts["draining"]++
			}
			ws := WorkerStatus{ID: id, State: string(w.state), Health: string(h), Host: w.host, Restarts: w.restarts}
			if !w.lastHeartbeat.IsZero() {
				age := now.Sub(w.lastHeartbeat).Seconds()
				ws.HeartbeatAgeS = &age
			}
			js.Workers = append(js.Workers, ws)
		}
		out = append(out, js)
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
