package keeper

import (
	"fmt"
	"os"
	"syscall"

	"nightshift/bootlevel"
	"nightshift/internal/process"
	"nightshift/internal/runlayout"
	"nightshift/launchplan"
)

// ProcessType is implemented by the service types whose process runs on
// this host (internal/service/builtin, internal/service/builtin/broker): given the service's
// working directory, the pid it runs as and whether that process is alive.
// watched is false for a service the type does not run here (an external
// broker).
type ProcessType interface {
	Process(workDir string, svc *launchplan.Service) (pid int, alive, watched bool)
}

// Watched is one service a keeper watches, with its type's probe.
type Watched struct {
	Service *launchplan.Service
	WorkDir string
	Type    ProcessType
}

// WatchList returns the services of a run's plan a keeper watches: those
// whose type runs a process on this host and that have been booted (ready,
// or failed since). Pending, booting and terminated services are a
// launch's or a teardown's business.
func WatchList(home, run string, plan *launchplan.Plan, recs []bootlevel.ServiceRecord, types map[string]bootlevel.Driver) []Watched {
	state := map[string]bootlevel.ServiceState{}
	for _, r := range recs {
		state[r.Name] = r.State
	}
	var out []Watched
	for li := range plan.Levels {
		for si := range plan.Levels[li].Services {
			svc := &plan.Levels[li].Services[si]
			pt, ok := types[svc.Type].(ProcessType)
			if svc.Type == "" || !ok {
				continue
			}
			if st := state[svc.Name]; st != bootlevel.ServiceReady && st != bootlevel.ServiceFailed {
				continue
			}
			dir := svc.WorkDir
			if dir == "" {
				dir = runlayout.Of(home, run).Work(svc.Name)
			}
			out = append(out, Watched{Service: svc, WorkDir: dir, Type: pt})
		}
	}
	return out
}

// Look observes every watched service once: a pid file and /proc each.
func Look(ws []Watched) []Observation {
	out := make([]Observation, 0, len(ws))
	for _, w := range ws {
		pid, alive, watched := w.Type.Process(w.WorkDir, w.Service)
		if !watched {
			continue
		}
		o := Observation{Service: w.Service.Name, PID: pid, Alive: alive}
		if alive {
			o.Start, _ = startTime(pid)
		}
		out = append(out, o)
	}
	return out
}

// startTime reads a live process's start time (/proc/PID/stat field 22);
// a zombie is dead.
func startTime(pid int) (uint64, error) {
	st, err := process.ReadStat("", pid)
	if err != nil {
		return 0, err
	}
	if st.Zombie() {
		return 0, fmt.Errorf("pid %d is a zombie", pid)
	}
	return st.StartTicks, nil
}

// pidFile is a keeper's record of itself: pid and start time, so that a
// reused pid is never taken for the keeper.
type pidFile struct {
	PID   int
	Start uint64
}

func writePIDFile(path string) error {
	start, err := startTime(os.Getpid())
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d %d\n", os.Getpid(), start), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readPIDFile(path string) (pidFile, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return pidFile{}, false
	}
	var p pidFile
	if _, err := fmt.Sscanf(string(b), "%d %d", &p.PID, &p.Start); err != nil || p.PID <= 1 {
		return pidFile{}, false
	}
	return p, true
}

// alive reports whether the process a pid file names still runs.
func (p pidFile) alive() bool {
	st, err := startTime(p.PID)
	return err == nil && st == p.Start
}

// exitString describes how a reaped child ended.
func exitString(pid int, ws syscall.WaitStatus) string {
	switch {
	case ws.Signaled():
		return fmt.Sprintf("pid %d killed by %s", pid, ws.Signal())
	case ws.Exited():
		return fmt.Sprintf("pid %d exited with status %d", pid, ws.ExitStatus())
	default:
		return fmt.Sprintf("pid %d ended (wait status %#x)", pid, uint32(ws))
	}
}

// reap collects a dead service process that is this keeper's child (one it
// restarted), which both frees the zombie and tells how it ended; "" when
// it was not ours to wait for.
func reap(pid int) string {
	if pid <= 1 {
		return ""
	}
	var ws syscall.WaitStatus
	got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	if err != nil || got != pid {
		return ""
	}
	return exitString(pid, ws)
}
