// Package nightshift holds the small vocabulary that the provisioner, the
// decision engines, the controllers, the sitters and mgmt share: the ordered
// instance lifecycle and worker health. It imports only the standard library
// and has no logic beyond methods on these types.
package nightshift

import "fmt"

// InstanceState is where a worker instance is in its life. The ladder
// requested → pending → started → running → terminating → terminated is
// ordered: a state only moves forward, so a stale or duplicate update (one
// whose state is not after the current one) is ignored. Failed and Rejected
// are terminal and carry a reason alongside.
type InstanceState string

const (
	StateRequested   InstanceState = "requested"
	StatePending     InstanceState = "pending"
	StateStarted     InstanceState = "started"
	StateRunning     InstanceState = "running"
	StateTerminating InstanceState = "terminating"
	StateTerminated  InstanceState = "terminated"
	StateFailed      InstanceState = "failed"
	StateRejected    InstanceState = "rejected"
)

var stateRank = map[InstanceState]int{
	StateRequested:   1,
	StatePending:     2,
	StateStarted:     3,
	StateRunning:     4,
	StateTerminating: 5,
	StateTerminated:  6,
	// Failed and rejected end the ladder from any earlier point; terminated
	// is still final after them, so a failed instance can be confirmed gone.
	StateFailed:   6,
	StateRejected: 6,
}

// Valid reports whether s is a known state.
func (s InstanceState) Valid() bool { _, ok := stateRank[s]; return ok }

// Rank orders states; unknown states rank 0.
func (s InstanceState) Rank() int { return stateRank[s] }

// Terminal reports whether nothing more will happen to the instance.
func (s InstanceState) Terminal() bool {
	return s == StateTerminated || s == StateFailed || s == StateRejected
}

// Live reports whether the instance may exist or be about to exist: it
// counts toward a pool's size and must be swept at teardown.
func (s InstanceState) Live() bool {
	return s.Valid() && !s.Terminal()
}

// CanMoveTo reports whether a transition from s to next is a forward move.
// Terminal states only accept nothing further, except that a failed
// instance may still be confirmed terminated.
func (s InstanceState) CanMoveTo(next InstanceState) bool {
	if !next.Valid() {
		return false
	}
	if s == "" {
		return true
	}
	if s == StateFailed && next == StateTerminated {
		return true
	}
	if s.Terminal() {
		return false
	}
	return next.Rank() > s.Rank()
}

// ParseInstanceState validates a state read from the wire or a database.
func ParseInstanceState(v string) (InstanceState, error) {
	s := InstanceState(v)
	if !s.Valid() {
		return "", fmt.Errorf("unknown instance state %q", v)
	}
	return s, nil
}

// Health is a controller's judgement of a worker, from its heartbeats.
type Health string

const (
	HealthOK      Health = "ok"
	HealthBooting Health = "booting" // running, first heartbeat not yet due
	HealthMissing Health = "missing" // heartbeats stopped after at least one
	// HealthNeverHeard: running past boot_timeout without a first heartbeat.
	// Told apart from missing because the causes differ: a worker that
	// stopped heartbeating died or lost its network; one never heard from
	// never reached the broker (wrong sitter URL, an image without the
	// agent, a security group), and replacing it changes nothing.
	HealthNeverHeard   Health = "never_heard"
	HealthZombie       Health = "zombie"        // heartbeats from an instance that should be gone
	HealthProcessError Health = "process_error" // the sitter reports a failed task
	// HealthProbeFailed: a running task's health probe failed its
	// failure_threshold in a row; the application is not serving.
	HealthProbeFailed Health = "probe_failed"
	HealthUnknown     Health = "unknown"
)

// Unhealthy reports whether the worker must be replaced.
func (h Health) Unhealthy() bool {
	return h == HealthMissing || h == HealthNeverHeard || h == HealthZombie || h == HealthProcessError || h == HealthProbeFailed
}
