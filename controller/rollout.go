package controller

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"nightshift"
)

// A rollout replaces a pool's workers of one spec revision by workers of
// another, in batches, never killing a busy worker: this file is its pure
// core, a state machine over snapshots as the engines are. Rollout.Step
// takes the state and what the pool looks like now and returns what to do
// and the next state; it does no I/O and reads no clock. rollouts.go is
// its I/O side: the command that starts or undoes one, and the rounds.

// Rollout phases.
const (
	// RolloutRolling: workers of From are being replaced by workers of To.
	RolloutRolling = "rolling"
	// RolloutRollingBack: To failed (or a person undid it); workers of To
	// are being replaced by workers of From.
	RolloutRollingBack = "rolling_back"
	// RolloutDone: every worker runs To.
	RolloutDone = "done"
	// RolloutRolledBack: every worker runs From again.
	RolloutRolledBack = "rolled_back"
)

// Rollout defaults.
const (
	DefaultMaxSurge         = 1
	DefaultMaxUnavailable   = 0
	DefaultMinReady         = 10 * time.Second
	DefaultRolloutFailures  = 1
	maxRolloutFailedIDsKept = 100
)

// RolloutConfig is how a rollout proceeds.
type RolloutConfig struct {
	// MaxSurge is how many workers above the pool's size may run during
	// the rollout (default 1).
	MaxSurge int `json:"max_surge"`
	// MaxUnavailable is how many below its size may be unavailable
	// (default 0: a worker is drained only once its replacement is ready).
	MaxUnavailable int `json:"max_unavailable"`
	// MinReady is how long a new worker must pass its probes (or, without
	// probes, be healthy) before it counts as ready (default 10s).
	MinReady time.Duration `json:"min_ready"`
	// FailureThreshold is how many new workers may fail (unhealthy: a
	// failed probe, a crash loop, silence) before the rollout rolls back
	// by itself (default 1).
	FailureThreshold int `json:"failure_threshold"`
}

// WithDefaults fills unset fields; MaxSurge and MaxUnavailable are never
// both zero, or nothing could ever be replaced.
func (c RolloutConfig) WithDefaults() RolloutConfig {
	if c.MaxSurge <= 0 && c.MaxUnavailable <= 0 {
		c.MaxSurge = DefaultMaxSurge
	}
	if c.MinReady <= 0 {
		c.MinReady = DefaultMinReady
	}
	if c.FailureThreshold <= 0 {
		c.FailureThreshold = DefaultRolloutFailures
	}
	return c
}

// Rollout is one rollout's state, as stored.
type Rollout struct {
	Job    string        `json:"job"`
	From   int           `json:"from"`
	To     int           `json:"to"`
	Phase  string        `json:"phase"`
	Config RolloutConfig `json:"config"`
	Who    string        `json:"who"`
	// Started is when it began; Ended when it reached done or
	// rolled_back.
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
	// Failed are the workers of To counted as failed, each once.
	Failed []string `json:"failed,omitempty"`
	// Reason says why it rolls back (or why it ended).
	Reason string `json:"reason,omitempty"`
}

// Target is the revision new workers run in the current phase.
func (r Rollout) Target() int {
	if r.Phase == RolloutRollingBack || r.Phase == RolloutRolledBack {
		return r.From
	}
	return r.To
}

// Active reports whether the rollout still replaces workers.
func (r Rollout) Active() bool { return r.Phase == RolloutRolling || r.Phase == RolloutRollingBack }

// RolloutWorker is one worker of the pool as a rollout sees it.
type RolloutWorker struct {
	ID       string
	Revision int
	State    nightshift.InstanceState
	Health   nightshift.Health
	// Busy: holding an item, or draining and not yet seen idle after the
	// drain (Pool.Snapshot's rule).
	Busy     bool
	Draining bool
	// ReadySince is since when the worker passes its probes (healthy
	// without probes); zero when it does not.
	ReadySince time.Time
	// Error is why it is unhealthy, for the reason.
	Error string
}

// RolloutSnapshot is the pool at Now.
type RolloutSnapshot struct {
	Now time.Time
	// Desired is the pool's size as its engine wants it.
	Desired int
	Workers []RolloutWorker
	// PendingLaunches are workers of the target revision asked for and
	// not yet seen.
	PendingLaunches int
}

// RolloutStep is what one step asks for, and the state after it.
type RolloutStep struct {
	Rollout   Rollout
	Launch    int
	Drain     []string
	Terminate []string
	Reason    string
}

// Undo turns the rollout back by a person's hand.
func (r Rollout) Undo(who string, now time.Time) (Rollout, error) {
	if !r.Active() {
		return r, fmt.Errorf("rollout of job %s to revision %d is %s: nothing to undo", r.Job, r.To, r.Phase)
	}
	if r.Phase == RolloutRollingBack {
		return r, nil
	}
	r.Phase, r.Reason = RolloutRollingBack, fmt.Sprintf("undone by %s at %s", who, now.UTC().Format(time.RFC3339))
	return r, nil
}

// Step decides the rollout's next move from s.
func (r Rollout) Step(s RolloutSnapshot) RolloutStep {
	cfg := r.Config.WithDefaults()
	if !r.Active() {
		return RolloutStep{Rollout: r, Reason: fmt.Sprintf("rollout %s", r.Phase)}
	}
	// New workers of To that turned unhealthy count against it, once each.
	if r.Phase == RolloutRolling {
		for _, w := range s.Workers {
			if w.Revision != r.To || !w.State.Live() || !w.Health.Unhealthy() || slices.Contains(r.Failed, w.ID) {
				continue
			}
			if len(r.Failed) < maxRolloutFailedIDsKept {
				r.Failed = append(slices.Clone(r.Failed), w.ID)
			}
			if len(r.Failed) >= cfg.FailureThreshold {
				why := string(w.Health)
				if w.Error != "" {
					why += ": " + w.Error
				}
				r.Phase = RolloutRollingBack
				r.Reason = fmt.Sprintf("rolling back to revision %d: %d new worker(s) of revision %d failed (threshold %d; last: %s %s)",
					r.From, len(r.Failed), r.To, cfg.FailureThreshold, w.ID, why)
				break
			}
		}
	}
	target := r.Target()
	var st RolloutStep
	var newLive, newReady, oldAvail int
	var idleOld, busyOld []string
	for _, w := range s.Workers {
		if !w.State.Live() || w.State == nightshift.StateTerminating {
			continue
		}
		if w.Revision == target {
			if w.State == nightshift.StateRunning && w.Health.Unhealthy() {
				// Counted above when it is a failure; replaced either way.
				st.Terminate = append(st.Terminate, w.ID)
				continue
			}
			newLive++
			if w.State == nightshift.StateRunning && !w.Health.Unhealthy() && !w.ReadySince.IsZero() && s.Now.Sub(w.ReadySince) >= cfg.MinReady {
				newReady++
			}
			continue
		}
		switch {
		case w.State != nightshift.StateRunning || w.Health.Unhealthy():
			// Holds no item and serves no one: it goes at once.
			st.Terminate = append(st.Terminate, w.ID)
		case w.Draining && !w.Busy:
			// Drained and seen idle since: done with its item.
			st.Terminate = append(st.Terminate, w.ID)
		case w.Draining:
			// Finishing its item: it waits (the engine's drain_timeout
			// still applies).
		default:
			oldAvail++
			if w.Busy {
				busyOld = append(busyOld, w.ID)
			} else {
				idleOld = append(idleOld, w.ID)
			}
		}
	}
	live := 0
	for _, w := range s.Workers {
		if w.State.Live() && w.State != nightshift.StateTerminating && !slices.Contains(st.Terminate, w.ID) {
			live++
		}
	}
	// Surge: new workers up to the pool's size, within desired+max_surge
	// in all.
	want := s.Desired - newLive - s.PendingLaunches
	room := s.Desired + cfg.MaxSurge - live - s.PendingLaunches
	st.Launch = max(0, min(want, room))
	// Drain: only as many old workers as keep desired-max_unavailable
	// available, counting new workers once ready for min_ready: so each
	// batch waits for the last one's workers to prove themselves. Idle
	// ones first, then busy ones, which finish their item first.
	canDrain := newReady + oldAvail - (s.Desired - cfg.MaxUnavailable)
	for _, id := range append(idleOld, busyOld...) {
		if canDrain <= 0 {
			break
		}
		st.Drain = append(st.Drain, id)
		canDrain--
	}
	oldLeft := 0
	for _, w := range s.Workers {
		if w.State.Live() && w.Revision != target {
			oldLeft++
		}
	}
	var parts []string
	if oldLeft == 0 && newReady >= s.Desired && s.PendingLaunches == 0 {
		if r.Phase == RolloutRolling {
			r.Phase = RolloutDone
			parts = append(parts, fmt.Sprintf("rollout to revision %d done: %d worker(s) ready", r.To, newReady))
		} else {
			r.Phase = RolloutRolledBack
			parts = append(parts, fmt.Sprintf("rolled back to revision %d: %d worker(s) ready", r.From, newReady))
		}
		r.Ended = s.Now
	} else {
		verb := "rolling out"
		if r.Phase == RolloutRollingBack {
			verb = "rolling back"
		}
		parts = append(parts, fmt.Sprintf("%s revision %d: %d/%d ready, %d old left", verb, target, newReady, s.Desired, oldLeft))
		if st.Launch > 0 {
			parts = append(parts, fmt.Sprintf("launch %d (max_surge %d)", st.Launch, cfg.MaxSurge))
		}
		if len(st.Drain) > 0 {
			parts = append(parts, fmt.Sprintf("drain %d old (max_unavailable %d)", len(st.Drain), cfg.MaxUnavailable))
		}
		if len(st.Terminate) > 0 {
			parts = append(parts, fmt.Sprintf("terminate %d old (drained, or not serving)", len(st.Terminate)))
		}
		if st.Launch == 0 && len(st.Drain) == 0 && len(st.Terminate) == 0 {
			parts = append(parts, fmt.Sprintf("waiting for new workers to be ready for min_ready %s", cfg.MinReady))
		}
	}
	if r.Reason != "" && r.Phase == RolloutRollingBack {
		parts = append([]string{r.Reason}, parts...)
	}
	st.Reason = strings.Join(parts, "; ")
	st.Rollout = r
	return st
}
