package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"nightshift/bootlevel"
	"nightshift/mgmt"
)

// sighupPlan boots "first" in level 1 and "slow" in level 2. Each boot
// counts itself in <name>.boots beside the plan; while <name>.block
// exists, it marks <name>.started and blocks, so a test can stop the
// launch in the middle of a known step.
const sighupPlan = `name = "hup"
[defaults]
ready_interval = "100ms"
[[level]]
[level.service.first]
boot = ["./boot.sh", "${global.plan_dir}/first"]
ready = ["true"]
[[level]]
[level.service.slow]
boot = ["./boot.sh", "${global.plan_dir}/slow"]
ready = ["true"]
`

const sighupBoot = `#!/bin/sh
echo x >> "$1.boots"
[ -e "$1.block" ] || exit 0
touch "$1.started"
exec sleep 300
`

func lines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// TestSIGHUPInterruptsAndALaterLaunchResumes kills a real launch with
// SIGHUP, as a lost terminal does, in the middle of level 2's boot step.
// The run must be recorded as interrupted, say it was in step boot of
// service slow in level 2, and a later launch must resume it: level 1 is
// not booted again, slow is.
func TestSIGHUPInterruptsAndALaterLaunchResumes(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "launch")
	if out, err := exec.Command("go", "build", "-o", bin, "nightshift/cmd/launch").CombinedOutput(); err != nil {
		t.Fatalf("build launch: %v\n%s", err, out)
	}
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	for name, body := range map[string]string{"plan.toml": sighupPlan, "boot.sh": sighupBoot} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	block := filepath.Join(dir, "slow.block")
	if err := os.WriteFile(block, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "--home", home, "--plain", filepath.Join(dir, "plan.toml"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never happened; stdout:\n%s\nstderr:\n%s", what, stdout.String(), stderr.String())
			}
		}
	}
	exists := func(p string) func() bool {
		return func() bool { _, err := os.Stat(p); return err == nil }
	}
	waitFor("slow blocked in its boot step", exists(filepath.Join(dir, "slow.started")))

	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err == nil {
			t.Fatal("launch exited 0 after SIGHUP")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("launch did not stop after SIGHUP")
	}
	for _, want := range []string{
		"run hup interrupted (hangup signal received) in level 2: service slow in step boot",
		"resume: launch --home " + home + " --name hup",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}

	code, out, errOut := run(t, mgmtc, "--home", home, "status", "--json", "hup")
	if code != 3 { // an interrupted run is not ready
		t.Fatalf("mgmt status: exit %d: %s", code, errOut)
	}
	var st mgmt.RunStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, out)
	}
	if st.State != string(bootlevel.RunInterrupted) {
		t.Errorf("run state %q after SIGHUP, want %q:\n%s", st.State, bootlevel.RunInterrupted, out)
	}

	// Resume: slow may now finish booting.
	if err := os.Remove(block); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run(t, launch, "--home", home, "--plain", filepath.Join(dir, "plan.toml"))
	if code != 0 {
		t.Fatalf("resuming launch: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "run hup is ready") {
		t.Errorf("resume output:\n%s", out)
	}
	if n := lines(t, filepath.Join(dir, "first.boots")); n != 1 {
		t.Errorf("first booted %d times; a resume must not boot a ready service again", n)
	}
	if n := lines(t, filepath.Join(dir, "slow.boots")); n != 2 {
		t.Errorf("slow booted %d times, want 2 (interrupted, then resumed)", n)
	}
	t.Cleanup(func() { run(t, mgmtc, "--home", home, "teardown", "hup") })
}
