package keeper

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/metrics/metricstest"
	"nightshift/internal/store/runstore"
	"nightshift/internal/testsupport"
	"nightshift/launchplan"
)

// procType is a service type whose process is a real `sleep`: boot starts
// one, ready fails (Gone) once it is dead, terminate kills it.
type procType struct {
	mu    sync.Mutex
	cmd   *exec.Cmd
	boots atomic.Int32
}

func (p *procType) Acquire(context.Context, string, *launchplan.Service) (bootlevel.Host, error) {
	return bootlevel.Host{Hostname: "here"}, nil
}
func (p *procType) Release(context.Context, string, *launchplan.Service, bootlevel.Host) error {
	return nil
}

func (p *procType) Run(ctx context.Context, req bootlevel.StepRequest) (bootlevel.StepResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch req.Step {
	case bootlevel.StepBoot:
		cmd := exec.Command("sleep", "600")
		if err := cmd.Start(); err != nil {
			return bootlevel.StepResult{}, err
		}
		go func() { _ = cmd.Wait() }()
		p.cmd = cmd
		p.boots.Add(1)
	case bootlevel.StepReady:
		if p.cmd == nil || !procAlive(p.cmd.Process.Pid) {
			return bootlevel.StepResult{ExitCode: 1, Gone: true}, nil
		}
	case bootlevel.StepTerminate:
		if p.cmd != nil {
			_ = p.cmd.Process.Kill()
		}
	}
	return bootlevel.StepResult{}, nil
}

func (p *procType) Process(string, *launchplan.Service) (int, bool, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0, false, true
	}
	pid := p.cmd.Process.Pid
	return pid, procAlive(pid), true
}

func (p *procType) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

func procAlive(pid int) bool { _, err := startTime(pid); return err == nil }

// TestDaemonRestartsDeadServiceAndStops runs a keeper in process over a
// real run store: a killed service is back through the engine within a
// second, nothing is restarted while the run is being torn down, and the
// stop marker ends the keeper.
func TestDaemonRestartsDeadServiceAndStops(t *testing.T) {
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st, err := runstore.Open(ctx, filepath.Join(home, "nightshift.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	typ := &procType{}
	eng := &bootlevel.Engine{Store: st, Home: home, Types: map[string]bootlevel.Driver{"proc": typ}}
	plan := &launchplan.Plan{Name: "k", Path: "/p.toml", Hash: "h", Levels: []launchplan.Level{{Index: 1, Services: []launchplan.Service{{
		Name: "d", Type: "proc", Driver: launchplan.DriverLocal, Level: 1, Replica: -1,
		BootTimeout: 10 * time.Second, ReadyTimeout: 10 * time.Second, TerminateTimeout: 10 * time.Second, ReadyInterval: 100 * time.Millisecond,
	}}}}}
	if _, err := eng.Launch(ctx, plan, bootlevel.LaunchOptions{Run: "k"}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(typ.pid(), syscall.SIGKILL) }()
	var locks atomic.Int32
	d := &Daemon{Home: home, Run: "k", Store: st, Engine: eng, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Every: 20 * time.Millisecond, Reload: 50 * time.Millisecond,
		Lock: func() (func(), error) { locks.Add(1); return func() {}, nil },
		// A standby that exits at once: the active keeper keeps trying.
		Command: []string{"true"}}
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	waitFor(t, "active keeper", func() bool {
		p, ok := readPIDFile(filepath.Join(Dir(home, "k"), activePID))
		return ok && p.PID == os.Getpid()
	})

	// The active keeper's metrics, found where status finds them. The
	// keeper records its pid as active first and its metrics URL once the
	// endpoint listens, so the URL may come a moment later.
	var url string
	waitFor(t, "the active keeper's metrics URL", func() bool {
		url = MetricsURL(home, "k")
		return url != ""
	})
	series := map[string]string{"run": "k", "service": "d"}
	metric := func(name string, labels map[string]string) (float64, error) {
		fams, err := metricstest.Scrape(ctx, url)
		if err != nil {
			return 0, err
		}
		v, ok := metricstest.Value(fams, name, labels)
		if !ok {
			return 0, fmt.Errorf("%s%v absent", name, labels)
		}
		return v, nil
	}
	expect := func(name string, labels map[string]string, want float64) {
		t.Helper()
		testsupport.Eventually(t, 10*time.Second, func() error {
			v, err := metric(name, labels)
			if err == nil && v != want {
				err = fmt.Errorf("%s%v = %v, want %v", name, labels, v, want)
			}
			return err
		})
	}
	expect("nightshift_keeper_active", map[string]string{"run": "k"}, 1)
	expect("nightshift_keeper_service_up", series, 1)
	expect("nightshift_keeper_restarts_total", series, 0)

	old := typ.pid()
	_ = syscall.Kill(old, syscall.SIGKILL)
	waitFor(t, "service restarted", func() bool { return typ.boots.Load() == 2 && procAlive(typ.pid()) })
	expect("nightshift_keeper_restarts_total", series, 1)
	if locks.Load() != 1 {
		t.Errorf("run lock taken %d times, want once for the one restart", locks.Load())
	}
	waitFor(t, "state file says up", func() bool { v, ok := ReadState(home, "k")["d"]; return ok && v.Up && v.Restarts == 1 })

	// A run being torn down is never restarted.
	run, _ := st.GetRun(ctx, "k")
	run.State = bootlevel.RunTerminating
	if err := st.UpdateRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(typ.pid(), syscall.SIGKILL)
	time.Sleep(500 * time.Millisecond)
	if n := typ.boots.Load(); n != 2 {
		t.Errorf("a service of a run being torn down was rebooted (%d boots)", n)
	}
	if v := ReadState(home, "k")["d"]; v.Up || v.LastExit == "" {
		t.Errorf("state %+v: want down with a last exit", v)
	}
	expect("nightshift_keeper_service_up", series, 0)

	if err := os.WriteFile(filepath.Join(Dir(home, "k"), stopMarker), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("keeper did not stop on the stop marker")
	}
	if u := MetricsURL(home, "k"); u != "" {
		t.Errorf("a stopped keeper's metrics URL %s is still recorded", u)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testsupport.Eventually(t, 10*time.Second, func() error {
		if !cond() {
			return fmt.Errorf("%s: not yet", what)
		}
		return nil
	})
}
