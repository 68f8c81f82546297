// Package psutil implements sitter.Sampler and sitter.TreeSampler: it owns
// how the sitter measures processes, cgroups and the host, so that the
// sitter core stays free of /proc and can be tested with a fake.
//
// What uses gopsutil/v3: Host (load, memory, CPU percent), when the sitter
// asks (a status or heartbeat, at most once per sample), where its parsing of /proc/loadavg, /proc/meminfo and /proc/stat is worth
// having (about 60 µs a call, BenchmarkHost).
//
// Why the per-process hot path reads /proc itself: gopsutil's Process API
// parses /proc/<pid>/stat once per accessor (Ppid, Times and MemoryInfo
// were three reads of the same file, plus a getpgid) and allocates for
// each, and the sitter used it to scan every process on the host each
// second. Measured 2026-11-21 on the shared 2-core machine (~320
// processes), 100 tasks of two processes each: the old scan took 38-66 ms
// per sample (BenchmarkSample before this change), Trees takes 1.2-3.5 ms
// with 6 allocations (BenchmarkTrees), and nsbench's sitter scenario went
// from 1.26-1.33 to 0.12 CPU s/min. Trees reads one /proc/<pid>/stat per
// supervised process and finds descendants through
// /proc/<pid>/task/<tid>/children, keeping those files open between samples
// (one pread each instead of open, read and close), with reused buffers;
// a run with a cgroup of its own is read from the group's two counters.
// A process that has not run since its last full read is not read at all:
// its CPU-time clock, one syscall, proves it (quietProc).
package psutil

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/load"
	"github.com/shirou/gopsutil/v3/mem"
	"github.com/tklauser/go-sysconf"

	"nightshift/sitter"
)

// Sampler reads /proc. The zero value is ready to use; it is safe for
// concurrent use (calls are serialised, as they share buffers).
type Sampler struct {
	mu       sync.Mutex
	ready    bool
	ticks    float64 // USER_HZ: clock ticks per second in /proc
	pageSize uint64
	// haveChildren: the kernel has /proc/<pid>/task/<tid>/children
	// (CONFIG_PROC_CHILDREN); without it Trees falls back to a scan.
	haveChildren bool
	// haveCPUClock: clock_gettime reads other processes' CPU-time clocks,
	// so a process that has not run since its last read can be told apart
	// without reading its stat (see quietProc).
	haveCPUClock bool

	// quiet remembers, per single-threaded process, its last full read and
	// the CPU time it had then; statReads counts full reads, for tests.
	quiet     map[int]*quietProc
	statReads uint64

	// Buffers reused from sample to sample.
	r         *procReader
	seen      map[int]struct{}
	queue     []member
	kids      []int
	tids      []int
	spans     []span
	lastTotal int
	byParent  map[int][]int

	// fds keeps the /proc files of supervised processes open between
	// samples: a pread costs one syscall where open, read and close cost
	// three, and the open (a procfs path walk) is the dearest of them.
	// An fd stays bound to its process, so after the process dies it reads
	// ESRCH, never a newer process that got the pid. Only Trees uses it,
	// and it closes what a sample did not touch.
	fds     map[fdKey]openFD
	gen     uint64
	caching bool
	maxFDs  int

	// Cgroup counters: the mounts and the sitter's own groups, read once;
	// each run's counter files, resolved once per run.
	mounts  []cgMount
	selfCg  map[string]string
	cgroups map[cgKey]cgRun
}

type cgKey struct {
	pid   int
	start uint64
}

// cgRun is a resolved run: its counter files, or ok false to walk.
type cgRun struct {
	ok         bool
	files      cgFiles
	ppid, pgid int
	gen        uint64
}

// maxCachedFDs bounds the fds kept open (two per single-threaded process);
// beyond it files are opened and closed per read. init lowers it to a
// quarter of RLIMIT_NOFILE, so the cache never starves the sitter of fds
// for the tasks' pipes and logs.
const maxCachedFDs = 4096

// fdKey names a cached file: /proc/<pid>/stat, .../task/<tid>/children,
// or a cgroup counter file (path) of the run led by pid.
type fdKey struct {
	pid, tid int
	children bool
	path     string
}

type openFD struct {
	fd  int
	gen uint64
}

// New returns a Sampler.
func New() *Sampler { return &Sampler{} }

var (
	_ sitter.Sampler     = (*Sampler)(nil)
	_ sitter.TreeSampler = (*Sampler)(nil)
)

// init fills in what depends on the host; s.mu must be held.
func (s *Sampler) init() {
	if s.ready {
		return
	}
	s.ticks = 100 // USER_HZ on every Linux architecture we run on
	if t, err := sysconf.Sysconf(sysconf.SC_CLK_TCK); err == nil && t > 0 {
		s.ticks = float64(t)
	}
	s.pageSize = uint64(os.Getpagesize())
	s.r = newProcReader()
	s.seen = map[int]struct{}{}
	s.fds = map[fdKey]openFD{}
	s.maxFDs = maxCachedFDs
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur/4 < uint64(s.maxFDs) {
		s.maxFDs = int(lim.Cur / 4)
	}
	s.cgroups = map[cgKey]cgRun{}
	s.quiet = map[int]*quietProc{}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		s.mounts = parseMountinfo(b)
	}
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		s.selfCg, _ = cgPaths(b)
	}
	self := os.Getpid()
	s.r.pidPath(self, self, "children")
	_, err := s.r.read()
	s.haveChildren = err == nil
	_, err = cpuClock(self)
	s.haveCPUClock = err == nil
	s.ready = true
}

// Close releases the files kept open between samples. The Sampler stays
// usable; the next sample opens what it needs.
func (s *Sampler) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, c := range s.fds {
		_ = syscall.Close(c.fd)
		delete(s.fds, k)
	}
	clear(s.quiet) // what they proved is gone with them
	return nil
}

// readProc reads /proc/<pid>/stat, or /proc/<pid>/task/<tid>/children,
// through the fd cache while s.caching is on.
func (s *Sampler) readProc(pid, tid int, children bool) ([]byte, error) {
	return s.readCached(fdKey{pid: pid, tid: tid, children: children})
}

func (s *Sampler) setPath(k fdKey) {
	switch {
	case k.path != "":
		s.r.path = append(s.r.path[:0], k.path...)
	case k.children:
		s.r.pidPath(k.pid, k.tid, "children")
	default:
		s.r.pidPath(k.pid, 0, "stat")
	}
}

// readCached reads the file k names, through the fd cache while s.caching
// is on.
func (s *Sampler) readCached(k fdKey) ([]byte, error) {
	if !s.caching {
		s.setPath(k)
		return s.r.read()
	}
	if c, ok := s.fds[k]; ok {
		if b, err := s.r.readFD(c.fd); err == nil {
			s.fds[k] = openFD{fd: c.fd, gen: s.gen}
			return b, nil
		}
		// That process is gone; another may have its pid now, so the
		// path is opened afresh.
		_ = syscall.Close(c.fd)
		delete(s.fds, k)
	}
	s.setPath(k)
	fd, err := s.r.open()
	if err != nil {
		return nil, err
	}
	b, err := s.r.readFD(fd)
	if err != nil || len(s.fds) >= s.maxFDs {
		_ = syscall.Close(fd)
		if err != nil {
			return nil, &pathError{path: string(s.r.path), err: err}
		}
		return b, nil
	}
	s.fds[k] = openFD{fd: fd, gen: s.gen}
	return b, nil
}

// Sweeping walks every cached fd and run, so it happens every sweepEvery
// samples, not every sample. fdIdle is how long an unused fd stays open:
// longer than quietRefresh, so that a quiet process's files are still open
// when it is next read in full.
const (
	sweepEvery = 16
	fdIdle     = quietRefresh + sweepEvery
)

// sweep closes the cached fds that have not been used for fdIdle samples,
// and forgets the runs and quiet processes that recent samples did not
// use. A dead process's fds read ESRCH and are closed when read, so what
// lingers here is only fds and entries of processes no tree reaches.
func (s *Sampler) sweep() {
	if s.gen%sweepEvery != 0 && len(s.fds) < s.maxFDs {
		return
	}
	for k, c := range s.fds {
		if s.gen-c.gen >= fdIdle {
			_ = syscall.Close(c.fd)
			delete(s.fds, k)
		}
	}
	for k, c := range s.cgroups {
		if s.gen-c.gen >= sweepEvery {
			delete(s.cgroups, k)
		}
	}
	for pid, q := range s.quiet {
		if s.gen-q.gen >= sweepEvery {
			delete(s.quiet, pid)
		}
	}
}

// Processes scans every process once, reading each /proc/<pid>/stat once.
// Processes that exit during the scan are skipped, not reported as errors:
// on a busy host that is normal. Prefer Trees, whose cost does not grow
// with the host's process count.
func (s *Sampler) Processes(ctx context.Context) ([]sitter.ProcSample, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sample processes: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	out := make([]sitter.ProcSample, 0, s.lastTotal)
	err := s.eachPID(func(pid int) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		st, ok, err := s.stat(pid)
		if err != nil {
			return err
		}
		if ok {
			out = append(out, s.sample(pid, st))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sample processes: %w", err)
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
