package sitter_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"nightshift/internal/cgroup"
	"nightshift/internal/process"
	"nightshift/internal/psutil"
	"nightshift/internal/testsupport"
	"nightshift/internal/testsupport/syncbuf"
	"nightshift/sitter"
)

// memhogBin is built once in TestMain from examples/sitter/memhog.
var memhogBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sitter-test-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	memhogBin = filepath.Join(dir, "memhog")
	out, err := exec.Command("go", "build", "-o", memhogBin, "../examples/sitter/memhog").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build memhog: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const sampleEvery = 100 * time.Millisecond

var cgroupSeq atomic.Int64

// limiterFor returns a cgroup limiter for mode "cgroup" (skipping when the
// host has none we can write) and nil for "polling".
func limiterFor(t *testing.T, mode string) sitter.Limiter {
	t.Helper()
	if mode == "polling" {
		return nil
	}
	if os.Geteuid() != 0 {
		t.Skip("cgroup mode needs root")
	}
	prefix := fmt.Sprintf("nightshift-test/%d-%d", os.Getpid(), cgroupSeq.Add(1))
	m, err := cgroup.Detect(cgroup.DefaultRoot, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if m == nil {
		t.Skip("no writable cgroup v1/v2 on this host")
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("cgroup dirs left behind: %v", err)
		}
	})
	return m
}

// recordingSampler remembers every scan the sitter takes, so a test can
// say how many samples a reaction took instead of how many milliseconds:
// sample counts do not change when a loaded machine makes every sample
// late, wall-clock bounds do.
type recordingSampler struct {
	sitter.Sampler
	mu    sync.Mutex
	scans []scan
}

type scan struct {
	at    time.Time // just after the scan, at or before the sitter's own timestamp
	procs []sitter.ProcSample
}

func (r *recordingSampler) Processes(ctx context.Context) ([]sitter.ProcSample, error) {
	procs, err := r.Sampler.Processes(ctx)
	if err == nil {
		r.mu.Lock()
		r.scans = append(r.scans, scan{at: time.Now(), procs: procs})
		r.mu.Unlock()
	}
	return procs, err
}

// between returns the scans taken in (from, to].
func (r *recordingSampler) between(from, to time.Time) []scan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []scan
	for _, s := range r.scans {
		if s.at.After(from) && !s.at.After(to) {
			out = append(out, s)
		}
	}
	return out
}

type harness struct {
	s   *sitter.Sitter
	dir string
}

// start runs a sitter with the given tasks until the test ends.
func start(t *testing.T, cfg sitter.Config, tasks ...sitter.Task) *harness {
	t.Helper()
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.Sampler == nil {
		cfg.Sampler = psutil.New()
	}
	if cfg.SampleInterval == 0 {
		cfg.SampleInterval = sampleEvery
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	s, err := sitter.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	for _, task := range tasks {
		if err := s.AddTask(ctx, task); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
			_ = s.Close()
		case <-time.After(30 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return &harness{s: s, dir: cfg.StateDir}
}

func (h *harness) task(t *testing.T, name string) sitter.TaskStatus {
	t.Helper()
	for _, ts := range h.s.Status().Tasks {
		if ts.Name == name {
			return ts
		}
	}
	t.Fatalf("task %s not in status", name)
	return sitter.TaskStatus{}
}

// waitTask polls the task's status until cond holds or timeout passes.
func (h *harness) waitTask(t *testing.T, name string, timeout time.Duration, what string, cond func(sitter.TaskStatus) bool) sitter.TaskStatus {
	t.Helper()
	var ts sitter.TaskStatus
	testsupport.Eventually(t, timeout, func() error {
		if ts = h.task(t, name); !cond(ts) {
			return fmt.Errorf("task %s: waiting for %s; last status %+v", name, what, ts)
		}
		return nil
	})
	return ts
}

func alive(pid int) bool { return process.Alive(pid) }

func waitDead(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	testsupport.Eventually(t, timeout, func() error {
		if alive(pid) {
			return fmt.Errorf("pid %d still alive", pid)
		}
		return nil
	})
}

func readPID(t *testing.T, path string, timeout time.Duration) int {
	t.Helper()
	var pid int
	testsupport.Eventually(t, timeout, func() error {
		b, err := os.ReadFile(path)
		n, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || perr != nil || n <= 0 {
			return fmt.Errorf("no pid in %s (%q, %v)", path, b, err)
		}
		pid = n
		return nil
	})
	return pid
}

func intp(n int) *int    { return &n }
func boolp(b bool) *bool { return &b }

func dur(d time.Duration) sitter.Duration { return sitter.Duration(d) }

// syncBuffer is the shared concurrent-safe test buffer.
type syncBuffer = syncbuf.Buffer
