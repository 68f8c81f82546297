package sitter_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/psutil"
	"nightshift/internal/testsupport"
	"nightshift/sitter"
)

// BenchmarkSitterIdle is the whole sitter's CPU per sample round with 100
// idle tasks that have limits, as in nsbench's sitter scenario but with a
// 10 ms sample interval so that a short run covers many rounds. It counts
// everything a round costs (sampling, host vitals, every runner's share),
// from getrusage of this process; one iteration is one sample interval.
func BenchmarkSitterIdle(b *testing.B) {
	const tasks, every = 100, 10 * time.Millisecond
	s, err := sitter.New(sitter.Config{StateDir: b.TempDir(), Sampler: psutil.New(), SampleInterval: every})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	for i := range tasks {
		t := sitter.Task{Name: fmt.Sprintf("idle-%03d", i), Command: []string{"sleep", "3600"}, CPU: 1, Mem: 64,
			Restart: sitter.RestartAlways, StopGrace: sitter.Duration(2 * time.Second)}
		if err := s.AddTask(ctx, t); err != nil {
			b.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	testsupport.Eventually(b, 30*time.Second, func() error {
		running := 0
		for _, ts := range s.Status().Tasks {
			if ts.State == sitter.StateRunning {
				running++
			}
		}
		if running != tasks {
			return fmt.Errorf("%d of %d tasks running", running, tasks)
		}
		return nil
	})
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ResetTimer()
	before := cpu()
	time.Sleep(time.Duration(b.N) * every)
	used := cpu() - before
	b.ReportMetric(float64(used.Microseconds())/float64(b.N), "cpu-µs/sample")
	b.ReportMetric(float64(used.Microseconds())/float64(b.N)*60/1e6, "cpu-s/min@1s")
}
