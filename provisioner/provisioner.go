package provisioner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift"
	"nightshift/internal/envelope"
	"nightshift/internal/jobspec"
	"nightshift/internal/redact"
)

// Config wires a Provisioner. Driver and Store are required.
type Config struct {
	// Run names the deployment; it is passed to the driver and scopes
	// ownership markers.
	Run    string
	Driver Driver
	Store  Store
	Events Events // nil: state changes are only logged and stored
	// Jobs are the run's worker specs by job, from the plan (jobspec.Load).
	// A launch names a job and the digest of its spec; the spec the
	// driver gets is built from here, never taken from the request.
	Jobs  map[string]jobspec.Spec
	Log   *slog.Logger
	Clock clockwork.Clock

	MaxLaunches     int           // concurrent driver launches; default 8
	MaxTerminations int           // concurrent driver terminations; default 8
	CallTimeout     time.Duration // deadline of every driver call; default 2m
	ReconcileEvery  time.Duration // periodic reconcile; default 30s, negative: only at start
	RetryDelay      time.Duration // before retrying a failed termination; default 5s
	// Observer is told of every state change once it is recorded
	// (metrics); nil for none.
	Observer Observer
	// DNS is the zone of each job with a dns table (Jobs[job].DNS); jobs
	// without one get no records. Jobs sharing a zone share one value.
	DNS map[string]DNSZone
}

// Observer is told of each recorded state change of an instance, with the
// state it left ("" for a new record). It must not block.
type Observer interface {
	InstanceChanged(inst Instance, from nightshift.InstanceState)
}

// DNSObserver is an Observer that is also told how each DNS sync went
// (nil: it worked), so a failing one shows beside the log (metrics). It
// must not block.
type DNSObserver interface {
	DNSSynced(err error)
}

// defaultReconcileEvery is also the two-list rule's gap when periodic
// reconciles are off.
const defaultReconcileEvery = 30 * time.Second

// Provisioner owns instance records and drives the Driver to match them.
type Provisioner struct {
	cfg     Config
	log     *slog.Logger
	clock   clockwork.Clock
	events  Events
	launchQ *queue
	termQ   *queue

	// commits group-commits transitions and serialises each
	// read-check-write of a record, so that two concurrent transitions of
	// one instance cannot both win (batch.go).
	commits committer
	// eventQ publishes recorded changes off the recording path (batch.go).
	eventQ eventQueue
	// launches caches launch records, which never change once written:
	// every instance of a burst needs its launch's spec.
	launchMu sync.Mutex
	launches map[string]Launch
	// gate makes TerminateAll wait for launches that already checked the
	// disabled flag, so none slips past it unterminated.
	gate sync.RWMutex

	idleMu  sync.Mutex
	changed chan struct{}

	ready     chan struct{}
	readyOnce sync.Once

	// digests of cfg.Jobs, computed once: every launch compares one.
	digests map[string]string
	// revised caches the revisions handed over by Revise, by job and
	// digest, at most maxRevisions per job. The Store keeps them all: a
	// launch naming one the cache lacks (after a restart, or on a standby
	// that took over) reads it from there.
	revMu   sync.Mutex
	revised map[string]map[string]revisedSpec

	// reconMu serialises reconciles; missedSince is the two-list rule's
	// memory (ConfirmDisappeared).
	reconMu     sync.Mutex
	missedSince map[string]time.Time

	// nameMu serialises choosing DNS names with recording them; dnsMu
	// serialises syncing the zones.
	nameMu, dnsMu sync.Mutex
	// dnsReqMu guards dnsDirty (a change awaits an incremental sync) and
	// dnsRunning (a caller of syncDNSSoon is syncing): syncDNSSoon.
	dnsReqMu             sync.Mutex
	dnsDirty, dnsRunning bool
	// dnsErr is the last DNS sync's error, for DNSProblem.
	dnsErrMu sync.Mutex
	dnsErr   string
	// mu keeps SetHealth's write out of the committer's read-apply-write
	// (batch.go), which holds it throughout. healthMu serialises
	// SetHealth's own read-check-write.
	mu, healthMu sync.Mutex

	// stopMu guards stopLaunch: ids recorded terminating or ended while
	// waiting for a driver slot, whose launch is skipped (an instance
	// terminated before it ever started need not start).
	stopMu     sync.Mutex
	stopLaunch map[string]bool
}

// limits bound a dispatcher: window holds a token per id taken from its
// queue and not yet done, slots one per driver call under way.
type limits struct {
	window, slots chan struct{}
}

func (l *limits) acquire() { l.slots <- struct{}{} }
func (l *limits) release() { <-l.slots }
func (l *limits) done()    { <-l.window }

// New checks cfg and returns a Provisioner; call Run to start its workers.
func New(cfg Config) (*Provisioner, error) {
	if cfg.Driver == nil || cfg.Store == nil {
		return nil, errors.New("new provisioner: Driver and Store are required")
	}
	if cfg.Run == "" {
		return nil, errors.New("new provisioner: Run is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Events == nil {
		cfg.Events = noEvents{}
	}
	if cfg.MaxLaunches <= 0 {
		cfg.MaxLaunches = 8
	}
	if cfg.MaxTerminations <= 0 {
		cfg.MaxTerminations = 8
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 2 * time.Minute
	}
	if cfg.ReconcileEvery == 0 {
		cfg.ReconcileEvery = defaultReconcileEvery
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 5 * time.Second
	}
	digests := make(map[string]string, len(cfg.Jobs))
	for name, js := range cfg.Jobs {
		if err := ValidJob(name); err != nil {
			return nil, fmt.Errorf("new provisioner: %w", err)
		}
		d, err := js.Digest()
		if err != nil {
			return nil, fmt.Errorf("new provisioner: job %s: %w", name, err)
		}
		digests[name] = d
		if (js.DNS == nil) != (cfg.DNS[name] == nil) {
			return nil, fmt.Errorf("new provisioner: job %s: a dns table needs its zone in Config.DNS, and only then", name)
		}
	}
	p := &Provisioner{
		launches:   map[string]Launch{},
		stopLaunch: map[string]bool{},
		digests:    digests,
		revised:    map[string]map[string]revisedSpec{},
		cfg:        cfg,
		log:        cfg.Log.With("component", "provisioner", "run", cfg.Run, "driver", cfg.Driver.Name()),
		clock:      cfg.Clock,
		events:     cfg.Events,
		launchQ:    newQueue(),
		termQ:      newQueue(),
		changed:    make(chan struct{}),
		ready:      make(chan struct{}),
	}
	p.eventQ.space.L = &p.eventQ.mu
	return p, nil
}

// Run reconciles once, then launches and terminates queued instances and
// reconciles periodically until ctx ends. In-flight driver calls are allowed
// to finish (within CallTimeout) rather than being cancelled, because a
// cancelled launch would be recorded as failed. Call Run once.
func (p *Provisioner) Run(ctx context.Context) error {
	if err := p.Reconcile(ctx); err != nil {
		// Not fatal: the periodic reconcile retries, and requests still work.
		p.log.Error("reconcile at start-up failed", "err", err)
	}
	p.readyOnce.Do(func() { close(p.ready) })
	var wg sync.WaitGroup
	work := context.WithoutCancel(ctx)
	// dispatch hands queued ids to do in batches of up to maxBatch, with
	// at most maxBatch (or n, if larger) taken and not yet done: a burst
	// is taken, recorded and driven together, in a few commits rather
	// than one per instance. do calls the driver under lim's n slots,
	// then q.Done and lim.done for each id.
	dispatch := func(q *queue, n int, do func(context.Context, []string, *limits)) {
		defer wg.Done()
		lim := &limits{window: make(chan struct{}, max(n, maxBatch)), slots: make(chan struct{}, n)}
		for {
			select {
			case lim.window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			held := 1
		more:
			for held < maxBatch {
				select {
				case lim.window <- struct{}{}:
					held++
				default:
					break more
				}
			}
			ids, ok := q.GetBatch(ctx, held)
			for range held - len(ids) {
				lim.done()
			}
			if !ok {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				do(work, ids, lim)
			}()
		}
	}
	if w, ok := p.cfg.Driver.(ExitWatcher); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case e := <-w.Exits():
					// Cleaning up after an exit waits out a grace period;
					// the next exit must not wait behind it.
					wg.Add(1)
					go func() {
						defer wg.Done()
						p.instanceExited(work, e)
					}()
				}
			}
		}()
	}
	wg.Add(2)
	go dispatch(p.launchQ, p.cfg.MaxLaunches, p.launchBatch)
	go dispatch(p.termQ, p.cfg.MaxTerminations, p.terminateBatch)
	if p.cfg.ReconcileEvery > 0 {
		t := p.clock.NewTicker(p.cfg.ReconcileEvery)
		defer t.Stop()
		for done := false; !done; {
			select {
			case <-ctx.Done():
				done = true
			case <-t.Chan():
				if err := p.Reconcile(ctx); err != nil && ctx.Err() == nil {
					p.log.Error("periodic reconcile failed", "err", err)
				}
			}
		}
	} else {
		<-ctx.Done()
	}
	wg.Wait()
	return nil
}

// instanceExited records an instance whose process ended on its own as
// failed. An exit the provisioner caused (the record is already
// terminating) is not news: terminateOne records that one.
func (p *Provisioner) instanceExited(ctx context.Context, e Exit) {
	// Exits come in bursts (a rack, a kill of 10%): concurrent ones share
	// one ledger commit.
	r := p.transitionMany(ctx, []step{{id: e.ID, next: nightshift.StateFailed, reason: "exited: " + e.Reason,
		when: func(cur Instance) bool {
			return cur.State.Live() && cur.State.Rank() < nightshift.StateTerminating.Rank()
		}}})[0]
	if errors.Is(r.err, ErrNotFound) {
		p.log.Warn("exit of an unknown instance", "instance", e.ID, "reason", e.Reason, "err", r.err)
		return
	}
	if r.err != nil {
		p.log.Error("record instance exit", "instance", e.ID, "err", r.err)
		p.notify()
		return
	}
	if !r.changed {
		return
	}
	p.notify()
	// The instance's leader (a local sitter) is gone, but what it started
	// may not be: a task runs in its own process group and an idle worker
	// never writes to the dead sitter's pipes, so it would run on,
	// unsupervised and still taking work, until a reconcile found it.
	// Terminating the ended instance now kills what is left of it; on an
	// instance with nothing left it finds nothing.
	p.driverTerminate(ctx, e.ID, "clean up after its exit")
}

// Ready is closed once Run has finished its start-up reconcile, so that
// what it queued is visible to Idle.
func (p *Provisioner) Ready() <-chan struct{} { return p.ready }

// notify wakes WaitIdle callers.
func (p *Provisioner) notify() {
	p.idleMu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.idleMu.Unlock()
}

// Idle reports whether no launch or termination is queued or in progress
// and every recorded change has been published.
func (p *Provisioner) Idle() bool {
	return p.launchQ.Len() == 0 && p.termQ.Len() == 0 && p.eventsPending() == 0
}

// WaitIdle blocks until Idle or ctx ends; tests and benchmarks use it.
func (p *Provisioner) WaitIdle(ctx context.Context) error {
	for {
		p.idleMu.Lock()
		ch := p.changed
		p.idleMu.Unlock()
		if p.Idle() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for idle provisioner: %w", ctx.Err())
		case <-ch:
		}
	}
}

// LaunchRequest asks for Count instances of Job. LaunchID is the
// idempotency key. SpecDigest is the jobspec.Spec.Digest of the job's spec
// as the sender knows it; the provisioner launches its own copy of that
// spec and refuses the request when the digests differ. Engine is the
// decision engine's launch metadata, passed to the instance under "engine".
type LaunchRequest struct {
	LaunchID   string      `json:"launch_id"`
	Job        string      `json:"job"`
	Count      int         `json:"count"`
	SpecDigest string      `json:"spec_digest"`
	Engine     *EngineSpec `json:"engine,omitempty"`
}

// EngineSpec is what an engine says about a launch (decision.LaunchSpec):
// labels for the instance, never a command.
type EngineSpec struct {
	Deployable string            `json:"deployable,omitempty"`
	Site       string            `json:"site,omitempty"`
	Allocation string            `json:"allocation,omitempty"`
	Vars       map[string]string `json:"vars,omitempty"`
}

// Limits of EngineSpec.
const (
	maxEngineValue = 1024
	maxEngineVars  = 64
)

var specDigest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Validate names the first bad field; the error is an
// *envelope.FieldError so a decoder can report type and field.
func (r LaunchRequest) Validate() error {
	if err := ValidLaunchID(r.LaunchID); err != nil {
		return &envelope.FieldError{Field: "launch_id", Reason: err.Error()}
	}
	if err := ValidJob(r.Job); err != nil {
		return &envelope.FieldError{Field: "job", Reason: err.Error()}
	}
	if r.Count < 1 || r.Count > MaxCount {
		return &envelope.FieldError{Field: "count", Reason: fmt.Sprintf("%d: want 1..%d", r.Count, MaxCount)}
	}
	if !specDigest.MatchString(r.SpecDigest) {
		return &envelope.FieldError{Field: "spec_digest", Reason: "want sha256: and 64 lower-case hex digits (jobspec.Spec.Digest)"}
	}
	if e := r.Engine; e != nil {
		for k, v := range map[string]string{"deployable": e.Deployable, "site": e.Site, "allocation": e.Allocation} {
			if len(v) > maxEngineValue {
				return &envelope.FieldError{Field: "engine." + k, Reason: fmt.Sprintf("%d bytes, limit %d", len(v), maxEngineValue)}
			}
		}
		if len(e.Vars) > maxEngineVars {
			return &envelope.FieldError{Field: "engine.vars", Reason: fmt.Sprintf("%d vars, limit %d", len(e.Vars), maxEngineVars)}
		}
		for k, v := range e.Vars {
			if k == "" || len(k) > maxEngineValue || len(v) > maxEngineValue {
				return &envelope.FieldError{Field: "engine.vars", Reason: fmt.Sprintf("want names of 1..%d bytes and values of at most %d", maxEngineValue, maxEngineValue)}
			}
		}
	}
	return nil
}

// spec builds the driver's spec of req from the job's definition, refusing
// an unknown job or a digest that is not the definition's.
func (p *Provisioner) spec(ctx context.Context, req LaunchRequest) (json.RawMessage, error) {
	js, ok := p.cfg.Jobs[req.Job]
	if !ok {
		known := slices.Sorted(maps.Keys(p.cfg.Jobs))
		if len(known) == 0 {
			return nil, fmt.Errorf("launch %s: %w: field \"job\": unknown job %q: this provisioner holds no job definitions (start it with --jobs)", req.LaunchID, ErrInvalid, req.Job)
		}
		return nil, fmt.Errorf("launch %s: %w: field \"job\": unknown job %q: the run's jobs are %s", req.LaunchID, ErrInvalid, req.Job, strings.Join(known, ", "))
	}
	if digest := p.digests[req.Job]; digest != req.SpecDigest {
		rs, err := p.revision(ctx, req.Job, req.SpecDigest)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("launch %s: %w: field \"spec_digest\": job %s: spec digest %s is not the provisioner's %s nor a revision handed to it: the sender and the provisioner hold different definitions of the job (relaunch the plan so both read the same one)",
				req.LaunchID, ErrInvalid, req.Job, req.SpecDigest, p.digests[req.Job])
		}
		if err != nil {
			return nil, fmt.Errorf("launch %s: %w", req.LaunchID, err)
		}
		js = rs
	}
	var engine any
	if req.Engine != nil {
		engine = req.Engine
	}
	spec, err := js.LaunchSpec(engine)
	if err != nil {
		return nil, fmt.Errorf("launch %s: %w: job %s: %w", req.LaunchID, ErrInvalid, req.Job, err)
	}
	return spec, nil
}

// Launch records the request and its instances (write-ahead) and queues
// them for the driver. It returns the recorded instances at once; their
// progress is announced through Events. The same LaunchID again returns
// the first request's instances and starts nothing; reusing it with a
// different job or count is an error. While disabled (after TerminateAll)
// the instances are recorded as rejected. Instances the driver runs under a
// uid of their own (UIDPicker) that cannot be given one are recorded
// failed, never launched.
func (p *Provisioner) Launch(ctx context.Context, req LaunchRequest) ([]Instance, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("launch: %w: %w", ErrInvalid, err)
	}
	spec, err := p.spec(ctx, req)
	if err != nil {
		return nil, err
	}
	p.gate.RLock()
	defer p.gate.RUnlock()
	disabled, err := p.cfg.Store.Disabled(ctx)
	if err != nil {
		return nil, fmt.Errorf("launch %s: %w", req.LaunchID, err)
	}
	now := p.clock.Now().UTC()
	state, reason := nightshift.StateRequested, "launch requested"
	if disabled {
		state, reason = nightshift.StateRejected, "provisioner disabled by terminate_all; enable it first"
	}
	insts := make([]Instance, req.Count)
	for i := range insts {
		insts[i] = Instance{
			ID: InstanceID(req.Job, req.LaunchID, i), Job: req.Job, LaunchID: req.LaunchID, Index: i,
			Driver: p.cfg.Driver.Name(), State: state, Reason: reason, Created: now, Updated: now,
			History: []Change{{State: state, Reason: reason, Time: now}},
		}
	}
	l := Launch{LaunchID: req.LaunchID, Job: req.Job, Count: req.Count, Spec: spec, Created: now}
	// Names are chosen and recorded with the launch, before any record
	// is written (write-ahead, as for the instances themselves).
	p.nameMu.Lock()
	if err := p.assignDNSNames(ctx, req.Job, insts); err != nil {
		p.nameMu.Unlock()
		return nil, fmt.Errorf("launch %s: %w", req.LaunchID, err)
	}
	// A resend of a launch already recorded must not pick uids: the pick
	// takes claims, and with the range full would log a launch failure
	// that did not happen. CreateLaunch below finds the duplicate.
	_, err = p.cfg.Store.Launch(ctx, req.LaunchID)
	recorded := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		p.nameMu.Unlock()
		return nil, fmt.Errorf("launch %s: %w", req.LaunchID, err)
	}
	var pickErr error
	if !recorded {
		pickErr = p.assignUIDs(ctx, spec, insts)
	}
	if err := pickErr; err != nil {
		if !errors.Is(err, ErrUIDsExhausted) {
			// Transient (a store read, the claims directory, /proc, a
			// cancelled context): the launch is not recorded, and the
			// controller resends it.
			p.nameMu.Unlock()
			return nil, fmt.Errorf("launch %s: %w", req.LaunchID, err)
		}
		// Without a uid of its own an instance has no identity safe to run
		// its (untrusted) code under: it is recorded failed, with why, so
		// the controller counts a failed launch (and backs off) and the
		// operator sees the reason, instead of a launch answered with an
		// error the controller can only resend.
		failUnlaunched(insts, now, "launch failed: "+redact.String(err.Error()))
		p.log.Error("launch failed: no worker uids", "launch_id", req.LaunchID, "job", req.Job, "count", req.Count, "err", err)
	}
	existing, created, err := p.cfg.Store.CreateLaunch(ctx, l, insts)
	p.nameMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("launch %s: record: %w", req.LaunchID, err)
	}
	if !created {
		prev, err := p.cfg.Store.Launch(ctx, req.LaunchID)
		if err != nil {
			return nil, fmt.Errorf("launch %s: %w", req.LaunchID, err)
		}
		if prev.Job != req.Job || prev.Count != req.Count {
			return nil, fmt.Errorf("launch %s: %w: launch_id already used for job %s count %d", req.LaunchID, ErrInvalid, prev.Job, prev.Count)
		}
		p.log.Info("duplicate launch ignored", "launch_id", req.LaunchID, "job", req.Job)
		return existing, nil
	}
	for _, inst := range insts {
		p.logChange(inst, "")
		p.publish(ctx, inst)
		if inst.State == nightshift.StateRequested {
			p.launchQ.Add(inst.ID)
		}
	}
	return insts, nil
}

// Terminate moves the named instances to terminating and queues them.
// Unknown ids are reported in an error wrapping ErrNotFound after the known
// ones have been handled; instances already gone are returned as they are.
func (p *Provisioner) Terminate(ctx context.Context, ids []string) ([]Instance, error) {
	steps := make([]step, len(ids))
	for k, id := range ids {
		steps[k] = step{id: id, next: nightshift.StateTerminating, reason: "terminate requested"}
	}
	var out []Instance
	var missing []string
	var errs []error
	for k, r := range p.transitionMany(ctx, steps) {
		switch {
		case errors.Is(r.err, ErrNotFound):
			missing = append(missing, ids[k])
			continue
		case r.err != nil:
			errs = append(errs, fmt.Errorf("terminate %s: %w", ids[k], r.err))
			continue
		}
		if r.inst.State == nightshift.StateTerminating {
			p.termQ.Add(ids[k])
		}
		out = append(out, r.inst)
	}
	if len(errs) > 0 {
		return out, errors.Join(errs...)
	}
	if len(missing) > 0 {
		return out, fmt.Errorf("terminate: unknown instances %v: %w", missing, ErrNotFound)
	}
	return out, nil
}

// TerminateAll disables new launches, moves every live instance to
// terminating and queues it. It is idempotent; poll it (or Describe) until
// it reports no live instances. The moves are group-committed (maxBatch
// per transaction) and the driver calls run in the background, so the
// call returns in about the time of a few commits however large the run.
func (p *Provisioner) TerminateAll(ctx context.Context) (live int, err error) {
	p.gate.Lock()
	disabled, err := p.cfg.Store.Disabled(ctx)
	if err == nil && !disabled {
		// Only the first call writes the flag: mgmt polls terminate_all
		// until nothing is live, and at 10,000 workers every write of a
		// poll is one the terminations' own commits wait behind.
		err = p.cfg.Store.SetDisabled(ctx, true)
	}
	p.gate.Unlock()
	if err != nil {
		return 0, fmt.Errorf("terminate all: disable: %w", err)
	}
	recs, err := p.cfg.Store.Instances(ctx, Filter{LiveOnly: true})
	if err != nil {
		return 0, fmt.Errorf("terminate all: %w", err)
	}
	var steps []step
	for _, r := range recs {
		if r.State == nightshift.StateTerminating {
			// A repeated terminate_all (mgmt polls it) writes nothing
			// for what is already on its way out, and leaves alone a
			// termination under way: queued again, it would be handed
			// out and read once more when it ends. One that fails is
			// retried by terminateOne itself (and by reconcile).
			p.termQ.AddIdle(r.ID)
			continue
		}
		steps = append(steps, step{id: r.ID, next: nightshift.StateTerminating, reason: "terminate_all"})
	}
	var errs []error
	for _, r := range p.transitionMany(ctx, steps) {
		if r.err != nil && !errors.Is(r.err, ErrNotFound) {
			errs = append(errs, r.err)
			continue
		}
		if r.inst.State == nightshift.StateTerminating {
			p.termQ.Add(r.inst.ID)
		}
	}
	if len(errs) > 0 {
		return len(recs), fmt.Errorf("terminate all: %d of %d not recorded: %w", len(errs), len(steps), errors.Join(errs...))
	}
	return len(recs), nil
}

// Enable accepts launches again after TerminateAll.
func (p *Provisioner) Enable(ctx context.Context) error {
	if err := p.cfg.Store.SetDisabled(ctx, false); err != nil {
		return fmt.Errorf("enable: %w", err)
	}
	p.log.Info("provisioner enabled")
	return nil
}

// Status is what Describe reports.
type Status struct {
	Disabled  bool       `json:"disabled"`
	Live      int        `json:"live"`
	Instances []Instance `json:"instances"`
	// DNSProblem is why the last DNS sync failed, when the job asked
	// about (any job, for all) has a dns table and its records are not
	// being kept; the controller shows it in status.
	DNSProblem string `json:"dns_problem,omitempty"`
}

// Describe returns the records of job (all jobs if empty).
func (p *Provisioner) Describe(ctx context.Context, job string) (Status, error) {
	return p.describe(ctx, job, false)
}

// describe is Describe of the live records only when liveOnly: at
// 10,000 workers, the records a run's churn ended are as many again to
// read for a caller that drops them (mgmt teardown).
func (p *Provisioner) describe(ctx context.Context, job string, liveOnly bool) (Status, error) {
	disabled, err := p.cfg.Store.Disabled(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("describe: %w", err)
	}
	recs, err := p.cfg.Store.Instances(ctx, Filter{Job: job, LiveOnly: liveOnly})
	if err != nil {
		return Status{}, fmt.Errorf("describe: %w", err)
	}
	st := Status{Disabled: disabled, Instances: recs}
	if job == "" || p.cfg.DNS[job] != nil {
		st.DNSProblem = p.DNSProblem()
	}
	for _, r := range recs {
		if r.State.Live() {
			st.Live++
		}
	}
	return st, nil
}

// Transition moves instance id to next, persisting the change before
// returning and then publishing it. A stale or duplicate move is ignored:
// it returns the current record and false.
func (p *Provisioner) Transition(ctx context.Context, id string, next nightshift.InstanceState, reason string) (Instance, bool, error) {
	return p.transition(ctx, id, next, reason, nil)
}

func (p *Provisioner) transition(ctx context.Context, id string, next nightshift.InstanceState, reason string, mutate func(*Instance)) (Instance, bool, error) {
	r := p.transitionMany(ctx, []step{{id: id, next: next, reason: reason, mutate: mutate}})[0]
	if errors.Is(r.err, ErrNotFound) {
		return Instance{}, false, r.err
	}
	return r.inst, r.changed, r.err
}

// logChange logs a recorded state change and tells the observer.
func (p *Provisioner) logChange(inst Instance, from nightshift.InstanceState) {
	p.log.Info("instance state changed", "instance", inst.ID, "job", inst.Job, "launch_id", inst.LaunchID,
		"from", string(from), "to", string(inst.State), "reason", inst.Reason)
	if p.cfg.Observer != nil {
		p.cfg.Observer.InstanceChanged(inst, from)
	}
}

// launchBatch brings to life those of ids whose records still want it:
// the requested ones are recorded pending in one commit (write-ahead: the
// record says "launching" before the driver is called), then each gets
// its own driver call under lim's slots; their outcomes share commits as
// they come in.
func (p *Provisioner) launchBatch(ctx context.Context, ids []string, lim *limits) {
	steps := make([]step, len(ids))
	for k, id := range ids {
		steps[k] = step{id: id, next: nightshift.StatePending, reason: "launching",
			when: func(cur Instance) bool { return cur.State == nightshift.StateRequested }}
	}
	for k, r := range p.transitionMany(ctx, steps) {
		id := ids[k]
		// Pending without a change was recorded as launching by an
		// earlier run or attempt; the driver's idempotency per id makes a
		// second call safe.
		if r.err != nil || r.inst.State != nightshift.StatePending {
			if r.err != nil {
				p.log.Error("launch: record pending", "instance", id, "err", r.err)
			}
			p.launchDone(id, lim)
			continue
		}
		go func() {
			p.launchOne(ctx, r.inst, lim)
			p.launchDone(id, lim)
			p.notify()
		}()
	}
	p.notify()
}

func (p *Provisioner) launchDone(id string, lim *limits) {
	p.stopMu.Lock()
	delete(p.stopLaunch, id)
	p.stopMu.Unlock()
	p.launchQ.Done(id)
	lim.done()
}

// launchStopped reports whether id's record ended while its launch waited.
func (p *Provisioner) launchStopped(id string) bool {
	p.stopMu.Lock()
	defer p.stopMu.Unlock()
	return p.stopLaunch[id]
}

// launch returns a launch record, from the cache if it is there.
func (p *Provisioner) launch(ctx context.Context, id string) (Launch, error) {
	p.launchMu.Lock()
	l, ok := p.launches[id]
	p.launchMu.Unlock()
	if ok {
		return l, nil
	}
	l, err := p.cfg.Store.Launch(ctx, id)
	if err != nil {
		return l, err
	}
	p.launchMu.Lock()
	if len(p.launches) >= 64 {
		clear(p.launches)
	}
	p.launches[id] = l
	p.launchMu.Unlock()
	return l, nil
}

// launchOne calls the driver for a record recorded pending and records
// the outcome; it holds a driver slot for the driver work only.
func (p *Provisioner) launchOne(ctx context.Context, inst Instance, lim *limits) {
	id := inst.ID
	l, err := p.launch(ctx, inst.LaunchID)
	if err != nil {
		p.fail(ctx, id, fmt.Sprintf("launch record missing: %v", err))
		return
	}
	lim.acquire()
	if p.launchStopped(id) {
		// Its termination, recorded meanwhile, finishes it (a driver
		// terminate of an id never launched finds nothing).
		lim.release()
		return
	}
	cctx, cancel := context.WithTimeout(ctx, p.cfg.CallTimeout)
	res, err := p.cfg.Driver.Launch(cctx, InstanceSpec{ID: id, Job: inst.Job, LaunchID: inst.LaunchID, Run: p.cfg.Run, Spec: l.Spec, UID: inst.WorkerUID})
	cancel()
	if err != nil {
		reason := "launch failed: " + redact.String(err.Error())
		if errors.Is(err, context.DeadlineExceeded) {
			reason = fmt.Sprintf("launch timed out after %s", p.cfg.CallTimeout)
		}
		// Record first so nothing relaunches it, then clean up whatever
		// half-started; a crash in between leaves an orphan that the next
		// reconcile kills.
		p.fail(ctx, id, reason)
		p.driverTerminate(ctx, id, "clean up failed launch")
		lim.release()
		return
	}
	lim.release()
	next := res.State
	if next == "" {
		next = nightshift.StateRunning
	}
	cur, ok, err := p.transition(ctx, id, next, "launched", func(i *Instance) {
		i.Host, i.Address, i.PID = res.Host, res.Address, res.PID
		i.DNSAddress = p.dnsAddress(i.Job, res.PrivateIP, res.PublicIP)
	})
	if err != nil {
		p.log.Error("launch: record launched instance", "instance", id, "err", err)
		return
	}
	if !ok {
		// Terminated (or failed) while the driver was launching: the
		// instance must not outlive its record.
		if cur.State == nightshift.StateTerminating {
			p.termQ.Add(id)
		} else if cur.State.Terminal() {
			p.driverTerminate(ctx, id, "launched after its record ended")
		}
	}
}

func (p *Provisioner) fail(ctx context.Context, id, reason string) {
	if _, _, err := p.Transition(ctx, id, nightshift.StateFailed, reason); err != nil {
		p.log.Error("record failed instance", "instance", id, "err", err)
	}
}

func (p *Provisioner) driverTerminate(ctx context.Context, id, why string) error {
	cctx, cancel := context.WithTimeout(ctx, p.cfg.CallTimeout)
	defer cancel()
	if err := p.cfg.Driver.Terminate(cctx, id); err != nil {
		p.log.Warn("driver terminate failed", "instance", id, "why", why, "err", err)
		return fmt.Errorf("terminate %s: %w", id, err)
	}
	p.log.Info("driver terminated instance", "instance", id, "why", why)
	return nil
}

// terminateBatch finishes the recorded terminations among ids: their
// records are read in one query, each gets its own driver call under
// lim's slots, and the ends share commits as they come in.
func (p *Provisioner) terminateBatch(ctx context.Context, ids []string, lim *limits) {
	recs, err := p.records(ctx, ids)
	if err != nil {
		p.log.Error("terminate: read records", "instances", len(ids), "err", err)
	}
	for _, id := range ids {
		inst, ok := recs[id]
		if !ok || inst.State != nightshift.StateTerminating {
			if err == nil && !ok {
				p.log.Error("terminate: no record", "instance", id)
			}
			p.termQ.Done(id)
			lim.done()
			continue
		}
		go func() {
			p.terminateOne(ctx, inst, lim)
			p.termQ.Done(id)
			lim.done()
			p.notify()
		}()
	}
	p.notify()
}

// terminateOne finishes one recorded termination.
func (p *Provisioner) terminateOne(ctx context.Context, inst Instance, lim *limits) {
	id := inst.ID
	lim.acquire()
	err := p.driverTerminate(ctx, id, inst.Reason)
	lim.release()
	if err != nil {
		// Stay terminating; retry later (and every reconcile retries too).
		p.clock.AfterFunc(p.cfg.RetryDelay, func() { p.termQ.Add(id); p.notify() })
		return
	}
	if _, _, err := p.Transition(ctx, id, nightshift.StateTerminated, inst.Reason); err != nil {
		p.log.Error("terminate: record terminated", "instance", id, "err", err)
	}
}

// Reconcile compares the records with what the driver owns and repairs the
// difference: half-done launches are launched (or adopted if the driver
// already has them), half-done terminations finished, orphans killed and
// vanished instances failed with reason "disappeared". Run calls it at
// start-up and periodically; it is safe to call at any time.
func (p *Provisioner) Reconcile(ctx context.Context) error {
	p.reconMu.Lock()
	defer p.reconMu.Unlock()
	recs, err := p.cfg.Store.Instances(ctx, Filter{LiveOnly: true})
	if err != nil {
		return fmt.Errorf("reconcile: list records: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, p.cfg.CallTimeout)
	defer cancel()
	if err := p.locate(cctx, recs); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	owned, err := p.cfg.Driver.List(cctx)
	if err != nil {
		return fmt.Errorf("reconcile: list %s instances: %w", p.cfg.Driver.Name(), err)
	}
	mine := owned[:0:0]
	for _, o := range owned {
		if o.Run == p.cfg.Run {
			mine = append(mine, o)
		}
	}
	acts := PlanReconcile(recs, mine)
	if el, ok := p.cfg.Driver.(EventualLister); ok && el.ListIsEventual() {
		gap := p.cfg.ReconcileEvery
		if gap <= 0 {
			gap = defaultReconcileEvery
		}
		before := len(acts)
		acts, p.missedSince = ConfirmDisappeared(acts, p.missedSince, p.clock.Now(), gap)
		if n := len(p.missedSince); n > 0 || before != len(acts) {
			p.log.Info("instances missing from one list; judged at the next", "missing", n)
		}
	}
	var errs []error
	// Adoptions and disappearances only write the ledger, and after a
	// restart they come by the thousand (a simulated pool vanishes with
	// its process): they share commits.
	var steps []step
	var stepActs []Action
	rest := acts[:0:0]
	for _, a := range acts {
		switch a.Kind {
		case ActAdopt:
			o := a.Owned
			steps = append(steps, step{id: a.ID, next: nightshift.StateRunning, reason: "adopted: instance found live after restart",
				mutate: func(i *Instance) {
					i.Host, i.PID = o.Host, o.PID
					i.DNSAddress = p.dnsAddress(i.Job, o.PrivateIP, o.PublicIP)
				}})
			stepActs = append(stepActs, a)
		case ActDisappeared:
			steps = append(steps, step{id: a.ID, next: nightshift.StateFailed, reason: "disappeared"})
			stepActs = append(stepActs, a)
		default:
			rest = append(rest, a)
		}
	}
	for k, r := range p.transitionMany(ctx, steps) {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		if stepActs[k].Kind == ActDisappeared {
			// The driver no longer lists it, but leftovers (children of a
			// dead leader, a half-deleted VM) may remain; terminate is
			// idempotent.
			p.driverTerminate(ctx, r.inst.ID, "clean up disappeared instance")
		}
	}
	for _, a := range rest {
		if err := p.act(ctx, a); err != nil {
			errs = append(errs, err)
		}
	}
	// The records follow the ledger after every reconcile, so a crash
	// between a worker's launch and its record is repaired here.
	if err := p.SyncDNS(ctx); err != nil {
		errs = append(errs, err)
	}
	p.notify()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	return nil
}

// locate hands a Locator the spec of every job and of every launch with a
// live record, so that its List looks everywhere the ledger says workers
// went.
func (p *Provisioner) locate(ctx context.Context, recs []Instance) error {
	loc, ok := p.cfg.Driver.(Locator)
	if !ok {
		return nil
	}
	var specs []json.RawMessage
	for _, name := range slices.Sorted(maps.Keys(p.cfg.Jobs)) {
		s, err := p.cfg.Jobs[name].LaunchSpec(nil)
		if err != nil {
			return fmt.Errorf("job %s: %w", name, err)
		}
		specs = append(specs, s)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		if seen[r.LaunchID] {
			continue
		}
		seen[r.LaunchID] = true
		l, err := p.cfg.Store.Launch(ctx, r.LaunchID)
		if err != nil {
			return fmt.Errorf("launch %s of %s: %w", r.LaunchID, r.ID, err)
		}
		specs = append(specs, l.Spec)
	}
	if err := loc.Locate(ctx, specs); err != nil {
		return fmt.Errorf("locate %s instances: %w", p.cfg.Driver.Name(), err)
	}
	return nil
}

func (p *Provisioner) act(ctx context.Context, a Action) error {
	switch a.Kind {
	case ActLaunch:
		p.launchQ.Add(a.ID)
	case ActTerminate:
		p.termQ.Add(a.ID)
	case ActKillOrphan:
		// A launch recorded after the snapshot is not an orphan.
		cur, err := p.cfg.Store.Instance(ctx, a.ID)
		switch {
		case err == nil && cur.State.Live():
			return nil
		case err != nil && !errors.Is(err, ErrNotFound):
			return fmt.Errorf("orphan %s: %w", a.ID, err)
		}
		why := "orphan: no record"
		if err == nil {
			why = "zombie: record is " + string(cur.State)
		}
		return p.driverTerminate(ctx, a.ID, why)
	}
	return nil
}

// maxRevisions bounds the revisions a provisioner caches per job: a rollout
// needs two (from and to), and a few more cover rollouts in a row; older
// ones are read from the Store when a launch names them.
const maxRevisions = 8

type revisedSpec struct {
	spec jobspec.Spec
	seq  uint64
}

// Revise accepts a revision of a job's worker spec, so that launches may
// name it by its digest (a rollout's new workers, or its rollback's). The
// job must be one of the run's, with the same driver: a revision changes
// what a worker runs, not where. The spec passes the checks a plan's job
// passes, and its digest must be b.Digest. Handing over a revision again
// changes nothing.
func (p *Provisioner) Revise(ctx context.Context, b ReviseBody) error {
	plan, ok := p.cfg.Jobs[b.Job]
	if !ok {
		return fmt.Errorf("revise: %w: field \"job\": unknown job %q", ErrInvalid, b.Job)
	}
	driver := func(s jobspec.Spec) string {
		if s.Driver == "" {
			return jobspec.DriverLocal
		}
		return s.Driver
	}
	if driver(b.Spec) != driver(plan) {
		return fmt.Errorf("revise: %w: field \"spec.driver\": job %s: driver %q is not the plan's %q: a revision changes what a worker runs, not where", ErrInvalid, b.Job, b.Spec.Driver, plan.Driver)
	}
	if _, err := jobspec.FromTable(map[string]any{"driver": driver(b.Spec), "instance": orEmpty(b.Spec.Instance), "worker": orEmpty(b.Spec.Worker)}); err != nil {
		return fmt.Errorf("revise: %w: field \"spec\": job %s: %w", ErrInvalid, b.Job, err)
	}
	digest, err := b.Spec.Digest()
	if err != nil {
		return fmt.Errorf("revise: %w: field \"spec\": job %s: %w", ErrInvalid, b.Job, err)
	}
	if digest != b.Digest {
		return fmt.Errorf("revise: %w: field \"digest\": job %s: %s is not the spec's digest %s", ErrInvalid, b.Job, b.Digest, digest)
	}
	p.revMu.Lock()
	_, seen := p.revised[b.Job][digest]
	p.revMu.Unlock()
	if seen {
		return nil
	}
	// The ledger first: a revision accepted is one a restarted provisioner
	// still launches (the controller hands a revision over once, not
	// before each launch of it).
	raw, err := json.Marshal(b.Spec)
	if err != nil {
		return fmt.Errorf("revise: %w: field \"spec\": job %s: %w", ErrInvalid, b.Job, err)
	}
	if err := p.cfg.Store.PutRevision(ctx, Revision{Job: b.Job, Digest: digest, Spec: raw, Created: p.clock.Now().UTC()}); err != nil {
		return fmt.Errorf("revise: job %s: %w", b.Job, err)
	}
	p.remember(b.Job, digest, b.Spec)
	p.log.Info("job revision accepted", "job", b.Job, "digest", digest)
	return nil
}

// revision returns the spec of job's revision digest, from the cache or
// else the Store (caching it), or an error wrapping ErrNotFound.
func (p *Provisioner) revision(ctx context.Context, job, digest string) (jobspec.Spec, error) {
	p.revMu.Lock()
	rs, ok := p.revised[job][digest]
	p.revMu.Unlock()
	if ok {
		return rs.spec, nil
	}
	r, err := p.cfg.Store.Revision(ctx, job, digest)
	if err != nil {
		return jobspec.Spec{}, err
	}
	var spec jobspec.Spec
	if err := json.Unmarshal(r.Spec, &spec); err != nil {
		return jobspec.Spec{}, fmt.Errorf("revision %s of job %s: stored spec: %w", digest, job, err)
	}
	// What the ledger holds was checked when it was handed over; its
	// digest is checked again so a damaged row never runs.
	d, err := spec.Digest()
	if err != nil {
		return jobspec.Spec{}, fmt.Errorf("revision %s of job %s: stored spec: %w", digest, job, err)
	}
	if d != digest {
		return jobspec.Spec{}, fmt.Errorf("revision %s of job %s: stored spec has digest %s", digest, job, d)
	}
	p.remember(job, digest, spec)
	return spec, nil
}

// remember caches a revision, evicting the job's oldest beyond
// maxRevisions.
func (p *Provisioner) remember(job, digest string, spec jobspec.Spec) {
	p.revMu.Lock()
	defer p.revMu.Unlock()
	revs := p.revised[job]
	if revs == nil {
		revs = map[string]revisedSpec{}
		p.revised[job] = revs
	}
	if _, seen := revs[digest]; seen {
		return
	}
	var seq uint64
	oldest, oldestSeq := "", ^uint64(0)
	for d, r := range revs {
		seq = max(seq, r.seq)
		if r.seq < oldestSeq {
			oldest, oldestSeq = d, r.seq
		}
	}
	if len(revs) >= maxRevisions {
		delete(revs, oldest)
	}
	revs[digest] = revisedSpec{spec: spec, seq: seq + 1}
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
