package sitter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jonboulle/clockwork"
	"gopkg.in/natefinch/lumberjack.v2"
)

type opKind int

const (
	opStart opKind = iota
	opStop
	opRestart
	opDrain
	opRemove
)

func (o opKind) String() string {
	return [...]string{"start", "stop", "restart", "drain", "remove"}[o]
}

type command struct {
	op    opKind
	reply chan error
}

// snapshot is one sample, shared read-only while the sample loop measures
// each run from it: either the trees of every run (TreeSampler) or one
// host-wide process scan.
type snapshot struct {
	at    time.Time
	procs []ProcSample
	// trees is keyed by leader pid; nil when the Sampler scans the host.
	trees map[int][]ProcSample
}

// stopIntent is why the current run is being stopped; it decides what
// happens when the process is gone.
type stopIntent int

const (
	intentNone stopIntent = iota
	intentViolation
	intentRestart
	intentStop
	intentShutdown
)

// runner owns one task: a single goroutine (loop) makes every decision, so
// the task's state needs no locking beyond the status snapshot and the
// meter the sample loop shares.
type runner struct {
	s      *Sitter
	spec   Task
	stdout *lumberjack.Logger
	stderr *lumberjack.Logger
	cmds   chan command
	// violations carries what the sample loop found over a limit; only the
	// newest matters, so it holds one.
	violations chan runViolation
	done       chan struct{}
	runs       int    // cgroups made, for their names
	seq        uint64 // runs started; owned by loop

	// workDirty: the status file may have changed since it was last read.
	// With inotify it is set by the watch; without, it is always read.
	workDirty   atomic.Bool
	workWatched atomic.Bool

	mu sync.Mutex
	st TaskStatus
	// meter is the current run as the sample loop measures it (run 0: no
	// run); loop replaces it at each start and exit, the sample loop
	// advances it.
	meter meter
}

// meter is what the sample loop keeps of one run between samples. Keeping
// it here, and measuring from the sample loop rather than handing each
// sample to each runner, means an idle host costs one goroutine wake-up per
// sample instead of one per task.
type meter struct {
	run     uint64
	root    Root
	prev    Usage
	strikes int
	// spare is the members slice of the sample before prev, reused for
	// the next one.
	spare []memberCPU
}

// runViolation is a limit the sample loop saw broken by run.
type runViolation struct {
	run uint64
	v   *Violation
}

// setMeter publishes the run the sample loop should measure next.
func (r *runner) setMeter(m meter) {
	r.mu.Lock()
	r.meter = m
	r.mu.Unlock()
}

// target is the current run, for the sample loop; ok is false between runs.
func (r *runner) target() (run uint64, root Root, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.meter.run, r.meter.root, r.meter.run != 0
}

// measure advances run's meter by one sample and checks its limits. A
// sample taken for a run that has since ended is dropped.
func (r *runner) measure(run uint64, snap snapshot) {
	current, root, _ := r.target()
	if current != run {
		return
	}
	var tree []ProcSample
	if snap.trees != nil {
		var ok bool
		// Absent: the leader just died; its exit is handled on its own.
		if tree, ok = snap.trees[root.PID]; !ok {
			return
		}
	} else {
		var extra []int
		if root.Group != nil {
			extra, _ = root.Group.PIDs()
		}
		tree = TreeOf(snap.procs, root.PID, extra)
	}
	// Checked again: the run may have ended while the tree was cut.
	r.mu.Lock()
	m := &r.meter
	if m.run != run {
		r.mu.Unlock()
		return
	}
	u := measureInto(m.spare, tree, snap.at, m.prev)
	m.spare, m.prev = m.prev.members, u
	// Known is read by Trees in the same sample loop, before this runs
	// again, so its array can be reused too.
	m.root.Known = u.appendMembers(m.root.Known[:0])
	var v *Violation
	v, m.strikes = Check(r.spec, u, m.strikes)
	r.st.CPU, r.st.MemMB = u.CPU, u.MemMB
	r.mu.Unlock()
	if v != nil {
		r.flag(runViolation{run: run, v: v})
	}
}

// refreshWork reads the worker's status file when it may have changed.
func (r *runner) refreshWork(run uint64) {
	if r.workWatched.Load() && !r.workDirty.Swap(false) {
		return
	}
	work := WorkUnknown
	if b, err := os.ReadFile(r.statusFile()); err == nil {
		work = ParseWork(b)
	}
	r.mu.Lock()
	if r.meter.run == run {
		r.st.Work = work
	}
	r.mu.Unlock()
}

func newRunner(s *Sitter, t Task) *runner {
	// lumberjack does size-based rotation with numbered backups and is
	// well kept; writing our own rotation would mean re-solving rename
	// races and backup pruning that it already gets right.
	logger := func(stream string) *lumberjack.Logger {
		// lumberjack creates logs 0600 and gives backups the mode of the
		// file they rotate, but appends to an existing file as it is: tighten
		// what an older version left 0644 (tasks print connection strings).
		tightenLogs(s.logFile(t.Name, stream))
		return &lumberjack.Logger{
			Filename:   s.logFile(t.Name, stream),
			MaxSize:    t.LogMaxMB,
			MaxBackups: t.LogBackups,
		}
	}
	return &runner{
		s: s, spec: t,
		stdout: logger("stdout"), stderr: logger("stderr"),
		cmds:       make(chan command),
		violations: make(chan runViolation, 1),
		done:       make(chan struct{}),
		st:         TaskStatus{Name: t.Name, State: StateStopped, Work: WorkUnknown},
	}
}

func (r *runner) status() TaskStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.st
	if st.LastViolation != nil {
		v := *st.LastViolation
		st.LastViolation = &v
	}
	if st.Probe != nil {
		ps := *st.Probe
		st.Probe = &ps
	}
	return st
}

func (r *runner) update(f func(st *TaskStatus)) {
	r.mu.Lock()
	before := r.st.State
	f(&r.st)
	st := r.st
	r.mu.Unlock()
	if st.State != before {
		r.s.log.Info("task state", "task", st.Name, "state", st.State, "reason", st.Reason, "pid", st.PID)
		r.s.leaderChanged(st.Name, st.State, 0)
	}
}

// flag hands the runner a violation, replacing one it has not read yet:
// that one is of the same run or of an older one.
func (r *runner) flag(rv runViolation) {
	for range 2 {
		select {
		case r.violations <- rv:
			return
		default:
		}
		select {
		case <-r.violations:
		default:
		}
	}
}

func timerC(t clockwork.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.Chan()
}

func stopTimer(t *clockwork.Timer) {
	if *t != nil {
		(*t).Stop()
		*t = nil
	}
}

type healthResult struct {
	code   int
	output string
	err    error
}

// loop supervises the task until ctx ends (then the current run is stopped
// within its grace) or the task is removed.
func (r *runner) loop(ctx context.Context) {
	defer close(r.done)
	t := r.spec
	clock := r.s.clock
	var (
		p          *process
		hist       History
		intent     stopIntent
		violation  *Violation
		drained    bool
		removing   bool
		waiters    []chan error
		backoff    clockwork.Timer
		grace      clockwork.Timer
		deadline   clockwork.Timer
		health     clockwork.Timer
		healthDone chan healthResult
		// The probe's timer and the check in flight, per run as health's.
		probe     clockwork.Timer
		probeDone chan ProbeResult
		probeSt   ProbeStatus
	)
	reply := func(err error) {
		for _, w := range waiters {
			w <- err
		}
		waiters = nil
	}
	launch := func() error {
		stopTimer(&backoff)
		r.update(func(st *TaskStatus) { st.State, st.Reason, st.PID = StateStarting, "", 0 })
		np, err := r.start(ctx)
		if err != nil {
			now := clock.Now()
			end := RunEnd{Started: now, Ended: now, ExitCode: -1, Err: err.Error()}
			var dec Decision
			dec, hist = Decide(t, hist, end)
			r.apply(dec, hist, nil)
			if dec.Outcome == OutcomeRestart {
				backoff = clock.NewTimer(dec.Delay)
			}
			return fmt.Errorf("start task %s: %w", t.Name, err)
		}
		p, intent, violation, drained = np, intentNone, nil, false
		healthDone = nil // a check of the previous run must not judge this one
		r.writeRecord(p.pid)
		root := Root{PID: p.pid, Group: p.group}
		if _, start, err := procStat(p.pid); err == nil {
			root.Start = start
		}
		r.seq++
		p.run = r.seq
		r.workDirty.Store(true)
		// The first CPU delta runs from the start, so a spinner is caught
		// within cpuStrikes samples rather than cpuStrikes+1.
		r.setMeter(meter{run: p.run, root: root, prev: StartUsage(p.started)})
		if t.TimeLimit > 0 {
			deadline = clock.NewTimer(t.TimeLimit.D())
		}
		if len(t.HealthCommand) > 0 {
			health = clock.NewTimer(t.HealthInterval.D())
		}
		probeDone = nil
		if t.Health != nil {
			probeSt = ProbeStatus{State: ProbeStarting}
			probe = clock.NewTimer(t.Health.FirstCheck(p.started).Sub(clock.Now()))
		}
		r.update(func(st *TaskStatus) {
			if t.Health != nil {
				ps := probeSt
				st.Probe = &ps
			}
			st.State, st.PID, st.StartedAt, st.ExitCode, st.Reason = StateRunning, p.pid, p.started, 0, ""
			st.CPU, st.MemMB, st.Work = 0, 0, WorkUnknown
		})
		// Its linked tasks restart with each new run of it.
		r.s.leaderChanged(t.Name, StateRunning, p.run)
		return nil
	}
	beginStop := func(in stopIntent, v *Violation) {
		if p == nil {
			return
		}
		if intent != intentNone {
			// Already stopping: an operator's stop or a shutdown overrides
			// a restart or violation in progress, never the other way.
			if in > intent {
				intent = in
			}
			return
		}
		intent, violation = in, v
		if v != nil {
			r.s.log.Warn("limit violated, stopping task", "task", t.Name, "violation", v.String(), "pid", p.pid)
		}
		stopTimer(&deadline)
		stopTimer(&health)
		p.signalGroup(syscall.Signal(t.StopSignal))
		grace = clock.NewTimer(t.StopGrace.D())
	}
	onExit := func(res exitResult) {
		stopTimer(&grace)
		stopTimer(&deadline)
		stopTimer(&health)
		healthDone = nil
		stopTimer(&probe)
		probeDone = nil
		// Whatever the leader left behind dies with it.
		p.signalGroup(syscall.SIGKILL)
		end := RunEnd{Started: p.started, Ended: clock.Now(), ExitCode: res.code, Signal: res.signal, Violation: violation}
		if res.err != nil {
			end.Err = res.err.Error()
		}
		if p.group != nil {
			if killed, peak, err := p.group.OOM(); err == nil && killed && end.Violation == nil {
				end.Violation = &Violation{Kind: ViolationMem, Measured: float64(peak) / (1 << 20), Limit: t.Mem,
					At: end.Ended, Detail: "oom-killed by the kernel at the cgroup cap"}
			}
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := p.group.Remove(cctx); err != nil {
				r.s.log.Warn("remove cgroup", "task", t.Name, "err", err)
			}
			cancel()
		}
		p = nil
		r.setMeter(meter{})
		_ = os.Remove(r.recordFile())
		r.update(func(st *TaskStatus) {
			st.PID, st.ExitCode, st.CPU, st.MemMB = 0, res.code, 0, 0
			if end.Violation != nil {
				st.LastViolation = end.Violation
			}
		})
		switch {
		case intent == intentStop || intent == intentShutdown || removing:
			r.update(func(st *TaskStatus) { st.State, st.Reason = StateStopped, "stopped ("+end.String()+")" })
			reply(nil)
		case intent == intentRestart:
			hist = History{Total: hist.Total}
			reply(launch())
		case drained:
			r.update(func(st *TaskStatus) { st.State, st.Reason = StateExited, "drained ("+end.String()+")" })
		default:
			var dec Decision
			dec, hist = Decide(t, hist, end)
			r.apply(dec, hist, end.Violation)
			if dec.Outcome == OutcomeRestart {
				backoff = clock.NewTimer(dec.Delay)
			}
		}
	}

	r.sweepOrphans()
	if t.Autostart == nil || *t.Autostart {
		_ = launch()
	}
	for {
		var exited <-chan exitResult
		if p != nil {
			exited = p.exited
		}
		select {
		case <-ctx.Done():
			if backoff != nil {
				stopTimer(&backoff)
				r.update(func(st *TaskStatus) { st.State, st.Reason = StateStopped, "stopped during back-off" })
			}
			if p != nil {
				beginStop(intentShutdown, nil)
				if grace == nil { // the grace already ran out before shutdown
					grace = clock.NewTimer(t.StopGrace.D())
				}
				select {
				case res := <-p.exited:
					onExit(res)
				case <-grace.Chan():
					p.signalGroup(syscall.SIGKILL)
					onExit(<-p.exited)
				}
			}
			reply(ctx.Err())
			return

		case res := <-exited:
			onExit(res)
			if removing {
				return
			}

		case c := <-r.cmds:
			switch c.op {
			case opStart:
				if p != nil {
					c.reply <- nil
					continue
				}
				hist = History{Total: hist.Total}
				c.reply <- launch()
			case opStop, opRemove:
				removing = removing || c.op == opRemove
				if p == nil {
					stopTimer(&backoff)
					if st := r.status(); st.State == StateBackoff || st.State == StateStarting {
						r.update(func(st *TaskStatus) { st.State, st.Reason = StateStopped, "stopped" })
					}
					c.reply <- nil
					if removing {
						return
					}
					continue
				}
				beginStop(intentStop, nil)
				waiters = append(waiters, c.reply)
			case opRestart:
				if p == nil {
					hist = History{Total: hist.Total}
					c.reply <- launch()
					continue
				}
				beginStop(intentRestart, nil)
				waiters = append(waiters, c.reply)
			case opDrain:
				if p == nil {
					c.reply <- fmt.Errorf("drain task %s: not running", t.Name)
					continue
				}
				drained = true
				c.reply <- os.WriteFile(r.drainFile(), []byte("drain\n"), 0o644)
			}

		case <-timerC(backoff):
			backoff = nil
			_ = launch()

		case <-timerC(grace):
			grace = nil
			if p != nil {
				r.s.log.Warn("stop grace expired, killing process group", "task", t.Name, "pid", p.pid)
				p.signalGroup(syscall.SIGKILL)
			}

		case now := <-timerC(deadline):
			deadline = nil
			if p != nil {
				beginStop(intentViolation, &Violation{Kind: ViolationTime, Measured: now.Sub(p.started).Seconds(),
					Limit: t.TimeLimit.D().Seconds(), At: now})
			}

		case <-timerC(health):
			health = nil
			if p != nil && intent == intentNone {
				healthDone = make(chan healthResult, 1)
				go r.runHealth(ctx, healthDone)
			}

		case h := <-healthDone:
			healthDone = nil
			if p == nil || intent != intentNone {
				continue
			}
			if h.err == nil && h.code == 0 {
				health = clock.NewTimer(t.HealthInterval.D())
				continue
			}
			detail := h.output
			if h.err != nil {
				detail = h.err.Error()
			}
			beginStop(intentViolation, &Violation{Kind: ViolationHealth, Measured: float64(h.code), At: clock.Now(), Detail: detail})

		case <-timerC(probe):
			probe = nil
			if p != nil && intent == intentNone {
				probeDone = make(chan ProbeResult, 1)
				pr, port := *t.Health, p.port
				go func() { probeDone <- r.runProbe(ctx, pr, port) }()
			}

		case res := <-probeDone:
			probeDone = nil
			if p == nil || intent != intentNone {
				continue
			}
			probeSt = t.Health.Observe(probeSt, res)
			ps := probeSt
			r.update(func(st *TaskStatus) { st.Probe = &ps })
			if ps.Failures == t.Health.FailureThreshold {
				r.s.log.Warn("probe failing: task unhealthy", "task", t.Name, "failures", ps.Failures, "output", ps.Output)
			}
			probe = clock.NewTimer(t.Health.Interval.D())

		case rv := <-r.violations:
			// Stale (an earlier run) or late (already stopping): the stop in
			// progress stands.
			if p != nil && rv.run == p.run && intent == intentNone {
				beginStop(intentViolation, rv.v)
			}
		}
	}
}

// apply records a policy decision in the status.
func (r *runner) apply(dec Decision, h History, v *Violation) {
	r.update(func(st *TaskStatus) {
		st.State, st.Reason, st.Restarts, st.Failures = dec.State, dec.Reason, h.Total, h.Failures
		if v != nil {
			st.LastViolation = v
		}
	})
}

// runHealth runs the health command once, bounded by the health interval so
// a hung check cannot pile up behind itself.
func (r *runner) runHealth(ctx context.Context, out chan<- healthResult) {
	t := r.spec
	cred, u, err := credential(t)
	if err != nil {
		out <- healthResult{code: -1, err: err}
		return
	}
	hctx, cancel := context.WithTimeout(ctx, t.HealthInterval.D())
	defer cancel()
	cmd := exec.CommandContext(hctx, t.HealthCommand[0], t.HealthCommand[1:]...)
	cmd.Env = taskEnv(t, u, r.statusFile(), r.drainFile(), 0)
	cmd.Dir = t.Workdir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	b, err := cmd.CombinedOutput()
	res := healthResult{output: firstLine(b)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		res.code, res.err = -1, fmt.Errorf("health check: %w", err)
	}
	if hctx.Err() != nil && ctx.Err() == nil {
		res.code, res.err = -1, fmt.Errorf("health check timed out after %s", t.HealthInterval.D())
	}
	out <- res
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

// tightenLogs makes a task's log and its rotated backups (name-TIME.log)
// 0600; a file that is gone or not ours is left to fail where it is opened.
func tightenLogs(path string) {
	ext := filepath.Ext(path)
	backups, _ := filepath.Glob(strings.TrimSuffix(path, ext) + "-*" + ext)
	for _, p := range append(backups, path) {
		if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o077 != 0 {
			_ = os.Chmod(p, 0o600)
		}
	}
}
