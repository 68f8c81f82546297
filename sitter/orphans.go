package sitter

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// runRecord is written when a run starts, so that a sitter restarted after
// being killed -9 can find and kill what its predecessor left running. The
// start time (clock ticks since boot) guards against pid reuse.
type runRecord struct {
	PGID       int    `json:"pgid"`
	StartTicks uint64 `json:"start_ticks"`
}

func (r *runner) recordFile() string { return filepath.Join(r.dir(), "run.json") }

func (r *runner) writeRecord(pid int) {
	_, start, err := procStat(pid)
	if err != nil {
		return // the run already ended; nothing to sweep later
	}
	b, _ := json.Marshal(runRecord{PGID: pid, StartTicks: start})
	if err := os.WriteFile(r.recordFile(), b, 0o600); err != nil {
		r.s.log.Warn("write run record", "task", r.spec.Name, "err", err)
	}
}

// sweepOrphans kills the process group of a run recorded by an earlier
// sitter that never cleaned up. Members started before the recorded leader
// cannot belong to it and are spared.
func (r *runner) sweepOrphans() {
	b, err := os.ReadFile(r.recordFile())
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	defer os.Remove(r.recordFile())
	var rec runRecord
	if err != nil || json.Unmarshal(b, &rec) != nil || rec.PGID <= 1 {
		r.s.log.Warn("unreadable run record, not sweeping", "task", r.spec.Name, "file", r.recordFile())
		return
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	var killed []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		pgid, start, err := procStat(pid)
		if err != nil || pgid != rec.PGID || start < rec.StartTicks {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	if len(killed) > 0 {
		r.s.log.Warn("killed processes left by a previous sitter", "task", r.spec.Name, "pgid", rec.PGID, "pids", killed)
	}
}

// procStat reads the process group and start time from /proc/<pid>/stat.
func procStat(pid int) (pgid int, startTicks uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	// comm may contain spaces and parentheses; fields resume after the last ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+2:])
	// f[0] is field 3 (state): pgrp is field 5, starttime field 22.
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	if pgid, err = strconv.Atoi(f[2]); err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: pgrp: %w", pid, err)
	}
	if startTicks, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: starttime: %w", pid, err)
	}
	return pgid, startTicks, nil
}
