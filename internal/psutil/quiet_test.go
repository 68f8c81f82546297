package psutil

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"nightshift/sitter"
)

// TestTreesQuietSkipsStat: an idle single-threaded process costs one
// schedstat read per sample, with the values of its last full read, until
// quietRefresh samples have passed; an idle parent keeps its idle child.
func TestTreesQuietSkipsStat(t *testing.T) {
	var roots []sitter.Root
	for range 10 {
		cmd := exec.Command("sh", "-c", "sleep 60 & wait")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
		roots = append(roots, sitter.Root{PID: cmd.Process.Pid})
	}
	s := New()
	t.Cleanup(func() { _ = s.Close() })
	if !s.ready {
		s.mu.Lock()
		s.init()
		s.mu.Unlock()
	}
	if !s.haveCPUClock {
		t.Skip("no readable process CPU clocks on this kernel")
	}
	ctx := context.Background()
	sample := func() (map[int][]sitter.ProcSample, uint64) {
		before := s.statReads
		trees, err := s.Trees(ctx, roots)
		if err != nil || len(trees) != len(roots) {
			t.Fatalf("trees = %d of %d, %v", len(trees), len(roots), err)
		}
		return trees, s.statReads - before
	}
	// Until every sleep has exec'd and settled, some samples read in full.
	var first map[int][]sitter.ProcSample
	for i := 0; ; i++ {
		trees, reads := sample()
		if reads == 0 && settled(trees) {
			first = trees
			break
		}
		if i == 50 {
			t.Fatalf("not quiet and settled after 50 samples (last one made %d full reads)", reads)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var full uint64
	for range quietRefresh + 1 {
		trees, reads := sample()
		full += reads
		for _, r := range roots {
			if got, want := trees[r.PID], first[r.PID]; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
				t.Fatalf("pid %d: %+v while quiet, want %+v", r.PID, got, want)
			}
		}
	}
	// Each process is re-read once within quietRefresh+1 samples.
	if full != 2*uint64(len(roots)) {
		t.Errorf("%d full reads in %d quiet samples of %d processes, want %d (one refresh each)", full, quietRefresh+1, 2*len(roots), 2*len(roots))
	}
}

// settled: every tree is a shell and its child that has exec'd sleep.
func settled(trees map[int][]sitter.ProcSample) bool {
	for _, tree := range trees {
		if len(tree) != 2 {
			return false
		}
		for _, p := range tree {
			if p.RSSBytes == 0 {
				return false
			}
		}
	}
	return true
}

// TestTreesQuietProcessWakes: a process that was quiet and then runs, forks
// and spins is seen doing all three.
func TestTreesQuietProcessWakes(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "go")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := spawn(t, `read x < `+fifo+`; sleep 300 & while :; do :; done`, nil)
	root := sitter.Root{PID: cmd.Process.Pid}
	s := New()
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	var quiet []sitter.ProcSample
	for i := 0; i < 5; i++ { // let it settle into the blocking open
		trees, err := s.Trees(ctx, []sitter.Root{root})
		if err != nil {
			t.Fatal(err)
		}
		quiet = trees[root.PID]
		time.Sleep(20 * time.Millisecond)
	}
	if len(quiet) != 1 {
		t.Fatalf("before the wake-up: %+v, want the shell alone", quiet)
	}
	if err := os.WriteFile(fifo, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tree := waitTree(t, s, root, 2, func(tree []sitter.ProcSample) bool {
		return tree[0].CPUSeconds >= quiet[0].CPUSeconds+0.05
	})
	if len(tree) != 2 || tree[0].CPUSeconds < quiet[0].CPUSeconds+0.05 {
		t.Fatalf("after the wake-up: %+v, want the shell spinning and its child", tree)
	}
}

// TestTreesSweepAgesOut: a process no tree reaches any more (its task was
// removed; it lives on) has its files closed and is forgotten within
// fdIdle+sweepEvery samples, so fds do not pile up.
func TestTreesSweepAgesOut(t *testing.T) {
	pid := spawn(t, `exec sleep 30`, nil).Process.Pid
	s := New()
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	if trees, err := s.Trees(ctx, []sitter.Root{{PID: pid}}); err != nil || len(trees[pid]) != 1 {
		t.Fatalf("trees = %+v, %v", trees, err)
	}
	if len(s.fds) == 0 {
		t.Fatal("no fds cached after the first sample")
	}
	for i := 0; i < fdIdle+sweepEvery; i++ {
		if _, err := s.Trees(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.fds) != 0 || len(s.quiet) != 0 {
		t.Errorf("after %d samples without it: %d fds, %d quiet entries left", fdIdle+sweepEvery, len(s.fds), len(s.quiet))
	}
}
