package sitter_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nightshift/sitter"
)

// procIDs returns the real uid and gid of pid from /proc/<pid>/status.
func procIDs(t *testing.T, pid int) (uid, gid string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "Uid:" {
			uid = f[1]
		}
		if len(f) >= 2 && f[0] == "Gid:" {
			gid = f[1]
		}
	}
	return uid, gid
}

func TestRunAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	name := fmt.Sprintf("nstest-%06d", rand.IntN(1_000_000))
	if out, err := exec.Command("useradd", "-M", "-r", name).CombinedOutput(); err != nil {
		t.Skipf("useradd unavailable: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v %s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	worker := `echo busy > "$NIGHTSHIFT_STATUS_FILE.tmp" && mv "$NIGHTSHIFT_STATUS_FILE.tmp" "$NIGHTSHIFT_STATUS_FILE"; exec sleep 300`
	// Task users must be able to traverse to their status dir; t.TempDir's
	// parent is 0700.
	stateDir := t.TempDir()
	if err := os.Chmod(filepath.Dir(stateDir), 0o711); err != nil {
		t.Fatal(err)
	}
	h := start(t, sitter.Config{StateDir: stateDir}, sitter.Task{Name: "asuser", User: name, Shell: worker, StopGrace: dur(time.Second)},
		sitter.Task{Name: "nouser", User: name + "-missing", Command: []string{"true"}, Restart: sitter.RestartNever})
	// The worker can write its status file only if its dir is its own.
	ts := h.waitTask(t, "asuser", 5*time.Second, "busy", func(ts sitter.TaskStatus) bool { return ts.Work == sitter.WorkBusy })
	uid, gid := procIDs(t, ts.PID)
	if uid != u.Uid || gid != u.Gid {
		t.Errorf("task runs as uid %s gid %s, want %s %s", uid, gid, u.Uid, u.Gid)
	}
	bad := h.waitTask(t, "nouser", 5*time.Second, "failed", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateFailed })
	if !strings.Contains(bad.Reason, `user "`+name+`-missing"`) {
		t.Errorf("reason %q does not name the missing user", bad.Reason)
	}
}
