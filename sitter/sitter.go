package sitter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/jonboulle/clockwork"

	"nightshift/internal/redact"
)

// Config wires a Sitter. StateDir and Sampler are required.
type Config struct {
	// StateDir holds the per-task protocol files (status, drain) and, by
	// default, the logs.
	StateDir string
	// LogDir receives <task>.stdout.log and <task>.stderr.log; default
	// StateDir/logs.
	LogDir string
	// SampleInterval is how often every task tree is measured (default 1s).
	SampleInterval time.Duration
	// HeartbeatInterval is how often Sink is called (default 1s).
	HeartbeatInterval time.Duration
	Sampler           Sampler
	// Limiter adds kernel caps; nil means polling only.
	Limiter Limiter
	// Sink receives heartbeats; nil sends none.
	Sink HeartbeatSink
	// HardCPUFactor and HardMemFactor scale the cgroup caps above the
	// task's limits (defaults 2 and 1.25). The sampler enforces the limit
	// itself, with the stop signal and grace the worker expects; the kernel
	// cap is the backstop for what grows faster than one sample. A cap equal
	// to the limit would hold CPU at exactly the limit, so the overrun could
	// never be seen or reported; CFS quota also makes short-window CPU
	// readings jumpy, hence the wider CPU margin.
	HardCPUFactor, HardMemFactor float64
	Clock                        clockwork.Clock
	Logger                       *slog.Logger
	// HTTPProbe checks tasks' HTTP health probes (sitter/httpprobe); nil
	// fails every HTTP probe, saying so.
	HTTPProbe HTTPChecker
	// InstanceID, Job and Host identify the heartbeats.
	InstanceID, Job, Host string
}

// Sitter supervises the tasks of one host. Its methods are safe for
// concurrent use; the control methods need Serve to be running.
type Sitter struct {
	cfg      Config
	log      *slog.Logger
	clock    clockwork.Clock
	sampler  Sampler
	limiter  Limiter
	stateDir string
	logDir   string

	mu sync.Mutex
	// lock is the state dir's flock, held from New to Close.
	lock    *os.File
	runners map[string]*runner
	order   []*runner       // in the order added
	ctx     context.Context // Serve's; nil until Serve runs
	closed  bool            // Serve is shutting down: no new runners
	wg      sync.WaitGroup
	// watch tells of writes to the workers' status files; nil when inotify
	// is unavailable, and then every status file is read every sample.
	watch *fsnotify.Watcher

	sampleBuf sampleBuffers // sample loop only

	hostMu sync.Mutex
	host   HostVitals
	hostAt time.Time
}

// New checks cfg and fills in defaults.
func New(cfg Config) (*Sitter, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("new sitter: StateDir is required")
	}
	if cfg.Sampler == nil {
		return nil, errors.New("new sitter: Sampler is required")
	}
	if cfg.SampleInterval <= 0 {
		cfg.SampleInterval = time.Second
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.HardCPUFactor < 1 {
		cfg.HardCPUFactor = 2
	}
	if cfg.HardMemFactor < 1 {
		cfg.HardMemFactor = 1.25
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.LogDir == "" {
		cfg.LogDir = filepath.Join(cfg.StateDir, "logs")
	}
	if cfg.Host == "" {
		cfg.Host, _ = os.Hostname()
	}
	// 0711: task users must traverse to their own status dir, but must not
	// list the state dir or reach the control socket.
	for _, d := range []string{cfg.StateDir, filepath.Join(cfg.StateDir, "tasks")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("new sitter: %w", err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return nil, fmt.Errorf("new sitter: %w", err)
		}
	}
	// Before anything in the dir is touched: the orphan sweep and the
	// control socket's removal assume that no other sitter uses it.
	lock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("new sitter: %w", err)
	}
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		lock.Close()
		return nil, fmt.Errorf("new sitter: %w", err)
	}
	return &Sitter{
		cfg: cfg, log: cfg.Logger, clock: cfg.Clock, sampler: cfg.Sampler, limiter: cfg.Limiter,
		stateDir: cfg.StateDir, logDir: cfg.LogDir, runners: map[string]*runner{}, lock: lock,
	}, nil
}

// Close releases the state dir for another sitter. Call it after Serve and
// ServeControl have returned; until then the sitter still uses the dir.
func (s *Sitter) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil {
		return nil
	}
	_ = s.lock.Truncate(0)
	err := s.lock.Close() // closing the only fd drops the flock
	s.lock = nil
	return err
}

// holdsLock reports whether s still holds its state dir.
func (s *Sitter) holdsLock() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lock != nil
}

// LimitMode reports how hard limits are enforced.
func (s *Sitter) LimitMode() string {
	if s.limiter == nil {
		return "polling"
	}
	return s.limiter.Mode()
}

func (s *Sitter) logFile(task, stream string) string {
	return filepath.Join(s.logDir, task+"."+stream+".log")
}

func (s *Sitter) hardLimits(t Task) Limits {
	return Limits{CPU: t.CPU * s.cfg.HardCPUFactor, MemBytes: uint64(t.Mem * s.cfg.HardMemFactor * (1 << 20))}
}

// Serve supervises every task until ctx ends, then stops every task within
// its stop_grace (stop signal to the process group, then SIGKILL) and
// returns. Unlike suture's services, leaving tasks running on shutdown is
// never wanted here: a sitter that goes away must leave no descendants.
func (s *Sitter) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.ctx != nil {
		s.mu.Unlock()
		return errors.New("sitter: Serve called twice")
	}
	if s.lock == nil {
		s.mu.Unlock()
		return errors.New("sitter: Serve after Close")
	}
	s.ctx = ctx
	// fsnotify (inotify) rather than reading every status file each
	// second: with a hundred idle workers those reads were a fifth of the
	// sitter's CPU. The watch must exist before the runners make their
	// task dirs.
	w, werr := fsnotify.NewWatcher()
	if werr == nil {
		s.watch = w
	}
	for _, r := range s.order {
		s.launch(r)
	}
	s.mu.Unlock()
	if werr != nil {
		s.log.Warn("inotify unavailable: reading every status file each sample", "err", werr)
	}
	s.log.Info("sitter serving", "limit_mode", s.LimitMode(), "state_dir", s.stateDir,
		"sample_interval", s.cfg.SampleInterval, "tasks", len(s.order))

	var loops sync.WaitGroup
	loops.Go(func() { s.sampleLoop(ctx) })
	if w != nil {
		loops.Go(func() { s.watchLoop(ctx, w) })
	}
	if s.cfg.Sink != nil {
		loops.Go(func() { s.heartbeatLoop(ctx) })
	}
	<-ctx.Done()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wg.Wait()
	loops.Wait()
	if w != nil {
		_ = w.Close()
	}
	s.log.Info("sitter stopped")
	return nil
}

// launch starts r's goroutine; s.mu must be held.
func (s *Sitter) launch(r *runner) {
	ctx := s.ctx
	s.wg.Go(func() { r.loop(ctx) })
}

func (s *Sitter) sampleLoop(ctx context.Context) {
	tick := s.clock.NewTicker(s.cfg.SampleInterval)
	defer tick.Stop()
	var failing string
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.Chan():
		}
		// Log a change of error, not every sample: a lasting problem
		// would otherwise write a line per second.
		switch err := s.sampleOnce(ctx); {
		case err != nil && err.Error() != failing && ctx.Err() == nil:
			failing = err.Error()
			s.log.Warn("sample processes", "err", err)
		case err == nil && failing != "":
			failing = ""
			s.log.Info("sampling recovered")
		}
	}
}

// sampleOnce measures every run and checks its limits. With a TreeSampler
// only the runs' trees are read; trees that could be read are used even
// when others failed. Runners hear of a sample only when it breaks a limit.
func (s *Sitter) sampleOnce(ctx context.Context) error {
	// The buffers are the sample loop's own, reused every second.
	buf := &s.sampleBuf
	s.mu.Lock()
	buf.runners = append(buf.runners[:0], s.order...)
	s.mu.Unlock()
	buf.targets, buf.roots = buf.targets[:0], buf.roots[:0]
	for _, r := range buf.runners {
		if run, root, ok := r.target(); ok {
			buf.targets = append(buf.targets, sampleTarget{r: r, run: run})
			buf.roots = append(buf.roots, root)
		}
	}
	targets, roots := buf.targets, buf.roots
	var snap snapshot
	var err error
	if ts, ok := s.sampler.(TreeSampler); ok {
		snap.trees, err = ts.Trees(ctx, roots)
		if snap.trees == nil && err == nil {
			snap.trees = map[int][]ProcSample{}
		}
	} else {
		snap.procs, err = s.sampler.Processes(ctx)
	}
	snap.at = s.clock.Now()
	if snap.trees == nil && err != nil {
		return err
	}
	for _, t := range targets {
		t.r.measure(t.run, snap)
		t.r.refreshWork(t.run)
	}
	clear(buf.runners) // a removed task's runner must not stay reachable
	return err
}

// sampleBuffers are slices the sample loop reuses between samples.
type sampleBuffers struct {
	runners []*runner
	targets []sampleTarget
	roots   []Root
}

type sampleTarget struct {
	r   *runner
	run uint64
}

// vitals returns the host's vitals, read at most once per sample interval
// and only when asked for: a sitter nobody watches spends nothing on them.
func (s *Sitter) vitals() HostVitals {
	s.hostMu.Lock()
	defer s.hostMu.Unlock()
	now := s.clock.Now()
	if !s.hostAt.IsZero() && now.Sub(s.hostAt) < s.cfg.SampleInterval {
		return s.host
	}
	s.mu.Lock()
	ctx := s.ctx
	s.mu.Unlock()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SampleInterval)
	defer cancel()
	if h, err := s.sampler.Host(ctx); err == nil {
		s.host, s.hostAt = h, now
	}
	return s.host
}

func (s *Sitter) heartbeatLoop(ctx context.Context) {
	tick := s.clock.NewTicker(s.cfg.HeartbeatInterval)
	defer tick.Stop()
	failing := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.Chan():
		}
		hb := s.Heartbeat()
		// One slow send must not delay the next beat.
		sctx, cancel := context.WithTimeout(ctx, s.cfg.HeartbeatInterval)
		err := s.cfg.Sink.SendHeartbeat(sctx, hb)
		cancel()
		if ctx.Err() != nil {
			return
		}
		// Log the change, not every beat: a broker outage would otherwise
		// write a line per second.
		switch {
		case err != nil && failing == 0:
			s.log.Warn("send heartbeat failed; supervision continues", "err", redact.String(err.Error()))
		case err != nil:
			s.log.Debug("send heartbeat failed", "err", redact.String(err.Error()), "failures", failing+1)
		case failing > 0:
			s.log.Info("heartbeats flowing again", "failed", failing)
		}
		if err != nil {
			failing++
		} else {
			failing = 0
		}
	}
}

// Heartbeat builds the current heartbeat.
func (s *Sitter) Heartbeat() Heartbeat {
	st := s.Status()
	return Heartbeat{InstanceID: s.cfg.InstanceID, Job: s.cfg.Job, Host: s.cfg.Host, Time: s.clock.Now(),
		LimitMode: st.LimitMode, Tasks: st.Tasks, Vitals: st.Host}
}

// Status snapshots every task, in the order they were added.
func (s *Sitter) Status() Status {
	host := s.vitals()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{LimitMode: s.LimitMode(), Host: host, Tasks: make([]TaskStatus, 0, len(s.order))}
	for _, r := range s.order {
		st.Tasks = append(st.Tasks, r.status())
	}
	return st
}

// AddTask registers t (defaults applied) and, when Serve is running, starts
// supervising it at once (running it if autostart).
func (s *Sitter) AddTask(ctx context.Context, t Task) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("add task %s: %w", t.Name, err)
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("add task: %w", err)
	}
	t = t.WithDefaults()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("add task %s: %w", t.Name, ErrNotServing)
	}
	if _, dup := s.runners[t.Name]; dup {
		return fmt.Errorf("add task %s: already exists", t.Name)
	}
	if t.Follows != "" {
		// One level, leader first: no chains and no cycles to untangle.
		lead, ok := s.runners[t.Follows]
		switch {
		case !ok:
			return fmt.Errorf("add task %s: follows %q, which is not added (add the task it follows first)", t.Name, t.Follows)
		case lead.spec.Follows != "":
			return fmt.Errorf("add task %s: follows %q, which follows %q itself: link tasks to one leader", t.Name, t.Follows, lead.spec.Follows)
		}
	}
	r := newRunner(s, t)
	s.runners[t.Name] = r
	s.order = append(s.order, r)
	if s.ctx != nil {
		s.launch(r)
	}
	return nil
}

// StartTask runs a stopped, exited or failed task now, forgetting its
// restart history (an operator's start is a fresh start).
func (s *Sitter) StartTask(ctx context.Context, name string) error {
	return s.send(ctx, name, opStart)
}

// StopTask stops the task (stop signal, grace, SIGKILL) and returns when
// its process group is gone. It does not restart.
func (s *Sitter) StopTask(ctx context.Context, name string) error {
	return s.send(ctx, name, opStop)
}

// RestartTask stops the task if running and starts it again at once.
func (s *Sitter) RestartTask(ctx context.Context, name string) error {
	return s.send(ctx, name, opRestart)
}

// Drain asks a running task to finish its current item and exit, by
// creating its drain file; the task is then not restarted.
func (s *Sitter) Drain(ctx context.Context, name string) error {
	return s.send(ctx, name, opDrain)
}

// RemoveTask stops the task and forgets it.
func (s *Sitter) RemoveTask(ctx context.Context, name string) error {
	if err := s.send(ctx, name, opRemove); err != nil {
		return err
	}
	s.mu.Lock()
	r := s.runners[name]
	delete(s.runners, name)
	for i, o := range s.order {
		if o.spec.Name == name {
			s.order = append(s.order[:i:i], s.order[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	if r != nil {
		<-r.done
		s.unwatchTask(r)
		_ = r.stdout.Close()
		_ = r.stderr.Close()
		_ = os.RemoveAll(r.dir())
	}
	return nil
}

func (s *Sitter) send(ctx context.Context, name string, op opKind) error {
	s.mu.Lock()
	r, ok := s.runners[name]
	serving := s.ctx != nil
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s task %s: %w", op, name, ErrNoTask)
	}
	if !serving {
		return fmt.Errorf("%s task %s: %w", op, name, ErrNotServing)
	}
	c := command{op: op, reply: make(chan error, 1)}
	select {
	case r.cmds <- c:
	case <-r.done:
		return fmt.Errorf("%s task %s: %w", op, name, ErrNotServing)
	case <-ctx.Done():
		return fmt.Errorf("%s task %s: %w", op, name, ctx.Err())
	}
	select {
	case err := <-c.reply:
		if err != nil {
			return fmt.Errorf("%s task %s: %w", op, name, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s task %s: %w", op, name, ctx.Err())
	}
}

// leaderChanged applies the linked-task rule (Task.Follows) after the
// task leader entered state to (run: the leader's run number when it
// started one): a new run after the first restarts its followers, which
// starts them if they were stopped; an end for good stops them. Called
// from the leader's loop, it hands the commands to a goroutine of its
// own: a follower's loop may be busy, and must never wait on its leader.
func (s *Sitter) leaderChanged(leader string, to TaskState, run uint64) {
	var op opKind
	switch {
	case to == StateRunning && run > 1:
		op = opRestart
	case to == StateExited || to == StateFailed || to == StateStopped:
		op = opStop
	default:
		return
	}
	s.mu.Lock()
	ctx := s.ctx
	var followers []string
	for _, r := range s.order {
		if r.spec.Follows == leader {
			followers = append(followers, r.spec.Name)
		}
	}
	s.mu.Unlock()
	if len(followers) == 0 || ctx == nil || ctx.Err() != nil {
		return // a shutdown stops every task anyway
	}
	s.wg.Go(func() {
		for _, f := range followers {
			s.log.Info("linked task follows its leader", "task", f, "leader", leader, "leader_state", to, "op", op)
			if err := s.send(ctx, f, op); err != nil && ctx.Err() == nil && !errors.Is(err, ErrNoTask) {
				s.log.Warn("linked task did not follow its leader", "task", f, "leader", leader, "op", op, "err", err)
			}
		}
	})
}

// Errors of the control methods, for errors.Is.
var (
	// ErrNoTask: the sitter does not know the task name.
	ErrNoTask = errors.New("no such task")
	// ErrNotServing: Serve is not running (not yet, or shut down).
	ErrNotServing = errors.New("sitter is not serving")
)

// LogTail is the end of a task's two log files.
type LogTail struct {
	Stdout []string `json:"stdout"`
	Stderr []string `json:"stderr"`
}

// TailLog returns the last n lines of the task's stdout and stderr logs
// (current file only, not rotated backups).
func (s *Sitter) TailLog(name string, n int) (LogTail, error) {
	s.mu.Lock()
	_, ok := s.runners[name]
	s.mu.Unlock()
	if !ok {
		return LogTail{}, fmt.Errorf("tail task %s: %w", name, ErrNoTask)
	}
	var lt LogTail
	var err error
	if lt.Stdout, err = tailFile(s.logFile(name, "stdout"), n); err != nil {
		return LogTail{}, fmt.Errorf("tail task %s: %w", name, err)
	}
	if lt.Stderr, err = tailFile(s.logFile(name, "stderr"), n); err != nil {
		return LogTail{}, fmt.Errorf("tail task %s: %w", name, err)
	}
	return lt, nil
}

// tailFile reads backwards in chunks until it has n lines, so tailing a
// 50 MB log costs a few reads.
func tailFile(path string, n int) ([]string, error) {
	if n <= 0 {
		return nil, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	const chunk = 32 << 10
	var buf []byte
	off := fi.Size()
	for off > 0 && strings.Count(string(buf), "\n") <= n {
		step := min(int64(chunk), off)
		off -= step
		b := make([]byte, step)
		if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		buf = append(b, buf...)
	}
	lines := strings.Split(strings.TrimSuffix(string(buf), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil, nil
	}
	if off > 0 {
		lines = lines[1:] // first one may be cut
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}

// Names lists the tasks in the order they were added.
func (s *Sitter) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.order))
	for _, r := range s.order {
		names = append(names, r.spec.Name)
	}
	return names
}
