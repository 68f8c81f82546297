package bootlevel

import (
	"fmt"
	"os"
	"testing"

	"nightshift/launchplan"
)

// BenchmarkBoot5x20 measures the engine's own overhead: 5 levels of 20
// services whose programs finish at once, over the in-memory store. Home
// is on tmpfs when there is one: the engine creates work directories and
// appends to logs, and on a busy disk those syscalls would drown the rest.
func BenchmarkBoot5x20(b *testing.B) {
	drv := &fakeDriver{}
	e, _ := newEngine(b, drv)
	if dir, err := os.MkdirTemp("/dev/shm", "bootlevel-bench-"); err == nil {
		b.Cleanup(func() { _ = os.RemoveAll(dir) })
		e.Home = dir
	}
	levels := make([][]launchplan.Service, 5)
	for i := range levels {
		levels[i] = names(fmt.Sprintf("l%d-", i+1), 20)
	}
	p := plan(levels...)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		// Drop the call log so that it does not grow across iterations.
		drv.mu.Lock()
		drv.calls = nil
		drv.mu.Unlock()
		rep, err := e.Launch(b.Context(), p, LaunchOptions{Run: fmt.Sprintf("bench-%d", i)})
		if err != nil || rep.State != RunReady {
			b.Fatalf("launch: %v", err)
		}
	}
}
