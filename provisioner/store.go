package provisioner

import (
	"context"
	"encoding/json"
	"time"

	"nightshift"
)

// Store keeps launches and instance records durably. internal/store/provstore is
// the SQLite implementation. All methods are safe for concurrent use.
type Store interface {
	// CreateLaunch atomically records a launch and its instances. If the
	// launch id is already recorded it writes nothing and returns the
	// existing instances with created=false.
	CreateLaunch(ctx context.Context, l Launch, insts []Instance) (existing []Instance, created bool, err error)
	// Launch returns a recorded launch or an error wrapping ErrNotFound.
	Launch(ctx context.Context, launchID string) (Launch, error)
	// Instance returns one record with its history or an error wrapping
	// ErrNotFound.
	Instance(ctx context.Context, id string) (Instance, error)
	// Instances lists records, oldest first.
	Instances(ctx context.Context, f Filter) ([]Instance, error)
	// UpdateInstance stores inst, whose last History entry is new, only if
	// the stored state is still prev; otherwise it returns an error wrapping
	// ErrConflict.
	UpdateInstance(ctx context.Context, inst Instance, prev nightshift.InstanceState) error
	// UpdateInstances stores many updates in one transaction (a group
	// commit: one commit for a burst of transitions instead of one each),
	// in order, each exactly as UpdateInstance would. An update whose
	// stored state is no longer its Prev is skipped and reported in its
	// slot of conflicts (an error wrapping ErrConflict); the others are
	// written. conflicts has one slot per update, nil when written. Any
	// other failure writes nothing and is returned as err.
	UpdateInstances(ctx context.Context, ups []Update) (conflicts []error, err error)
	// SetHealths stores the controller's word on the health of job's
	// workers (Instance.Health), health by instance id, in one
	// transaction and without history entries (health is no state). A
	// record is written only if it is still a running worker of job and
	// its health differs: ids of another job, of no record, or of a worker
	// that left running meanwhile are stale news, skipped. It returns the
	// ids it wrote, sorted. A failure writes nothing.
	SetHealths(ctx context.Context, job string, healths map[string]string) (set []string, err error)
	// Disabled reports the flag terminate_all sets and enable clears.
	Disabled(ctx context.Context) (bool, error)
	SetDisabled(ctx context.Context, disabled bool) error
	// PutRevision records a revision of a job's worker spec handed over by
	// Revise; one already recorded (same job and digest) is left as it
	// is. Kept durably so a provisioner restarted mid-rollout, or a
	// standby replica taking over, still launches it.
	PutRevision(ctx context.Context, r Revision) error
	// Revision returns the recorded revision of job with digest, or an
	// error wrapping ErrNotFound.
	Revision(ctx context.Context, job, digest string) (Revision, error)
}

// Revision is a revision of a job's worker spec as the provisioner's
// ledger keeps it: Spec is the jobspec.Spec as JSON, Digest its digest.
type Revision struct {
	Job     string          `json:"job"`
	Digest  string          `json:"digest"`
	Spec    json.RawMessage `json:"spec"`
	Created time.Time       `json:"created"`
}

// Update is one compare-and-set write of UpdateInstances: Instance, whose
// last History entry is new, replaces the record if it is still in Prev.
type Update struct {
	Instance Instance
	Prev     nightshift.InstanceState
}

// Filter selects instance records; zero fields match everything.
type Filter struct {
	Job      string
	LaunchID string
	LiveOnly bool
	IDs      []string
}

// Events announces state changes. The AMQP glue publishes each Instance as
// an event with routing key EventKey(inst). Publishing is best effort: the
// Store is the truth and describe can always be polled.
type Events interface {
	InstanceChanged(ctx context.Context, inst Instance) error
}

// EventKey is the routing key of an instance event.
func EventKey(inst Instance) string {
	return "instance." + inst.Job + "." + string(inst.State)
}

type noEvents struct{}

func (noEvents) InstanceChanged(context.Context, Instance) error { return nil }
