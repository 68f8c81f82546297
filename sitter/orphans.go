package sitter

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	procfs "nightshift/internal/process"
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
	st, err := procfs.ReadStat("", pid)
	if err != nil {
		return 0, 0, err
	}
	return st.PGID, st.StartTicks, nil
}
