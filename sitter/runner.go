package sitter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
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

// snapshot is one sample, shared read-only by all runners: either the
// trees of every run (TreeSampler) or one host-wide process scan.
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
// the task's state needs no locking beyond the status snapshot.
type runner struct {
	s       *Sitter
	spec    Task
	stdout  *lumberjack.Logger
	stderr  *lumberjack.Logger
	cmds    chan command
	samples chan snapshot
	done    chan struct{}
	runs    int

	mu sync.Mutex
	st TaskStatus
	// root describes the current run to the sample loop (PID 0: no run);
	// written by loop, read by Sitter.sampleOnce.
	root Root
}

// setRoot publishes the run the sample loop should measure next.
func (r *runner) setRoot(root Root) {
	r.mu.Lock()
	r.root = root
	r.mu.Unlock()
}

// sampleRoot is the current run's Root.
func (r *runner) sampleRoot() (Root, bool) {
	r.mu.Lock()
	root := r.root
	r.mu.Unlock()
	return root, root.PID > 0
}

func newRunner(s *Sitter, t Task) *runner {
	// lumberjack does size-based rotation with numbered backups and is
	// well kept; writing our own rotation would mean re-solving rename
	// races and backup pruning that it already gets right.
	logger := func(stream string) *lumberjack.Logger {
		return &lumberjack.Logger{
			Filename:   s.logFile(t.Name, stream),
			MaxSize:    t.LogMaxMB,
			MaxBackups: t.LogBackups,
		}
	}
	return &runner{
		s: s, spec: t,
		stdout: logger("stdout"), stderr: logger("stderr"),
		cmds:    make(chan command),
		samples: make(chan snapshot, 1),
		done:    make(chan struct{}),
		st:      TaskStatus{Name: t.Name, State: StateStopped, Work: WorkUnknown},
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
	}
}

// offer hands the runner the newest snapshot, dropping one it has not read
// yet: only the latest sample matters.
func (r *runner) offer(snap snapshot) {
	for range 2 {
		select {
		case r.samples <- snap:
			return
		default:
		}
		select {
		case <-r.samples:
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
		strikes    int
		prev       Usage
		waiters    []chan error
		backoff    clockwork.Timer
		grace      clockwork.Timer
		deadline   clockwork.Timer
		health     clockwork.Timer
		healthDone chan healthResult
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
		p, intent, violation, drained, strikes = np, intentNone, nil, false, 0
		healthDone = nil // a check of the previous run must not judge this one
		r.writeRecord(p.pid)
		// The first CPU delta runs from the start, so a spinner is caught
		// within cpuStrikes samples rather than cpuStrikes+1.
		prev = Usage{At: p.started, cpu: map[int]float64{}}
		root := Root{PID: p.pid, Group: p.group}
		if _, start, err := procStat(p.pid); err == nil {
			root.Start = start
		}
		r.setRoot(root)
		if t.TimeLimit > 0 {
			deadline = clock.NewTimer(t.TimeLimit.D())
		}
		if len(t.HealthCommand) > 0 {
			health = clock.NewTimer(t.HealthInterval.D())
		}
		r.update(func(st *TaskStatus) {
			st.State, st.PID, st.StartedAt, st.ExitCode, st.Reason = StateRunning, p.pid, p.started, 0, ""
			st.CPU, st.MemMB, st.Work = 0, 0, WorkUnknown
		})
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
		r.setRoot(Root{})
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

		case snap := <-r.samples:
			if p == nil || intent != intentNone {
				continue
			}
			var tree []ProcSample
			if snap.trees != nil {
				var ok bool
				// Absent: the sample was taken for an earlier run, or the
				// leader just died; its exit is handled on its own.
				if tree, ok = snap.trees[p.pid]; !ok {
					continue
				}
			} else {
				var extra []int
				if p.group != nil {
					extra, _ = p.group.PIDs()
				}
				tree = TreeOf(snap.procs, p.pid, extra)
			}
			u := Measure(tree, snap.at, prev)
			prev = u
			r.mu.Lock()
			if r.root.PID == p.pid {
				r.root.Known = u.Members()
			}
			r.mu.Unlock()
			work := WorkUnknown
			if b, err := os.ReadFile(r.statusFile()); err == nil {
				work = ParseWork(b)
			}
			r.update(func(st *TaskStatus) { st.CPU, st.MemMB, st.Work = u.CPU, u.MemMB, work })
			var v *Violation
			if v, strikes = Check(t, u, strikes); v != nil {
				beginStop(intentViolation, v)
			}
		}
	}
}

// apply records a policy decision in the status.
func (r *runner) apply(dec Decision, h History, v *Violation) {
	r.update(func(st *TaskStatus) {
		st.State, st.Reason, st.Restarts = dec.State, dec.Reason, h.Total
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
	cmd.Env = taskEnv(t, u, r.statusFile(), r.drainFile())
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
