package app

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"nightshift/internal/testsupport"
)

// TestLockRun: a second holder is refused with ErrRunBusy naming the
// first; after release, or after the holder is killed, the run is free.
func TestLockRun(t *testing.T) {
	home := t.TempDir()
	release, err := LockRun(home, "r1", "launch")
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockRun(home, "r1", "teardown")
	if !errors.Is(err, ErrRunBusy) || !strings.Contains(err.Error(), "launch (pid ") {
		t.Fatalf("second lock: %v, want ErrRunBusy naming the launch", err)
	}
	other, err := LockRun(home, "r2", "launch")
	if err != nil {
		t.Fatalf("another run is not busy: %v", err)
	}
	other()
	release()
	again, err := LockRun(home, "r1", "teardown")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	again()
}

// TestLockRunDiesWithHolder: a holder killed with SIGKILL leaves the run
// free (flock, not a pid file that would need cleaning up).
func TestLockRunDiesWithHolder(t *testing.T) {
	home := t.TempDir()
	// The holder is this test binary, re-run as lockHolder below.
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHolder$")
	cmd.Env = append(os.Environ(), "NIGHTSHIFT_TEST_LOCK_HOME="+home)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testsupport.Eventually(t, 10*time.Second, func() error {
		release, err := LockRun(home, "r", "teardown")
		if err == nil {
			release() // the helper has not taken it yet: give it back
			return errors.New("lock never seen held by the helper")
		}
		if !errors.Is(err, ErrRunBusy) {
			t.Fatalf("lock never seen held by the helper: %v", err)
		}
		if !strings.Contains(err.Error(), "holder (pid ") {
			t.Errorf("busy error does not name the holder: %v", err)
		}
		return nil
	})
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	release, err := LockRun(home, "r", "launch")
	if err != nil {
		t.Fatalf("still busy after the holder was killed: %v", err)
	}
	release()
}

// TestLockHolder is the helper process of TestLockRunDiesWithHolder.
func TestLockHolder(t *testing.T) {
	home := os.Getenv("NIGHTSHIFT_TEST_LOCK_HOME")
	if home == "" {
		t.Skip("helper process only")
	}
	if _, err := LockRun(home, "r", "holder"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Minute)
}
