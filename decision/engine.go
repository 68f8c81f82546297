package decision

import (
	"context"
	"time"

	"nightshift"
)

// Engine is one pool policy. Decide must be deterministic for a given
// configuration and Snapshot: it must not block, do I/O, read the wall clock
// or use randomness. Engines that cannot honour this (the exec engine) also
// implement ContextDecider, and callers go through Run.
type Engine interface {
	// Name is the registry name of the engine ("npreserving", "queuelen").
	Name() string
	// Configure replaces the whole configuration; absent keys take their
	// defaults. On error the previous configuration stays in force.
	Configure(cfg map[string]any) error
	// Reconfigure merges a partial update over the current configuration:
	// a key present in update replaces that key's whole value, a key set to
	// nil reverts to its default. The merged result is validated as a whole
	// and applied only if valid.
	Reconfigure(update map[string]any) error
	// Config returns the configuration in force, in canonical form
	// (Configure(Config()) is a no-op). It is a fresh map the caller may keep.
	Config() map[string]any
	// Decide says what the pool should do next.
	Decide(s Snapshot) Decision
}

// ContextDecider is implemented by engines whose decision can block, so that
// a controller shutting down can abandon it.
type ContextDecider interface {
	DecideContext(ctx context.Context, s Snapshot) Decision
}

// Run asks e for a decision, through DecideContext when e can block.
func Run(ctx context.Context, e Engine, s Snapshot) Decision {
	if cd, ok := e.(ContextDecider); ok {
		return cd.DecideContext(ctx, s)
	}
	return e.Decide(s)
}

// DepthSource says how a queue depth was measured, which decides what it
// counts.
type DepthSource string

const (
	// SourceNone means no reading is available (broker unreachable, queue
	// not declared yet); engines hold the pool size.
	SourceNone DepthSource = ""
	// SourceMgmtAPI is the RabbitMQ management API "messages" figure:
	// ready plus unacknowledged, so work in progress is visible.
	SourceMgmtAPI DepthSource = "mgmt_api"
	// SourcePassiveDeclare is the message count a passive queue.declare
	// returns: ready messages only; messages being worked on are invisible.
	SourcePassiveDeclare DepthSource = "passive_declare"
)

// Snapshot is everything an engine may look at for one decision. The
// controller builds it; engines only read it.
type Snapshot struct {
	// Pool names the pool (EPU domain) the snapshot is of; used in reasons only.
	Pool string `json:"pool,omitempty"`
	// Now is the decision time. Engines use it instead of a clock.
	Now time.Time `json:"now"`
	// Instances holds every instance the controller knows for the pool,
	// including those still requested/pending/started and those already
	// terminating or gone (engines skip what does not count).
	Instances []Instance `json:"instances"`
	// PendingLaunches counts instances asked of the provisioner that have no
	// instance record yet. They count toward the pool size so that a slow
	// provisioner never causes a second launch.
	PendingLaunches int `json:"pending_launches"`
	// Queue is the name of the watched queue, for reasons only.
	Queue string `json:"queue,omitempty"`
	// Depth is the queue depth reading, nil when unavailable.
	Depth *int `json:"depth"`
	// Source says what Depth counts; SourceNone means unavailable.
	Source DepthSource `json:"source"`
	// LastScaleAt is when the controller last applied a Decision with
	// Scaled set; zero if never. Cooldowns are measured from it.
	LastScaleAt time.Time `json:"last_scale_at,omitzero"`
}

// Instance is one worker as the controller last saw it.
type Instance struct {
	ID     string                   `json:"id"`
	State  nightshift.InstanceState `json:"state"`
	Health nightshift.Health        `json:"health"`
	// Busy is true when the last heartbeat reported a task in progress.
	// Scale-in drains busy workers instead of terminating them.
	Busy bool `json:"busy"`
	// LaunchedAt orders instances for scale-in (newest go first).
	LaunchedAt time.Time `json:"launched_at"`
	// DrainingSince is when the controller applied a Drain action to this
	// instance; zero if it is not draining. A draining instance no longer
	// counts toward the pool size.
	DrainingSince time.Time `json:"draining_since,omitzero"`
}

// Draining reports whether the instance has been told to drain.
func (i Instance) Draining() bool { return !i.DrainingSince.IsZero() }

// LaunchSpec says what to launch. Engines copy it from their configuration;
// the controller turns it into a provisioner request. Vars may hold secrets:
// pass them through redact.Map before logging.
type LaunchSpec struct {
	Deployable string            `json:"deployable,omitempty"`
	Site       string            `json:"site,omitempty"`
	Allocation string            `json:"allocation,omitempty"`
	Vars       map[string]string `json:"vars,omitempty"`
}

// Action is one thing the controller should do: Launch, Terminate or Drain.
// The set is closed; switch on the concrete type.
type Action interface {
	// Why is the action's own one-line reason.
	Why() string
	isAction()
}

// Launch asks for Count new instances built from Spec.
type Launch struct {
	Count  int
	Spec   LaunchSpec
	Reason string
}

// Terminate asks for the instances to be destroyed now.
type Terminate struct {
	IDs    []string
	Reason string
}

// Drain asks busy instances to finish their current task and take no new
// one. The controller records Instance.DrainingSince; a later decision
// terminates them once idle, gone, or past the engine's drain_timeout.
type Drain struct {
	IDs    []string
	Reason string
}

func (a Launch) Why() string    { return a.Reason }
func (a Terminate) Why() string { return a.Reason }
func (a Drain) Why() string     { return a.Reason }
func (Launch) isAction()        {}
func (Terminate) isAction()     {}
func (Drain) isAction()         {}

// Decision is an engine's answer for one Snapshot.
type Decision struct {
	// Engine is the name of the engine that decided.
	Engine string
	// Actions to apply, in order; empty means hold.
	Actions []Action
	// Reason explains the whole decision on one line, e.g.
	// "queue depth 240 (ready+unacked, mgmt api) > high_water 100: +1 (3 -> 4, max 6)".
	Reason string
	// Target is the pool size the engine is steering to (for status output).
	Target int
	// Scaled is set when policy changed the pool size (not when replacing
	// dead workers); the controller then sets Snapshot.LastScaleAt = Now.
	Scaled bool
	// Stable is set when the pool is at its target, every counted worker is
	// running and healthy, and nothing is in flight (EPU "STABLE_DE").
	Stable bool
	// Error is set when the engine could not decide (bad exec output,
	// timeout); Actions is then empty and Reason says what went wrong.
	Error string
}
