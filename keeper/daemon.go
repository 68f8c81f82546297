package keeper

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/metrics"
	"nightshift/internal/nsenv"
	"nightshift/internal/runlayout"
)

// Files of a run's keepers, in Dir(home, run).
const (
	activeLock  = "active.lock" // flock held by the active keeper for its life
	activePID   = "active.pid"
	standbyPID  = "standby.pid"
	stopMarker  = "stop"        // teardown's order: no keeper may act or respawn
	stateFile   = "state.json"  // the active keeper's Views, for status
	metricsURL  = "metrics-url" // where the active keeper serves /metrics
	LogFile     = "keeper.log"
	spawnPeriod = time.Second // at most one standby spawned per period
)

// Dir is where a run's keepers keep their files.
func Dir(home, run string) string { return runlayout.Of(home, run).Keeper() }

// Daemon is one keeper process of a run. Serve decides its role: the
// first to take the run's keeper lock is active and supervises; the others
// wait on the lock as standbys and take over the moment the active one dies.
type Daemon struct {
	Home, Run string
	Store     bootlevel.Store
	Engine    *bootlevel.Engine
	// Lock takes the run's lock for the length of one restart, so a launch,
	// repair or teardown is never blocked for longer than that.
	Lock func() (release func(), err error)
	// Command starts another keeper of this run (the standby).
	Command []string
	Log     *slog.Logger
	// Every is the look interval; 0 means 150ms.
	Every time.Duration
	// Reload is how often the run's records are read again; 0 means 2s.
	Reload time.Duration
	// MetricsAddr is where the active keeper serves Prometheus metrics
	// (host:port; "" is an ephemeral loopback port; "off" serves none).
	// The URL is kept beside the keeper's state (MetricsURL).
	MetricsAddr string
}

// Serve is the keeper's life: wait for the active role, then supervise until
// ctx ends, the run is terminated, or teardown leaves the stop marker.
func (d *Daemon) Serve(ctx context.Context) error {
	dir := Dir(d.Home, d.Run)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keeper of run %s: %w", d.Run, err)
	}
	if stopped(dir) {
		d.Log.Info("teardown has stopped this run's keepers; exiting")
		return nil
	}
	lock, err := os.OpenFile(filepath.Join(dir, activeLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("keeper of run %s: %w", d.Run, err)
	}
	defer lock.Close()
	if err := flock(lock, false); err != nil {
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("keeper of run %s: lock: %w", d.Run, err)
		}
		if err := writePIDFile(filepath.Join(dir, standbyPID)); err != nil {
			return fmt.Errorf("keeper of run %s: %w", d.Run, err)
		}
		d.Log.Info("standby: waiting for the active keeper's lock")
		got := make(chan error, 1)
		go func() { got <- flock(lock, true) }()
		select {
		case <-ctx.Done():
			return nil
		case err := <-got:
			if err != nil {
				return fmt.Errorf("keeper of run %s: lock: %w", d.Run, err)
			}
		}
		if stopped(dir) {
			d.Log.Info("took over, but teardown has stopped this run's keepers; exiting")
			return nil
		}
		d.Log.Info("the active keeper died: taking over")
	}
	if err := writePIDFile(filepath.Join(dir, activePID)); err != nil {
		return fmt.Errorf("keeper of run %s: %w", d.Run, err)
	}
	return d.supervise(ctx, dir)
}

func (d *Daemon) supervise(ctx context.Context, dir string) error {
	every, reload := d.Every, d.Reload
	if every <= 0 {
		every = 150 * time.Millisecond
	}
	if reload <= 0 {
		reload = 2 * time.Second
	}
	core := NewCore(Policy())
	alerts := newAlerts(ctx, d.Home, d.Run, d.Log)
	var (
		watch      []Watched
		loadedAt   time.Time
		spawnedAt  time.Time
		lastState  []byte
		lastDeaths = map[string]int{}
	)
	var (
		viewsMu sync.Mutex
		views   []View
	)
	if stop := d.serveMetrics(ctx, dir, func() []View {
		viewsMu.Lock()
		defer viewsMu.Unlock()
		return views
	}); stop != nil {
		defer stop()
	}
	d.Log.Info("active: supervising", "every", every)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		now := time.Now()
		if stopped(dir) {
			d.Log.Info("teardown has stopped this run's keepers; exiting")
			return nil
		}
		if now.Sub(spawnedAt) >= spawnPeriod && !d.standbyAlive(dir) {
			spawnedAt = now
			if err := spawn(d.Home, d.Run, d.Command); err != nil {
				d.Log.Warn("could not start a standby keeper", "err", err)
			}
		}
		if loadedAt.IsZero() || now.Sub(loadedAt) >= reload {
			run, err := d.Store.GetRun(ctx, d.Run)
			switch {
			case errors.Is(err, bootlevel.ErrNotFound):
				d.Log.Info("the run no longer exists; exiting")
				return nil
			case err != nil:
				d.Log.Warn("read the run", "err", err)
			case run.State == bootlevel.RunTerminated:
				d.Log.Info("the run is terminated; exiting")
				return nil
			default:
				plan, err := bootlevel.LoadRunPlan(run)
				var recs []bootlevel.ServiceRecord
				if err == nil {
					recs, err = d.Store.Services(ctx, d.Run)
				}
				if err == nil {
					watch = WatchList(d.Home, d.Run, plan, recs, d.Engine.Types)
					alerts.configure(plan.Alerts)
				}
				if err != nil {
					d.Log.Warn("read the run's services", "err", err)
				} else {
					loadedAt = now
				}
			}
		}
		obs := Look(watch)
		for i := range obs {
			if !obs[i].Alive && obs[i].PID > 0 && lastDeaths[obs[i].Service] != obs[i].PID {
				lastDeaths[obs[i].Service] = obs[i].PID
				obs[i].Exit = reap(obs[i].PID)
			}
		}
		if due := core.Observe(now, obs); len(due) > 0 {
			d.restart(ctx, core, due)
			loadedAt = time.Time{} // records changed
		}
		cur := core.Views()
		viewsMu.Lock()
		views = cur
		viewsMu.Unlock()
		alerts.observe(now, cur)
		if b, err := json.Marshal(cur); err == nil && !bytes.Equal(b, lastState) {
			lastState = b
			writeState(dir, b)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// serveMetrics serves the active keeper's metrics, read from views at each
// scrape, and records the URL for status; the returned func stops it. A
// keeper that cannot serve metrics still supervises: it logs and goes on.
func (d *Daemon) serveMetrics(ctx context.Context, dir string, views func() []View) (stop func()) {
	if d.MetricsAddr == "off" {
		return nil
	}
	reg := metrics.NewRegistry()
	metrics.NewKeeper(reg, d.Run, func() []metrics.KeeperService {
		vs := views()
		out := make([]metrics.KeeperService, 0, len(vs))
		for _, v := range vs {
			out = append(out, metrics.KeeperService{Service: v.Service, Up: v.Up, Restarts: v.Restarts, GaveUp: v.GaveUp != ""})
		}
		return out
	})
	srv, err := metrics.Listen(d.MetricsAddr, reg, d.Log)
	if err != nil {
		d.Log.Warn("no metrics", "err", err)
		return nil
	}
	if err := srv.WriteURLFile(filepath.Join(dir, metricsURL)); err != nil {
		d.Log.Warn("metrics URL not recorded", "err", err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(mctx); err != nil {
			d.Log.Warn("metrics stopped", "err", err)
		}
	}()
	d.Log.Info("serving metrics", "url", srv.URL)
	return func() {
		// The URL goes first, so status never points at a closed port.
		_ = os.Remove(filepath.Join(dir, metricsURL))
		cancel()
		<-done
	}
}

// MetricsURL is where the run's active keeper serves its metrics, or ""
// when no keeper is active (the file outlives a keeper killed with -9).
// It only reads files, so status can call it every second.
func MetricsURL(home, run string) string {
	dir := Dir(home, run)
	if p, ok := readPIDFile(filepath.Join(dir, activePID)); !ok || !p.alive() {
		return ""
	}
	u, err := metrics.ReadURLFile(filepath.Join(dir, metricsURL))
	if err != nil {
		return ""
	}
	return u
}

// restart brings back the due services through the boot engine, holding
// the run's lock only meanwhile, and never for a run being torn down.
func (d *Daemon) restart(ctx context.Context, core *Core, due []string) {
	retry := time.Now().Add(500 * time.Millisecond)
	run, err := d.Store.GetRun(ctx, d.Run)
	if err != nil || run.State == bootlevel.RunTerminating || run.State == bootlevel.RunTerminated {
		for _, n := range due {
			core.Deferred(n, retry)
		}
		return
	}
	release, err := d.Lock()
	if err != nil {
		d.Log.Info("run is busy; restart deferred", "services", due, "err", err)
		for _, n := range due {
			core.Deferred(n, retry)
		}
		return
	}
	defer release()
	// The lock may have been waited for by a teardown that finished.
	if run, err := d.Store.GetRun(ctx, d.Run); err != nil || run.State == bootlevel.RunTerminating || run.State == bootlevel.RunTerminated {
		for _, n := range due {
			core.Deferred(n, retry)
		}
		return
	}
	d.Log.Info("restarting", "services", due)
	start := time.Now()
	rep, err := d.Engine.Restart(ctx, d.Run, due)
	failed := map[string]error{}
	if rep != nil {
		for _, f := range rep.Failures {
			failed[f.Service] = f
		}
	}
	now := time.Now()
	for _, n := range due {
		ferr := failed[n]
		if ferr == nil && rep == nil {
			ferr = err
		}
		core.Restarted(n, now, ferr)
		if ferr != nil {
			d.Log.Warn("restart failed", "service", n, "err", ferr)
		} else {
			d.Log.Info("restarted", "service", n, "took", now.Sub(start).Round(time.Millisecond))
		}
	}
}

func (d *Daemon) standbyAlive(dir string) bool {
	p, ok := readPIDFile(filepath.Join(dir, standbyPID))
	return ok && p.PID != os.Getpid() && p.alive()
}

func stopped(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, stopMarker))
	return err == nil
}

func flock(f *os.File, wait bool) error {
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func writeState(dir string, b []byte) {
	tmp := filepath.Join(dir, stateFile+".tmp")
	if os.WriteFile(tmp, b, 0o600) == nil {
		_ = os.Rename(tmp, filepath.Join(dir, stateFile))
	}
}

// ReadState returns the active keeper's last account of each service, by
// name; nil when the run has no keeper (yet).
func ReadState(home, run string) map[string]View {
	b, err := os.ReadFile(filepath.Join(Dir(home, run), stateFile))
	if err != nil {
		return nil
	}
	var vs []View
	if json.Unmarshal(b, &vs) != nil {
		return nil
	}
	out := make(map[string]View, len(vs))
	for _, v := range vs {
		out[v.Service] = v
	}
	return out
}

// spawn starts one keeper process of a run, detached in its own session,
// appending to the keepers' log (0600). It carries NIGHTSHIFT_HOME and
// NIGHTSHIFT_RUN like every process of the run, so teardown's sweep finds
// it too.
func spawn(home, run string, argv []string) error {
	if len(argv) == 0 {
		return errors.New("no keeper command")
	}
	dir := Dir(home, run)
	logf, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), nsenv.Home+"="+home, nsenv.Run+"="+run)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start keeper %s: %w", argv[0], err)
	}
	go func() { _ = cmd.Wait() }() // reaped if it dies while we live
	return nil
}

// Start makes sure a run has its keepers: it clears teardown's stop marker
// and, unless an active keeper already runs, starts one (which then starts
// its standby), waiting until it holds the active role. It returns the
// active keeper's pid.
func Start(ctx context.Context, home, run string, argv []string) (int, error) {
	dir := Dir(home, run)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("start keeper of run %s: %w", run, err)
	}
	if err := os.Remove(filepath.Join(dir, stopMarker)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("start keeper of run %s: %w", run, err)
	}
	if p, ok := readPIDFile(filepath.Join(dir, activePID)); ok && p.alive() && lockHeld(dir) {
		return p.PID, nil
	}
	if err := spawn(home, run, argv); err != nil {
		return 0, fmt.Errorf("start keeper of run %s: %w", run, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if p, ok := readPIDFile(filepath.Join(dir, activePID)); ok && p.alive() && lockHeld(dir) {
			return p.PID, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("start keeper of run %s: no active keeper after 5s; see %s", run, filepath.Join(dir, LogFile))
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("start keeper of run %s: %w", run, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// lockHeld reports whether some process holds the active keeper's lock.
func lockHeld(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, activeLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := flock(f, false); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	return false // we got it: nobody held it (closing drops it)
}

// Stop ends a run's keepers before a teardown: first the stop marker, so
// that no keeper acts, takes over or respawns another from then on, then
// SIGTERM to each, SIGKILL after wait. It returns once no keeper holds the
// active role.
func Stop(ctx context.Context, home, run string, wait time.Duration) error {
	dir := Dir(home, run)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, stopMarker), []byte("teardown\n"), 0o600); err != nil {
		return fmt.Errorf("stop keepers of run %s: %w", run, err)
	}
	var procs []pidFile
	for _, f := range []string{activePID, standbyPID} {
		if p, ok := readPIDFile(filepath.Join(dir, f)); ok && p.alive() {
			procs = append(procs, p)
			_ = syscall.Kill(p.PID, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(wait)
	for {
		live := false
		for _, p := range procs {
			live = live || p.alive()
		}
		if !live && !lockHeld(dir) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			for _, p := range procs {
				if p.alive() {
					_ = syscall.Kill(p.PID, syscall.SIGKILL)
				}
			}
			time.Sleep(100 * time.Millisecond)
			if lockHeld(dir) {
				return fmt.Errorf("stop keepers of run %s: a keeper still holds %s", run, filepath.Join(dir, activeLock))
			}
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}
