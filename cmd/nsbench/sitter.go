package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tklauser/go-sysconf"

	"nightshift/internal/bench"
	"nightshift/internal/process"
	"nightshift/internal/psutil"
)

const idleChildren = 100

// superRun is what one supervisor measured with idleChildren idle children.
type superRun struct {
	cpuPerMin float64 // CPU seconds used per minute of wall time
	// ticksPerMin is the same from utime+stime, in whole clock ticks.
	ticksPerMin float64
	rssMB       float64
	restarts    []time.Duration
	timeouts    int
	command     string
	installed   bool // the peer was installed by this run
}

func (e *env) sitterWindow() (window time.Duration, crashes int) {
	if e.quick {
		return 10 * time.Second, 5
	}
	return 60 * time.Second, 15
}

func (e *env) sitterScenario(ctx context.Context) (bench.Result, error) {
	var res bench.Result
	window, crashes := e.sitterWindow()
	bin, err := e.build(ctx, "./cmd/sitter")
	if err != nil {
		return res, err
	}
	dir := filepath.Join(e.work, "sitter")
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
		return res, fmt.Errorf("sitter: %w", err)
	}
	tasks := filepath.Join(dir, "tasks.toml")
	if err := os.WriteFile(tasks, []byte(sitterTasks(idleChildren)), 0o644); err != nil {
		return res, fmt.Errorf("sitter: write tasks: %w", err)
	}
	// supervisord is found (or installed) first, so that installing it is
	// over before anything is measured.
	peerBin, installed, peerErr := e.ensureSupervisord(ctx)
	// Both run side by side and are measured over the same window: the
	// shared machine's background load moves from minute to minute by as
	// much as the difference being measured, and a common window cancels
	// it. Crash tests take turns.
	ws := newWindowSync(1)
	if peerErr == nil {
		ws = newWindowSync(2)
	}
	var (
		sup      superRun
		peerName string
		peerDone = make(chan struct{})
	)
	go func() {
		defer close(peerDone)
		if peerErr != nil {
			return
		}
		peerName, sup, peerErr = e.supervisordRun(ctx, peerBin, dir, window, crashes, ws)
		sup.installed = installed
	}()
	// Polling mode (--cgroup off): the sitter samples every task's CPU and
	// memory against its limits each second itself, the costlier way, and
	// it leaves nothing behind in the shared machine's cgroup tree.
	sit, err := e.measureSupervisor(ctx, "sitter", []string{bin, "run", "--state-dir", filepath.Join(dir, "state"), "--cgroup", "off", tasks}, dir, window, crashes, ws)
	<-peerDone
	if err != nil {
		return res, fmt.Errorf("sitter: %w", err)
	}
	res.Notes = append(res.Notes,
		fmt.Sprintf("Each supervisor runs %d `sleep 3600` children; the sitter and supervisord run at the same time and their CPU is "+
			"measured over the same window. CPU is the supervisor process's CPU-time clock "+
			"(clock_gettime on clock_getcpuclockid(PID), nanoseconds, all its threads) over %s "+
			"after a settle period; RSS is VmRSS from /proc/PID/status. Restart latency is SIGKILL of one child until a new child pid "+
			"appears in /proc/PID/task/*/children (polled every 2 ms), median of %d crashes of different children.", idleChildren, window, crashes),
		"sitter tasks: restart = \"always\", max_restarts = -1, backoff_initial = \"0s\", cpu and mem limits set, sample_interval = \"1s\".",
		fmt.Sprintf("sitter restart samples (ms): %s; timeouts: %d", msList(sit.restarts), sit.timeouts),
		fmt.Sprintf("sitter CPU cross-check from utime+stime (whole clock ticks): %.3f CPU s/min", sit.ticksPerMin))

	if peerErr == nil {
		res.Notes = append(res.Notes, fmt.Sprintf("supervisord restart samples (ms): %s; timeouts: %d", msList(sup.restarts), sup.timeouts),
			fmt.Sprintf("supervisord CPU cross-check from utime+stime (whole clock ticks): %.3f CPU s/min", sup.ticksPerMin),
			"supervisord.conf: one [program:x] per child with autorestart=true, startsecs=0, startretries=1000000; run as `supervisord -n -c FILE`.")
		if sup.installed {
			res.Notes = append(res.Notes, "supervisord was missing: nsbench installed Debian's supervisor package with `apt-get install -y --no-install-recommends supervisor` during this run.")
		}
	}
	peer := func(v float64) *bench.Peer {
		if peerErr != nil {
			return nil
		}
		return &bench.Peer{Name: peerName, Value: v, Command: sup.command}
	}
	note := ""
	if peerErr != nil {
		note = "peer " + peerErr.Error()
	}
	cpu := bench.Figure{Name: fmt.Sprintf("CPU with %d idle children, limits sampled every 1 s", idleChildren), Value: sit.cpuPerMin, Unit: "CPU s/min",
		Peer: peer(sup.cpuPerMin), Target: "<= supervisord's", Command: sit.command, Note: note}
	if peerErr == nil {
		cpu.Verdict = bench.AtMost(sit.cpuPerMin, sup.cpuPerMin)
	}
	med := ms(bench.Median(sit.restarts))
	res.Figures = append(res.Figures, cpu,
		bench.Figure{Name: "RSS of the supervisor process", Value: sit.rssMB, Unit: "MB", Peer: peer(sup.rssMB), Command: sit.command, Note: note},
		bench.Figure{Name: fmt.Sprintf("restart latency after SIGKILL of a child, median of %d", len(sit.restarts)), Value: med, Unit: "ms",
			Peer: peer(ms(bench.Median(sup.restarts))), Target: "< 100 ms", Verdict: bench.AtMost(med, 100), Command: sit.command, Note: note},
	)
	// The sitter's own figures stand even when the peer broke; the run
	// still fails so that a broken comparison is not mistaken for a result.
	if peerErr != nil && !isNotMeasured(peerErr) {
		return res, fmt.Errorf("supervisord: %w", peerErr)
	}
	return res, nil
}

func sitterTasks(n int) string {
	var b strings.Builder
	b.WriteString("# Generated by nsbench: idle tasks restarted at once when killed.\nsample_interval = \"1s\"\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "\n[[task]]\nname = \"idle-%03d\"\ncommand = [\"sleep\", \"3600\"]\nrestart = \"always\"\nmax_restarts = -1\n"+
			"backoff_initial = \"0s\"\nbackoff_max = \"0s\"\ncpu = 1.0\nmem = 64\nstop_grace = \"2s\"\n", i)
	}
	return b.String()
}

func supervisordConf(dir string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "; Generated by nsbench.\n[supervisord]\nnodaemon=true\nlogfile=%s\npidfile=%s\nchildlogdir=%s\nloglevel=warn\n",
		filepath.Join(dir, "supervisord.log"), filepath.Join(dir, "supervisord.pid"), filepath.Join(dir, "logs"))
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "\n[program:idle-%03d]\ncommand=sleep 3600\nautorestart=true\nstartsecs=0\nstartretries=1000000\n", i)
	}
	return b.String()
}

// supervisordRun measures the peer; a missing supervisord that cannot be
// installed is "not measured", not a failure.
func (e *env) supervisordRun(ctx context.Context, bin, parent string, window time.Duration, crashes int, ws *windowSync) (string, superRun, error) {
	name := "supervisord"
	if out, err := exec.CommandContext(ctx, bin, "--version").Output(); err == nil {
		name += " " + strings.TrimSpace(string(out))
	}
	dir := filepath.Join(parent, "supervisord")
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		ws.leave()
		return "", superRun{}, err
	}
	conf := filepath.Join(dir, "supervisord.conf")
	if err := os.WriteFile(conf, []byte(supervisordConf(dir, idleChildren)), 0o644); err != nil {
		ws.leave()
		return "", superRun{}, fmt.Errorf("write supervisord.conf: %w", err)
	}
	r, err := e.measureSupervisor(ctx, "supervisord", []string{bin, "-n", "-c", conf}, dir, window, crashes, ws)
	return name, r, err
}

// ensureSupervisord finds supervisord, installing Debian's supervisor
// package when it is missing and nsbench may do so; installed says it did.
func (e *env) ensureSupervisord(ctx context.Context) (path string, installed bool, err error) {
	if p, err := exec.LookPath("supervisord"); err == nil {
		return p, false, nil
	}
	if os.Geteuid() != 0 {
		return "", false, bench.NotMeasured("supervisord is not installed and nsbench is not root (apt-get install supervisor)")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", false, bench.NotMeasured("supervisord is not installed and there is no apt-get")
	}
	e.log.Warn("supervisord not found: installing the Debian package supervisor with apt-get")
	install := func() error {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ictx, "apt-get", "install", "-y", "--no-install-recommends", "supervisor")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get install supervisor: %w: %s", err, lastLines(out, 2))
		}
		return nil
	}
	if err := install(); err != nil {
		e.log.Warn("apt-get install failed, refreshing package lists", "err", err)
		uctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		_ = exec.CommandContext(uctx, "apt-get", "update").Run()
		cancel()
		if err := install(); err != nil {
			return "", false, bench.NotMeasured("%v", err)
		}
	}
	p, err := exec.LookPath("supervisord")
	if err != nil {
		return "", false, bench.NotMeasured("supervisor installed but supervisord is not on PATH")
	}
	return p, true, nil
}

// measureSupervisor starts a supervisor, waits for its children, measures
// CPU over window and RSS, then crashes children one by one and times
// their restarts. It always stops the supervisor and kills any child it
// saw that outlived it. ws (nil: alone) lines the window up with other
// supervisors' and keeps the crash tests apart.
func (e *env) measureSupervisor(ctx context.Context, name string, argv []string, dir string, window time.Duration, crashes int, ws *windowSync) (superRun, error) {
	arrived := false
	defer func() {
		if !arrived {
			ws.leave() // an early return must not keep the others waiting
		}
	}()
	r := superRun{command: e.relArgv(argv)}
	logf, err := os.Create(filepath.Join(dir, name+".out"))
	if err != nil {
		return r, fmt.Errorf("start %s: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a ^C at the terminal reaches nsbench, which
	// then stops the supervisor in order, instead of killing it mid-way.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return r, fmt.Errorf("start %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	seen := map[int]bool{}
	defer e.stopSupervisor(name, cmd, exited, seen)

	tail := func() string {
		b, _ := os.ReadFile(logf.Name())
		return lastLines(b, 3)
	}
	kids := func() []int {
		k := children(pid)
		for _, c := range k {
			seen[c] = true
		}
		return k
	}
	// Wait for every child, then let start-up work settle before the window.
	deadline := e.clock.Now().Add(60 * time.Second)
	for len(sleepers(kids())) < idleChildren {
		select {
		case err := <-exited:
			exited <- err
			return r, fmt.Errorf("%s exited during start-up (%v): %s", name, err, tail())
		default:
		}
		if e.clock.Now().After(deadline) {
			return r, fmt.Errorf("%s started only %d of %d children in 60s: %s", name, len(sleepers(kids())), idleChildren, tail())
		}
		if err := sleepCtx(ctx, e.clock, 50*time.Millisecond); err != nil {
			return r, err
		}
	}
	settle := e.settle
	if settle == 0 {
		settle = 3 * time.Second
	}
	if err := sleepCtx(ctx, e.clock, settle); err != nil {
		return r, err
	}
	arrived = true
	if err := ws.arrive(ctx); err != nil {
		return r, err
	}

	tick, err := sysconf.Sysconf(sysconf.SC_CLK_TCK)
	if err != nil || tick <= 0 {
		return r, fmt.Errorf("clock ticks per second: %v", err)
	}
	// The figure comes from the process's CPU clock, to the nanosecond;
	// utime+stime are read too, as a cross-check in whole clock ticks
	// (a quiet supervisor uses a handful of them in a minute).
	c0, err := cpuTicks(pid)
	if err != nil {
		return r, err
	}
	n0, err := psutil.CPUTime(pid)
	if err != nil {
		return r, err
	}
	t0 := e.clock.Now()
	if err := sleepCtx(ctx, e.clock, window); err != nil {
		return r, err
	}
	n1, err := psutil.CPUTime(pid)
	if err != nil {
		return r, fmt.Errorf("%s after the window: %w: %s", name, err, tail())
	}
	c1, err := cpuTicks(pid)
	if err != nil {
		return r, fmt.Errorf("%s after the window: %w: %s", name, err, tail())
	}
	el := e.clock.Since(t0)
	r.cpuPerMin = (n1 - n0).Seconds() / el.Seconds() * 60
	r.ticksPerMin = float64(c1-c0) / float64(tick) / el.Seconds() * 60
	if r.rssMB, err = rssMB(pid); err != nil {
		return r, err
	}
	unlock := ws.crashTurn()
	defer unlock()

	for i := range crashes {
		victims := sleepers(kids())
		if len(victims) == 0 {
			return r, fmt.Errorf("%s has no children left to crash: %s", name, tail())
		}
		victim := victims[(i*37)%len(victims)]
		before := map[int]bool{}
		for _, k := range kids() {
			before[k] = true
		}
		lat, ok, err := e.crashOnce(ctx, pid, victim, before, kids)
		if err != nil {
			return r, err
		}
		if ok {
			r.restarts = append(r.restarts, lat)
		} else {
			r.timeouts++
		}
		// Back to full strength before the next crash, so each crash is
		// timed from the same state.
		full := e.clock.Now().Add(5 * time.Second)
		for len(sleepers(kids())) < idleChildren && e.clock.Now().Before(full) {
			if err := sleepCtx(ctx, e.clock, 10*time.Millisecond); err != nil {
				return r, err
			}
		}
		if err := sleepCtx(ctx, e.clock, 200*time.Millisecond); err != nil {
			return r, err
		}
	}
	if len(r.restarts) == 0 {
		return r, fmt.Errorf("%s restarted none of %d killed children within 5 s: %s", name, crashes, tail())
	}
	return r, nil
}

// crashOnce SIGKILLs victim and polls for a child pid that was not there
// before. Polling /proc every 2 ms bounds the error of each sample.
func (e *env) crashOnce(ctx context.Context, pid, victim int, before map[int]bool, kids func() []int) (time.Duration, bool, error) {
	t0 := e.clock.Now()
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		return 0, false, fmt.Errorf("kill child %d of %d: %w", victim, pid, err)
	}
	for e.clock.Since(t0) < 5*time.Second {
		for _, k := range kids() {
			if !before[k] {
				return e.clock.Since(t0), true, nil
			}
		}
		if err := sleepCtx(ctx, e.clock, 2*time.Millisecond); err != nil {
			return 0, false, err
		}
	}
	return 0, false, nil
}

func (e *env) stopSupervisor(name string, cmd *exec.Cmd, exited chan error, seen map[int]bool) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-e.clock.After(20 * time.Second):
		e.log.Warn("supervisor ignored SIGTERM for 20s, killing it", "supervisor", name, "pid", cmd.Process.Pid)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	// Children that outlived their supervisor are ours: kill them by pid,
	// checking the command line so a reused pid is left alone.
	for p := range seen {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); err == nil && bytes.Equal(b, []byte("sleep\x003600\x00")) {
			e.log.Warn("killing a child that outlived its supervisor", "supervisor", name, "pid", p)
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
}

// children lists pid's children from /proc/PID/task/*/children; a Go
// supervisor forks from many threads, so every thread is read.
func children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if ps, err := bench.ParsePIDs(b); err == nil {
			out = append(out, ps...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// sleepers keeps the children that already run sleep (not still between
// fork and exec, and not zombies).
func sleepers(pids []int) []int {
	var out []int
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		if st, err := process.ParseStat(b); err != nil || st.Zombie() || process.Comm(b) != "sleep" {
			continue
		}
		out = append(out, p)
	}
	return out
}

func cpuTicks(pid int) (uint64, error) {
	st, err := process.ReadStat("", pid)
	if err != nil {
		return 0, fmt.Errorf("read cpu of pid %d: %w", pid, err)
	}
	return st.UTime + st.STime, nil
}

func rssMB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read rss of pid %d: %w", pid, err)
	}
	v, err := bench.ParseVmRSS(b)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return float64(v) / (1 << 20), nil
}

func msList(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = strconv.FormatFloat(ms(d), 'f', 1, 64)
	}
	return strings.Join(s, ", ")
}

// windowSync starts the CPU windows of supervisors measured side by side
// together, and gives their crash tests one at a time. A nil *windowSync
// does nothing.
type windowSync struct {
	mu      sync.Mutex
	waiting int
	all     chan struct{}
	crash   sync.Mutex
}

func newWindowSync(n int) *windowSync {
	return &windowSync{waiting: n, all: make(chan struct{})}
}

// arrive counts one supervisor ready and waits for the others (or for
// those that failed to leave).
func (w *windowSync) arrive(ctx context.Context) error {
	if w == nil {
		return nil
	}
	w.done()
	select {
	case <-w.all:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// leave is arrive, without waiting, for a supervisor that will not
// measure after all. Each supervisor calls one of the two, once.
func (w *windowSync) leave() {
	if w == nil {
		return
	}
	w.done()
}

func (w *windowSync) done() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waiting > 0 {
		if w.waiting--; w.waiting == 0 {
			close(w.all)
		}
	}
}

// crashTurn waits for the other supervisors' crash tests to finish.
func (w *windowSync) crashTurn() (unlock func()) {
	if w == nil {
		return func() {}
	}
	w.crash.Lock()
	return w.crash.Unlock
}
