package psutil

import (
	"bytes"
	"fmt"
)

// stat is what the sampler needs from one /proc/<pid>/stat line. Times are
// in clock ticks, rss in pages, as the kernel writes them.
type stat struct {
	ppid, pgid, threads int
	utime, stime, start uint64
	rssPages            uint64
}

// statFields are the 0-based indexes of the fields after "(comm) " that
// parseStat reads (proc(5) numbers them from 1 including pid and comm, so
// field N is index N-3).
const (
	fPPID    = 1  // field 4
	fPGID    = 2  // field 5
	fUtime   = 11 // field 14
	fStime   = 12 // field 15
	fThreads = 17 // field 20
	fStart   = 19 // field 22
	fRSS     = 21 // field 24
)

var statNames = [...]string{fPPID: "ppid", fPGID: "pgrp", fUtime: "utime", fStime: "stime",
	fThreads: "num_threads", fStart: "starttime", fRSS: "rss"}

// parseStat decodes a /proc/<pid>/stat line without allocating. comm may
// hold spaces and parentheses, so fields resume after the last ')'. Errors
// name the field; the caller adds the file.
func parseStat(b []byte) (stat, error) {
	var st stat
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
		if name := statName(idx); name != "" {
			v, ok := parseUint(f)
			// rss is a signed long that the kernel never makes negative for
			// a live task; a "-" anywhere we read means a format we do not
			// know, which must not turn into a huge unsigned value.
			if !ok {
				return st, fmt.Errorf("stat: field %s: %q is not a non-negative integer", name, f)
			}
			if (idx == fPPID || idx == fPGID || idx == fThreads) && v > 1<<31-1 {
				return st, fmt.Errorf("stat: field %s: %d is out of range", name, v)
			}
			switch idx {
			case fPPID:
				st.ppid = int(v)
			case fPGID:
				st.pgid = int(v)
			case fUtime:
				st.utime = v
			case fStime:
				st.stime = v
			case fThreads:
				st.threads = int(v)
			case fStart:
				st.start = v
			case fRSS:
				st.rssPages = v
			}
		}
		idx++
		if end == len(rest) {
			break
		}
		rest = rest[end+1:]
	}
	if idx <= fRSS {
		return st, fmt.Errorf("stat: field %s: missing (line has %d fields after comm)", statNames[fRSS], idx)
	}
	return st, nil
}

func statName(idx int) string {
	if idx < len(statNames) {
		return statNames[idx]
	}
	return ""
}

// parseUint accepts 1-20 decimal digits that fit in uint64.
func parseUint(b []byte) (uint64, bool) {
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

// appendPIDs appends the pids of a children file ("12 345 ") to dst,
// stopping at the first malformed entry.
func appendPIDs(dst []int, b []byte) ([]int, error) {
	for len(b) > 0 {
		for len(b) > 0 && (b[0] == ' ' || b[0] == '\n') {
			b = b[1:]
		}
		end := 0
		for end < len(b) && b[end] != ' ' && b[end] != '\n' {
			end++
		}
		if end == 0 {
			break
		}
		v, ok := parseUint(b[:end])
		// pid_max is at most 2^22 (PID_MAX_LIMIT).
		if !ok || v == 0 || v > 1<<22 {
			return dst, fmt.Errorf("children: %q is not a pid", b[:end])
		}
		dst = append(dst, int(v))
		b = b[end:]
	}
	return dst, nil
}
