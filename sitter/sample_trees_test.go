package sitter_test

import (
	"context"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/psutil"
	"nightshift/sitter"
)

// treeSampler measures through psutil's Trees, remembers the roots the
// sitter asked about, and adds addRSS to every leader it reports.
type treeSampler struct {
	*psutil.Sampler
	addRSS  uint64
	mu      sync.Mutex
	roots   [][]sitter.Root
	scanned bool
}

func (f *treeSampler) Trees(ctx context.Context, roots []sitter.Root) (map[int][]sitter.ProcSample, error) {
	f.mu.Lock()
	f.roots = append(f.roots, append([]sitter.Root(nil), roots...))
	f.mu.Unlock()
	trees, err := f.Sampler.Trees(ctx, roots)
	for pid, tree := range trees {
		for i := range tree {
			if tree[i].PID == pid {
				tree[i].RSSBytes += f.addRSS
			}
		}
	}
	return trees, err
}

func (f *treeSampler) Processes(context.Context) ([]sitter.ProcSample, error) {
	f.mu.Lock()
	f.scanned = true
	f.mu.Unlock()
	return nil, nil
}

func (f *treeSampler) asked() [][]sitter.Root {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]sitter.Root(nil), f.roots...)
}

// TestSitterSamplesTrees: with a TreeSampler the sitter asks only about its
// runs (leader pid and start time, then the members it has seen), enforces
// limits on what comes back, and never scans the host.
func TestSitterSamplesTrees(t *testing.T) {
	f := &treeSampler{Sampler: psutil.New(), addRSS: 500 << 20}
	h := start(t, sitter.Config{Sampler: f}, sitter.Task{Name: "big", Shell: "sleep 300 & wait", Mem: 48,
		Restart: sitter.RestartNever, StopGrace: dur(time.Second)})
	ts := h.waitTask(t, "big", 20*time.Second, "mem violation", func(ts sitter.TaskStatus) bool {
		return ts.LastViolation != nil
	})
	if v := ts.LastViolation; v.Kind != sitter.ViolationMem || v.Measured < 500 || v.Limit != 48 {
		t.Errorf("violation = %+v, want mem >= 500 MB over 48", v)
	}
	var leader sitter.Root
	for _, roots := range f.asked() {
		for _, r := range roots {
			if leader.PID == 0 {
				leader = r
			}
			if r.PID != leader.PID || r.Start != leader.Start {
				t.Errorf("asked about %+v, then %+v: one run, one root", leader, r)
			}
		}
	}
	f.mu.Lock()
	if f.scanned {
		t.Error("the sitter scanned the whole host although its Sampler has Trees")
	}
	f.mu.Unlock()
	if leader.PID <= 0 || leader.Start == 0 {
		t.Fatalf("first root = %+v, want the leader's pid and start time", leader)
	}
}

// TestSetsidDescendantCPU: CPU burnt by a descendant that left the task's
// process group and session (setsid) is the task's, in polling mode too.
func TestSetsidDescendantCPU(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "escapee")
	h := start(t, sitter.Config{}, sitter.Task{Name: "escaper", CPU: 0.2, Restart: sitter.RestartNever, StopGrace: dur(time.Second),
		Shell: `setsid sh -c 'echo $$ > ` + pidFile + `; while :; do :; done' & wait`})
	escapee := readPID(t, pidFile, 20*time.Second)
	// Polling mode signals the process group only, which the escapee has
	// left; it is this test's to kill.
	t.Cleanup(func() { _ = syscall.Kill(escapee, syscall.SIGKILL) })
	ts := h.waitTask(t, "escaper", 20*time.Second, "cpu violation", func(ts sitter.TaskStatus) bool {
		return ts.LastViolation != nil
	})
	if v := ts.LastViolation; v.Kind != sitter.ViolationCPU || v.Measured <= 0.2 {
		t.Errorf("violation = %+v, want cpu over 0.2 cores", v)
	}
}
