// Package alert owns Nightshift's alerts: the event every sink receives (a
// stable, versioned JSON shape), the kinds of trouble healing cannot fix,
// their thresholds and sinks as a plan configures them, and the Evaluator,
// a pure state machine that turns snapshots of pools and daemons into
// firing and resolved transitions, one per episode. It does no I/O and
// reads no clock; delivery, the journal and the processes that feed it sit
// in alert/notify and in the daemons.
package alert

import (
	"fmt"
	"slices"
	"time"
)

// Version is the version of the event shape; a change that is not an
// added field bumps it.
const Version = 1

// Kind names a kind of alert.
type Kind string

// The kinds. Each names a failure of healing, never an instance going
// down: that is what Nightshift fixes without waking anyone.
const (
	// PoolBlocked: a pool's launches failed BlockedAfter times in a row
	// (controller.BlockedAfter) and none has been healthy since, or the
	// job's block_after_silent workers in a row reached running and never
	// sent a heartbeat.
	PoolBlocked Kind = "pool_blocked"
	// PoolBelowPolicy: fewer healthy workers than the last decision's
	// target for longer than Config.PoolBelowPolicyFor.
	PoolBelowPolicy Kind = "pool_below_policy_for"
	// ReplacementFlapping: more than Config.FlappingReplacements workers
	// of one pool ended unhealthy within Config.FlappingWindow.
	ReplacementFlapping Kind = "replacement_flapping"
	// DaemonRestartLoop: the keeper restarted one of the run's daemons
	// more than Config.RestartLoopRestarts times within
	// Config.RestartLoopWindow, or gave up on it.
	DaemonRestartLoop Kind = "daemon_restart_loop"
	// TeardownLeftovers: mgmt teardown finished with resources remaining.
	TeardownLeftovers Kind = "teardown_leftovers"
	// RolloutRolledBack: the pool's latest rollout was turned back, by
	// itself (new workers failed) or by a person's undo.
	RolloutRolledBack Kind = "rollout_rolled_back"
	// BrokerUnreachable: the controller has been cut off from the run's
	// broker for longer than Config.BrokerUnreachableFor.
	BrokerUnreachable Kind = "broker_unreachable_for"
	// MassSilence: more than the job's mass_silence_percent of its
	// running workers went silent at once; their replacement is held,
	// since the cause is more likely the broker, the controller or the
	// network than that many workers.
	MassSilence Kind = "mass_silence"
)

// Kinds lists every kind, in the order docs/alerts.md describes them.
var Kinds = []Kind{PoolBlocked, PoolBelowPolicy, ReplacementFlapping, BrokerUnreachable, MassSilence, DaemonRestartLoop, TeardownLeftovers, RolloutRolledBack}

// Severity says how urgently a person is needed.
type Severity string

// Severities.
const (
	Critical Severity = "critical"
	Warning  Severity = "warning"
)

// Status is an alert's state in an event.
type Status string

// Statuses.
const (
	Firing   Status = "firing"
	Resolved Status = "resolved"
)

// Event is one transition of one alert, as every sink and the journal get
// it. The JSON field names are the documented, stable shape
// (docs/alerts.md).
type Event struct {
	Version int `json:"version"`
	// Key is the dedupe key: the same for every event of one condition
	// (run, kind and job or daemon), across episodes.
	Key      string   `json:"dedupe_key"`
	Run      string   `json:"run"`
	Job      string   `json:"job,omitempty"`
	Kind     Kind     `json:"kind"`
	Severity Severity `json:"severity"`
	Status   Status   `json:"status"`
	Summary  string   `json:"summary"`
	// Details are the facts behind the summary, by name.
	Details map[string]any `json:"details,omitempty"`
	// FirstSeen is when this episode of the condition began to fire;
	// LastSeen when it was last seen true (for a resolved event: when it
	// was seen cleared).
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// Key is the dedupe key of kind for subject (a job, a daemon, or "" for the
// run as a whole) in run.
func Key(run string, kind Kind, subject string) string {
	if subject == "" {
		return fmt.Sprintf("nightshift/%s/%s", run, kind)
	}
	return fmt.Sprintf("nightshift/%s/%s/%s", run, kind, subject)
}

// Once is an event that has no lasting condition to watch (a teardown that
// left something behind): it fires at now and nothing resolves it.
func Once(run string, kind Kind, subject string, sev Severity, summary string, details map[string]any, now time.Time) Event {
	return Event{Version: Version, Key: Key(run, kind, subject), Run: run, Job: subject, Kind: kind, Severity: sev,
		Status: Firing, Summary: summary, Details: details, FirstSeen: now, LastSeen: now}
}

// ControllerKinds are the kinds a controller's evaluator raises and
// resolves; KeeperKinds the keeper's. Each restores only its own from the
// journal, which they share.
var (
	ControllerKinds = []Kind{PoolBlocked, PoolBelowPolicy, ReplacementFlapping, BrokerUnreachable, MassSilence, RolloutRolledBack}
	KeeperKinds     = []Kind{DaemonRestartLoop}
)

// OfKinds returns the events of evs whose kind is one of kinds.
func OfKinds(evs []Event, kinds []Kind) []Event {
	var out []Event
	for _, ev := range evs {
		if slices.Contains(kinds, ev.Kind) {
			out = append(out, ev)
		}
	}
	return out
}
