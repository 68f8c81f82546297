package psutil

import (
	"fmt"
	"time"

	"nightshift/internal/process"
)

// quietRefresh bounds how many samples a quiet process's last full read is
// trusted for. A process that has not run cannot have used CPU, forked or
// faulted pages in, but its RSS can still move a little without it: the
// kernel's khugepaged may collapse a sparse range into a huge page, and a
// debugger may write into it. Re-reading every process at least this often
// keeps such drift from lasting.
const quietRefresh = 30

// quietProc is what the last full read of a process found, with the CPU
// time its whole thread group had then. While the process's CPU-time clock
// (clock_gettime on the clock clock_getcpuclockid names) shows the same
// nanoseconds, no thread of it has run, and so its stat and its children
// are as they were: it burnt no CPU, forked nothing, faulted nothing in.
//
// Why: on the machines we measured (a Firecracker VM), every /proc read
// costs 2-6 µs cold, and reading each supervised process's stat every
// second was by itself as much CPU as supervisord's whole loop with 100
// idle children (docs/BENCHMARKS.md). The clock is one syscall with no
// file, no formatting and no parsing: about half the cost of the cheapest
// /proc file (schedstat), measured the same way.
//
// The clock names a pid, not a process. A process that died and whose pid
// went to a new one within quietRefresh samples would need the exact same
// run time to the nanosecond to be taken for it; the refresh bounds even
// that, and a run's leader is our child, whose death is seen by wait.
type quietProc struct {
	st    process.Stat
	runNS uint64
	kids  []int
	// kidsRead: kids holds a children read made after runNS was taken.
	kidsRead bool
	gen      uint64 // last sample that used it
	read     uint64 // sample of the last full read
}

// look returns pid's stat, from the quiet cache when the process has not
// run since it was last read in full; quiet says so, and that its cached
// children list (s.quiet[pid].kids) is current.
func (s *Sampler) look(pid int) (st process.Stat, quiet, ok bool, err error) {
	if !s.haveCPUClock || !s.caching {
		st, ok, err = s.stat(pid)
		return st, false, ok, err
	}
	q := s.quiet[pid]
	ns, cerr := cpuClock(pid)
	if cerr == nil && q != nil && ns == q.runNS && s.gen-q.read < quietRefresh {
		q.gen = s.gen
		return q.st, q.kidsRead, true, nil
	}
	// The CPU time was taken before the stat, so a run in between shows as
	// a change next sample instead of being hidden.
	st, ok, err = s.stat(pid)
	if err != nil || !ok || cerr != nil {
		// No clock for a live process: the kernel cannot do it, so stop
		// asking. Gone or unreadable: nothing to remember.
		if cerr != nil && err == nil && ok {
			s.haveCPUClock = false
			clear(s.quiet)
		}
		delete(s.quiet, pid)
		return st, false, ok, err
	}
	if q == nil {
		q = &quietProc{}
		s.quiet[pid] = q
	}
	q.st, q.runNS, q.kids, q.kidsRead, q.gen, q.read = st, ns, q.kids[:0], false, s.gen, s.gen
	return st, false, true, nil
}

// rememberKids stores pid's children as read this sample, so that while it
// stays quiet the next samples need not read them.
func (s *Sampler) rememberKids(pid int, kids []int) {
	if q := s.quiet[pid]; q != nil && q.gen == s.gen && q.read == s.gen {
		q.kids = append(q.kids[:0], kids...)
		q.kidsRead = true
	}
}

// CPUTime is the CPU time every thread of process pid has used, dead
// threads included, to the nanosecond (utime+stime in /proc/<pid>/stat
// come in clock ticks, too coarse to compare two quiet supervisors over a
// minute).
func CPUTime(pid int) (time.Duration, error) {
	ns, err := cpuClock(pid)
	if err != nil {
		return 0, fmt.Errorf("cpu clock of pid %d: %w", pid, err)
	}
	return time.Duration(ns), nil
}
