// Package provisionertest provides an in-memory provisioner.Driver for tests
// and benchmarks: instances become running at once, and tests can inject
// failures, block launches, or plant and remove instances behind the
// provisioner's back to simulate crashes and vanished machines.
package provisionertest

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"nightshift/provisioner"
)

// Driver is a scriptable in-memory driver. The zero value is not usable;
// call NewDriver.
type Driver struct {
	run string

	mu       sync.Mutex
	live     map[string]provisioner.Owned
	launches map[string]int // launch calls per instance id
	terms    map[string]int
	seq      int // addresses handed out

	// LaunchErr, if set, decides the error of each Launch call.
	LaunchErr func(spec provisioner.InstanceSpec) error
	// TerminateErr, if set, decides the error of each Terminate call.
	TerminateErr func(id string) error
	// BeforeLaunch, if set, runs at the start of every Launch; tests block
	// in it to hold a launch in flight.
	BeforeLaunch func(ctx context.Context, spec provisioner.InstanceSpec) error
}

var _ provisioner.Driver = (*Driver)(nil)

// NewDriver returns a driver whose instances belong to run.
func NewDriver(run string) *Driver {
	return &Driver{run: run, live: map[string]provisioner.Owned{}, launches: map[string]int{}, terms: map[string]int{}}
}

// Name implements provisioner.Driver.
func (d *Driver) Name() string { return "fake" }

// Launch implements provisioner.Driver; it is idempotent per id.
func (d *Driver) Launch(ctx context.Context, spec provisioner.InstanceSpec) (provisioner.LaunchResult, error) {
	if d.BeforeLaunch != nil {
		if err := d.BeforeLaunch(ctx, spec); err != nil {
			return provisioner.LaunchResult{}, err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.launches[spec.ID]++
	if d.LaunchErr != nil {
		if err := d.LaunchErr(spec); err != nil {
			return provisioner.LaunchResult{}, err
		}
	}
	o, ok := d.live[spec.ID]
	if !ok {
		d.seq++
		o = provisioner.Owned{Run: spec.Run, Job: spec.Job, InstanceID: spec.ID, LaunchID: spec.LaunchID,
			Host: "fake-host", PID: 1000 + len(d.live),
			// A new address per instance, as a cloud gives a replacement.
			PrivateIP: fmt.Sprintf("10.0.%d.%d", d.seq/250, d.seq%250+1), PublicIP: fmt.Sprintf("198.51.%d.%d", d.seq/250, d.seq%250+1)}
		d.live[spec.ID] = o
	}
	return provisioner.LaunchResult{Host: o.Host, PID: o.PID, PrivateIP: o.PrivateIP, PublicIP: o.PublicIP}, nil
}

// Terminate implements provisioner.Driver.
func (d *Driver) Terminate(ctx context.Context, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.terms[id]++
	if d.TerminateErr != nil {
		if err := d.TerminateErr(id); err != nil {
			return err
		}
	}
	delete(d.live, id)
	return nil
}

// List implements provisioner.Driver.
func (d *Driver) List(ctx context.Context) ([]provisioner.Owned, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]provisioner.Owned, 0, len(d.live))
	for _, o := range d.live {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].InstanceID < out[j].InstanceID })
	return out, nil
}

// Plant makes an instance exist as if a launch had created it.
func (d *Driver) Plant(o provisioner.Owned) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if o.Run == "" {
		o.Run = d.run
	}
	d.live[o.InstanceID] = o
}

// Vanish removes an instance without telling anyone, like a VM that died.
func (d *Driver) Vanish(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.live, id)
}

// Live reports the ids of live instances, sorted.
func (d *Driver) Live() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.live))
	for id := range d.live {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Launches counts Launch calls for id.
func (d *Driver) Launches(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.launches[id]
}

// Terminations counts Terminate calls for id.
func (d *Driver) Terminations(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.terms[id]
}

// String summarises the driver for test failure messages.
func (d *Driver) String() string { return fmt.Sprintf("fake driver live=%v", d.Live()) }
