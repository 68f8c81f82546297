package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift/decision"
	"nightshift/internal/backoff"
	"nightshift/internal/redact"
	"nightshift/provisioner"
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
	// Link tells whether the controller has its bus; nil means always.
	// While it has not, rounds are skipped, and workers whose silence
	// spans the outage are given time to be heard again afterwards.
	Link  Link
	Clock clockwork.Clock
	Log   *slog.Logger
	// Tick is the decision period (default 1s); CallTimeout bounds each
	// provisioner, drain and depth call (default 10s).
	Tick        time.Duration
	CallTimeout time.Duration
	// ResyncEvery is how often the instance view is refreshed from the
	// provisioner's records (default 30s).
	ResyncEvery time.Duration
	// AwaitBind makes Run recover only once the bus adapter has bound the
	// instance subscription (Bound): a read of the provisioner's records
	// made after the bind is the one Recover needs and the one the bind
	// needs, where recovering first read every record twice at start (at
	// 10,000 instances, time a standby taking over spends before its
	// first decision). Set it only when something calls Bound
	// (ctlbus.Server does), or Run waits for ever.
	AwaitBind bool
	// RemoteRefused reports whether a provisioner error is a definite
	// refusal (never resend) rather than a transport failure. nil means
	// errors.Is(err, ErrRefused).
	RemoteRefused func(error) bool
	// SampleEvery is how often each job's history is sampled (default
	// 1s); samples older than ThinAfter (default 1h) are thinned to one
	// per ThinEvery (default 1m), and dropped after Keep (default a week).
	SampleEvery, ThinAfter, ThinEvery, Keep time.Duration
	// Observer is told of samples and decisions (metrics); nil for none.
	Observer Observer
	// ReconfigureAlerts applies `mgmt reconfigure RUN @alerts ...`
	// (AlertsJob); nil refuses it.
	ReconfigureAlerts func(values map[string]any) error
}

// Link is the controller's view of its own connection to the bus.
type Link interface {
	Connected() bool
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

	mu        sync.Mutex // guards frozen, recovered, binds and every job's pool
	frozen    bool
	recovered bool
	// binds counts the instance subscription's binds (Bound), so that a
	// Recover whose reads began before one knows it must read again.
	binds     uint64
	firstBind chan struct{} // closed by the first Bound
	bindOnce  sync.Once
	// provGen is bumped whenever the provisioner may have changed unseen
	// (Bound: the controller was not listening): every job's
	// revisionAcks and sentHealth of an older generation count for
	// nothing.
	provGen atomic.Uint64
	names   []string
	jobs    map[string]*job
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
	// savedSilent is the pool's SilentState as the store holds it; a round
	// that changes it stores it (saveSilent). Guarded by acting.
	savedSilent SilentState
	// rev is the worker-spec revision in force, whose spec def holds: new
	// launches are of it. Changed under acting.
	rev Revision
	// rollout is the job's latest rollout (nil: none); guarded by
	// Controller.mu, changed under acting.
	rollout *Rollout
	// sentHealth is the judgement of the job's workers the provisioner
	// last accepted (healthSent: any), while the controller's view of it
	// was at generation healthGen (Controller.provGen); a round sends it
	// again only when it changed or the generation moved on (a bind: the
	// provisioner may be a replacement on a fresh store, which would
	// otherwise not hear of the workers' health until it changed).
	// Guarded by acting; empty after a restart, so a restarted controller
	// tells it once more.
	sentHealth provisioner.HealthBody
	healthSent bool
	healthGen  uint64
	// acks are the revisions the provisioner acknowledged (Revise), which
	// launches need not hand over again. Guarded by acting.
	acks revisionAcks
	// revs caches the job's stored revisions by number (a revision's
	// number, digest and spec never change), for launches that name one
	// other than rev. Guarded by acting.
	revs map[int]Revision
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
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = DefaultSampleEvery
	}
	if cfg.ThinAfter <= 0 {
		cfg.ThinAfter = DefaultThinAfter
	}
	if cfg.ThinEvery <= 0 {
		cfg.ThinEvery = DefaultThinEvery
	}
	if cfg.Keep <= 0 {
		cfg.Keep = DefaultKeep
	}
	if cfg.RemoteRefused == nil {
		cfg.RemoteRefused = func(err error) bool { return errors.Is(err, ErrRefused) }
	}
	c := &Controller{cfg: cfg, started: cfg.Clock.Now(), jobs: map[string]*job{}, firstBind: make(chan struct{})}
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
	jb := &job{def: j, engine: e, pool: NewPool(j, c.started), trigger: make(chan struct{}, 1), revs: map[int]Revision{}}
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
		// Unchanged, so its workers would still be silent: the block,
		// or the count towards it, goes on where it was.
		jb.pool.RestoreSilent(rec.Silent)
		jb.savedSilent = rec.Silent
	case err == nil:
		// An edited job (a fixed sitter URL, say) starts its count
		// afresh; the first round stores the zero state over the old.
		jb.savedSilent = rec.Silent
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
	if err := c.openRevision(ctx, jb); err != nil {
		return nil, err
	}
	// A rollout in progress resumes where it was: its target revision is
	// the one openRevision found in force.
	switch r, err := c.cfg.Store.Rollout(ctx, j.Name); {
	case err == nil:
		jb.rollout = &r
		if r.Active() {
			c.cfg.Log.Info("rollout resumes", "job", j.Name, "phase", r.Phase, "from", r.From, "to", r.To)
		}
	case !errors.Is(err, ErrNotFound):
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

// Simulated reports whether job is one of the controller's jobs whose
// workers are simulated (driver "sim"), whose heartbeats the run's
// simulator identity may send.
func (c *Controller) Simulated(job string) bool {
	j, ok := c.jobs[job]
	return ok && j.def.Driver == DriverSim
}

// Jobs returns the names of the controller's jobs, sorted.
func (c *Controller) Jobs() []string { return slices.Clone(c.names) }

// Recover rebuilds every job's instance view from the provisioner and
// settles launches recorded before a crash: a pending launch id found in the
// provisioner's records is done and is not resent; one not found stays
// pending and is resent with the same id on the next tick (the provisioner
// dedupes it if it did arrive after all). No decision is taken before
// Recover has succeeded for every job. Its reads of the records stand for
// the reread a bind of the instance subscription asks for (Bound) when
// they began after it; when a bind came while they were under way, they
// are read again.
func (c *Controller) Recover(ctx context.Context) error {
	c.mu.Lock()
	binds := c.binds
	c.mu.Unlock()
	for _, name := range c.names {
		if err := c.recoverJob(ctx, c.jobs[name]); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.recovered = true
	now := c.cfg.Clock.Now()
	for _, j := range c.jobs {
		j.pool.Listening(now)
	}
	again := c.binds != binds
	c.mu.Unlock()
	if again {
		c.resync(ctx)
	}
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
	j.pool.dnsProblem = st.DNSProblem
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
	if c.cfg.AwaitBind && len(c.names) > 0 {
		c.cfg.Log.Info("waiting for the instance subscription before reading the provisioner's records")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.firstBind:
		}
	}
	retry := backoff.Backoff{Policy: backoff.Policy{Initial: c.cfg.Tick, Max: 30 * time.Second}}
	for {
		err := c.Recover(ctx)
		if err == nil {
			break
		}
		delay := retry.Next()
		c.cfg.Log.Warn("recover failed; retrying", "err", redact.String(err.Error()), "in", delay)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.cfg.Clock.After(delay):
		}
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
	wg.Go(func() { c.sampleLoop(ctx) })
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

// Resync rereads every job's instance records from the provisioner and
// applies what changed, as if the events had arrived. Events are best
// effort: one published while the controller was not subscribed (a
// standby taking over, a reconnect) is lost, so each bind of the instance
// subscription rereads them (Bound), and Run does every ResyncEvery. A
// worker that died meanwhile is then replaced at once, not after
// missing_timeout of silence. Failures are logged; the next resync covers
// them.
func (c *Controller) Resync(ctx context.Context) { c.resync(ctx) }

// Bound is what the bus adapter calls each time its instance subscription
// is bound (at start, after a standby took over, after a reconnect): an
// event published before that reached nobody, so the records are read
// again, at once, unless Recover is still to read them (it reads them
// again itself when this bind came while it was reading). A provisioner
// the controller could not hear may also have been replaced meanwhile, so
// which revisions it was handed and which health it was told are
// forgotten: the next launch of each hands its revision over again, and
// the next round of each job with DNS tells it its workers' health.
func (c *Controller) Bound(ctx context.Context) {
	c.provGen.Add(1)
	c.mu.Lock()
	c.binds++
	recovered := c.recovered
	c.mu.Unlock()
	c.bindOnce.Do(func() { close(c.firstBind) })
	if recovered {
		c.resync(ctx)
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
		c.mu.Lock()
		c.jobs[name].pool.dnsProblem = st.DNSProblem
		c.mu.Unlock()
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

// openRevision settles the job's spec revision in force at start
// (StartRevision), stores what that changes, and makes its spec the
// job's.
func (c *Controller) openRevision(ctx context.Context, jb *job) error {
	j := jb.def
	revs, err := c.cfg.Store.Revisions(ctx, j.Name)
	if err != nil {
		return err
	}
	cur, writes, err := StartRevision(j.Name, revs, SpecOf(j), c.cfg.Clock.Now())
	if err != nil {
		return err
	}
	for _, r := range writes {
		if err := c.cfg.Store.PutRevision(ctx, r); err != nil {
			return err
		}
		c.cfg.Log.Info("job revision", "job", j.Name, "revision", r.Number, "digest", r.Digest, "who", r.Who, "outcome", r.Outcome)
	}
	for _, r := range append(revs, writes...) {
		jb.revs[r.Number] = r
	}
	spec, err := SpecOfRevision(cur)
	if err != nil {
		return err
	}
	jb.def.Driver, jb.def.Instance, jb.def.Worker = spec.Driver, spec.Instance, spec.Worker
	jb.rev = cur
	jb.pool.SetRevision(cur)
	return nil
}
