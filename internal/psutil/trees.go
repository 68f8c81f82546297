package psutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"

	"nightshift/internal/process"
	"nightshift/sitter"
)

// member is a tree member waiting for its children to be listed.
type member struct {
	pid, threads int
	start        uint64
	// quiet: the process has not run since its children were last read.
	quiet bool
}

type span struct{ pid, from, to int }

// Trees implements sitter.TreeSampler. Per root it reads the leader's
// /proc/<pid>/stat once, then walks /proc/<pid>/task/<tid>/children, which
// the kernel keeps per thread, so the cost is a few small reads per
// supervised process and nothing per other process on the host. A child
// whose setsid took it out of the process group is still a child, so it is
// found. Known members are followed after they were orphaned, while their
// start time matches. Processes that exit during the walk are skipped. A
// root whose tree cannot be read is left out and named in the error, which
// comes with the other trees. A root with a cgroup of its own is measured
// from the group's counters instead (see cgroupSample).
func (s *Sampler) Trees(ctx context.Context, roots []sitter.Root) (map[int][]sitter.ProcSample, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sample trees: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	s.byParent = nil // a fallback index is good for one call only
	s.gen++
	s.caching = true
	defer func() {
		s.caching = false
		s.sweep()
	}()
	// One slice for every tree; sub-slices are handed out, so a runner
	// still reading the previous result is never overwritten.
	all := make([]sitter.ProcSample, 0, s.lastTotal+len(roots))
	spans := s.spans[:0]
	var failed int
	var first error
	for _, root := range roots {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("sample trees: %w", err)
		}
		from := len(all)
		var err error
		if all, err = s.walk(all, root); err != nil {
			// One unreadable tree (EMFILE, EACCES) must not stop the
			// others' limits being measured: drop it and go on.
			all = all[:from]
			if failed++; first == nil {
				first = fmt.Errorf("tree of pid %d: %w", root.PID, err)
			}
			continue
		}
		if len(all) > from {
			spans = append(spans, span{pid: root.PID, from: from, to: len(all)})
		}
	}
	s.spans, s.lastTotal = spans, len(all)
	out := make(map[int][]sitter.ProcSample, len(spans))
	for _, sp := range spans {
		out[sp.pid] = all[sp.from:sp.to:sp.to]
	}
	if first != nil {
		return out, fmt.Errorf("sample trees: %d of %d failed, first: %w", failed, len(roots), first)
	}
	return out, nil
}

// walk appends root's tree to all.
func (s *Sampler) walk(all []sitter.ProcSample, root sitter.Root) ([]sitter.ProcSample, error) {
	if root.Group != nil && root.Start != 0 {
		if out, done := s.cgroupSample(all, root); done {
			return out, nil
		}
	}
	st, quiet, ok, err := s.look(root.PID)
	if err != nil || !ok {
		return all, err
	}
	if root.Start != 0 && st.StartTicks != root.Start {
		return all, nil // the leader died and its pid was reused
	}
	if root.Group != nil {
		// The group's members belong, even those that left the tree.
		if pids, err := root.Group.PIDs(); err == nil {
			root.Extra = append(root.Extra[:len(root.Extra):len(root.Extra)], pids...)
		}
	}
	clear(s.seen)
	s.queue = s.queue[:0]
	all = s.add(all, root.PID, st, quiet)
	for _, k := range root.Known {
		if _, dup := s.seen[k.PID]; dup || k.Start == 0 {
			continue
		}
		st, quiet, ok, err := s.look(k.PID)
		if err != nil {
			return all, err
		}
		if ok && st.StartTicks == k.Start {
			all = s.add(all, k.PID, st, quiet)
		}
	}
	for _, pid := range root.Extra {
		if _, dup := s.seen[pid]; dup {
			continue
		}
		st, quiet, ok, err := s.look(pid)
		if err != nil {
			return all, err
		}
		if ok {
			all = s.add(all, pid, st, quiet)
		}
	}
	for i := 0; i < len(s.queue); i++ {
		parent := s.queue[i]
		if parent.quiet {
			// It has not run, so it forked nothing; children that died
			// since are skipped below like any other that is gone.
			s.kids = append(s.kids[:0], s.quiet[parent.pid].kids...)
		} else {
			if s.kids, err = s.children(s.kids[:0], parent); err != nil {
				return all, err
			}
			s.rememberKids(parent.pid, s.kids)
		}
		for _, pid := range s.kids {
			if _, dup := s.seen[pid]; dup {
				continue
			}
			st, quiet, ok, err := s.look(pid)
			if err != nil {
				return all, err
			}
			// Between listing and reading, the child may have died and its
			// pid gone to an unrelated process, which has another parent or
			// started before this parent did (a child never does).
			if !ok || st.PPID != parent.pid || st.StartTicks < parent.start {
				continue
			}
			all = s.add(all, pid, st, quiet)
		}
	}
	return all, nil
}

func (s *Sampler) add(all []sitter.ProcSample, pid int, st process.Stat, quiet bool) []sitter.ProcSample {
	s.seen[pid] = struct{}{}
	s.queue = append(s.queue, member{pid: pid, threads: st.Threads, start: st.StartTicks, quiet: quiet})
	return append(all, s.sample(pid, st))
}

func (s *Sampler) sample(pid int, st process.Stat) sitter.ProcSample {
	return sitter.ProcSample{
		PID: pid, PPID: st.PPID, PGID: st.PGID, Start: st.StartTicks,
		CPUSeconds: float64(st.UTime+st.STime) / s.ticks,
		RSSBytes:   st.RSSPages * s.pageSize,
	}
}

// stat reads and parses /proc/<pid>/stat; ok is false if the process is
// gone.
func (s *Sampler) stat(pid int) (st process.Stat, ok bool, err error) {
	s.statReads++
	b, err := s.readProc(pid, 0, false)
	if err != nil {
		if gone(err) {
			s.forget(pid)
			return st, false, nil
		}
		return st, false, err
	}
	if st, err = process.ParseStat(b); err != nil {
		return st, false, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return st, true, nil
}

// forget closes the files of a process that is gone (its main thread's
// children list; the stat fd was closed by the failed read) and drops what
// was remembered of it. Other threads' files age out in sweep.
func (s *Sampler) forget(pid int) {
	k := fdKey{pid: pid, tid: pid, children: true}
	if c, ok := s.fds[k]; ok {
		_ = syscall.Close(c.fd)
		delete(s.fds, k)
	}
	delete(s.quiet, pid)
}

// children appends m's children to dst. The kernel lists a child under the
// thread that forked it, so a multi-threaded process needs one read per
// thread; the thread count from stat spares the directory listing for the
// common single-threaded case.
func (s *Sampler) children(dst []int, m member) ([]int, error) {
	if !s.haveChildren {
		return append(dst, s.parentIndex()[m.pid]...), nil
	}
	tids := s.tids[:0]
	if m.threads <= 1 {
		tids = append(tids, m.pid)
	} else {
		var err error
		if tids, err = s.threadIDs(tids, m.pid); err != nil {
			return dst, err
		}
	}
	s.tids = tids
	for _, tid := range tids {
		b, err := s.readProc(m.pid, tid, true)
		if err != nil {
			if gone(err) {
				continue
			}
			return dst, err
		}
		if dst, err = appendPIDs(dst, b); err != nil {
			return dst, fmt.Errorf("/proc/%d/task/%d/children: %w", m.pid, tid, err)
		}
	}
	return dst, nil
}

func (s *Sampler) threadIDs(dst []int, pid int) ([]int, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		if gone(err) {
			return dst, nil
		}
		return dst, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil && !gone(err) {
		return dst, fmt.Errorf("list threads of %d: %w", pid, err)
	}
	for _, n := range names {
		if tid, err := strconv.Atoi(n); err == nil {
			dst = append(dst, tid)
		}
	}
	return dst, nil
}

// parentIndex maps parent pid to child pids from one scan of /proc. It is
// the fallback for kernels built without CONFIG_PROC_CHILDREN, and costs
// what the old whole-host scan cost.
func (s *Sampler) parentIndex() map[int][]int {
	if s.byParent != nil {
		return s.byParent
	}
	s.byParent = map[int][]int{}
	// Keep fds of supervised processes only, not of the whole host.
	caching := s.caching
	s.caching = false
	defer func() { s.caching = caching }()
	_ = s.eachPID(func(pid int) error {
		if st, ok, err := s.stat(pid); err == nil && ok {
			s.byParent[st.PPID] = append(s.byParent[st.PPID], pid)
		}
		return nil
	})
	return s.byParent
}

// eachPID calls f for every numeric entry of /proc.
func (s *Sampler) eachPID(f func(pid int) error) error {
	d, err := os.Open("/proc")
	if err != nil {
		return fmt.Errorf("list /proc: %w", err)
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(512)
		for _, n := range names {
			pid, perr := strconv.Atoi(n)
			if perr != nil {
				continue
			}
			if err := f(pid); err != nil {
				return err
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("list /proc: %w", err)
		}
	}
}

// cgroupSample appends the leader alone, carrying its cgroup's CPU and
// memory counters: two reads for the whole run (the leader's stat is read
// once per run, to resolve it; root.Start already tells the run apart from
// a later one with the same pid). done is false when the run has no
// counters of its own, e.g. on a v1 host where the limiter made memory and
// cpu groups but no cpuacct one; the caller then walks.
func (s *Sampler) cgroupSample(all []sitter.ProcSample, root sitter.Root) (out []sitter.ProcSample, done bool) {
	k := cgKey{pid: root.PID, start: root.Start}
	run, ok := s.cgroups[k]
	if !ok {
		st, alive, err := s.stat(root.PID)
		if err != nil || !alive || st.StartTicks != root.Start {
			return all, false // the walk reports it
		}
		run = s.resolveRun(root.PID)
		run.ppid, run.pgid = st.PPID, st.PGID
	}
	run.gen = s.gen
	s.cgroups[k] = run
	if !run.ok {
		return all, false
	}
	cpuB, err := s.readCached(fdKey{pid: root.PID, path: run.files.cpu})
	if err != nil {
		return all, true // the group went with its run
	}
	cpu, _, cerr := parseCounter(run.files.cpuKind, cpuB)
	memB, err := s.readCached(fdKey{pid: root.PID, path: run.files.mem})
	if err != nil {
		return all, true
	}
	_, mem, merr := parseCounter(run.files.memKind, memB)
	if cerr != nil || merr != nil {
		// A format we do not know must not stop limits being measured.
		run.ok = false
		s.cgroups[k] = run
		return all, false
	}
	s.seen[root.PID] = struct{}{}
	return append(all, sitter.ProcSample{PID: root.PID, PPID: run.ppid, PGID: run.pgid, Start: root.Start,
		CPUSeconds: cpu, RSSBytes: mem}), true
}

// resolveRun finds the counter files of the run led by pid.
func (s *Sampler) resolveRun(pid int) cgRun {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return cgRun{}
	}
	task, err := cgPaths(b)
	if err != nil {
		return cgRun{}
	}
	files, ok := resolveCgroup(s.mounts, s.selfCg, task)
	return cgRun{ok: ok, files: files}
}
