package sitter_test

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/psutil"
	"nightshift/sitter"
)

// BenchmarkSample measures one sampling round as the sitter does it: one
// host-wide scan, then the tree and usage of each of 100 tasks (each a
// shell with a child). Compare with supervisord+memmon polling the same.
func BenchmarkSample(b *testing.B) {
	const tasks = 100
	roots := make([]int, 0, tasks)
	for range tasks {
		cmd := exec.Command("sh", "-c", "sleep 300 & wait")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		roots = append(roots, cmd.Process.Pid)
		b.Cleanup(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		})
	}
	ctx := context.Background()
	s := psutil.New()
	prev := make([]sitter.Usage, tasks)
	b.ResetTimer()
	for b.Loop() {
		procs, err := s.Processes(ctx)
		if err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		for i, root := range roots {
			prev[i] = sitter.Measure(sitter.TreeOf(procs, root, nil), now, prev[i])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/tasks, "µs/task")
}
