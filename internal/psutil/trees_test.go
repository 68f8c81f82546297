package psutil

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/testsupport"
	"nightshift/sitter"
)

// spawn starts a shell script as the leader of its own process group, as
// the sitter does, and kills the group and every pid in *extra at cleanup
// (setsid members are outside the group).
func spawn(t *testing.T, script string, extra *[]int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if extra != nil {
			for _, pid := range *extra {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd
}

// waitTree samples until root's tree has want members that have all
// exec'd (a child caught between fork and exec has no rss yet); the shell
// needs a moment to fork. The bound is generous: it only ends a test that
// would otherwise hang.
func waitTree(t *testing.T, s *Sampler, root sitter.Root, want int, also func([]sitter.ProcSample) bool) []sitter.ProcSample {
	t.Helper()
	var tree []sitter.ProcSample
	// The caller judges the tree it gets; a timeout only ends the wait.
	_ = testsupport.Poll(10*time.Second, func() error {
		trees, err := s.Trees(context.Background(), []sitter.Root{root})
		if err != nil {
			t.Fatal(err)
		}
		tree = trees[root.PID]
		settled := len(tree) >= want
		for _, p := range tree {
			settled = settled && p.RSSBytes > 0 && p.PGID != 0
		}
		if settled && also != nil {
			settled = also(tree)
		}
		if !settled {
			return fmt.Errorf("tree of %d not settled: %+v", root.PID, tree)
		}
		return nil
	})
	return tree
}

func pids(tree []sitter.ProcSample) []int {
	var out []int
	for _, p := range tree {
		out = append(out, p.PID)
	}
	slices.Sort(out)
	return out
}

// TestTreesChildGrandchildSetsid: the leader has a child, and another
// child that called setsid (leaving the process group and session) and has
// a child of its own. All four count, and nothing else does.
func TestTreesChildGrandchildSetsid(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("setsid(1) not installed")
	}
	var members []int
	cmd := spawn(t, `sleep 30 & setsid sh -c 'sleep 30 & wait' & wait`, &members)
	leader := cmd.Process.Pid
	for _, fallback := range []bool{false, true} {
		t.Run("fallback="+strconv.FormatBool(fallback), func(t *testing.T) {
			s := New()
			s.mu.Lock()
			s.init()
			if fallback {
				s.haveChildren = false // as on a kernel without CONFIG_PROC_CHILDREN
			} else if !s.haveChildren {
				t.Skip("kernel has no /proc/<pid>/task/<tid>/children")
			}
			s.mu.Unlock()
			tree := waitTree(t, s, sitter.Root{PID: leader}, 4, func(tree []sitter.ProcSample) bool {
				n := 0
				for _, p := range tree {
					if p.PGID != leader {
						n++
					}
				}
				return n == 2 // setsid has run and the escapee has forked
			})
			members = pids(tree)
			if len(tree) != 4 {
				t.Fatalf("tree of %d = %+v, want leader, sleep, setsid sh and its sleep", leader, tree)
			}
			by := map[int]sitter.ProcSample{}
			for _, p := range tree {
				by[p.PID] = p
				if p.Start == 0 || p.RSSBytes == 0 || p.CPUSeconds < 0 {
					t.Errorf("member %+v: want start time, rss and cpu", p)
				}
			}
			var escaped, grandchild int
			for _, p := range tree {
				if p.PGID != leader {
					escaped++
					if parent, ok := by[p.PPID]; ok && parent.PID != leader {
						grandchild++
					}
				}
			}
			if escaped != 2 || grandchild != 1 {
				t.Errorf("want the setsid child and its child outside the group (got %d) and one grandchild (got %d): %+v",
					escaped, grandchild, tree)
			}
		})
	}
}

// TestTreesStartTimes: a root or known member whose start time does not
// match is another process that got the pid (pid reuse) and must not count;
// a known member whose start matches counts even outside the tree
// (orphaned members are followed).
func TestTreesStartTimes(t *testing.T) {
	leader := spawn(t, `sleep 30 & wait`, nil).Process.Pid
	// Stands for a pid that a dead member had and an unrelated process now
	// has: it is not a descendant of the leader.
	other := spawn(t, `exec sleep 30`, nil).Process.Pid
	s := New()
	ctx := context.Background()
	tree := waitTree(t, s, sitter.Root{PID: leader}, 2, nil)
	if len(tree) != 2 {
		t.Fatalf("tree = %+v, want shell and sleep", tree)
	}
	leaderStart := tree[0].Start
	trees, err := s.Trees(ctx, []sitter.Root{{PID: other}})
	if err != nil || len(trees[other]) != 1 {
		t.Fatalf("tree of %d = %+v, %v", other, trees, err)
	}
	otherStart := trees[other][0].Start
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		root sitter.Root
		want []int // nil: no entry
	}{
		{"matching start", sitter.Root{PID: leader, Start: leaderStart}, []int{leader}},
		{"leader pid reused", sitter.Root{PID: leader, Start: leaderStart + 1}, nil},
		{"dead leader", sitter.Root{PID: dead.Process.Pid}, nil},
		{"known member reused", sitter.Root{PID: leader, Known: []sitter.Member{{PID: other, Start: otherStart + 1}}}, []int{leader}},
		{"known member without start", sitter.Root{PID: leader, Known: []sitter.Member{{PID: other}}}, []int{leader}},
		{"known orphan followed", sitter.Root{PID: leader, Known: []sitter.Member{{PID: other, Start: otherStart}}}, []int{leader, other}},
		{"extra (cgroup) member", sitter.Root{PID: leader, Extra: []int{other, dead.Process.Pid}}, []int{leader, other}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			trees, err := s.Trees(ctx, []sitter.Root{c.root})
			if err != nil {
				t.Fatal(err)
			}
			tree, ok := trees[c.root.PID]
			if c.want == nil {
				if ok {
					t.Fatalf("got tree %+v, want no entry", tree)
				}
				return
			}
			got := pids(tree)
			for _, w := range c.want {
				if !slices.Contains(got, w) {
					t.Errorf("tree %v lacks %d", got, w)
				}
			}
			if slices.Contains(c.want, other) != slices.Contains(got, other) {
				t.Errorf("tree %v: pid %d in it = %v, want %v", got, other, slices.Contains(got, other), slices.Contains(c.want, other))
			}
		})
	}
}

func TestTreesManyRootsAndCancel(t *testing.T) {
	a := spawn(t, `exec sleep 30`, nil).Process.Pid
	b := spawn(t, `exec sleep 30`, nil).Process.Pid
	s := New()
	trees, err := s.Trees(context.Background(), []sitter.Root{{PID: a}, {PID: b}})
	if err != nil {
		t.Fatal(err)
	}
	if len(trees[a]) != 1 || len(trees[b]) != 1 || trees[a][0].PID != a || trees[b][0].PID != b {
		t.Fatalf("trees = %+v", trees)
	}
	// The caller keeps the slices: a later call must not overwrite them.
	keep := trees[a][0]
	if _, err := s.Trees(context.Background(), []sitter.Root{{PID: b}, {PID: a}}); err != nil {
		t.Fatal(err)
	}
	if trees[a][0] != keep {
		t.Errorf("earlier result changed: %+v, was %+v", trees[a][0], keep)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Trees(ctx, []sitter.Root{{PID: a}}); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("Trees with a canceled context: err = %v, want canceled", err)
	}
}

// TestTreesAllocations: the hot path reuses its buffers; what is left is
// the result (map and one slice) and the context check.
func TestTreesAllocations(t *testing.T) {
	leader := spawn(t, `sleep 30 & wait`, nil).Process.Pid
	s := New()
	root := []sitter.Root{{PID: leader}}
	waitTree(t, s, root[0], 2, nil)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := s.Trees(ctx, root); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 4 {
		t.Errorf("Trees allocates %.0f times per call for one small tree, want <= 4", allocs)
	}
}

// TestTreesCachedFDs: files of supervised processes stay open between
// samples; a process that dies drops out and its files are closed, and
// Close releases the rest.
func TestTreesCachedFDs(t *testing.T) {
	keep := spawn(t, `exec sleep 30`, nil).Process.Pid
	dies := exec.Command("sleep", "30")
	dies.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := dies.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dies.Process.Kill(); _ = dies.Wait() })
	s := New()
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	roots := []sitter.Root{{PID: keep}, {PID: dies.Process.Pid}}
	trees, err := s.Trees(ctx, roots)
	if err != nil || len(trees) != 2 {
		t.Fatalf("trees = %+v, %v", trees, err)
	}
	byPID := func() map[int]int {
		n := map[int]int{}
		for k := range s.fds {
			n[k.pid]++
		}
		return n
	}
	// stat and children of each
	if open := byPID(); open[keep] != 2 || open[dies.Process.Pid] != 2 || len(s.fds) != 4 {
		t.Errorf("fds cached after the first sample: %v, want 2 per process", open)
	}
	_ = dies.Process.Kill()
	_ = dies.Wait()
	trees, err = s.Trees(ctx, roots)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := trees[dies.Process.Pid]; ok || len(trees[keep]) != 1 {
		t.Errorf("after the kill: trees = %+v, want only %d", trees, keep)
	}
	// The survivor keeps both, read or not (a quiet process's CPU clock
	// stands for them, but they stay open for its next full read).
	if open := byPID(); open[dies.Process.Pid] != 0 || open[keep] != 2 || len(s.fds) != 2 {
		t.Errorf("fds cached after the kill: %v, want none of %d's", open, dies.Process.Pid)
	}
	if err := s.Close(); err != nil || len(s.fds) != 0 {
		t.Errorf("Close: %v, %d fds left", err, len(s.fds))
	}
	if trees, err := s.Trees(ctx, roots[:1]); err != nil || len(trees[keep]) != 1 {
		t.Errorf("after Close: %+v, %v", trees, err)
	}
}
