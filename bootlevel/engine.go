package bootlevel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"
	"golang.org/x/sync/errgroup"

	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
	"nightshift/launchplan"
)

// FailurePolicy says what Launch does with what it started when a level fails.
type FailurePolicy string

const (
	// FailKeep leaves every service as it is, for inspection (cloudinit.d's behaviour).
	FailKeep FailurePolicy = "keep"
	// FailRollback terminates everything the failed Launch call started, levels in reverse.
	FailRollback FailurePolicy = "rollback"
)

// Event kinds written by the engine.
const (
	EventRunState     = "run.state"
	EventLevelStart   = "level.start"
	EventLevelDone    = "level.done"
	EventServiceState = "service.state"
	EventStepStart    = "step.start"
	EventStepDone     = "step.done"
	EventStepRetry    = "step.retry"
	EventStepFailed   = "step.failed"
	EventNote         = "note"
)

// Engine boots, resumes, repairs, verifies and tears down runs. The zero
// value is not usable: Store, Home and the drivers the plan names are needed.
type Engine struct {
	Store Store
	// Drivers by launchplan driver name ("local", "ssh", "ec2").
	Drivers map[string]Driver
	// Types by Service.Type ("broker", ...); a typed service uses these
	// instead of Drivers.
	Types map[string]Driver
	// Clock is nil for the real clock.
	Clock Clock
	// Log is nil to discard.
	Log *slog.Logger
	// Home holds run files: Home/runs/<run>/logs/<service>.log and
	// Home/runs/<run>/work/<service>/.
	Home string
	// Parallelism caps concurrent services per level; 0 is unbounded.
	// Level.Parallelism applies as well (the smaller wins).
	Parallelism int
	// OnEvent is called after each event is stored; it must not block long
	// because the engine holds its record lock meanwhile (which keeps the
	// events in order).
	OnEvent func(Event)
	// Getenv is nil for os.LookupEnv; it serves ${env.NAME}.
	Getenv func(string) (string, bool)
	// RunEnv, when set, serves ${env.NAME} for names that belong to one
	// run (the run's secret, say) before Getenv is asked. A value it gives
	// is scrubbed from logs like a secret attribute: what only the run may
	// know never sits in the launcher's process environment, where every
	// program it starts would inherit it.
	RunEnv func(run, name string) (string, bool)
	// Secrets, when set, returns the redactor for a run, seeded with the
	// secrets kept outside the plan (the run's secret file, values that
	// components registered). The engine adds what it learns (secret
	// attributes, URL passwords, RunEnv values) and scrubs with it every
	// event, log line and error it writes, and hands it to drivers in
	// StepRequest.Redactor. A caller that shares the returned redactor
	// (launch does, for its log and its error report) sees those additions.
	// Nil starts every run with an empty redactor.
	Secrets func(run string) *redact.Redactor
}

// LaunchOptions tune Launch.
type LaunchOptions struct {
	// Run names the run; "" picks 8 random hex characters.
	Run string
	// OnFailure is FailKeep when "".
	OnFailure FailurePolicy
	// AllowPlanChange lets a resumed run continue with a plan whose hash
	// differs from the one it was started with.
	AllowPlanChange bool
}

// Report is the outcome of an engine call.
type Report struct {
	Run   string
	State RunState
	// Services are the run's records in plan order.
	Services []ServiceRecord
	// Failures are the steps that failed (services cancelled only because a
	// sibling failed are not listed; their records say so).
	Failures []*StepError
	// Remaining names services that could not be terminated.
	Remaining []string
}

// LoadRunPlan decodes the plan a run stored when it was launched.
func LoadRunPlan(r Run) (*launchplan.Plan, error) {
	if len(r.Plan) == 0 {
		return nil, fmt.Errorf("run %q: no stored plan", r.Name)
	}
	var p launchplan.Plan
	if err := json.Unmarshal(r.Plan, &p); err != nil {
		return nil, fmt.Errorf("run %q: decode stored plan: %w", r.Name, err)
	}
	for i, l := range p.Levels {
		for j, s := range l.Services {
			if s.Name == "" {
				return nil, fmt.Errorf("run %q: decode stored plan: levels[%d].services[%d]: name is empty", r.Name, i, j)
			}
		}
	}
	return &p, nil
}

// runner is the state of one engine call on one run: the plan, the live
// copy of the service records, and what this call started.
type runner struct {
	e     *Engine
	ctx   context.Context // for store writes: survives cancellation so that final states are recorded
	clock Clock
	log   *slog.Logger
	plan  *launchplan.Plan
	svcs  map[string]*launchplan.Service
	order []string // service names in plan order

	// level is the level Launch is at, for an interruption's report.
	level int

	mu      sync.Mutex
	run     Run
	recs    map[string]ServiceRecord
	started map[string]bool

	red  *redact.Redactor // the run's secrets, by value
	dirs map[string]bool  // directories already created
}

func (e *Engine) clock() Clock {
	if e.Clock == nil {
		return clockwork.NewRealClock()
	}
	return e.Clock
}

func (e *Engine) logger() *slog.Logger {
	if e.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return e.Log
}

func (e *Engine) check() error {
	if e.Store == nil {
		return errors.New("engine has no Store")
	}
	if e.Home == "" {
		return errors.New("engine has no Home directory")
	}
	return nil
}

// newRunner indexes the plan and checks what can be checked before anything
// runs: unique, file-safe names and a driver for every service.
func (e *Engine) newRunner(ctx context.Context, run Run, plan *launchplan.Plan, recs []ServiceRecord) (*runner, error) {
	r := &runner{
		e:       e,
		ctx:     context.WithoutCancel(ctx),
		clock:   e.clock(),
		log:     e.logger().With("run", run.Name),
		plan:    plan,
		svcs:    map[string]*launchplan.Service{},
		run:     run,
		recs:    map[string]ServiceRecord{},
		started: map[string]bool{},

		red:  e.redactor(run.Name),
		dirs: map[string]bool{},
	}
	LearnSecrets(r.red, plan, recs)
	for li := range plan.Levels {
		lvl := &plan.Levels[li]
		for si := range lvl.Services {
			svc := &lvl.Services[si]
			if svc.Name == "" || svc.Name != filepath.Base(svc.Name) || svc.Name == "." || svc.Name == ".." {
				return nil, fmt.Errorf("service %q at %s: name cannot be used as a file name", svc.Name, svc.Pos)
			}
			if _, dup := r.svcs[svc.Name]; dup {
				return nil, fmt.Errorf("service %q at %s: declared twice", svc.Name, svc.Pos)
			}
			if svc.Level == 0 {
				svc.Level = lvl.Index
			}
			if _, err := r.driver(svc); err != nil {
				return nil, err
			}
			r.svcs[svc.Name] = svc
			r.order = append(r.order, svc.Name)
		}
	}
	for _, rec := range recs {
		r.recs[rec.Name] = rec
	}
	return r, nil
}

func (r *runner) driver(svc *launchplan.Service) (Driver, error) {
	if svc.Type != "" {
		if d := r.e.Types[svc.Type]; d != nil {
			return d, nil
		}
		return nil, fmt.Errorf("service %q at %s: no implementation for type %q", svc.Name, svc.Pos, svc.Type)
	}
	if d := r.e.Drivers[svc.Driver]; d != nil {
		return d, nil
	}
	return nil, fmt.Errorf("service %q at %s: no driver %q", svc.Name, svc.Pos, svc.Driver)
}

// get returns a copy of a service's record; a service the store has no
// record of counts as pending.
func (r *runner) get(name string) ServiceRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.recs[name]
	if !ok {
		rec = ServiceRecord{Run: r.run.Name, Name: name, State: ServicePending}
		if svc := r.svcs[name]; svc != nil {
			rec.Level = svc.Level
		}
	}
	return rec
}

// put stores rec and then ev; both happen before the action they announce.
func (r *runner) put(rec ServiceRecord, ev Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec.Updated = r.clock.Now()
	if err := r.e.Store.PutService(r.ctx, rec); err != nil {
		return fmt.Errorf("store service %s: %w", rec.Name, err)
	}
	r.recs[rec.Name] = rec
	r.red.AddAttrs(rec.Attributes)
	ev.Service = rec.Name
	ev.Level = rec.Level
	if ev.State == "" {
		ev.State = string(rec.State)
	}
	return r.emitLocked(ev)
}

func (r *runner) emit(ev Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.emitLocked(ev)
}

func (r *runner) emitLocked(ev Event) error {
	ev.Run = r.run.Name
	ev.Time = r.clock.Now()
	ev.Message = r.red.String(ev.Message)
	stored, err := r.e.Store.AppendEvent(r.ctx, ev)
	if err != nil {
		return fmt.Errorf("store event %s: %w", ev.Kind, err)
	}
	if r.e.OnEvent != nil {
		r.e.OnEvent(stored)
	}
	return nil
}

// notify hands ev to OnEvent without storing it (see Event.Transient).
func (r *runner) notify(ev Event) {
	if r.e.OnEvent == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ev.Run = r.run.Name
	ev.Time = r.clock.Now()
	ev.Message = r.red.String(ev.Message)
	ev.Transient = true
	r.e.OnEvent(ev)
}

// setRunState records the run's state.
func (r *runner) setRunState(st RunState) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.run.State = st
	r.run.Updated = r.clock.Now()
	if err := r.e.Store.UpdateRun(r.ctx, r.run); err != nil {
		return fmt.Errorf("store run %s: %w", r.run.Name, err)
	}
	return r.emitLocked(Event{Kind: EventRunState, State: string(st)})
}

// scrub removes the run's known secrets from free text: the values the
// redactor was seeded with or has learnt, URL passwords and AWS key ids.
func (r *runner) scrub(s string) string { return r.red.String(s) }

// redactor returns the run's redactor from Secrets, or an empty one.
func (e *Engine) redactor(run string) *redact.Redactor {
	if e.Secrets != nil {
		if red := e.Secrets(run); red != nil {
			return red
		}
	}
	return redact.NewRedactor()
}

// LearnSecrets adds to red the secrets a plan and a run's service records
// hold: the values of secret-named globals, env vars and type config keys,
// the passwords of URLs among them, and the same for the records'
// attributes. mgmt uses it to redact what it prints as the engine does.
func LearnSecrets(red *redact.Redactor, plan *launchplan.Plan, recs []ServiceRecord) {
	if plan != nil {
		red.AddAttrs(plan.Globals)
		for _, l := range plan.Levels {
			for _, s := range l.Services {
				red.AddAttrs(s.Env)
				learnConfig(red, "", s.TypeConfig)
			}
		}
	}
	for _, rec := range recs {
		red.AddAttrs(rec.Attributes)
		red.AddAttrs(rec.Host.Attrs)
	}
}

// learnConfig walks a type's config table (nested tables and lists).
func learnConfig(red *redact.Redactor, key string, v any) {
	switch x := v.(type) {
	case string:
		red.AddAttrs(map[string]string{key: x})
	case map[string]any:
		for k, e := range x {
			learnConfig(red, k, e)
		}
	case []any:
		for _, e := range x {
			learnConfig(red, key, e)
		}
	}
}

func (r *runner) getenv(k string) (string, bool) {
	if r.e.RunEnv != nil {
		if v, ok := r.e.RunEnv(r.run.Name, k); ok {
			r.red.Add(v)
			return v, true
		}
	}
	if r.e.Getenv != nil {
		return r.e.Getenv(k)
	}
	return os.LookupEnv(k)
}

// lookup serves ${svc.attr} from the records of other services.
func (r *runner) lookup(svc, attr string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.recs[svc]
	if !ok {
		return "", false
	}
	v, ok := rec.Attributes[attr]
	return v, ok
}

func (r *runner) layout() runlayout.Run   { return runlayout.Of(r.e.Home, r.run.Name) }
func (r *runner) logPath(n string) string { return r.layout().StepLog(n) }

func (r *runner) report(failures []*StepError, remaining []string) *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := &Report{Run: r.run.Name, State: r.run.State, Failures: failures, Remaining: remaining}
	seen := map[string]bool{}
	for _, n := range r.order {
		if rec, ok := r.recs[n]; ok {
			rep.Services = append(rep.Services, rec)
			seen[n] = true
		}
	}
	var extra []string
	for n := range r.recs {
		if !seen[n] {
			extra = append(extra, n)
		}
	}
	sort.Strings(extra)
	for _, n := range extra {
		rep.Services = append(rep.Services, r.recs[n])
	}
	return rep
}

// allReady reports whether every service of the plan is ready.
func (r *runner) allReady() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.order {
		if r.recs[n].State != ServiceReady {
			return false
		}
	}
	return true
}

func (r *runner) limit(lvl *launchplan.Level) int {
	l, g := lvl.Parallelism, r.e.Parallelism
	switch {
	case l <= 0:
		return g
	case g <= 0:
		return l
	default:
		return min(l, g)
	}
}

// Launch boots plan as run opts.Run: a pending record for every service is
// stored before anything runs, then levels boot in order and the services
// of a level concurrently. An existing run is resumed: ready services are
// re-verified (never booted twice), a service found booting gets one ready
// attempt to be adopted, the rest are (re)booted. A terminated run starts
// afresh. On failure the level's other services are cancelled and
// opts.OnFailure decides whether what this call started is rolled back.
// The error, if any, joins the failed steps (*StepError); the Report is
// returned whenever the run exists.
func (e *Engine) Launch(ctx context.Context, plan *launchplan.Plan, opts LaunchOptions) (*Report, error) {
	if plan == nil {
		return nil, errors.New("launch: no plan")
	}
	if err := e.check(); err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	switch opts.OnFailure {
	case "":
		opts.OnFailure = FailKeep
	case FailKeep, FailRollback:
	default:
		return nil, fmt.Errorf("launch: unknown failure policy %q (want %q or %q)", opts.OnFailure, FailKeep, FailRollback)
	}
	if opts.Run == "" {
		opts.Run = strings.ReplaceAll(uuid.NewString(), "-", "")[:8]
	}
	if err := launchplan.CheckRunName(opts.Run); err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	planJSON, err := json.Marshal(plan)
	if err != nil {
		return nil, fmt.Errorf("launch run %s: encode plan: %w", opts.Run, err)
	}
	// Boot from the decoded copy, exactly as Terminate and Repair will see
	// the plan later, and without touching the caller's.
	plan, err = LoadRunPlan(Run{Name: opts.Run, Plan: planJSON})
	if err != nil {
		return nil, fmt.Errorf("launch run %s: %w", opts.Run, err)
	}
	r, err := e.prepareLaunch(ctx, plan, planJSON, opts)
	if err != nil {
		return nil, fmt.Errorf("launch run %s: %w", opts.Run, err)
	}
	rep, err := r.launch(ctx, opts)
	if err != nil {
		return rep, fmt.Errorf("launch run %s: %w", opts.Run, err)
	}
	return rep, nil
}

// prepareLaunch creates, restarts or opens the run and its records.
func (e *Engine) prepareLaunch(ctx context.Context, plan *launchplan.Plan, planJSON []byte, opts LaunchOptions) (*runner, error) {
	// Validate names and drivers before the run exists: a plan that cannot
	// boot must not leave a run behind.
	r, err := e.newRunner(ctx, Run{Name: opts.Run}, plan, nil)
	if err != nil {
		return nil, err
	}
	now := e.clock().Now()
	run, err := e.Store.GetRun(ctx, opts.Run)
	fresh := false
	switch {
	case errors.Is(err, ErrNotFound):
		run = Run{Name: opts.Run, PlanPath: plan.Path, PlanHash: plan.Hash, State: RunBooting, Plan: planJSON, Created: now, Updated: now}
		if err := e.Store.CreateRun(ctx, run); err != nil {
			return nil, fmt.Errorf("create run: %w", err)
		}
		fresh = true
	case err != nil:
		return nil, fmt.Errorf("load run: %w", err)
	case run.State == RunTerminated:
		fresh = true
	case run.PlanHash != plan.Hash && !opts.AllowPlanChange:
		return nil, fmt.Errorf("plan %s changed since the run was launched (hash %s, now %s); terminate the run or allow the plan change",
			plan.Path, short(run.PlanHash), short(plan.Hash))
	}
	var old []ServiceRecord
	if !fresh {
		if old, err = e.Store.Services(ctx, opts.Run); err != nil {
			return nil, fmt.Errorf("load services: %w", err)
		}
	}
	run.PlanPath, run.PlanHash, run.Plan = plan.Path, plan.Hash, planJSON
	r.run = run
	byName := map[string]ServiceRecord{}
	for _, rec := range old {
		byName[rec.Name] = rec
	}
	if !fresh {
		// A service dropped from the plan while still alive could never be
		// terminated again, because the run keeps only the newest plan.
		for _, rec := range old {
			if _, inPlan := r.svcs[rec.Name]; !inPlan && rec.State != ServicePending && rec.State != ServiceTerminated {
				return nil, fmt.Errorf("service %s is %s but no longer in plan %s; terminate the run first", rec.Name, rec.State, plan.Path)
			}
		}
	}
	if err := r.setRunState(RunBooting); err != nil {
		return nil, err
	}
	// Every service gets a record before anything runs, so that a crash at
	// any later point leaves a complete picture to resume or tear down.
	for _, n := range r.order {
		svc := r.svcs[n]
		rec, had := byName[n]
		if fresh || !had {
			rec = ServiceRecord{Run: run.Name, Name: n, Level: svc.Level, State: ServicePending}
		}
		rec.Level = svc.Level
		rec.LogPath = r.logPath(n)
		if err := r.put(rec, Event{Kind: EventServiceState, Message: "recorded"}); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func (r *runner) launch(ctx context.Context, opts LaunchOptions) (*Report, error) {
	for li := range r.plan.Levels {
		lvl := &r.plan.Levels[li]
		r.level = lvl.Index
		if ctx.Err() != nil {
			break
		}
		if err := r.emit(Event{Kind: EventLevelStart, Level: lvl.Index, Message: fmt.Sprintf("level %d: %d services", lvl.Index, len(lvl.Services))}); err != nil {
			return r.finishLaunch(ctx, opts, nil, err)
		}
		if failures := r.forLevel(ctx, lvl, StepBoot, true, r.bringUp); len(failures) > 0 || ctx.Err() != nil {
			return r.finishLaunch(ctx, opts, failures, nil)
		}
		if err := r.emit(Event{Kind: EventLevelDone, Level: lvl.Index, State: string(ServiceReady)}); err != nil {
			return r.finishLaunch(ctx, opts, nil, err)
		}
	}
	return r.finishLaunch(ctx, opts, nil, nil)
}

// finishLaunch sets the run ready, interrupted when the caller cancelled
// ctx (even between levels), or failed after the failure policy ran.
func (r *runner) finishLaunch(ctx context.Context, opts LaunchOptions, failures []*StepError, failure error) (*Report, error) {
	if len(failures) == 0 && failure == nil && ctx.Err() == nil {
		if err := r.setRunState(RunReady); err != nil {
			return r.report(nil, nil), err
		}
		return r.report(nil, nil), nil
	}
	if ctx.Err() != nil {
		return r.interrupted(ctx, opts, failures, failure)
	}
	var remaining []string
	if opts.OnFailure == FailRollback {
		if ctx.Err() != nil {
			_ = r.emit(Event{Kind: EventNote, Message: "rollback skipped: launch was cancelled; run terminate to tear down"})
		} else {
			_ = r.emit(Event{Kind: EventNote, Message: "rolling back what this launch started"})
			remaining, _ = r.teardown(ctx, func(n string) bool { return r.startedHere(n) })
		}
	}
	stErr := r.setRunState(RunFailed)
	errs := make([]error, 0, len(failures)+4)
	for _, f := range failures {
		errs = append(errs, f)
	}
	if len(remaining) > 0 {
		errs = append(errs, fmt.Errorf("rollback left %s", strings.Join(remaining, ", ")))
	}
	errs = append(errs, failure, stErr)
	return r.report(failures, remaining), errors.Join(errs...)
}

// interrupted records a launch its caller stopped: the run is left
// RunInterrupted (no rollback: the caller took the time away, and a later
// launch resumes), and the error says which step each service was cut in.
// Failures that are not the interruption itself are reported with it.
func (r *runner) interrupted(ctx context.Context, opts LaunchOptions, failures []*StepError, failure error) (*Report, error) {
	ie := &InterruptedError{Run: r.run.Name, Cause: context.Cause(ctx), Level: r.level}
	errs := []error{ie}
	for _, f := range failures {
		if errors.Is(f.Err, ie.Cause) || errors.Is(f.Err, ctx.Err()) {
			ie.Steps = append(ie.Steps, f)
		} else {
			errs = append(errs, f)
		}
	}
	if opts.OnFailure == FailRollback {
		_ = r.emit(Event{Kind: EventNote, Message: "rollback skipped: launch was cancelled; launch again to resume, or tear the run down"})
	}
	_ = r.emit(Event{Kind: EventNote, Level: r.level, Message: ie.Error()})
	errs = append(errs, failure, r.setRunState(RunInterrupted))
	return r.report(failures, nil), errors.Join(errs...)
}

func (r *runner) startedHere(n string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started[n]
}

// forLevel runs fn for every service of lvl concurrently within the
// parallelism limits. With cancelSiblings, the first real failure cancels
// the others, which then record "cancelled: sibling X failed".
func (r *runner) forLevel(ctx context.Context, lvl *launchplan.Level, step Step, cancelSiblings bool, fn func(context.Context, *launchplan.Service) *StepError) []*StepError {
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		g        errgroup.Group
		mu       sync.Mutex
		failures []*StepError
	)
	if n := r.limit(lvl); n > 0 {
		g.SetLimit(n)
	}
	for si := range lvl.Services {
		svc := r.svcs[lvl.Services[si].Name]
		g.Go(func() error {
			var se *StepError
			if cause := context.Cause(lctx); cause != nil {
				if ctx.Err() != nil && step != StepTerminate {
					// Never started, and the caller stopped the launch: the
					// service stays as it was, for the next launch.
					return nil
				}
				// Never started: the level was cancelled while it waited for a slot.
				se = &StepError{Run: r.run.Name, Service: svc.Name, Level: svc.Level, Step: step, ExitCode: NoExit, Err: describeCause(cause)}
				if step != StepTerminate {
					se = r.fail(svc, se)
				}
			} else {
				se = fn(lctx, svc)
			}
			if se == nil {
				return nil
			}
			var sib *siblingFailed
			if errors.As(se.Err, &sib) {
				return nil
			}
			mu.Lock()
			failures = append(failures, se)
			mu.Unlock()
			if cancelSiblings && ctx.Err() == nil {
				cancel(&siblingFailed{name: svc.Name})
			}
			return nil
		})
	}
	_ = g.Wait()
	slices.SortFunc(failures, func(a, b *StepError) int { return strings.Compare(a.Service, b.Service) })
	return failures
}

// describeCause turns the cause of a cancelled context into the reason a
// service records: a failed sibling or a timeout as they are, anything else
// (the caller's cancellation) as "cancelled: ...".
func describeCause(cause error) error {
	var sib *siblingFailed
	var to *stepTimeout
	if errors.As(cause, &sib) || errors.As(cause, &to) {
		return cause
	}
	return fmt.Errorf("cancelled: %w", cause)
}

// bringUp makes one service ready during Launch, resuming whatever state a
// previous call left it in.
func (r *runner) bringUp(ctx context.Context, svc *launchplan.Service) *StepError {
	rec := r.get(svc.Name)
	switch rec.State {
	case ServiceReady:
		// Ready services are never booted twice by Launch: if the check
		// fails the launch fails, and repair (or a later launch) reboots it.
		return r.verify(ctx, svc, true)
	case ServiceBooting:
		if r.adopt(ctx, svc) {
			return nil
		}
		r.bestEffortTerminate(ctx, svc)
	case ServiceFailed, ServiceTerminating:
		r.bestEffortTerminate(ctx, svc)
	}
	return r.boot(ctx, svc)
}

func (r *runner) bestEffortTerminate(ctx context.Context, svc *launchplan.Service) {
	if err := r.terminate(context.WithValue(ctx, rebootKey{}, true), svc); err != nil {
		r.log.Warn("terminate before reboot failed; booting anyway", "service", svc.Name, "err", r.scrub(err.Error()))
	}
}

// rebootKey marks a context whose terminate precedes a boot of the same
// service (StepRequest.Reboot). A context value, not a parameter, because
// it only has to reach the step request through the shared terminate path.
type rebootKey struct{}

func rebooting(ctx context.Context) bool { v, _ := ctx.Value(rebootKey{}).(bool); return v }

// teardown terminates the services selected by want, levels in reverse,
// services of a level concurrently; it keeps going past failures.
func (r *runner) teardown(ctx context.Context, want func(string) bool) ([]string, []*StepError) {
	var (
		remaining []string
		failures  []*StepError
	)
	for li := len(r.plan.Levels) - 1; li >= 0; li-- {
		lvl := &r.plan.Levels[li]
		sub := launchplan.Level{Index: lvl.Index, Parallelism: lvl.Parallelism}
		for _, s := range lvl.Services {
			if want(s.Name) {
				sub.Services = append(sub.Services, s)
			}
		}
		if len(sub.Services) == 0 {
			continue
		}
		_ = r.emit(Event{Kind: EventLevelStart, Level: lvl.Index, Step: StepTerminate, Message: fmt.Sprintf("terminating level %d", lvl.Index)})
		fs := r.forLevel(ctx, &sub, StepTerminate, false, func(ctx context.Context, svc *launchplan.Service) *StepError {
			if err := r.terminate(ctx, svc); err != nil {
				var se *StepError
				if errors.As(err, &se) {
					return se
				}
				return &StepError{Run: r.run.Name, Service: svc.Name, Level: svc.Level, Step: StepTerminate, ExitCode: NoExit, Err: err}
			}
			return nil
		})
		for _, f := range fs {
			remaining = append(remaining, f.Service)
		}
		failures = append(failures, fs...)
	}
	return remaining, failures
}

func itoa(i int) string { return strconv.Itoa(i) }
