package sitter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"nightshift/internal/nsenv"
	"nightshift/internal/redact"
)

// Environment variables of the busy/idle and drain protocol (see doc.go).
const (
	EnvStatusFile = nsenv.StatusFile
	EnvDrainFile  = nsenv.DrainFile
	EnvTaskName   = nsenv.Task
	// EnvPort is the port the sitter picked for a run whose probe URL
	// names ${port}: the task serves its health endpoint there.
	EnvPort = nsenv.Port
)

// process is one run of a task.
type process struct {
	cmd     *exec.Cmd
	pid     int
	started time.Time
	exited  chan exitResult
	group   Group
	run     uint64 // which of the task's runs, for the sample loop's findings
	port    int    // NIGHTSHIFT_PORT of the run; 0 when its probe needs none
}

type exitResult struct {
	code   int
	signal string
	err    error
}

// credential resolves user/group names to ids. Only root may switch users;
// anyone else gets a clear error instead of EPERM from fork/exec.
func credential(t Task) (*syscall.Credential, *user.User, error) {
	if t.User == "" {
		return nil, nil, nil
	}
	u, err := user.Lookup(t.User)
	if err != nil {
		if id, aerr := strconv.Atoi(t.User); aerr == nil {
			u, err = user.LookupId(strconv.Itoa(id))
		}
		if err != nil {
			return nil, nil, fmt.Errorf("user %q: %w", t.User, err)
		}
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	if t.Group != "" {
		g, err := user.LookupGroup(t.Group)
		if err != nil {
			return nil, nil, fmt.Errorf("group %q: %w", t.Group, err)
		}
		gid, _ = strconv.ParseUint(g.Gid, 10, 32)
	}
	me := os.Geteuid()
	if me != 0 && uint64(me) != uid {
		return nil, nil, fmt.Errorf("run as user %q: the sitter must run as root (euid %d)", t.User, me)
	}
	if me != 0 && uint64(os.Getegid()) == gid {
		// Already that user (a provisioner running as root starts the
		// whole worker as it): nothing to switch, and setgroups, which a
		// credential implies, would fail with EPERM.
		return nil, u, nil
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, u, nil
}

// taskEnv builds the child's environment: the sitter's own environment
// without secrets (the sitter may hold AWS or broker credentials that a task
// has no business seeing), then the protocol variables, then the task's env.
func taskEnv(t Task, u *user.User, statusFile, drainFile string, port int) []string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := cutEnv(kv)
		if !redact.IsSecretKey(k) {
			m[k] = v
		}
	}
	if u != nil {
		m["HOME"], m["USER"], m["LOGNAME"] = u.HomeDir, u.Username, u.Username
	}
	m[EnvStatusFile], m[EnvDrainFile], m[EnvTaskName] = statusFile, drainFile, t.Name
	if port > 0 {
		m[EnvPort] = strconv.Itoa(port)
	}
	for k, v := range t.Env {
		m[k] = v
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func cutEnv(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

// start spawns one run of r's task in its own process group (so that the
// whole tree can be signalled at once) and, when a Limiter is configured, in
// a fresh cgroup.
func (r *runner) start(ctx context.Context) (*process, error) {
	t := r.spec
	cred, u, err := credential(t)
	if err != nil {
		return nil, err
	}
	if err := r.prepareDir(cred); err != nil {
		return nil, err
	}
	argv := t.Argv()
	port := 0
	if t.Health != nil && t.Health.WantsPort() {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = taskEnv(t, u, r.statusFile(), r.drainFile(), port)
	cmd.Dir = t.Workdir
	// Our own pipes rather than os/exec's: with exec's, Wait also waits for
	// grandchildren that hold the pipes open, so the leader's death would be
	// seen late. Here Wait sees the leader only, and the copiers drain until
	// the last member of the group is gone.
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	defer outW.Close()
	defer errW.Close()
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}

	var group Group
	if r.s.limiter != nil && (t.CPU > 0 || t.Mem > 0) {
		r.runs++
		group, err = r.s.limiter.Create(ctx, fmt.Sprintf("%s.%d", t.Name, r.runs), r.s.hardLimits(t))
		if err != nil {
			// Polling still enforces the limits; a missing cgroup only loses
			// the kernel backstop, so it is worth a warning, not a failure.
			r.s.log.Warn("cgroup unavailable, polling only", "task", t.Name, "err", err)
			group = nil
		}
	}
	if err := cmd.Start(); err != nil {
		outR.Close()
		errR.Close()
		if group != nil {
			_ = group.Remove(ctx)
		}
		return nil, fmt.Errorf("start %q: %w", argv[0], err)
	}
	go drain(outR, r.stdout)
	go drain(errR, r.stderr)
	p := &process{cmd: cmd, pid: cmd.Process.Pid, started: r.s.clock.Now(), exited: make(chan exitResult, 1), group: group, port: port}
	if group != nil {
		// The child runs outside the cgroup until this write (cgroup v1 has
		// no clone-into-cgroup); children it forks in that instant are still
		// caught through the process group.
		if err := group.Add(p.pid); err != nil {
			r.s.log.Warn("add to cgroup", "task", t.Name, "pid", p.pid, "err", err)
		}
	}
	go func() {
		err := cmd.Wait()
		res := exitResult{code: cmd.ProcessState.ExitCode()}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.signal = unixSignalName(ws.Signal())
		}
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			res.err = err
		}
		p.exited <- res
	}()
	return p, nil
}

// drain copies a run's output into its log until every writer is gone.
func drain(r *os.File, w io.Writer) {
	_, _ = io.Copy(w, r)
	_ = r.Close()
}

func unixSignalName(s syscall.Signal) string {
	for n, v := range signalNames {
		if v == s {
			return "SIG" + n
		}
	}
	return s.String()
}

// signalGroup sends sig to the run's process group and, in cgroup mode, to
// every process in its cgroup (which catches setsid escapees).
func (p *process) signalGroup(sig syscall.Signal) {
	_ = syscall.Kill(-p.pid, sig)
	if p.group != nil {
		if pids, err := p.group.PIDs(); err == nil {
			for _, pid := range pids {
				_ = syscall.Kill(pid, sig)
			}
		}
	}
}

// prepareDir creates the task's protocol directory, owned by the task's
// user so the worker can replace its status file atomically (write+rename).
func (r *runner) prepareDir(cred *syscall.Credential) error {
	dir := r.dir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("task dir: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("task dir: %w", err)
		}
	}
	r.s.watchTask(r)
	// A drain file left from an earlier run must not drain the new one.
	if err := os.Remove(r.drainFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("task dir: %w", err)
	}
	_ = os.Remove(r.statusFile())
	return nil
}

func (r *runner) dir() string        { return filepath.Join(r.s.stateDir, "tasks", r.spec.Name) }
func (r *runner) statusFile() string { return filepath.Join(r.dir(), r.spec.Name+".status") }
func (r *runner) drainFile() string  { return filepath.Join(r.dir(), r.spec.Name+".drain") }
