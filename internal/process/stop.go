package process

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// Stop ends pid: SIGTERM, up to grace for it to go, then SIGKILL and up to
// killWait more. same reports whether pid is still the process meant; pids
// are reused, so it must check identity (a working directory, a command
// line), not mere existence, and it is asked before every signal so that
// Stop never signals a stranger. A zombie counts as gone. When ctx ends
// first, Stop skips the rest of the grace and kills at once. onKill, when
// set, hears that the grace ran out. Stop returns an error only when the
// process survives SIGKILL.
func Stop(ctx context.Context, pid int, grace time.Duration, same func() bool, onKill func()) error {
	if pid <= 1 {
		return fmt.Errorf("stop: refusing pid %d", pid)
	}
	if !same() {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if waitGone(ctx, grace, same) {
		return nil
	}
	if !same() {
		return nil
	}
	if onKill != nil {
		onKill()
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	// SIGKILL cannot be ignored; the wait only covers the kernel tearing
	// down a large process, so it does not stop for ctx.
	if waitGone(context.Background(), killWait, same) {
		return nil
	}
	return fmt.Errorf("pid %d survived SIGKILL", pid)
}

const (
	// killWait is how long a SIGKILLed process gets to vanish.
	killWait = time.Second
	// pollEvery is how often Stop looks whether the process is gone.
	pollEvery = 50 * time.Millisecond
)

// waitGone polls same until it is false (true), or until d passes or ctx
// ends (false).
func waitGone(ctx context.Context, d time.Duration, same func() bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for same() {
		select {
		case <-tick.C:
		case <-deadline.C:
			return !same()
		case <-ctx.Done():
			return !same()
		}
	}
	return true
}
