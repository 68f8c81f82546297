package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/testsupport"
)

// TestStatusExitCode: `sitter status` exits 0 while every task runs and 3
// once one has failed, so a check can rely on the code alone.
func TestStatusExitCode(t *testing.T) {
	bin := buildSitter(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	tasks := filepath.Join(dir, "tasks.toml")
	flag := filepath.Join(dir, "fail")
	src := fmt.Sprintf("sample_interval = \"100ms\"\n[[task]]\nname = \"up\"\nshell = \"sleep 300\"\n"+
		"[[task]]\nname = \"flaky\"\nrestart = \"never\"\nshell = \"while [ ! -e %s ]; do sleep 0.1; done; exit 1\"\n", flag)
	if err := os.WriteFile(tasks, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--cgroup", "off", "--state-dir", state, tasks)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	status := func() (int, string) {
		var out, errb bytes.Buffer
		code := run([]string{"status", "--state-dir", state}, &out, &errb)
		return code, out.String() + errb.String()
	}
	testsupport.Eventually(t, 15*time.Second, func() error {
		if code, out := status(); code != 0 {
			return fmt.Errorf("status exit %d while both tasks run:\n%s", code, out)
		}
		return nil
	})
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, 15*time.Second, func() error {
		if code, out := status(); code != 3 {
			return fmt.Errorf("status exit %d with a failed task, want 3:\n%s", code, out)
		}
		return nil
	})
	var out, errb bytes.Buffer
	if code := run([]string{"status", "--json", "--state-dir", state}, &out, &errb); code != 3 || !bytes.Contains(out.Bytes(), []byte(`"failed"`)) {
		t.Errorf("status --json with a failed task: exit %d, want 3\n%s%s", code, out.String(), errb.String())
	}
}
