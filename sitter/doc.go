// Package sitter owns per-host supervision of tasks: it starts each Task's
// process tree, keeps it inside its CPU, memory and lifetime limits,
// restarts it by policy with back-off, rotates its logs, and reports
// heartbeats. Read Sitter.Serve and Decide first.
//
// # Shape
//
// The decisions are pure: Decide (restart policy and back-off), Check (limit
// rules), TreeOf and Measure (which processes belong to a task and how much
// they use) take values and return values. One goroutine per task (the
// runner) executes them against real processes; Sitter.Serve owns the
// runners, one host-wide sampling loop and the heartbeat loop, in the way
// of suture's Serve(ctx). The sampling loop measures every run and checks
// its limits itself, and wakes a runner only with a violation: an idle
// host then costs one goroutine wake-up per sample, not one per task.
//
// Seams, each declared here and implemented elsewhere:
//   - Sampler (internal/psutil): per sample interval, one read of each
//     supervised process's /proc stat, descendants found through the
//     kernel's children lists (or the task's cgroup counters), so the cost
//     follows what the sitter supervises, not the host's process count; a
//     process whose CPU clock has not moved costs one syscall; gopsutil
//     reports host vitals, read only when a status or heartbeat asks.
//   - Limiter (internal/cgroup): kernel caps, cgroup v2 or v1; nil means
//     polling only. Status().LimitMode and a log line say which is in force.
//   - HeartbeatSink: wired by the caller to the message bus.
//
// # Limits
//
// CPU is cores used over the last sample interval by the whole tree
// (leader, descendants, members of its process group, members of its
// cgroup). It must be over the limit on two samples in a row: one sample
// over is usually a spike, and killing on spikes makes limits useless for
// bursty workers. Memory (RSS of the tree, in MB) counts on the first
// sample over. time_limit is a timer, so it fires at the deadline, not at
// the next sample. health_command failing is a violation of kind "health".
//
// On a violation the stop signal goes to the process group, then SIGKILL
// after stop_grace; whatever is left of the group (and of the cgroup) is
// killed when the leader exits, so a task's children die with it. The
// violation (kind, measured, limit, time) is kept in TaskStatus and the
// restart policy decides what follows.
//
// With a Limiter each run also gets a cgroup capped above its limits (CPU
// ×2, memory ×1.25: Config.HardCPUFactor, HardMemFactor). The sampler
// still enforces the limit with the stop signal the worker expects; the cap
// is the backstop for growth faster than one sample. A run OOM-killed at the cap is recorded as a mem
// violation measured at the cgroup's peak.
//
// # Worker protocol: busy/idle and drain
//
// Every task gets, in its environment:
//
//	NIGHTSHIFT_TASK         the task name
//	NIGHTSHIFT_STATUS_FILE  <state>/tasks/<task>/<task>.status
//	NIGHTSHIFT_DRAIN_FILE   <state>/tasks/<task>/<task>.drain
//
// A worker writes "busy" or "idle" into the status file, replacing the
// whole file (write a temp file in the same directory, then rename); the
// sitter watches the directory (fsnotify), reads the file at the next
// sample after it changed, and reports busy, idle or unknown. The
// directory belongs to the task's user for this reason.
//
// Drain(task) creates the drain file. A worker that sees it finishes its
// current item and exits 0; the sitter then leaves the task in state
// exited ("drained ...") and does not restart it, whatever the policy. The
// drain file is removed before every start.
//
// # Concurrency
//
// Sitter's methods are safe for concurrent use. Control methods (StartTask,
// StopTask, RestartTask, RemoveTask, Drain) need Serve to be running; they
// block until the runner has acted (StopTask until the group is gone) or ctx
// ends. When Serve's ctx ends every task is stopped within its stop_grace
// and Serve returns: a sitter that goes away leaves no descendants. A
// sitter killed with SIGKILL cannot do that, so each run is recorded in its
// task directory and the next sitter on the same state dir kills what was
// left before starting.
package sitter
