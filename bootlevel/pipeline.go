package bootlevel

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"nightshift/internal/backoff"
	"nightshift/internal/nsenv"
	"nightshift/internal/redact"
	"nightshift/launchplan"
)

// defaultReadyInterval applies when a plan leaves ready_interval at zero, so
// that a failing ready check cannot spin.
const defaultReadyInterval = time.Second

func typed(svc *launchplan.Service) bool { return svc.Type != "" }

// hasStep reports whether a step must run: the program exists, or a typed
// service's implementation decides what the step means.
func hasStep(svc *launchplan.Service, p *launchplan.Program) bool { return p != nil || typed(svc) }

// boot runs the whole pipeline of one service from scratch: acquire,
// expand, boot, attributes, ready.
func (r *runner) boot(ctx context.Context, svc *launchplan.Service) *StepError {
	drv, err := r.driver(svc)
	if err != nil {
		return r.fail(svc, &StepError{Step: StepAcquire, ExitCode: NoExit, Err: err})
	}
	if cause := context.Cause(ctx); cause != nil {
		// Reached after a best-effort terminate that the cancellation cut short.
		return r.fail(svc, &StepError{Step: StepAcquire, ExitCode: NoExit, Err: describeCause(cause)})
	}
	rec := r.get(svc.Name)
	rec.State = ServiceBooting
	rec.Host = Host{}
	rec.Attributes = nil
	rec.Error = ""
	rec.Started = r.clock.Now()
	rec.ReadyAt, rec.Ended = time.Time{}, time.Time{}
	rec.LogPath = r.logPath(svc.Name)
	r.mu.Lock()
	r.started[svc.Name] = true
	r.mu.Unlock()
	if err := r.put(rec, Event{Kind: EventStepStart, Step: StepAcquire, Message: "acquire host with driver " + driverName(svc)}); err != nil {
		return r.fail(svc, &StepError{Step: StepAcquire, ExitCode: NoExit, Err: err})
	}
	if err := r.mkdir(filepath.Dir(rec.LogPath)); err != nil {
		return r.fail(svc, &StepError{Step: StepAcquire, ExitCode: NoExit, Err: fmt.Errorf("create log directory: %w", err)})
	}
	// The run's own log directory (not a plan's work_dir) is private, like
	// the logs in it; a directory an older version made 0755 is tightened.
	if err := os.Chmod(filepath.Dir(rec.LogPath), 0o700); err != nil {
		return r.fail(svc, &StepError{Step: StepAcquire, ExitCode: NoExit, Err: fmt.Errorf("log directory: %w", err)})
	}

	acq, err := r.hostView(svc, nil)
	if err != nil {
		return r.fail(svc, &StepError{Step: StepAcquire, ExitCode: NoExit, Err: err})
	}
	host, err := drv.Acquire(ctx, r.run.Name, acq)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = describeCause(cause)
		}
		return r.fail(svc, &StepError{Step: StepAcquire, ExitCode: NoExit, Err: err})
	}
	attrs := make(map[string]string, len(host.Attrs)+4)
	maps.Copy(attrs, host.Attrs)
	attrs[launchplan.AttrHostname] = host.Hostname
	attrs[launchplan.AttrInstanceID] = host.InstanceID
	attrs[launchplan.AttrRun] = r.run.Name
	attrs[launchplan.AttrLevel] = itoa(svc.Level)
	rec = r.get(svc.Name)
	rec.Host, rec.Attributes = host, attrs
	if err := r.put(rec, Event{Kind: EventStepDone, Step: StepAcquire, Message: fmt.Sprintf("host %q instance %q", host.Hostname, host.InstanceID)}); err != nil {
		return r.fail(svc, &StepError{Step: StepAcquire, ExitCode: NoExit, Err: err})
	}

	exp, env, err := r.expand(svc, StepBoot)
	if err != nil {
		return r.fail(svc, &StepError{Step: StepBoot, ExitCode: NoExit, Err: err})
	}
	if svc.WorkDir == "" {
		if err := r.mkdir(exp.WorkDir); err != nil {
			return r.fail(svc, &StepError{Step: StepBoot, ExitCode: NoExit, Err: fmt.Errorf("create work directory: %w", err)})
		}
	}
	var outputs map[string]string
	bootDone := r.clock.Now()
	if hasStep(svc, exp.Boot) {
		if err := r.put(r.get(svc.Name), Event{Kind: EventStepStart, Step: StepBoot, Message: describeProgram(exp.Boot, svc)}); err != nil {
			return r.fail(svc, &StepError{Step: StepBoot, ExitCode: NoExit, Err: err})
		}
		res, se := r.runStep(ctx, drv, exp, env, StepBoot, exp.Boot, svc.BootTimeout)
		if se != nil {
			return r.fail(svc, se)
		}
		outputs = res.Outputs
		bootDone = r.clock.Now()
	}
	rec = r.get(svc.Name)
	attrs, err = r.finishAttributes(svc, rec.Attributes, outputs)
	if err != nil {
		return r.fail(svc, &StepError{Step: StepBoot, ExitCode: NoExit, Err: err})
	}
	rec.Attributes = attrs
	msg := "booted"
	if len(outputs) > 0 {
		msg = "booted; exported " + strings.Join(slices.Sorted(maps.Keys(outputs)), ", ")
	}
	if err := r.put(rec, Event{Kind: EventStepDone, Step: StepBoot, Message: msg}); err != nil {
		return r.fail(svc, &StepError{Step: StepBoot, ExitCode: NoExit, Err: err})
	}

	if hasStep(svc, svc.Ready) {
		// Expand again: the ready program may use what boot exported.
		exp, env, err = r.expand(svc, StepReady)
		if err != nil {
			return r.fail(svc, &StepError{Step: StepReady, ExitCode: NoExit, Err: err})
		}
		if err := r.put(r.get(svc.Name), Event{Kind: EventStepStart, Step: StepReady, Message: describeProgram(exp.Ready, svc)}); err != nil {
			return r.fail(svc, &StepError{Step: StepReady, ExitCode: NoExit, Err: err})
		}
		if se := r.waitReady(ctx, drv, svc, exp, env, bootDone, true); se != nil {
			return r.fail(svc, se)
		}
	}
	rec = r.get(svc.Name)
	rec.State = ServiceReady
	rec.ReadyAt = r.clock.Now()
	if err := r.put(rec, Event{Kind: EventServiceState, Message: "ready"}); err != nil {
		return r.fail(svc, &StepError{Step: StepReady, ExitCode: NoExit, Err: err})
	}
	return nil
}

func driverName(svc *launchplan.Service) string {
	if typed(svc) && (svc.Driver == "" || svc.Driver == launchplan.DriverLocal) {
		return "type " + svc.Type
	}
	if typed(svc) {
		// The type says what runs, its driver where.
		return svc.Driver + " for type " + svc.Type
	}
	return svc.Driver
}

func describeProgram(p *launchplan.Program, svc *launchplan.Service) string {
	if p == nil {
		return "built-in " + svc.Type
	}
	return strings.Join(append([]string{p.Path}, p.Args...), " ")
}

// adopt gives a service that was found booting (the previous launch died
// mid-boot) one ready attempt; if it passes and its exports are there, the
// service is kept as it is.
func (r *runner) adopt(ctx context.Context, svc *launchplan.Service) bool {
	rec := r.get(svc.Name)
	drv, err := r.driver(svc)
	if err != nil || (rec.Host.Hostname == "" && rec.Host.InstanceID == "") || !hasStep(svc, svc.Ready) {
		return false
	}
	exp, env, err := r.expand(svc, StepReady)
	if err != nil {
		return false
	}
	_ = r.emit(Event{Kind: EventNote, Level: svc.Level, Service: svc.Name, Step: StepReady, Message: "found booting after an interrupted launch; one ready attempt to adopt it"})
	if _, se := r.runStep(ctx, drv, exp, env, StepReady, exp.Ready, svc.ReadyTimeout); se != nil {
		_ = r.emit(Event{Kind: EventNote, Level: svc.Level, Service: svc.Name, Step: StepReady, Message: "not adopted: " + se.Summary() + "; rebooting"})
		return false
	}
	attrs, err := r.finishAttributes(svc, rec.Attributes, nil)
	if err != nil {
		_ = r.emit(Event{Kind: EventNote, Level: svc.Level, Service: svc.Name, Message: "not adopted: " + err.Error() + "; rebooting"})
		return false
	}
	rec = r.get(svc.Name)
	rec.Attributes = attrs
	rec.State = ServiceReady
	rec.Error = ""
	rec.ReadyAt = r.clock.Now()
	return r.put(rec, Event{Kind: EventServiceState, Message: "adopted after ready check"}) == nil
}

// verify re-runs a service's ready check (with retries up to ReadyTimeout
// when retries is set) and records the result. A service without a ready
// check keeps its state: it passes only if it was ready.
func (r *runner) verify(ctx context.Context, svc *launchplan.Service, retries bool) *StepError {
	rec := r.get(svc.Name)
	if !hasStep(svc, svc.Ready) {
		if rec.State == ServiceReady {
			return nil
		}
		return &StepError{Run: r.run.Name, Service: svc.Name, Level: svc.Level, Step: StepReady, ExitCode: NoExit,
			Err: fmt.Errorf("service is %s and has no ready program to check", rec.State), LogPath: rec.LogPath}
	}
	drv, err := r.driver(svc)
	if err != nil {
		return r.fail(svc, &StepError{Step: StepReady, ExitCode: NoExit, Err: err})
	}
	exp, env, err := r.expand(svc, StepReady)
	if err != nil {
		return r.fail(svc, &StepError{Step: StepReady, ExitCode: NoExit, Err: err})
	}
	if err := r.emit(Event{Kind: EventStepStart, Level: svc.Level, Service: svc.Name, Step: StepReady, Message: "verify: " + describeProgram(exp.Ready, svc)}); err != nil {
		return r.fail(svc, &StepError{Step: StepReady, ExitCode: NoExit, Err: err})
	}
	if se := r.waitReady(ctx, drv, svc, exp, env, time.Time{}, retries); se != nil {
		return r.fail(svc, se)
	}
	rec = r.get(svc.Name)
	if rec.State != ServiceReady {
		rec.State = ServiceReady
		rec.ReadyAt = r.clock.Now()
	}
	rec.Error = ""
	if err := r.put(rec, Event{Kind: EventStepDone, Step: StepReady, Message: "verified"}); err != nil {
		return r.fail(svc, &StepError{Step: StepReady, ExitCode: NoExit, Err: err})
	}
	return nil
}

// waitReady runs the ready program until it passes, retrying every
// ReadyInterval until ReadyTimeout. Failures inside ReadyStartPeriod after
// bootDone are expected (the service is still coming up) and not reported.
func (r *runner) waitReady(ctx context.Context, drv Driver, svc, exp *launchplan.Service, env map[string]string, bootDone time.Time, retries bool) *StepError {
	if !retries || svc.ReadyTimeout <= 0 {
		_, se := r.runStep(ctx, drv, exp, env, StepReady, exp.Ready, svc.ReadyTimeout)
		return se
	}
	deadline := r.clock.Now().Add(svc.ReadyTimeout)
	grace := bootDone.Add(svc.ReadyStartPeriod)
	interval := svc.ReadyInterval
	if interval <= 0 {
		interval = defaultReadyInterval
	}
	// Ready checks poll at a constant interval: a service coming up is not
	// a failure to back off from.
	retry := backoff.Backoff{Policy: backoff.Policy{Initial: interval, Multiplier: 1}}
	// A run of identical failures (a service still coming up, every 200 ms)
	// is recorded as its first and its last, with a count: history is for
	// what changed, and once made up 97% of a run's events.
	var same struct {
		why          string
		first, count int
		last         Event
	}
	flush := func() {
		if same.count > 1 {
			ev := same.last
			ev.Message += fmt.Sprintf(" (%d identical failures since attempt %d)", same.count, same.first)
			_ = r.emit(ev)
		}
		same.why, same.count = "", 0
	}
	defer flush()
	for attempt := 1; ; attempt++ {
		res, se := r.runStep(ctx, drv, exp, env, StepReady, exp.Ready, r.clock.Until(deadline))
		if se == nil {
			return nil
		}
		if res.Gone {
			se.Err = errors.Join(se.Err, errors.New("the service's process is gone; not retrying"))
			return se
		}
		if ctx.Err() != nil {
			return se
		}
		// Give up when the next attempt could not start before the deadline.
		now := r.clock.Now()
		wait := retry.Next()
		if !now.Add(wait).Before(deadline) {
			if se.Err != nil {
				se.Err = fmt.Errorf("not ready within %s after %d attempts: %w", svc.ReadyTimeout, attempt, se.Err)
			} else {
				se.Err = fmt.Errorf("not ready within %s after %d attempts", svc.ReadyTimeout, attempt)
			}
			return se
		}
		if now.Before(grace) {
			r.log.Debug("ready check failed within start period", "service", svc.Name, "attempt", attempt)
		} else {
			se.Service, se.Level = svc.Name, svc.Level
			why := strings.TrimPrefix(se.Summary(), fmt.Sprintf("service %q (level %d) step ready failed: ", svc.Name, svc.Level))
			if len(se.Tail) > 0 {
				why += ": " + se.Tail[len(se.Tail)-1]
			}
			msg := fmt.Sprintf("ready attempt %d failed: %s; retrying in %s", attempt, why, wait)
			r.log.Info("ready check failed", "service", svc.Name, "attempt", attempt, "exit_code", se.ExitCode)
			ev := Event{Kind: EventStepRetry, Level: svc.Level, Service: svc.Name, Step: StepReady, Message: msg}
			if same.count > 0 && why == same.why {
				same.count++
				same.last = ev
				live := ev
				live.Message += fmt.Sprintf(" (%d identical failures since attempt %d)", same.count, same.first)
				r.notify(live)
			} else {
				flush()
				_ = r.emit(ev)
				same.why, same.first, same.count, same.last = why, attempt, 1, ev
			}
		}
		t := r.clock.NewTimer(wait)
		select {
		case <-t.Chan():
		case <-ctx.Done():
			t.Stop()
			return &StepError{Step: StepReady, ExitCode: NoExit, Err: describeCause(context.Cause(ctx)), Tail: se.Tail}
		}
	}
}

// withTimeout bounds a step by the engine's clock (so fake clocks work) and
// marks the expiry with a stepTimeout cause, to tell it from cancellation.
func (r *runner) withTimeout(ctx context.Context, d time.Duration, step Step) (context.Context, func()) {
	sctx, cancel := context.WithCancelCause(ctx)
	if d <= 0 {
		return sctx, func() { cancel(nil) }
	}
	t := r.clock.AfterFunc(d, func() { cancel(&stepTimeout{step: step, d: d.String()}) })
	return sctx, func() { t.Stop(); cancel(nil) }
}

// runStep runs one program of a service through its driver and turns any
// failure into a StepError (not yet recorded).
func (r *runner) runStep(ctx context.Context, drv Driver, exp *launchplan.Service, env map[string]string, step Step, prog *launchplan.Program, timeout time.Duration) (StepResult, *StepError) {
	return r.step(ctx, drv, exp, env, step, prog, timeout, r.logPath(exp.Name), true)
}

// step runs one program through its driver with its output in logPath;
// it records nothing itself (Check relies on that).
// With header, the step's log starts with a header line, unless the driver
// writes its own (one header per step).
func (r *runner) step(ctx context.Context, drv Driver, exp *launchplan.Service, env map[string]string, step Step, prog *launchplan.Program, timeout time.Duration, logPath string, header bool) (StepResult, *StepError) {
	rec := r.get(exp.Name)
	req := StepRequest{
		Run:      r.run.Name,
		Level:    exp.Level,
		Service:  exp,
		Step:     step,
		Env:      env,
		WorkDir:  exp.WorkDir,
		LogPath:  logPath,
		Host:     rec.Host,
		Redactor: r.red,
		Plan:     r.plan,
		Expand:   r.scope(maps.Clone(exp.Attributes)).Expand,
		Reboot:   rebooting(ctx),
	}
	if prog != nil {
		req.Program = *prog
	}
	if hw, ok := drv.(StepHeaderWriter); header && !(ok && hw.WritesStepHeader(req)) {
		r.appendLog(logPath, fmt.Sprintf("=== %s %s: %s", r.clock.Now().UTC().Format(time.RFC3339), step, describeProgram(prog, exp)))
	}
	sctx, stop := r.withTimeout(ctx, timeout, step)
	res, err := drv.Run(sctx, req)
	cause := context.Cause(sctx)
	stop()
	se := &StepError{Step: step, ExitCode: res.ExitCode, Tail: res.Tail, LogPath: req.LogPath}
	switch {
	case cause != nil:
		// The driver killed the program; whatever it reported is moot.
		se.ExitCode, se.Err = NoExit, describeCause(cause)
	case err != nil:
		se.ExitCode, se.Err = NoExit, err
	case res.ExitCode != 0:
	default:
		return res, nil
	}
	return res, se
}

// appendLog adds an engine line to a service's log; the log is a help for
// the operator, so failing to write it does not fail the step.
func (r *runner) appendLog(path, line string) {
	// Private, and tightened if an older version left it 0644: programs
	// print connection strings. The directory is created for teardown or
	// verify on a machine (or Home) that never booted the run.
	f, err := redact.OpenPrivate(path)
	if err != nil {
		r.log.Warn("service log", "path", path, "err", err)
		return
	}
	_, err = f.WriteString(r.scrub(line) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.log.Warn("service log", "path", path, "err", err)
	}
}

// fail records that a service failed at se.Step and returns se, completed.
func (r *runner) fail(svc *launchplan.Service, se *StepError) *StepError {
	se.Run, se.Service, se.Level = r.run.Name, svc.Name, svc.Level
	if se.LogPath == "" {
		se.LogPath = r.logPath(svc.Name)
	}
	for i, l := range se.Tail {
		se.Tail[i] = r.scrub(l)
	}
	if se.Err != nil {
		// Driver errors may quote a URL or a command line with a secret in it.
		if msg := r.scrub(se.Err.Error()); msg != se.Err.Error() {
			se.Err = &scrubbedError{msg: msg, err: se.Err}
		}
	}
	rec := r.get(svc.Name)
	rec.State = ServiceFailed
	rec.Ended = r.clock.Now()
	var sib *siblingFailed
	if errors.As(se.Err, &sib) {
		rec.Error = sib.Error()
	} else {
		rec.Error = r.scrub(se.Summary())
	}
	if err := r.put(rec, Event{Kind: EventStepFailed, Step: se.Step, Message: rec.Error}); err != nil {
		r.log.Error("record failure", "service", svc.Name, "err", err)
	}
	r.log.Warn("service failed", "service", svc.Name, "level", svc.Level, "step", se.Step, "err", rec.Error)
	return se
}

// expand returns the service with every template resolved against the
// records, and the environment of its programs.
// Only the program of step is expanded (the others come back nil): a ready
// or terminate program may use attributes that exist only after boot.
func (r *runner) expand(svc *launchplan.Service, step Step) (*launchplan.Service, map[string]string, error) {
	rec := r.get(svc.Name)
	self := maps.Clone(rec.Attributes)
	if self == nil {
		self = map[string]string{}
	}
	// Declared attributes that need nothing from boot are usable by the
	// service's own programs (${.port}); the rest wait for boot's outputs.
	r.expandDeclared(svc, self, func(k string) bool { _, have := self[k]; return have }, false)
	cp := *svc
	cp.Attributes = nil
	if step != StepBoot {
		cp.Boot = nil
	}
	if step != StepReady {
		cp.Ready = nil
	}
	if step != StepTerminate {
		cp.Terminate = nil
	}
	exp, err := launchplan.ExpandService(&cp, r.scope(self))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", svc.Pos, err)
	}
	if exp.WorkDir == "" {
		exp.WorkDir = r.layout().Work(svc.Name)
	}
	// Drivers and built-in types see every attribute known so far, boot's
	// exports included: a broker's ready check needs the url its boot made.
	exp.Attributes = maps.Clone(self)
	r.red.AddAttrs(self)
	r.red.AddAttrs(exp.Env)
	env := make(map[string]string, len(exp.Env)+5)
	maps.Copy(env, exp.Env)
	env[nsenv.Run] = r.run.Name
	env[nsenv.Service] = svc.Name
	env[nsenv.Level] = itoa(svc.Level)
	env[nsenv.Hostname] = rec.Host.Hostname
	env[nsenv.InstanceID] = rec.Host.InstanceID
	return exp, env, nil
}

func (r *runner) scope(self map[string]string) launchplan.Scope {
	return launchplan.Scope{Self: self, Service: r.lookup, Globals: r.plan.Globals, Getenv: r.getenv}
}

// expandDeclared expands the declared attributes not skipped into attrs,
// repeating while progress is made since attributes may refer to each
// other. With strict, an attribute that cannot be expanded is an error.
func (r *runner) expandDeclared(svc *launchplan.Service, attrs map[string]string, skip func(string) bool, strict bool) error {
	var todo []string
	for _, k := range slices.Sorted(maps.Keys(svc.Attributes)) {
		if !skip(k) {
			todo = append(todo, k)
		}
	}
	sc := r.scope(attrs)
	errs := map[string]error{}
	for len(todo) > 0 {
		var left []string
		for _, k := range todo {
			v, err := sc.Expand(svc.Attributes[k])
			if err != nil {
				errs[k] = err
				left = append(left, k)
				continue
			}
			attrs[k] = v
		}
		if len(left) == len(todo) {
			break
		}
		todo = left
	}
	if strict && len(todo) > 0 {
		k := todo[0]
		return fmt.Errorf("attribute %q of service %s (%s): %w", k, svc.Name, svc.Pos, errs[k])
	}
	return nil
}

// finishAttributes merges what boot exported into the attributes and
// expands the declared ones, which may use the exports. An export that
// boot promised but did not write is an error.
func (r *runner) finishAttributes(svc *launchplan.Service, base, outputs map[string]string) (map[string]string, error) {
	attrs := maps.Clone(base)
	if attrs == nil {
		attrs = map[string]string{}
	}
	for k, v := range outputs {
		// run and level are facts of the engine, not the program's to change.
		if k == launchplan.AttrRun || k == launchplan.AttrLevel {
			continue
		}
		attrs[k] = v
	}
	var missing []string
	for _, k := range svc.Exports {
		if _, ok := attrs[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("boot program of service %s (%s) did not export %s, declared in exports", svc.Name, svc.Pos, strings.Join(missing, ", "))
	}
	// An exported value wins over a declared one of the same name: it is
	// what the program actually set up.
	if err := r.expandDeclared(svc, attrs, func(k string) bool { _, out := outputs[k]; return out }, true); err != nil {
		return nil, err
	}
	return attrs, nil
}

// terminate runs the terminate program of a service and releases its host.
// A failed terminate program leaves the host in place (as cloudinit.d) so
// that a second terminate can retry on the same host.
func (r *runner) terminate(ctx context.Context, svc *launchplan.Service) error {
	rec := r.get(svc.Name)
	switch rec.State {
	case ServicePending, "":
		rec.State = ServiceTerminated
		rec.Ended = r.clock.Now()
		return r.put(rec, Event{Kind: EventServiceState, Message: "never booted"})
	case ServiceTerminated:
		return nil
	}
	drv, err := r.driver(svc)
	if err != nil {
		return r.fail(svc, &StepError{Step: StepTerminate, ExitCode: NoExit, Err: err})
	}
	rec.State = ServiceTerminating
	if err := r.put(rec, Event{Kind: EventServiceState}); err != nil {
		return r.fail(svc, &StepError{Step: StepTerminate, ExitCode: NoExit, Err: err})
	}
	hostKnown := rec.Host.Hostname != "" || rec.Host.InstanceID != ""
	if hostKnown && hasStep(svc, svc.Terminate) {
		exp, env, err := r.expand(svc, StepTerminate)
		switch {
		case err != nil:
			// Typically a boot that failed before exporting what the terminate
			// program refers to. Refusing would make the service impossible
			// to tear down, so the program is skipped, loudly.
			r.log.Warn("terminate program skipped", "service", svc.Name, "err", err)
			if err := r.emit(Event{Kind: EventNote, Level: svc.Level, Service: svc.Name, Step: StepTerminate, Message: "terminate program skipped: " + err.Error()}); err != nil {
				return r.fail(svc, &StepError{Step: StepTerminate, ExitCode: NoExit, Err: err})
			}
		default:
			if err := r.emit(Event{Kind: EventStepStart, Level: svc.Level, Service: svc.Name, Step: StepTerminate, Message: describeProgram(exp.Terminate, svc)}); err != nil {
				return r.fail(svc, &StepError{Step: StepTerminate, ExitCode: NoExit, Err: err})
			}
			if _, se := r.runStep(ctx, drv, exp, env, StepTerminate, exp.Terminate, svc.TerminateTimeout); se != nil {
				return r.fail(svc, se)
			}
		}
	}
	if err := r.emit(Event{Kind: EventStepStart, Level: svc.Level, Service: svc.Name, Step: StepRelease, Message: "release host with driver " + driverName(svc)}); err != nil {
		return r.fail(svc, &StepError{Step: StepRelease, ExitCode: NoExit, Err: err})
	}
	rel, err := r.hostView(svc, rec.Attributes)
	if err != nil {
		return r.fail(svc, &StepError{Step: StepRelease, ExitCode: NoExit, Err: err})
	}
	if err := drv.Release(ctx, r.run.Name, rel, rec.Host); err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = describeCause(cause)
		}
		return r.fail(svc, &StepError{Step: StepRelease, ExitCode: NoExit, Err: err})
	}
	rec = r.get(svc.Name)
	rec.State = ServiceTerminated
	rec.Ended = r.clock.Now()
	rec.Error = ""
	return r.put(rec, Event{Kind: EventServiceState})
}

// mkdir creates a directory once per engine call; the log directory is
// shared by every service and directory syscalls are not free.
func (r *runner) mkdir(dir string) error {
	r.mu.Lock()
	done := r.dirs[dir]
	r.mu.Unlock()
	if done {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r.mu.Lock()
	r.dirs[dir] = true
	r.mu.Unlock()
	return nil
}

// hostView is svc with its ec2 table expanded, for Acquire and Release: the
// host must be chosen (region, image, ...) before boot, so only globals,
// the environment and earlier services can be used there, plus self
// attributes already known (at release).
func (r *runner) hostView(svc *launchplan.Service, self map[string]string) (*launchplan.Service, error) {
	if len(svc.EC2) == 0 {
		return svc, nil
	}
	only := launchplan.Service{Name: svc.Name, Pos: svc.Pos, EC2: svc.EC2}
	exp, err := launchplan.ExpandService(&only, r.scope(maps.Clone(self)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", svc.Pos, err)
	}
	out := *svc
	out.EC2 = exp.EC2
	return &out, nil
}
