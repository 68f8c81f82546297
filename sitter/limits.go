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
	// members are the tree's processes with their cumulative CPU seconds,
	// in tree order, for the next sample's delta.
	members []memberCPU
	// base: this is a baseline for the next delta (a sample, or the start
	// of a run); the zero Usage is none.
	base bool
}

// memberCPU is one process of a sample: who it is (the start time tells
// a reused pid apart) and the CPU seconds it had burnt.
type memberCPU struct {
	Member
	cpu float64
}

// StartUsage is the baseline of a run that starts at at, so that its first
// sample counts all CPU burnt since the start.
func StartUsage(at time.Time) Usage { return Usage{At: at, base: true} }

// Members lists the processes of u with their start times, for
// Root.Known of the next sample.
func (u Usage) Members() []Member { return u.appendMembers(nil) }

func (u Usage) appendMembers(dst []Member) []Member {
	for _, m := range u.members {
		dst = append(dst, m.Member)
	}
	return dst
}

// cpuOf finds pid among u's members; hint is where it is likely to be,
// since a tree's order rarely changes between samples.
func (u Usage) cpuOf(pid, hint int) (memberCPU, bool) {
	if hint < len(u.members) && u.members[hint].PID == pid {
		return u.members[hint], true
	}
	for _, m := range u.members {
		if m.PID == pid {
			return m, true
		}
	}
	return memberCPU{}, false
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
	return measureInto(nil, tree, now, prev)
}

// measureInto is Measure appending the members to buf, so that the sample
// loop can reuse last-but-one sample's slice instead of allocating per task
// per second.
func measureInto(buf []memberCPU, tree []ProcSample, now time.Time, prev Usage) Usage {
	u := Usage{At: now, base: true, members: buf[:0]}
	var rss uint64
	var burnt float64
	// Trees of many processes get an index; small ones are searched.
	var index map[int]int
	if len(tree) > 32 && len(prev.members) > 32 {
		index = make(map[int]int, len(prev.members))
		for i, m := range prev.members {
			index[m.PID] = i
		}
	}
	for i, p := range tree {
		u.members = append(u.members, memberCPU{Member: Member{PID: p.PID, Start: p.Start}, cpu: p.CPUSeconds})
		rss += p.RSSBytes
		if !prev.base {
			continue
		}
		d := p.CPUSeconds
		var before memberCPU
		var ok bool
		if index != nil {
			var j int
			if j, ok = index[p.PID]; ok {
				before = prev.members[j]
			}
		} else {
			before, ok = prev.cpuOf(p.PID, i)
		}
		// A pid whose start time changed is a new process: all its CPU
		// time is new, and subtracting its predecessor's would hide it.
		if ok && (p.Start == 0 || before.Start == 0 || before.Start == p.Start) {
			d -= before.cpu
		}
		if d > 0 {
			burnt += d
		}
	}
	u.MemMB = float64(rss) / (1 << 20)
	if dt := now.Sub(prev.At).Seconds(); prev.base && dt > 0 {
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
