package psutil

import (
	"context"
	"os/exec"
	"syscall"
	"testing"

	"nightshift/sitter"
)

// BenchmarkTrees: one sample of 100 task trees (a shell and its child
// each), the sitter's hot path. Compare with BenchmarkProcesses, the
// whole-host scan it replaces, whose cost grows with the host.
func BenchmarkTrees(b *testing.B) {
	roots := spawnTasks(b, 100)
	s := New()
	b.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Trees(ctx, roots); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProcesses(b *testing.B) {
	spawnTasks(b, 100)
	s := New()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Processes(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHost(b *testing.B) {
	s := New()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Host(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func spawnTasks(b *testing.B, n int) []sitter.Root {
	roots := make([]sitter.Root, 0, n)
	for range n {
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
	return roots
}
