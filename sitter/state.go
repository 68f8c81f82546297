package sitter

import (
	"fmt"
	"strings"
	"time"
)

// TaskState is where a task is in its life. The names follow supervisord's
// vocabulary so operators coming from it read them without a table.
type TaskState string

const (
	// StateStopped: not running and not wanted (never started, or stopped
	// by a command).
	StateStopped TaskState = "stopped"
	// StateStarting: a run is being spawned.
	StateStarting TaskState = "starting"
	// StateRunning: the process is alive.
	StateRunning TaskState = "running"
	// StateBackoff: the last run ended and the next starts after a delay.
	StateBackoff TaskState = "backoff"
	// StateExited: the task ended and, by policy, stays ended (exit 0 with
	// allow-exit, or a drain).
	StateExited TaskState = "exited"
	// StateFailed: the sitter gave up (restart=never after a failure, or
	// max_restarts within restart_window); Reason says why.
	StateFailed TaskState = "failed"
)

// ViolationKind names the limit that was crossed.
type ViolationKind string

const (
	ViolationCPU    ViolationKind = "cpu"
	ViolationMem    ViolationKind = "mem"
	ViolationTime   ViolationKind = "time"
	ViolationHealth ViolationKind = "health"
)

// Violation records one crossing of a limit. Units: cpu in cores, mem in
// MB, time in seconds; for health, Measured is the check's exit status and
// Limit is 0.
type Violation struct {
	Kind     ViolationKind `json:"kind"`
	Measured float64       `json:"measured"`
	Limit    float64       `json:"limit"`
	At       time.Time     `json:"at"`
	// Detail adds what the numbers cannot say ("oom-killed by kernel",
	// health check output).
	Detail string `json:"detail,omitempty"`
}

func (v Violation) String() string {
	var s string
	switch v.Kind {
	case ViolationCPU:
		s = fmt.Sprintf("cpu %.2f cores > limit %.2f", v.Measured, v.Limit)
	case ViolationMem:
		s = fmt.Sprintf("mem %.1f MB > limit %.1f", v.Measured, v.Limit)
	case ViolationTime:
		s = fmt.Sprintf("time %.1fs reached time_limit %.1fs", v.Measured, v.Limit)
	case ViolationHealth:
		s = fmt.Sprintf("health check failed (status %g)", v.Measured)
	default:
		s = fmt.Sprintf("%s %g > %g", v.Kind, v.Measured, v.Limit)
	}
	if v.Detail != "" {
		s += " (" + v.Detail + ")"
	}
	return s
}

// Work is what a worker last wrote into its status file.
type Work string

const (
	WorkUnknown Work = "unknown"
	WorkBusy    Work = "busy"
	WorkIdle    Work = "idle"
)

// ParseWork reads a status file's content; anything but busy/idle is unknown.
func ParseWork(b []byte) Work {
	switch s := Work(strings.TrimSpace(string(b))); s {
	case WorkBusy, WorkIdle:
		return s
	}
	return WorkUnknown
}

// TaskStatus is a snapshot of one task, as shown by `sitter status` and
// carried in heartbeats.
type TaskStatus struct {
	Name   string    `json:"name"`
	State  TaskState `json:"state"`
	Reason string    `json:"reason,omitempty"`
	PID    int       `json:"pid,omitempty"`
	// Restarts counts runs started by policy since the task was added.
	Restarts int `json:"restarts"`
	// Failures counts the task's unhealthy runs in a row (what sets its
	// back-off); a healthy run of backoff_reset_after clears it. A task in
	// back-off with several is crash-looping, which its pool must see.
	Failures      int        `json:"failures,omitempty"`
	LastViolation *Violation `json:"last_violation,omitempty"`
	// CPU (cores) and MemMB are the last sample of the whole tree.
	CPU       float64   `json:"cpu"`
	MemMB     float64   `json:"mem_mb"`
	Work      Work      `json:"work"`
	StartedAt time.Time `json:"started_at,omitzero"`
	ExitCode  int       `json:"exit_code,omitempty"`
	// Probe is the task's health probe over its current (or last) run;
	// nil when the task has none.
	Probe *ProbeStatus `json:"probe,omitempty"`
}

// HostVitals is the machine's own load, for placement decisions upstream.
type HostVitals struct {
	Load1      float64 `json:"load1"`
	CPUPercent float64 `json:"cpu_percent"`
	MemUsedMB  float64 `json:"mem_used_mb"`
	MemTotalMB float64 `json:"mem_total_mb"`
}

// Status is the whole sitter at one moment.
type Status struct {
	// LimitMode is how hard limits are enforced: cgroup-v2, cgroup-v1 or
	// polling (sampling only).
	LimitMode string       `json:"limit_mode"`
	Tasks     []TaskStatus `json:"tasks"`
	Host      HostVitals   `json:"host"`
}
