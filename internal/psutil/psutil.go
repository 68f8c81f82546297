// Package psutil implements sitter.Sampler over gopsutil/v3: it owns every
// call into gopsutil so that the sitter core stays free of it and can be
// tested with a fake.
package psutil

import (
	"context"
	"fmt"
	"syscall"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/load"
	"github.com/shirou/gopsutil/v3/mem"
	"github.com/shirou/gopsutil/v3/process"

	"nightshift/sitter"
)

// Sampler reads /proc through gopsutil. The zero value is ready to use.
type Sampler struct{}

// New returns a Sampler.
func New() *Sampler { return &Sampler{} }

var _ sitter.Sampler = (*Sampler)(nil)

// Processes scans every process once. Processes that exit during the scan
// are skipped, not reported as errors: on a busy host that is normal.
func (s *Sampler) Processes(ctx context.Context) ([]sitter.ProcSample, error) {
	pids, err := process.PidsWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("sample processes: %w", err)
	}
	out := make([]sitter.ProcSample, 0, len(pids))
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("sample processes: %w", err)
		}
		p := &process.Process{Pid: pid}
		ppid, err := p.PpidWithContext(ctx)
		if err != nil {
			continue
		}
		times, err := p.TimesWithContext(ctx)
		if err != nil {
			continue
		}
		mi, err := p.MemoryInfoWithContext(ctx)
		if err != nil {
			continue
		}
		// gopsutil does not expose the process group; one syscall is
		// cheaper than parsing /proc/<pid>/stat a third time.
		pgid, err := syscall.Getpgid(int(pid))
		if err != nil {
			continue
		}
		out = append(out, sitter.ProcSample{
			PID: int(pid), PPID: int(ppid), PGID: pgid,
			CPUSeconds: times.User + times.System,
			RSSBytes:   mi.RSS,
		})
	}
	return out, nil
}

// Host returns load, CPU use since the previous call, and memory.
func (s *Sampler) Host(ctx context.Context) (sitter.HostVitals, error) {
	var h sitter.HostVitals
	avg, err := load.AvgWithContext(ctx)
	if err != nil {
		return h, fmt.Errorf("host vitals: load: %w", err)
	}
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return h, fmt.Errorf("host vitals: memory: %w", err)
	}
	h.Load1 = avg.Load1
	h.MemUsedMB = float64(vm.Used) / (1 << 20)
	h.MemTotalMB = float64(vm.Total) / (1 << 20)
	// Interval 0 compares with gopsutil's previous call, so the value
	// covers one sample interval without blocking.
	if pct, err := cpu.PercentWithContext(ctx, 0, false); err == nil && len(pct) == 1 {
		h.CPUPercent = pct[0]
	}
	return h, nil
}
