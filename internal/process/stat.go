// Package process owns how Nightshift reads and stops processes on this
// machine: the one parser of /proc/<pid>/stat (allocation-free, since the
// sitter reads it for every supervised process each sample) and the one
// SIGTERM-then-SIGKILL stop of a process whose identity is checked before
// each signal.
package process

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Stat is what Nightshift reads from one /proc/<pid>/stat line. Times are
// in clock ticks and RSS in pages, as the kernel writes them.
type Stat struct {
	State      byte // R, S, D, Z, X, ...
	PPID       int
	PGID       int
	SID        int
	Threads    int
	UTime      uint64
	STime      uint64
	StartTicks uint64 // since boot; with the pid it names one process
	RSSPages   uint64
}

// Zombie reports a process that has exited but not been reaped (or is
// being torn down): it holds no resources and can no longer be signalled.
func (s Stat) Zombie() bool { return s.State == 'Z' || s.State == 'X' }

// Indexes of the fields after "(comm) " that ParseStat reads. proc(5)
// numbers them from 1 including pid and comm, so field N is index N-3.
const (
	fState   = 0  // field 3
	fPPID    = 1  // field 4
	fPGID    = 2  // field 5
	fSID     = 3  // field 6
	fUTime   = 11 // field 14
	fSTime   = 12 // field 15
	fThreads = 17 // field 20
	fStart   = 19 // field 22
	fRSS     = 21 // field 24
)

var fieldNames = [...]string{fState: "state", fPPID: "ppid", fPGID: "pgrp", fSID: "session", fUTime: "utime",
	fSTime: "stime", fThreads: "num_threads", fStart: "starttime", fRSS: "rss"}

// ParseStat decodes a /proc/<pid>/stat line without allocating. comm may
// hold spaces and parentheses, so the fields resume after the last ')'.
// Errors name the field; the caller adds the file.
func ParseStat(b []byte) (Stat, error) {
	var st Stat
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return st, fmt.Errorf("stat: no fields after (comm)")
	}
	rest := b[i+2:]
	idx := 0
	for len(rest) > 0 && idx <= fRSS {
		end := bytes.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		f := bytes.TrimSuffix(rest[:end], []byte("\n"))
		switch {
		case idx == fState:
			if len(f) != 1 {
				return st, fmt.Errorf("stat: field state: %q is not one letter", f)
			}
			st.State = f[0]
		case idx < len(fieldNames) && fieldNames[idx] != "":
			v, ok := ParseUint(f)
			// rss is a signed long that the kernel never makes negative for
			// a live task; a "-" anywhere we read means a format we do not
			// know, which must not turn into a huge unsigned value.
			if !ok {
				return st, fmt.Errorf("stat: field %s: %q is not a non-negative integer", fieldNames[idx], f)
			}
			if (idx == fPPID || idx == fPGID || idx == fSID || idx == fThreads) && v > 1<<31-1 {
				return st, fmt.Errorf("stat: field %s: %d is out of range", fieldNames[idx], v)
			}
			switch idx {
			case fPPID:
				st.PPID = int(v)
			case fPGID:
				st.PGID = int(v)
			case fSID:
				st.SID = int(v)
			case fUTime:
				st.UTime = v
			case fSTime:
				st.STime = v
			case fThreads:
				st.Threads = int(v)
			case fStart:
				st.StartTicks = v
			case fRSS:
				st.RSSPages = v
			}
		}
		idx++
		if end == len(rest) {
			break
		}
		rest = rest[end+1:]
	}
	if idx <= fRSS {
		return st, fmt.Errorf("stat: field %s: missing (line has %d fields after comm)", fieldNames[fRSS], idx)
	}
	return st, nil
}

// ReadStat reads and parses <procRoot>/<pid>/stat; procRoot "" means
// /proc. Errors name the file.
func ReadStat(procRoot string, pid int) (Stat, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	path := filepath.Join(procRoot, strconv.Itoa(pid), "stat")
	b, err := os.ReadFile(path)
	if err != nil {
		return Stat{}, err
	}
	st, err := ParseStat(b)
	if err != nil {
		return Stat{}, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// ParseUint accepts 1-20 decimal digits that fit in uint64, without
// allocating: the form of every number in /proc and cgroup files.
func ParseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// Comm returns the command name of a /proc/<pid>/stat line: what stands
// between the first '(' and the last ')', since the name may hold both.
func Comm(b []byte) string {
	i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if i < 0 || j < i {
		return ""
	}
	return string(b[i+1 : j])
}

// Alive reports whether pid is a process that has not exited; a zombie,
// which only waits to be reaped, counts as gone.
func Alive(pid int) bool {
	st, err := ReadStat("", pid)
	return err == nil && !st.Zombie()
}
