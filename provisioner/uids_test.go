package provisioner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"nightshift"
	"nightshift/provisioner"
	"nightshift/provisioner/provisionertest"
)

// uidDriver is the fake driver with a uid of its own per instance: the
// lowest of 100-199 not held, and the uid each launch of an id was given.
type uidDriver struct {
	*provisionertest.Driver
	mu   sync.Mutex
	uids map[string][]uint32
	last uint32 // highest uid to hand out; 0 means 199
	// pickErr, if set, is what PickUIDs fails with (a transient error).
	pickErr error
	picks   int // PickUIDs calls
}

func (d *uidDriver) PickUIDs(_ context.Context, _ json.RawMessage, n int, heldBy func() (map[uint32]bool, error)) ([]uint32, error) {
	d.mu.Lock()
	d.picks++
	pickErr := d.pickErr
	d.mu.Unlock()
	if pickErr != nil {
		return nil, pickErr
	}
	held, err := heldBy()
	if err != nil {
		return nil, err
	}
	last := d.last
	if last == 0 {
		last = 199
	}
	var out []uint32
	for u := uint32(100); u <= last && len(out) < n; u++ {
		if !held[u] {
			out = append(out, u)
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("uids 100-%d: %d free, %d wanted: %w", last, len(out), n, provisioner.ErrUIDsExhausted)
	}
	return out, nil
}

func (d *uidDriver) Launch(ctx context.Context, spec provisioner.InstanceSpec) (provisioner.LaunchResult, error) {
	d.mu.Lock()
	d.uids[spec.ID] = append(d.uids[spec.ID], spec.UID)
	d.mu.Unlock()
	return d.Driver.Launch(ctx, spec)
}

func (d *uidDriver) launchedWith(id string) []uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]uint32(nil), d.uids[id]...)
}

// TestWorkerUIDsAreRecordedReusedAndFreed: each instance's own uid is
// chosen and recorded with its launch, before the driver runs anything;
// a provisioner restarted before the driver call launches the instance
// under the recorded uid; no two live instances share one; a terminated
// instance's uid goes to the next launch.
func TestWorkerUIDsAreRecordedReusedAndFreed(t *testing.T) {
	var drv *uidDriver
	h := newHarness(t, func(c *provisioner.Config) {
		drv = &uidDriver{Driver: c.Driver.(*provisionertest.Driver), uids: map[string][]uint32{}}
		c.Driver = drv
	})
	// Recorded, then the "crash": nothing ran yet.
	insts := h.launch("L1", "web", 2)
	a, b := insts[0], insts[1]
	if a.WorkerUID != 100 || b.WorkerUID != 101 {
		t.Fatalf("recorded uids %d, %d; want 100, 101", a.WorkerUID, b.WorkerUID)
	}
	if got := h.get(a.ID).WorkerUID; got != 100 {
		t.Fatalf("ledger holds uid %d for %s, want 100", got, a.ID)
	}
	if n := drv.Launches(a.ID); n != 0 {
		t.Fatalf("driver launched %s %d times before the restart", a.ID, n)
	}
	h.restart()
	h.idle()
	for _, in := range []provisioner.Instance{a, b} {
		if got := drv.launchedWith(in.ID); len(got) != 1 || got[0] != in.WorkerUID {
			t.Errorf("%s launched with uids %v, want [%d] recorded before the restart", in.ID, got, in.WorkerUID)
		}
	}
	// Another job's launch takes none that a live instance holds.
	c := h.launch("L2", "db", 1)[0]
	if c.WorkerUID != 102 {
		t.Errorf("db's instance got uid %d, want 102", c.WorkerUID)
	}
	h.idle()
	if _, err := h.p.Terminate(context.Background(), []string{a.ID}); err != nil {
		t.Fatal(err)
	}
	h.idle()
	d := h.launch("L3", "web", 1)[0]
	if d.WorkerUID != a.WorkerUID {
		t.Errorf("after %s terminated the next instance got uid %d, want its %d", a.ID, d.WorkerUID, a.WorkerUID)
	}
}

// TestLaunchWithoutWorkerUIDsFails: when the driver cannot give a launch's
// instances uids of their own (its range is exhausted), they are recorded
// failed with the picker's reason, announced, and never handed to the
// driver, which would otherwise have nothing but a shared identity to run
// them under; the ledger frees nothing it did not hold.
func TestLaunchWithoutWorkerUIDsFails(t *testing.T) {
	var drv *uidDriver
	h := newHarness(t, func(c *provisioner.Config) {
		drv = &uidDriver{Driver: c.Driver.(*provisionertest.Driver), uids: map[string][]uint32{}, last: 101}
		c.Driver = drv
	})
	h.start()
	ok := h.launch("L1", "web", 2) // takes 100 and 101, the whole range
	h.idle()
	insts := h.launch("L2", "web", 1)
	h.idle()
	in := h.get(insts[0].ID)
	if in.State != nightshift.StateFailed || !strings.Contains(in.Reason, "uids 100-101: 0 free, 1 wanted") {
		t.Errorf("instance without a uid is %s (%q); want failed, saying the range is exhausted", in.State, in.Reason)
	}
	if insts[0].State != nightshift.StateFailed {
		t.Errorf("Launch returned the instance %s; want failed", insts[0].State)
	}
	if got := drv.launchedWith(in.ID); len(got) != 0 || drv.Launches(in.ID) != 0 {
		t.Errorf("the driver was asked to launch %s (uids %v); want never", in.ID, got)
	}
	if !h.events.has(provisioner.EventKey(in)) {
		t.Errorf("the failure of %s was not announced", in.ID)
	}
	// The live ones keep their uids; once one ends, its uid serves again.
	if _, err := h.p.Terminate(context.Background(), []string{ok[0].ID}); err != nil {
		t.Fatal(err)
	}
	h.idle()
	if again := h.launch("L3", "web", 1)[0]; again.State != nightshift.StateRequested || again.WorkerUID != ok[0].WorkerUID {
		t.Errorf("after %s ended the next instance is %s with uid %d; want requested with %d", ok[0].ID, again.State, again.WorkerUID, ok[0].WorkerUID)
	}
}

// TestLaunchUIDPickErrorIsResent: an error picking uids that is not the
// range running out (a store read, the claims directory, /proc) fails the
// launch request, recording nothing, so the controller's resend launches
// the instances; it does not fail them for good.
func TestLaunchUIDPickErrorIsResent(t *testing.T) {
	var drv *uidDriver
	h := newHarness(t, func(c *provisioner.Config) {
		drv = &uidDriver{Driver: c.Driver.(*provisionertest.Driver), uids: map[string][]uint32{},
			pickErr: errors.New("claims: input/output error")}
		c.Driver = drv
	})
	h.start()
	req := provisionertest.Launch(h.cfg.Jobs, "L1", "web", 2)
	if insts, err := h.p.Launch(context.Background(), req); err == nil || !strings.Contains(err.Error(), "input/output error") {
		t.Fatalf("Launch with a failing uid pick = %v, %v; want the pick's error", insts, err)
	}
	if _, err := h.store.Launch(context.Background(), "L1"); !errors.Is(err, provisioner.ErrNotFound) {
		t.Fatalf("launch L1 after a transient pick error: %v; want not recorded", err)
	}
	drv.mu.Lock()
	drv.pickErr = nil
	drv.mu.Unlock()
	insts := h.launch("L1", "web", 2) // the controller's resend
	h.idle()
	for _, in := range insts {
		if got := h.get(in.ID); got.State == nightshift.StateFailed || got.WorkerUID == 0 {
			t.Errorf("resent launch's %s is %s (%q) with uid %d; want launched under a uid of its own", in.ID, got.State, got.Reason, got.WorkerUID)
		}
	}
}

// TestResentLaunchPicksNoUIDs: a resend of a launch already recorded
// returns its instances without picking uids again: with the range full a
// pick would fail (and log a launch failure that did not happen), and a
// real picker would take claims for nothing.
func TestResentLaunchPicksNoUIDs(t *testing.T) {
	var drv *uidDriver
	h := newHarness(t, func(c *provisioner.Config) {
		drv = &uidDriver{Driver: c.Driver.(*provisionertest.Driver), uids: map[string][]uint32{}, last: 101}
		c.Driver = drv
	})
	h.start()
	first := h.launch("L1", "web", 2) // takes 100 and 101, the whole range
	h.idle()
	again := h.launch("L1", "web", 2)
	drv.mu.Lock()
	picks := drv.picks
	drv.mu.Unlock()
	if picks != 1 {
		t.Errorf("PickUIDs ran %d times for one launch and its resend; want once", picks)
	}
	for k, in := range again {
		if in.ID != first[k].ID || in.State == nightshift.StateFailed || in.WorkerUID != first[k].WorkerUID {
			t.Errorf("resend returned %s %s (%q) uid %d; want %s as recorded, uid %d", in.ID, in.State, in.Reason, in.WorkerUID, first[k].ID, first[k].WorkerUID)
		}
	}
}
