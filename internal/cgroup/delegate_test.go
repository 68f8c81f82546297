package cgroup

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestDelegateRelease: a delegated v1 group is the worker user's (its
// directory and the files that move processes), groups made in it go with
// Release, and a second Release finds nothing. (A sitter using it as that
// user: localworker's TestIsolatedWorkerGetsACgroup.)
func TestDelegateRelease(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("delegating needs root")
	}
	run := "nightshift-workers/t" + strconv.Itoa(os.Getpid())
	prefix := run + "/i-1"
	mode, err := Delegate(DefaultRoot, prefix, 4242, 4243)
	if err != nil || mode == "" {
		t.Skipf("no cgroup v1 hierarchy to delegate here (%q, %v)", mode, err)
	}
	t.Cleanup(func() { _ = Release(context.Background(), DefaultRoot, run, time.Second) })
	for _, ctl := range []string{"cpu", "memory"} {
		for _, p := range []string{"", "cgroup.procs", "tasks"} {
			fi, err := os.Stat(filepath.Join(DefaultRoot, ctl, prefix, p))
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != 4242 || st.Gid != 4243 {
				t.Errorf("%s/%s: owned by %d:%d, want 4242:4243", ctl, p, st.Uid, st.Gid)
			}
		}
	}
	// A group made inside it (as the sitter does) goes with Release.
	for _, ctl := range []string{"cpu", "memory"} {
		if err := os.Mkdir(filepath.Join(DefaultRoot, ctl, prefix, "task.1"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := Release(context.Background(), DefaultRoot, run, time.Second); err != nil {
		t.Fatal(err)
	}
	for _, ctl := range []string{"cpu", "memory"} {
		if _, err := os.Stat(filepath.Join(DefaultRoot, ctl, run)); !os.IsNotExist(err) {
			t.Errorf("%s: the run's groups left after Release: %v", ctl, err)
		}
	}
	if err := Release(context.Background(), DefaultRoot, run, time.Second); err != nil {
		t.Errorf("second Release: %v", err)
	}
	if _, err := Delegate(DefaultRoot, "../x", 1, 1); err == nil {
		t.Error("Delegate took a prefix with ..")
	}
}
