package provisioner

import (
	"context"
	"encoding/json"
	"errors"

	"nightshift"
)

// Driver runs instances. It is the only seam to the outside world that
// creates or destroys anything, so its contract is strict:
//
//   - Launch is idempotent per InstanceSpec.ID: if an instance with that id
//     is already live it returns it instead of starting another. This is
//     what makes retrying a launch after a crash safe (EC2's ClientToken).
//   - Terminate is idempotent: terminating an instance that is already gone
//     returns nil.
//   - List reports every live instance the driver owns for the run,
//     identified by the marker the driver left on it, so orphans can be found
//     without the provisioner's database.
//
// Every call gets a context with a deadline; a driver must return promptly
// once it is done.
type Driver interface {
	Name() string
	Launch(ctx context.Context, spec InstanceSpec) (LaunchResult, error)
	Terminate(ctx context.Context, id string) error
	List(ctx context.Context) ([]Owned, error)
}

// ExitWatcher is implemented by drivers that learn of an instance's end the
// moment it happens, such as a local process exiting. The provisioner then
// records the instance failed at once instead of at its next reconcile, so
// the job's controller replaces it within a tick rather than after the
// heartbeat timeout. Drivers without it are covered by reconcile alone.
type ExitWatcher interface {
	Exits() <-chan Exit
}

// EventualLister is implemented by drivers whose List may miss a live
// instance for a while (EC2's DescribeInstances is eventually consistent).
// The provisioner then fails a record as disappeared only when two
// consecutive lists, at least one reconcile interval apart, both miss it
// (ConfirmDisappeared).
type EventualLister interface {
	ListIsEventual() bool
}

// Locator is implemented by drivers that keep instances in more than one
// place (EC2 regions and endpoints). Before every reconcile the provisioner
// hands it the spec of every job it holds and of every launch with a live
// record, so that List covers every place the ledger names, after a
// restart too, before anything is judged missing. An error stops that
// reconcile: judging from a partial list would fail live workers.
type Locator interface {
	Locate(ctx context.Context, specs []json.RawMessage) error
}

// UIDPicker is implemented by drivers that run instances of some launches
// each under a Unix uid of its own (the local driver when root: systemd's
// DynamicUser, without a passwd entry). The provisioner asks it for the
// uids of a launch's new instances and records them with the launch
// (write-ahead, Instance.WorkerUID), so a retried or recovered launch of
// an instance gets the same uid, and no live record shares one.
type UIDPicker interface {
	// PickUIDs returns n uids for new instances of a launch with spec, none
	// of them held (held returns the uids of every live record) and none
	// the host uses (a passwd entry, a running process, and so on); nil
	// when instances of spec run under no uid of their own.
	// An error wrapping ErrUIDsExhausted fails the launch's instances for
	// good; any other error (a store read, the claims directory, /proc)
	// fails the launch request, which the controller resends.
	PickUIDs(ctx context.Context, spec json.RawMessage, n int, held func() (map[uint32]bool, error)) ([]uint32, error)
}

// ErrUIDsExhausted is what a UIDPicker's error wraps when too few uids of
// its range are free for a launch. Only this error records the launch's
// instances failed: resending the launch would not help until some end,
// while any other pick error is transient and the request is resent.
var ErrUIDsExhausted = errors.New("uid range exhausted")

// Exit says that an instance's process or machine is gone.
type Exit struct {
	ID     string
	Reason string
}

// InstanceSpec is what a driver needs to start one instance.
type InstanceSpec struct {
	ID       string
	Job      string
	LaunchID string
	Run      string
	// Spec is the driver-specific part of the launch request, a JSON object
	// or empty.
	Spec json.RawMessage
	// BrokerURL, when set, is the broker URL with this instance's own
	// credentials (provbus.WorkerUsers); the driver hands it to the
	// instance instead of any run-wide URL. It carries a password.
	BrokerURL string
	// UID, when not 0, is the uid this instance runs as, from UIDPicker
	// and recorded with its launch: the same on every launch of the id.
	UID uint32
}

// LaunchResult describes a started instance. State is the state the
// instance is in once Launch returns; empty means running (drivers without
// a separate contextualisation step start instances ready to work).
type LaunchResult struct {
	Host    string
	Address string
	PID     int
	State   nightshift.InstanceState
	// PrivateIP and PublicIP are the instance's IPv4 addresses where the
	// driver has them (EC2): a job's DNS records hold one of them.
	PrivateIP, PublicIP string
}

// Owned is one live instance a driver found carrying its ownership marker.
type Owned struct {
	Run        string
	Job        string
	InstanceID string
	LaunchID   string
	Host       string
	PID        int
	// PrivateIP and PublicIP as in LaunchResult: an adopted worker's DNS
	// record is repaired from them.
	PrivateIP, PublicIP string
}
