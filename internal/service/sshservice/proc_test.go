package sshservice

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/process"
	"nightshift/internal/testsupport"
)

// waitFor bounds every eventual condition; generous because the machine is
// shared, and never used to assert timing.
const waitFor = 15 * time.Second

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testsupport.Eventually(t, waitFor, func() error {
		if !cond() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
}

// waitPids waits for a test program to publish n pids in file.
func waitPids(t *testing.T, file string, n int) []int {
	t.Helper()
	var pids []int
	waitUntil(t, "pid file "+file, func() bool {
		data, err := os.ReadFile(file)
		if err != nil {
			return false
		}
		pids = pids[:0]
		for _, f := range strings.Fields(string(data)) {
			p, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("pid file %s: %q", file, data)
			}
			pids = append(pids, p)
		}
		return len(pids) == n
	})
	return pids
}

// procStat returns the state letter and process group of pid.
func procStat(pid int) (state string, pgid int, ok bool) {
	st, err := process.ReadStat("", pid)
	if err != nil {
		return "", 0, false
	}
	return string(st.State), st.PGID, true
}

// alive treats zombies as dead: they are gone, merely not reaped yet.
func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z" && state != "X"
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	waitUntil(t, "remote process "+strconv.Itoa(pid)+" to die", func() bool { return !alive(pid) })
}

func processGroup(t *testing.T, pid int) int {
	t.Helper()
	_, pg, ok := procStat(pid)
	if !ok {
		t.Fatalf("process %d not found", pid)
	}
	return pg
}

func groupMembers(pgid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, pg, ok := procStat(pid); ok && pg == pgid && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

func killPid(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }

// closedPort returns a local port that nothing listens on (briefly bound
// and released, so it is unlikely to be taken again at once).
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port
}
