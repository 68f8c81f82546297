package provisioner_test

import (
	"fmt"
	"testing"
	"time"

	"nightshift"
	"nightshift/internal/testsupport"
	"nightshift/provisioner"
	"nightshift/provisioner/provisionertest"
)

// exitingDriver is the fake driver with exit reports, as the local driver
// sends them when an instance's leader process ends.
type exitingDriver struct {
	*provisionertest.Driver
	exits chan provisioner.Exit
}

func (d *exitingDriver) Exits() <-chan provisioner.Exit { return d.exits }

// When an instance's leader exits on its own, the instance is recorded as
// failed and whatever is left of it is terminated at once, not at the
// next reconcile: a local sitter killed with -9 leaves its task running in
// a process group of its own, and an idle worker would otherwise go on
// taking work with nobody supervising it.
func TestExitedInstanceIsCleanedUpAtOnce(t *testing.T) {
	drv := &exitingDriver{exits: make(chan provisioner.Exit, 1)}
	h := newHarness(t, func(c *provisioner.Config) {
		drv.Driver = c.Driver.(*provisionertest.Driver)
		c.Driver = drv
	})
	h.start()
	insts := h.launch("L1", "web", 2)
	h.idle()
	gone, kept := insts[0].ID, insts[1].ID
	drv.exits <- provisioner.Exit{ID: gone, Reason: "process signal: killed"}
	testsupport.Eventually(t, 10*time.Second, func() error {
		if st := h.get(gone).State; st != nightshift.StateFailed {
			return fmt.Errorf("%s is %s, want failed", gone, st)
		}
		if n := drv.Terminations(gone); n != 1 {
			return fmt.Errorf("%s terminated %d times, want 1", gone, n)
		}
		return nil
	})
	if n := drv.Terminations(kept); n != 0 {
		t.Errorf("%s, which did not exit, was terminated %d times", kept, n)
	}
	if got := h.get(kept).State; got != nightshift.StateRunning {
		t.Errorf("%s is %s, want running", kept, got)
	}
}
