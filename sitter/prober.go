package sitter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"time"
)

// freePort asks the kernel for a loopback port no one listens on, for a
// run whose probe URL names ${port}. Another process may take it before
// the task binds it; the probe then fails and says so, which is the
// honest outcome.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a port for the probe: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// HTTPChecker performs one HTTP probe check: a GET of url that passes on
// a 2xx answer. package sitter/httpprobe implements it; the sitter takes
// it from its Config so that the core carries no HTTP client.
type HTTPChecker interface {
	Check(ctx context.Context, url string) ProbeResult
}

// runProbe performs one check of run port and reports it at the time the
// check ended. It is the I/O edge of the probe; Probe.Observe judges.
func (r *runner) runProbe(ctx context.Context, pr Probe, port int) ProbeResult {
	pr = pr.WithDefaults()
	cctx, cancel := context.WithTimeout(ctx, pr.Timeout.D())
	defer cancel()
	var res ProbeResult
	if pr.HTTP != "" {
		if r.s.cfg.HTTPProbe == nil {
			res = ProbeResult{Output: "this sitter has no HTTP prober (Config.HTTPProbe)"}
		} else {
			res = r.s.cfg.HTTPProbe.Check(cctx, pr.URL(port))
		}
	} else {
		res = r.checkCommand(cctx, pr.Command, port)
	}
	if cctx.Err() != nil && ctx.Err() == nil {
		res = ProbeResult{Output: fmt.Sprintf("timed out after %s", pr.Timeout.D())}
	}
	res.At = r.s.clock.Now()
	return res
}

func (r *runner) checkCommand(ctx context.Context, argv []string, port int) ProbeResult {
	t := r.spec
	cred, u, err := credential(t)
	if err != nil {
		return ProbeResult{Output: err.Error()}
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = taskEnv(t, u, r.statusFile(), r.drainFile(), port)
	cmd.Dir = t.Workdir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	b, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return ProbeResult{OK: true, Output: firstLine(b)}
	case errors.As(err, &ee):
		out := fmt.Sprintf("exit %d", ee.ExitCode())
		if l := firstLine(b); l != "" {
			out += ": " + l
		}
		return ProbeResult{Output: out}
	default:
		return ProbeResult{Output: err.Error()}
	}
}
