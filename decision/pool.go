package decision

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"nightshift"
)

// pool is a Snapshot sorted into what counts toward the pool size and what
// must go. It is the part every built-in engine shares.
type pool struct {
	// members are live, not terminating, healthy and not draining: the
	// workers that make up the pool's size.
	members []Instance
	// inFlight counts members not yet running (requested/pending/started).
	inFlight int
	// pendingLaunches is Snapshot.PendingLaunches (launches with no record).
	pendingLaunches int
	// dead are instances to terminate now because of their health.
	dead []Instance
	// deadMembers counts dead instances that were pool members, i.e. that
	// must be replaced to keep the size.
	deadMembers int
	// draining are healthy instances on their way out.
	draining []Instance
	// notOK counts members that are running but not reporting OK yet.
	notOK int
}

func classify(s Snapshot) pool {
	p := pool{members: make([]Instance, 0, len(s.Instances))}
	p.pendingLaunches = max(s.PendingLaunches, 0)
	for _, in := range s.Instances {
		terminating := in.State == nightshift.StateTerminating || in.State.Terminal()
		switch {
		case in.Health == nightshift.HealthZombie:
			// Heartbeats from an instance that should be gone: terminate
			// again, so the termination is retried until it sticks.
			p.dead = append(p.dead, in)
			if !terminating && !in.Draining() {
				p.deadMembers++
			}
		case !in.State.Live() || terminating:
			// Gone or on its way: neither counts nor needs anything.
		case in.Health.Unhealthy():
			p.dead = append(p.dead, in)
			if !in.Draining() {
				p.deadMembers++
			}
		case in.Draining():
			p.draining = append(p.draining, in)
		default:
			p.members = append(p.members, in)
			if in.State.Rank() < nightshift.StateRunning.Rank() {
				p.inFlight++
			} else if in.Health != nightshift.HealthOK {
				p.notOK++
			}
		}
	}
	return p
}

// size is the pool's current size: members plus launches with no record.
func (p pool) size() int { return len(p.members) + p.pendingLaunches }

// pending is how many workers are on their way but not running yet.
func (p pool) pending() int { return p.inFlight + p.pendingLaunches }

// steer builds the actions that take the pool from its current size to
// target: terminate the dead, finish drains, then launch or scale in.
// It returns the actions and a short note on what happened besides scaling.
func steer(s Snapshot, p pool, target int, spec LaunchSpec, drainTimeout time.Duration) ([]Action, []string) {
	var acts []Action
	var notes []string
	if len(p.dead) > 0 {
		ids := make([]string, len(p.dead))
		parts := make([]string, len(p.dead))
		for i, in := range p.dead {
			ids[i] = in.ID
			parts[i] = fmt.Sprintf("%s %s", in.ID, in.Health)
		}
		acts = append(acts, Terminate{IDs: ids, Reason: "unhealthy: " + strings.Join(parts, ", ")})
		if p.deadMembers > 0 {
			notes = append(notes, fmt.Sprintf("replace %d unhealthy", p.deadMembers))
		} else {
			notes = append(notes, fmt.Sprintf("re-terminate %d zombie", len(p.dead)))
		}
	}
	var drained, expired []string
	waiting := 0
	for _, in := range p.draining {
		switch {
		case !in.Busy:
			drained = append(drained, in.ID)
		case s.Now.Sub(in.DrainingSince) >= drainTimeout:
			expired = append(expired, in.ID)
		default:
			waiting++
		}
	}
	if len(drained) > 0 {
		acts = append(acts, Terminate{IDs: drained, Reason: "drained: idle now"})
		notes = append(notes, fmt.Sprintf("terminate %d drained", len(drained)))
	}
	if len(expired) > 0 {
		acts = append(acts, Terminate{IDs: expired, Reason: fmt.Sprintf("drain_timeout %s passed while still busy", drainTimeout)})
		notes = append(notes, fmt.Sprintf("terminate %d past drain_timeout", len(expired)))
	}
	if waiting > 0 {
		notes = append(notes, fmt.Sprintf("%d draining", waiting))
	}

	have := p.size()
	switch {
	case target > have:
		n := target - have
		why := fmt.Sprintf("grow %d -> %d", have, target)
		if p.deadMembers > 0 {
			why += fmt.Sprintf(" (replacing %d unhealthy)", p.deadMembers)
		}
		acts = append(acts, Launch{Count: n, Spec: cloneSpec(spec), Reason: why})
	case target < have:
		booting, idle, busy := pickVictims(p.members, have-target)
		if len(booting) > 0 {
			acts = append(acts, Terminate{IDs: booting, Reason: fmt.Sprintf("scale in %d -> %d: not running yet, newest first", have, target)})
		}
		// An idle worker is drained too, not terminated: "idle" is its last
		// heartbeat, and it may have taken an item since. Draining stops it
		// taking another; it is terminated once a heartbeat taken after the
		// drain says idle.
		if len(idle) > 0 {
			acts = append(acts, Drain{IDs: idle, Reason: fmt.Sprintf("scale in %d -> %d: idle, newest first; terminate once idle after the drain", have, target)})
		}
		if len(busy) > 0 {
			acts = append(acts, Drain{IDs: busy, Reason: fmt.Sprintf("scale in %d -> %d: busy, terminate once idle or after drain_timeout %s", have, target, drainTimeout)})
		}
		if short := have - target - len(booting) - len(idle) - len(busy); short > 0 {
			// Only launches with no instance record are left; they cannot
			// be cancelled, so the excess goes on the next decisions.
			notes = append(notes, fmt.Sprintf("%d over target still launching", short))
		}
	}
	return acts, notes
}

// pickVictims chooses n members to remove: idle ones before busy ones, and
// within each group the newest first (ties broken by ID, for determinism).
// Victims not running yet (booting) have no worker that could hold an item
// and are terminated; running ones, idle or busy, are drained.
func pickVictims(members []Instance, n int) (booting, idle, busy []string) {
	if n <= 0 || len(members) == 0 {
		return nil, nil, nil
	}
	// Sort indexes, not Instances: moving 100-byte structs with pointers
	// dominated the cost at 10,000 instances.
	order := make([]int, len(members))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int {
		a, b := &members[i], &members[j]
		if a.Busy != b.Busy {
			if a.Busy {
				return 1
			}
			return -1
		}
		if c := b.LaunchedAt.Compare(a.LaunchedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
	for _, i := range order[:min(n, len(order))] {
		switch m := &members[i]; {
		case m.Busy:
			busy = append(busy, m.ID)
		case m.State.Rank() < nightshift.StateRunning.Rank():
			booting = append(booting, m.ID)
		default:
			idle = append(idle, m.ID)
		}
	}
	return booting, idle, busy
}

// stable reports whether the pool is settled: no actions, nothing in
// flight or draining, every member running and OK, and at target.
func stable(p pool, target int, acts []Action) bool {
	return len(acts) == 0 && p.pending() == 0 && len(p.draining) == 0 &&
		p.notOK == 0 && p.size() == target
}

func cloneSpec(s LaunchSpec) LaunchSpec {
	s.Vars = maps.Clone(s.Vars)
	return s
}

// withNotes appends "; note; note" to a reason.
func withNotes(reason string, notes []string) string {
	if len(notes) == 0 {
		return reason
	}
	return reason + "; " + strings.Join(notes, "; ")
}
