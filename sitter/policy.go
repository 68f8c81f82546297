package sitter

import (
	"fmt"
	"time"

	"nightshift/internal/backoff"
)

// RunEnd describes how one run of a task ended; it is the input of Decide.
type RunEnd struct {
	Started, Ended time.Time
	// ExitCode is the process's status, or -1 when it died by a signal.
	ExitCode int
	Signal   string
	// Violation is set when the sitter (or the kernel, via the cgroup)
	// ended the run for crossing a limit.
	Violation *Violation
	// Err is set when the run could not start or not be waited for.
	Err string
}

// Clean reports a normal exit 0 with no limit crossed.
func (e RunEnd) Clean() bool {
	return e.Violation == nil && e.Signal == "" && e.ExitCode == 0 && e.Err == ""
}

func (e RunEnd) String() string {
	switch {
	case e.Violation != nil:
		return e.Violation.String()
	case e.Err != "":
		return e.Err
	case e.Signal != "":
		return "killed by " + e.Signal
	default:
		return fmt.Sprintf("exit status %d", e.ExitCode)
	}
}

// History is what the restart policy remembers between runs.
type History struct {
	// Restarts are the times of policy restarts still inside the window.
	Restarts []time.Time
	// Failures counts unhealthy runs in a row; it sets the back-off.
	Failures int
	// Total counts every policy restart, for status.
	Total int
}

// Outcome is what to do after a run ended.
type Outcome int

const (
	// OutcomeRestart: start again after Decision.Delay.
	OutcomeRestart Outcome = iota
	// OutcomeExited: leave the task ended (state exited).
	OutcomeExited
	// OutcomeFailed: give up (state failed).
	OutcomeFailed
)

// Decision is the policy's answer for one RunEnd.
type Decision struct {
	Outcome Outcome
	Delay   time.Duration
	State   TaskState
	Reason  string
}

// Decide applies t's restart policy (t must have defaults applied) to the
// end of a run. It is pure: the caller owns the clock and the timers.
//
// Back-off doubles from backoff_initial up to backoff_max for each
// unhealthy run in a row, and a run that lasted backoff_reset_after or
// longer counts as healthy and resets it (the reset systemd users ask for in
// systemd#43813). Give-up is windowed (max_restarts within restart_window)
// rather than a lifetime count, so a task that flaps once a day is never
// declared dead (Supervisor#1310).
func Decide(t Task, h History, e RunEnd) (Decision, History) {
	now := e.Ended
	if e.Ended.Sub(e.Started) >= t.BackoffResetAfter.D() {
		h.Failures = 0
	}
	clean := e.Clean()
	ensure := t.EnsureAlive != nil && *t.EnsureAlive
	restart := t.Restart != RestartNever && (!clean || ensure)
	if !restart {
		if clean {
			return Decision{Outcome: OutcomeExited, State: StateExited, Reason: "exit status 0"}, h
		}
		return Decision{Outcome: OutcomeFailed, State: StateFailed,
			Reason: fmt.Sprintf("%s; restart=%s", e, t.Restart)}, h
	}
	if w := t.RestartWindow.D(); w > 0 {
		kept := h.Restarts[:0:0]
		for _, at := range h.Restarts {
			if now.Sub(at) < w {
				kept = append(kept, at)
			}
		}
		h.Restarts = kept
	}
	if max := maxRestarts(t); max >= 0 && len(h.Restarts) >= max {
		window := "the task's life"
		if w := t.RestartWindow.D(); w > 0 {
			window = w.String()
		}
		return Decision{Outcome: OutcomeFailed, State: StateFailed,
			Reason: fmt.Sprintf("gave up: %d restarts within %s (max_restarts %d); last run: %s", len(h.Restarts), window, max, e)}, h
	}
	// No jitter: one sitter restarts its own tasks, there is no herd to spread.
	delay := backoff.Policy{Initial: t.BackoffInitial.D(), Max: t.BackoffMax.D()}.Delay(h.Failures+1, 0)
	h.Failures++
	h.Total++
	h.Restarts = append(append([]time.Time(nil), h.Restarts...), now)
	return Decision{Outcome: OutcomeRestart, Delay: delay, State: StateBackoff,
		Reason: fmt.Sprintf("restarting in %s after: %s", delay, e)}, h
}

func maxRestarts(t Task) int {
	if t.MaxRestarts == nil {
		return DefaultMaxRestarts
	}
	return *t.MaxRestarts
}
