package localworker

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"nightshift/internal/process"
)

// proc is what one /proc scan learns about a process.
type proc struct {
	pid       int
	sid       int
	pgrp      int
	startTime uint64 // clock ticks since boot; with pid it names one process
	zombie    bool
	// From the environment: which instance of which run the process
	// belongs to. Children inherit these, and they survive setsid.
	home, run, instance string
	dir                 string // NIGHTSHIFT_INSTANCE_DIR
	// uids are its real, effective, saved and filesystem uids: a process
	// of an instance's own uid is the instance's, whatever its environment.
	uids [4]uint32
}

// has reports whether the process holds uid in any of its uids.
func (p proc) has(uid uint32) bool {
	return uid != 0 && (p.uids[0] == uid || p.uids[1] == uid || p.uids[2] == uid || p.uids[3] == uid)
}

// readUIDs reads the Uid: line of /proc/<pid>/status.
func readUIDs(procRoot string, pid int) ([4]uint32, error) {
	var out [4]uint32
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "status"))
	if err != nil {
		return out, err
	}
	return parseUIDs(b, pid)
}

// parseUIDs reads the Uid: line of a status file.
func parseUIDs(b []byte, pid int) ([4]uint32, error) {
	var out [4]uint32
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		rest, ok := bytes.CutPrefix(line, []byte("Uid:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 4 {
			break
		}
		for i := range f {
			n, err := strconv.ParseUint(string(f[i]), 10, 32)
			if err != nil {
				return out, fmt.Errorf("pid %d: uid %q: %w", pid, f[i], err)
			}
			out[i] = uint32(n)
		}
		return out, nil
	}
	return out, fmt.Errorf("pid %d: no Uid line in status", pid)
}

// ours reports whether the process was started by this driver for an
// instance of run under home. NIGHTSHIFT_RUN and NIGHTSHIFT_INSTANCE_ID
// alone are not enough: the boot engine gives every plan service (the
// broker, the daemons, a user's own services) those variables too, and the
// provisioner must never take one of them for an orphaned worker.
func (p proc) ours(home, run string) bool {
	return p.home == home && p.run == run && pathSafe.MatchString(p.instance) &&
		p.dir == InstanceDir(home, run, p.instance)
}

// readStat reads the fields of /proc/<pid>/stat the driver needs.
func readStat(procRoot string, pid int) (proc, error) {
	st, err := process.ReadStat(procRoot, pid)
	if err != nil {
		return proc{}, err
	}
	return proc{pid: pid, sid: st.SID, pgrp: st.PGID, startTime: st.StartTicks, zombie: st.Zombie()}, nil
}

// alive reports whether pid is still the process that started at
// startTime; a reused pid or a zombie is not.
func alive(procRoot string, pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	p, err := readStat(procRoot, pid)
	return err == nil && !p.zombie && p.startTime == startTime
}

// runningUIDs is every uid a live process holds (real, effective, saved or
// filesystem), read from the status files alone: picking a uid needs no
// more, and scan's stat and environment reads would double its cost.
func runningUIDs(procRoot string) (map[uint32]bool, error) {
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", procRoot, err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", procRoot, err)
	}
	used := map[uint32]bool{}
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procRoot, name, "status"))
		if err != nil {
			continue // gone meanwhile
		}
		if zombie(b) {
			continue // it holds nothing
		}
		uids, err := parseUIDs(b, pid)
		if err != nil {
			return nil, fmt.Errorf("scan %s: %w", procRoot, err)
		}
		for _, u := range uids {
			used[u] = true
		}
	}
	return used, nil
}

// zombie reads the State: line of a status file.
func zombie(status []byte) bool {
	i := bytes.Index(status, []byte("\nState:"))
	if i < 0 {
		return false
	}
	f := bytes.Fields(status[i+len("\nState:"):])
	return len(f) > 0 && (string(f[0]) == "Z" || string(f[0]) == "X")
}

// scan reads every live process once.
func scan(procRoot string) ([]proc, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", procRoot, err)
	}
	self := os.Getpid()
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		p, err := readStat(procRoot, pid)
		if err != nil || p.zombie {
			continue // gone meanwhile, or a zombie holding nothing
		}
		if uids, err := readUIDs(procRoot, pid); err == nil {
			p.uids = uids
		}
		if env, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "environ")); err == nil {
			for _, kv := range bytes.Split(env, []byte{0}) {
				k, v, _ := bytes.Cut(kv, []byte{'='})
				switch string(k) {
				case envHome:
					p.home = string(v)
				case envRun:
					p.run = string(v)
				case envInstance:
					p.instance = string(v)
				case envDir:
					p.dir = string(v)
				}
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// members returns the processes of one instance: those in the session the
// instance's leader created (while that leader is verifiably the original
// process), those whose environment names the instance, and, for an
// instance with a uid of its own (uid not 0), every process holding that
// uid: one that left the session and cleared its environment too.
func members(procs []proc, home, run, id string, leader int, leaderAlive bool, uid uint32) []proc {
	var out []proc
	for _, p := range procs {
		byEnv := p.instance == id && p.ours(home, run)
		bySession := leaderAlive && p.sid == leader
		if byEnv || bySession || p.has(uid) {
			out = append(out, p)
		}
	}
	return out
}

// signal sends sig to each process, ignoring those already gone.
func signal(ps []proc, sig syscall.Signal) error {
	var errs []error
	for _, p := range ps {
		if err := syscall.Kill(p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("signal %d to pid %d: %w", sig, p.pid, err))
		}
	}
	return errors.Join(errs...)
}
