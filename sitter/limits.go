package sitter

import "time"

// cpuStrikes is how many samples in a row must be over the CPU limit before
// it counts: one sample over is usually a spike (start-up, GC, a burst of
// work) and killing on it would make limits useless for bursty workers.
const cpuStrikes = 2

// ProcSample is one process as seen by a Sampler.
type ProcSample struct {
	PID, PPID, PGID int
	// CPUSeconds is user+system time consumed since the process started.
	CPUSeconds float64
	RSSBytes   uint64
	// Start is the start time in clock ticks since boot, which tells a
	// process apart from a later one with the same pid; 0 if unknown.
	Start uint64
}

// Usage is a task's process tree at one sample.
type Usage struct {
	At time.Time
	// CPU is cores used since the previous sample (0 on the first).
	CPU   float64
	MemMB float64
	PIDs  []int
	// cpu is each member's cumulative CPU seconds, for the next delta.
	cpu map[int]float64
	// starts is each member's start time, so that a pid reused between
	// samples is not taken for the process it replaced.
	starts map[int]uint64
}

// Members lists the processes of u with their start times, for
// Root.Known of the next sample.
func (u Usage) Members() []Member {
	out := make([]Member, 0, len(u.PIDs))
	for _, pid := range u.PIDs {
		out = append(out, Member{PID: pid, Start: u.starts[pid]})
	}
	return out
}

// TreeOf returns the processes that belong to a task whose leader is root:
// root's descendants by parent link, plus every member of root's process
// group (orphans re-parented to init keep the group), plus extra pids (the
// task's cgroup, which also catches children that called setsid).
func TreeOf(procs []ProcSample, root int, extra []int) []ProcSample {
	children := make(map[int][]int, len(procs))
	byPID := make(map[int]ProcSample, len(procs))
	for _, p := range procs {
		children[p.PPID] = append(children[p.PPID], p.PID)
		byPID[p.PID] = p
	}
	in := map[int]bool{}
	var out []ProcSample
	add := func(pid int) bool {
		p, ok := byPID[pid]
		if !ok || in[pid] {
			return false
		}
		in[pid] = true
		out = append(out, p)
		return true
	}
	queue := []int{root}
	for _, p := range procs {
		if p.PGID == root && p.PID != root {
			queue = append(queue, p.PID)
		}
	}
	queue = append(queue, extra...)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if add(pid) {
			queue = append(queue, children[pid]...)
		}
	}
	return out
}

// Measure turns a tree at time now into Usage, using prev (the previous
// sample of the same run, zero for the first) for the CPU delta. A process
// that appeared since prev contributes all its CPU time, which is what it
// burnt within the interval unless it was adopted from outside.
func Measure(tree []ProcSample, now time.Time, prev Usage) Usage {
	u := Usage{At: now, cpu: make(map[int]float64, len(tree)), starts: make(map[int]uint64, len(tree)),
		PIDs: make([]int, 0, len(tree))}
	var rss uint64
	var burnt float64
	for _, p := range tree {
		u.PIDs = append(u.PIDs, p.PID)
		u.cpu[p.PID] = p.CPUSeconds
		u.starts[p.PID] = p.Start
		rss += p.RSSBytes
		if prev.cpu == nil {
			continue
		}
		d := p.CPUSeconds
		// A pid whose start time changed is a new process: all its CPU
		// time is new, and subtracting its predecessor's would hide it.
		if before, ok := prev.cpu[p.PID]; ok && (p.Start == 0 || prev.starts[p.PID] == 0 || prev.starts[p.PID] == p.Start) {
			d -= before
		}
		if d > 0 {
			burnt += d
		}
	}
	u.MemMB = float64(rss) / (1 << 20)
	if dt := now.Sub(prev.At).Seconds(); prev.cpu != nil && dt > 0 {
		u.CPU = burnt / dt
	}
	return u
}

// Check compares one sample with t's limits. strikes is the number of CPU
// samples over the limit in a row so far; the updated count is returned.
func Check(t Task, u Usage, strikes int) (*Violation, int) {
	if t.Mem > 0 && u.MemMB > t.Mem {
		return &Violation{Kind: ViolationMem, Measured: u.MemMB, Limit: t.Mem, At: u.At}, 0
	}
	if t.CPU > 0 && u.CPU > t.CPU {
		strikes++
		if strikes >= cpuStrikes {
			return &Violation{Kind: ViolationCPU, Measured: u.CPU, Limit: t.CPU, At: u.At}, 0
		}
		return nil, strikes
	}
	return nil, 0
}
