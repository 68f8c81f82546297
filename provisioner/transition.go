package provisioner

import (
	"time"

	"nightshift"
)

// Apply moves inst to next, returning the new record and true, or inst
// unchanged and false when the move is not forward (a stale or duplicate
// update). It is the one place the ladder is enforced; it does no I/O.
func Apply(inst Instance, next nightshift.InstanceState, reason string, now time.Time) (Instance, bool) {
	if !inst.State.CanMoveTo(next) {
		return inst, false
	}
	out := inst
	out.State = next
	out.Reason = reason
	out.Updated = now
	out.History = append(append([]Change(nil), inst.History...), Change{State: next, Reason: reason, Time: now})
	return out, true
}

// ActionKind is what reconciliation decided to do about one instance.
type ActionKind string

const (
	// ActLaunch (re)launches a record whose instance does not exist yet.
	ActLaunch ActionKind = "launch"
	// ActAdopt records that an instance the driver owns is live: the
	// provisioner crashed after the driver call but before recording it.
	ActAdopt ActionKind = "adopt"
	// ActTerminate finishes a recorded termination.
	ActTerminate ActionKind = "terminate"
	// ActKillOrphan terminates a driver instance that has no live record.
	ActKillOrphan ActionKind = "kill-orphan"
	// ActDisappeared fails a record whose started instance is gone.
	ActDisappeared ActionKind = "disappeared"
)

// Action is one step of a reconciliation plan.
type Action struct {
	Kind  ActionKind
	ID    string
	From  nightshift.InstanceState // the record's state when planned; empty for orphans
	Owned *Owned                   // what the driver reported, if anything
}

// PlanReconcile compares live records with what the driver owns and says
// what to do, level-triggered: the result depends only on the two
// snapshots. records must have been read before owned was listed, so that
// a record started in the snapshot and missing from owned really vanished.
// Owned instances without any record in the snapshot are reported as
// ActKillOrphan; the executor re-reads them first, because a launch may
// have been recorded after the snapshot.
func PlanReconcile(records []Instance, owned []Owned) []Action {
	byID := make(map[string]Instance, len(records))
	for _, r := range records {
		byID[r.ID] = r
	}
	seen := make(map[string]bool, len(owned))
	var acts []Action
	for i := range owned {
		o := owned[i]
		seen[o.InstanceID] = true
		r, ok := byID[o.InstanceID]
		switch {
		case !ok || r.State.Terminal():
			acts = append(acts, Action{Kind: ActKillOrphan, ID: o.InstanceID, From: r.State, Owned: &o})
		case r.State == nightshift.StateRequested || r.State == nightshift.StatePending:
			acts = append(acts, Action{Kind: ActAdopt, ID: r.ID, From: r.State, Owned: &o})
		case r.State == nightshift.StateTerminating:
			acts = append(acts, Action{Kind: ActTerminate, ID: r.ID, From: r.State, Owned: &o})
		}
	}
	for _, r := range records {
		if seen[r.ID] || !r.State.Live() {
			continue
		}
		switch r.State {
		case nightshift.StateRequested, nightshift.StatePending:
			acts = append(acts, Action{Kind: ActLaunch, ID: r.ID, From: r.State})
		case nightshift.StateTerminating:
			acts = append(acts, Action{Kind: ActTerminate, ID: r.ID, From: r.State})
		default:
			acts = append(acts, Action{Kind: ActDisappeared, ID: r.ID, From: r.State})
		}
	}
	return acts
}

// ConfirmDisappeared applies the two-list rule to a reconcile plan: on a
// driver whose List is eventually consistent (EC2's DescribeInstances), one
// list that misses a record is no proof that its instance is gone. An
// ActDisappeared is kept only when the record was already missed by the
// previous list, at least gap earlier, with no list seeing it in between;
// otherwise it is dropped and remembered. missedSince holds, per record, the
// time of the first of its consecutive misses; the returned map replaces it
// (records seen again, or no longer planned as disappeared, are forgotten).
func ConfirmDisappeared(acts []Action, missedSince map[string]time.Time, now time.Time, gap time.Duration) ([]Action, map[string]time.Time) {
	next := make(map[string]time.Time)
	out := acts[:0:0]
	for _, a := range acts {
		if a.Kind != ActDisappeared {
			out = append(out, a)
			continue
		}
		first, seen := missedSince[a.ID]
		if seen && now.Sub(first) >= gap {
			out = append(out, a)
			continue
		}
		if !seen {
			first = now
		}
		next[a.ID] = first
	}
	return out, next
}
