package bootlevel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"nightshift/launchplan"
)

// open loads a run, the plan it stored and its records.
func (e *Engine) open(ctx context.Context, name string) (*runner, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	run, err := e.Store.GetRun(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("load run: %w", err)
	}
	plan, err := LoadRunPlan(run)
	if err != nil {
		return nil, err
	}
	recs, err := e.Store.Services(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("load services: %w", err)
	}
	return e.newRunner(ctx, run, plan, recs)
}

// Terminate tears a run down: levels in reverse, services of a level
// concurrently, terminate program then Release for each, past failures.
// Report.Remaining lists what could not be terminated. Terminating a
// terminated run does nothing.
func (e *Engine) Terminate(ctx context.Context, run string) (*Report, error) {
	r, err := e.open(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("terminate run %s: %w", run, err)
	}
	if r.run.State == RunTerminated {
		return r.report(nil, nil), nil
	}
	if err := r.setRunState(RunTerminating); err != nil {
		return r.report(nil, nil), fmt.Errorf("terminate run %s: %w", run, err)
	}
	remaining, failures := r.teardown(ctx, func(string) bool { return true })
	state := RunTerminated
	if len(remaining) > 0 {
		state = RunFailed
	}
	stErr := r.setRunState(state)
	rep := r.report(failures, remaining)
	if len(remaining) > 0 {
		errs := []error{fmt.Errorf("could not terminate %s", strings.Join(remaining, ", "))}
		for _, f := range failures {
			errs = append(errs, f)
		}
		return rep, fmt.Errorf("terminate run %s: %w", run, errors.Join(append(errs, stErr)...))
	}
	if stErr != nil {
		return rep, fmt.Errorf("terminate run %s: %w", run, stErr)
	}
	return rep, nil
}

// Verify re-runs the ready check of every booted service (with retries up
// to its ready_timeout) and records the results; the run is ready only if
// every service is.
func (e *Engine) Verify(ctx context.Context, run string) (*Report, error) {
	r, err := e.open(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("verify run %s: %w", run, err)
	}
	if r.run.State == RunTerminated {
		return r.report(nil, nil), fmt.Errorf("verify run %s: the run is terminated", run)
	}
	var failures []*StepError
	for li := range r.plan.Levels {
		failures = append(failures, r.forLevel(ctx, &r.plan.Levels[li], StepReady, false, func(ctx context.Context, svc *launchplan.Service) *StepError {
			switch r.get(svc.Name).State {
			case ServicePending, ServiceTerminated:
				return nil
			}
			return r.verify(ctx, svc, true)
		})...)
	}
	return r.finishMaintenance(ctx, "verify", failures)
}

// finishMaintenance sets the run ready or failed after Verify or Repair.
func (r *runner) finishMaintenance(ctx context.Context, op string, failures []*StepError) (*Report, error) {
	state := RunFailed
	if r.allReady() {
		state = RunReady
	}
	stErr := r.setRunState(state)
	rep := r.report(failures, nil)
	if state == RunReady {
		if stErr != nil {
			return rep, fmt.Errorf("%s run %s: %w", op, r.run.Name, stErr)
		}
		return rep, nil
	}
	var notReady []string
	for _, s := range rep.Services {
		if s.State != ServiceReady {
			notReady = append(notReady, s.Name+" ("+string(s.State)+")")
		}
	}
	errs := []error{fmt.Errorf("not ready: %s", strings.Join(notReady, ", "))}
	for _, f := range failures {
		errs = append(errs, f)
	}
	if ctx.Err() != nil {
		errs = append(errs, fmt.Errorf("cancelled: %w", context.Cause(ctx)))
	}
	return rep, fmt.Errorf("%s run %s: %w", op, r.run.Name, errors.Join(append(errs, stErr)...))
}

// Repair verifies every service, levels in order, and restarts (terminate,
// boot, ready) each one whose check fails, up to maxRestarts times per call;
// ServiceRecord.Restarts counts restarts over the run's life. Services of
// later levels that use a restarted service's attributes are not rebooted:
// an event says so. Levels after one that stays broken are only verified.
func (e *Engine) Repair(ctx context.Context, run string, maxRestarts int) (*Report, error) {
	return e.repair(ctx, "repair", run, maxRestarts, nil)
}

// Restart is Repair for the named services only: each is verified and, if
// its check fails (at once when its process is known dead), restarted
// through the same boot and ready steps, levels in order. The other
// services are neither checked nor touched. A supervisor that saw a
// process die uses it, so a restarted service gets exactly what a person's
// `mgmt repair` would give it (credentials, files, certificates).
func (e *Engine) Restart(ctx context.Context, run string, names []string) (*Report, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("restart run %s: no service named", run)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	return e.repair(ctx, "restart", run, 1, want)
}

func (e *Engine) repair(ctx context.Context, op, run string, maxRestarts int, want map[string]bool) (*Report, error) {
	if maxRestarts < 0 {
		return nil, fmt.Errorf("%s run %s: max restarts %d is negative", op, run, maxRestarts)
	}
	r, err := e.open(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("%s run %s: %w", op, run, err)
	}
	// A supervisor never restarts what a teardown is taking down.
	if r.run.State == RunTerminated || (want != nil && r.run.State == RunTerminating) {
		return r.report(nil, nil), fmt.Errorf("%s run %s: the run is %s; launch it instead", op, run, r.run.State)
	}
	for n := range want {
		if _, ok := r.svcs[n]; !ok {
			return r.report(nil, nil), fmt.Errorf("%s run %s: no service %q in its plan", op, run, n)
		}
	}
	var (
		failures  []*StepError
		restarted []*launchplan.Service
	)
	for li := range r.plan.Levels {
		canRestart := len(failures) == 0
		fs := r.forLevel(ctx, &r.plan.Levels[li], StepReady, false, func(ctx context.Context, svc *launchplan.Service) *StepError {
			if want != nil && !want[svc.Name] {
				return nil
			}
			var se *StepError
			switch st := r.get(svc.Name).State; st {
			case ServicePending, ServiceTerminated:
				se = &StepError{Run: r.run.Name, Service: svc.Name, Level: svc.Level, Step: StepReady, ExitCode: NoExit,
					Err: fmt.Errorf("service is %s", st)}
			default:
				se = r.verify(ctx, svc, true)
			}
			if se == nil || !canRestart {
				return se
			}
			for attempt := 1; attempt <= maxRestarts && ctx.Err() == nil; attempt++ {
				rec := r.get(svc.Name)
				rec.Restarts++
				if err := r.put(rec, Event{Kind: EventServiceState, Message: fmt.Sprintf("restart %d of %d: %s", attempt, maxRestarts, se.Summary())}); err != nil {
					return r.fail(svc, &StepError{Step: StepBoot, ExitCode: NoExit, Err: err})
				}
				r.bestEffortTerminate(ctx, svc)
				if se = r.boot(ctx, svc); se == nil {
					r.mu.Lock()
					restarted = append(restarted, svc)
					r.mu.Unlock()
					return nil
				}
			}
			return se
		})
		failures = append(failures, fs...)
	}
	r.noteDependents(restarted)
	return r.finishMaintenance(ctx, op, failures)
}

// noteDependents records, for each restarted service, the later services
// that use its attributes and may now hold stale values.
func (r *runner) noteDependents(restarted []*launchplan.Service) {
	for _, dep := range restarted {
		var users []string
		for _, n := range r.order {
			svc := r.svcs[n]
			if svc.Level > dep.Level && refersTo(svc, dep.Name) {
				users = append(users, n)
			}
		}
		if len(users) > 0 {
			_ = r.emit(Event{Kind: EventNote, Level: dep.Level, Service: dep.Name,
				Message: fmt.Sprintf("restarted; %s use its attributes and were not rebooted (terminate and launch again to refresh them)", strings.Join(users, ", "))})
		}
	}
}

// refersTo reports whether any template of svc names service name.
func refersTo(svc *launchplan.Service, name string) bool {
	b, err := json.Marshal(svc)
	if err != nil {
		return true
	}
	return strings.Contains(string(b), "${"+name+".")
}
