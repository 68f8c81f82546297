package controller

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"
)

// Store is the controller's durable memory: job configurations,
// reconfigurations, every decision with its reason, the launch ids written
// before a launch is sent, drains in progress and the frozen flag.
// internal/store/ctlstore is the SQLite implementation. All methods are safe for
// concurrent use.
type Store interface {
	// Epoch returns a random tag created with the store, which the
	// controller mixes into launch ids so that ids from a lost store are
	// never reused.
	Epoch(ctx context.Context) (string, error)
	// Frozen reads the frozen flag (false when never set); SetFrozen
	// stores it.
	Frozen(ctx context.Context) (bool, error)
	SetFrozen(ctx context.Context, frozen bool) error
	// Job returns a job's stored record, or an error wrapping ErrNotFound.
	Job(ctx context.Context, name string) (JobRecord, error)
	// PutJob stores a job's file definition and the policy in force,
	// keeping its last scale time.
	PutJob(ctx context.Context, name string, fileConfig, policy json.RawMessage, now time.Time) error
	// SetLastScaleAt records when a job's pool size was last changed by
	// policy.
	SetLastScaleAt(ctx context.Context, job string, t time.Time) error
	// SetSilent stores a job's count of silent workers and its probes
	// (SilentState), which JobRecord.Silent returns, so that a restarted
	// controller keeps a block rather than allowing block_after_silent
	// more silent launches.
	SetSilent(ctx context.Context, job string, s SilentState) error
	// Reconfigured records a reconfigure request; when r.Error is empty it
	// also stores policy as the job's policy, in the same transaction.
	Reconfigured(ctx context.Context, r Reconfiguration, policy json.RawMessage) error
	// RecordDecision stores d and the launches it asks for in one
	// transaction, so a launch id exists before anything is sent. It
	// returns the decision's sequence number and the launch ids (made by
	// id), in order; actions is called with those ids to render the
	// decision's actions.
	RecordDecision(ctx context.Context, d Decision, launches []PendingLaunch, id LaunchIDFunc,
		actions func(ids []string) (json.RawMessage, error)) (int64, []string, error)
	// Decisions returns a job's most recent decisions, newest first; limit
	// <= 0 means 100.
	Decisions(ctx context.Context, job string, limit int) ([]Decision, error)
	// PendingLaunches lists a job's launches still in state LaunchPending.
	PendingLaunches(ctx context.Context, job string) ([]Launch, error)
	// SetLaunchState moves a launch to LaunchDone or LaunchRefused, with
	// an optional note.
	SetLaunchState(ctx context.Context, launchID, state, note string) error
	// SetDraining records that an instance was told to drain at since;
	// ClearDraining forgets it; Draining lists a job's drains.
	SetDraining(ctx context.Context, job, id string, since time.Time) error
	ClearDraining(ctx context.Context, job, id string) error
	Draining(ctx context.Context, job string) (map[string]time.Time, error)
	// DecisionsSince returns a job's decisions taken at or after since,
	// oldest first, at most limit (<= 0 means 10000) of the newest.
	DecisionsSince(ctx context.Context, job string, since time.Time, limit int) ([]Decision, error)
	// RecordSample stores one sample of a job's pool (its history).
	RecordSample(ctx context.Context, s Sample) error
	// Samples returns a job's samples taken at or after since, oldest
	// first.
	Samples(ctx context.Context, job string, since time.Time) ([]Sample, error)
	// CompactSamples keeps a job's history bounded: samples taken before
	// thinBefore are thinned to the first of each period of every, and
	// samples taken before dropBefore are deleted.
	CompactSamples(ctx context.Context, job string, thinBefore time.Time, every time.Duration, dropBefore time.Time) error
	// PutRevision stores a job's revision r.Number, or, when it exists,
	// its outcome, note and updated time (the rest of a revision never
	// changes). Revisions lists a job's revisions, oldest first.
	PutRevision(ctx context.Context, r Revision) error
	Revisions(ctx context.Context, job string) ([]Revision, error)
	// PutRollout stores r as its job's latest rollout, replacing the one
	// before; Rollout reads it, or an error wrapping ErrNotFound.
	PutRollout(ctx context.Context, r Rollout, now time.Time) error
	Rollout(ctx context.Context, job string) (Rollout, error)
}

// ErrNotFound is what Store.Job wraps for an unknown job.
var ErrNotFound = errors.New("not found")

// Launch states.
const (
	LaunchPending = "pending"
	LaunchDone    = "done"
	LaunchRefused = "refused"
)

// Decision is one persisted engine decision.
type Decision struct {
	Seq     int64           `json:"seq"`
	Time    time.Time       `json:"time"`
	Job     string          `json:"job"`
	Engine  string          `json:"engine"`
	Reason  string          `json:"reason"`
	Actions json.RawMessage `json:"actions"`
	Target  int             `json:"target"`
	Scaled  bool            `json:"scaled"`
	Error   string          `json:"error,omitempty"`
}

// Sample is one point of a job's history: the pool as the controller saw
// it at Time. Running counts workers in state running, Healthy those whose
// health is ok; QueueDepth is nil when the depth could not be read.
type Sample struct {
	Time       time.Time `json:"time"`
	Job        string    `json:"job"`
	Desired    int       `json:"desired"`
	Running    int       `json:"running"`
	Healthy    int       `json:"healthy"`
	QueueDepth *int      `json:"queue_depth"`
}

// Launch is a launch recorded before it was sent.
type Launch struct {
	LaunchID string
	Job      string
	Seq      int64
	Count    int
	Spec     json.RawMessage
	State    string
	Created  time.Time
}

// JobRecord is a job's stored configuration.
type JobRecord struct {
	Name        string
	FileConfig  json.RawMessage
	Policy      json.RawMessage
	LastScaleAt time.Time
	// Silent is what SetSilent stored last (zero when never).
	Silent SilentState
}

// SilentState is the part of a Pool's block after silent workers that
// outlives the controller: the workers in a row that reached running and
// never sent a heartbeat (Count, the last one's Cause, the ids already
// counted, the most recent ones only), and the probe launches sent since the
// pool blocked and when the next may go.
type SilentState struct {
	Count     int       `json:"count,omitempty"`
	Cause     string    `json:"cause,omitempty"`
	Counted   []string  `json:"counted,omitempty"`
	Probes    int       `json:"probes,omitempty"`
	NextProbe time.Time `json:"next_probe,omitzero"`
}

// Equal reports whether s and o are the same state.
func (s SilentState) Equal(o SilentState) bool {
	return s.Count == o.Count && s.Cause == o.Cause && slices.Equal(s.Counted, o.Counted) &&
		s.Probes == o.Probes && s.NextProbe.Equal(o.NextProbe)
}

// Reconfiguration is one reconfigure request and its outcome.
type Reconfiguration struct {
	Time  time.Time
	Job   string
	Who   string
	What  json.RawMessage
	Error string
}

// LaunchIDFunc derives a launch id from the decision's sequence number and
// the launch's index within the decision.
type LaunchIDFunc func(seq int64, i int) string

// PendingLaunch is a launch to record together with its decision.
type PendingLaunch struct {
	Count int
	Spec  json.RawMessage
}
