// Package procscan finds the processes that belong to a run by reading
// /proc directly. It is the last line of proof for teardown: every program
// Nightshift starts on this machine carries NIGHTSHIFT_HOME and
// NIGHTSHIFT_RUN in its environment, and those survive daemonising, so a
// scan finds stragglers even when every record of them is gone.
package procscan

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"nightshift/internal/nsenv"
	"nightshift/internal/process"
)

// Proc is one process found by a scan.
type Proc struct {
	PID     int    `json:"pid"`
	Command string `json:"command"`
}

func (p Proc) String() string { return fmt.Sprintf("pid %d (%s)", p.PID, p.Command) }

// Find returns the live processes whose environment says they belong to run
// under home. Zombies are skipped: they hold no resources and vanish when
// their parent reaps them. The calling process is never returned.
func Find(procRoot, home, run string) ([]Proc, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", procRoot, err)
	}
	wantHome := []byte(nsenv.Home + "=" + filepath.Clean(home))
	wantRun := []byte(nsenv.Run + "=" + run)
	self := os.Getpid()
	var out []Proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		dir := filepath.Join(procRoot, e.Name())
		env, err := os.ReadFile(filepath.Join(dir, "environ"))
		if err != nil {
			continue // gone, or a kernel thread
		}
		if !hasVar(env, wantHome) || !hasVar(env, wantRun) {
			continue
		}
		if zombie(procRoot, pid) {
			continue
		}
		out = append(out, Proc{PID: pid, Command: cmdline(dir)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

// Kill sends SIGKILL to every process a scan finds and waits up to wait for
// them to disappear. It returns what is still there afterwards.
func Kill(procRoot, home, run string, wait time.Duration) (killed, remaining []Proc, err error) {
	found, err := Find(procRoot, home, run)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range found {
		if kerr := syscall.Kill(p.PID, syscall.SIGKILL); kerr != nil && !errors.Is(kerr, syscall.ESRCH) {
			err = errors.Join(err, fmt.Errorf("kill %s: %w", p, kerr))
			continue
		}
		killed = append(killed, p)
	}
	deadline := time.Now().Add(wait)
	for {
		remaining, ferr := Find(procRoot, home, run)
		if ferr != nil {
			return killed, nil, errors.Join(err, ferr)
		}
		if len(remaining) == 0 || time.Now().After(deadline) {
			return killed, remaining, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasVar(environ, want []byte) bool {
	for _, kv := range bytes.Split(environ, []byte{0}) {
		if bytes.Equal(kv, want) {
			return true
		}
	}
	return false
}

// zombie reports a process that is gone or not reaped yet; an unreadable
// stat means it is gone.
func zombie(procRoot string, pid int) bool {
	st, err := process.ReadStat(procRoot, pid)
	return err != nil || st.Zombie()
}

func cmdline(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil || len(b) == 0 {
		return "?"
	}
	s := strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
