package bootlevel

import (
	"fmt"
	"strings"
)

// NoExit is StepError.ExitCode when the program did not exit on its own:
// it timed out, was cancelled, could not be started, or the step is not a
// program at all (acquire, release, attribute expansion).
const NoExit = -1

// StepError is one failed step of one service. It carries what an operator
// needs to act without opening the store: the exit code, the last lines of
// output and where the full log is.
type StepError struct {
	Run     string
	Service string
	Level   int
	Step    Step
	// ExitCode is the program's exit status, or NoExit.
	ExitCode int
	// Tail holds the last output lines, already redacted.
	Tail    []string
	LogPath string
	Err     error
}

// Error renders e as
//
//	service "web" (level 2) step ready failed: exit code 3; last output:
//	  ...
//	full log: /path
func (e *StepError) Error() string {
	var b strings.Builder
	b.WriteString(e.Summary())
	if len(e.Tail) > 0 {
		b.WriteString("; last output:")
		for _, l := range e.Tail {
			b.WriteString("\n  ")
			b.WriteString(l)
		}
	}
	if e.LogPath != "" {
		b.WriteString("\nfull log: ")
		b.WriteString(e.LogPath)
	}
	return b.String()
}

// Summary is the first line of Error, without output tail and log path; it
// is what the service record keeps.
func (e *StepError) Summary() string {
	var why []string
	if e.Err != nil {
		why = append(why, e.Err.Error())
	}
	if e.ExitCode != 0 && e.ExitCode != NoExit {
		why = append(why, fmt.Sprintf("exit code %d", e.ExitCode))
	}
	if len(why) == 0 {
		why = append(why, "unknown error")
	}
	return fmt.Sprintf("service %q (level %d) step %s failed: %s", e.Service, e.Level, e.Step, strings.Join(why, ", "))
}

func (e *StepError) Unwrap() error { return e.Err }

// siblingFailed is the cancellation cause given to the other services of a
// level when one of them fails.
type siblingFailed struct{ name string }

func (s *siblingFailed) Error() string { return fmt.Sprintf("cancelled: sibling %s failed", s.name) }

// stepTimeout is the cancellation cause of a step that ran out of time.
type stepTimeout struct {
	step Step
	d    string
}

func (t *stepTimeout) Error() string { return fmt.Sprintf("%s timed out after %s", t.step, t.d) }

// scrubbedError shows a redacted message but keeps the original error for
// errors.Is and errors.As.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// InterruptedError is a launch that its caller stopped (a signal, say)
// before it finished. It says where the launch was: the level and, for
// each service that was in the middle of a step, that step. The run is
// left RunInterrupted, and launching it again resumes it.
type InterruptedError struct {
	Run string
	// Cause is why the caller stopped, e.g. "hangup signal received".
	Cause error
	// Level is the level that was booting, or the next one when the launch
	// stopped between levels.
	Level int
	// Steps are the services cut in the middle of a step, by name.
	Steps []*StepError
}

func (e *InterruptedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "run %s interrupted (%v) in level %d", e.Run, e.Cause, e.Level)
	if len(e.Steps) == 0 {
		b.WriteString(", before any of its services started")
	}
	for i, s := range e.Steps {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "service %s in step %s", s.Service, s.Step)
	}
	b.WriteString("; launch it again to resume")
	return b.String()
}

func (e *InterruptedError) Unwrap() error { return e.Cause }
