package localworker

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// TestPlanServicesAreNeverTakenForInstances: the boot engine gives plan
// services (the broker, the daemons, a user's daemons) NIGHTSHIFT_HOME,
// NIGHTSHIFT_RUN and NIGHTSHIFT_INSTANCE_ID too. A provisioner that listed
// them as orphaned instances would terminate its own broker.
func TestPlanServicesAreNeverTakenForInstances(t *testing.T) {
	home := t.TempDir()
	cmd := exec.Command("sleep", "60")
	cmd.Env = append(os.Environ(), "NIGHTSHIFT_HOME="+home, "NIGHTSHIFT_RUN=r1", "NIGHTSHIFT_INSTANCE_ID=local")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // a daemon leads its own session, as instances do
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	t.Cleanup(func() { cmd.Process.Kill() })

	owned, err := ListOwned(home, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(owned) != 0 {
		t.Fatalf("a plan service was listed as an instance: %+v", owned)
	}
	killed, err := Sweep(context.Background(), home, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(killed) != 0 {
		t.Fatalf("sweep killed a plan service: %v", killed)
	}
	if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
		t.Fatalf("plan service process is gone: %v", err)
	}
}
