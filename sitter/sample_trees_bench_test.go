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

// BenchmarkSampleTrees is BenchmarkSample through TreeSampler, the path
// the sitter takes with internal/psutil: only the 100 task trees (each a
// shell with a child) are read, so the cost does not depend on how many
// other processes the host runs. Known members are passed back as the
// sitter does.
func BenchmarkSampleTrees(b *testing.B) {
	const tasks = 100
	roots := make([]sitter.Root, 0, tasks)
	for range tasks {
		cmd := exec.Command("sh", "-c", "sleep 300 & wait")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		roots = append(roots, sitter.Root{PID: cmd.Process.Pid})
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
		trees, err := s.Trees(ctx, roots)
		if err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		for i := range roots {
			prev[i] = sitter.Measure(trees[roots[i].PID], now, prev[i])
			roots[i].Known = prev[i].Members()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/tasks, "µs/task")
}
