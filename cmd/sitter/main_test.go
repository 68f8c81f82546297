package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/process"
	"nightshift/internal/testsupport"
	"nightshift/sitter"
)

func buildSitter(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sitter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// procTable maps pid to (ppid, pgid) for every live, non-zombie process.
func procTable(t *testing.T) map[int][2]int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][2]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		st, err := process.ParseStat(b)
		if err != nil || st.Zombie() {
			continue
		}
		out[pid] = [2]int{st.PPID, st.PGID}
	}
	return out
}

func descendants(t *testing.T, root int) map[int]bool {
	procs := procTable(t)
	kids := map[int][]int{}
	for pid, pp := range procs {
		kids[pp[0]] = append(kids[pp[0]], pid)
	}
	out := map[int]bool{}
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, k := range kids[p] {
			if !out[k] {
				out[k] = true
				queue = append(queue, k)
			}
		}
	}
	return out
}

func TestRunStatusAndSIGTERM(t *testing.T) {
	bin := buildSitter(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	tasks := filepath.Join(dir, "tasks.toml")
	err := os.WriteFile(tasks, []byte(`
sample_interval = "100ms"
[[task]]
name = "family"
shell = "sleep 300 & sleep 300 & wait"
mem = 64
[[task]]
name = "stubborn"
shell = 'trap "" TERM; sleep 300 & wait'
stop_grace = "500ms"
[[task]]
name = "nested"
shell = "sh -c 'sleep 300 & wait' & wait"
cpu = 0.5
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "run", "--state-dir", state, tasks)
	cmd.Stderr = &logs
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
		if t.Failed() {
			t.Logf("sitter log:\n%s", logs.String())
		}
	})

	// status over the control socket, from "another shell".
	var st sitter.Status
	testsupport.Eventually(t, 15*time.Second, func() error {
		out, err := exec.Command(bin, "status", "--json", "--state-dir", state).Output()
		if err != nil || json.Unmarshal(out, &st) != nil || len(st.Tasks) != 3 || !allRunning(st) {
			return fmt.Errorf("status never showed 3 running tasks: %s %v", out, err)
		}
		return nil
	})
	table, err := exec.Command(bin, "status", "--state-dir", state).Output()
	if err != nil || !strings.Contains(string(table), "family") || !strings.Contains(string(table), "limits: ") {
		t.Errorf("status table: %s %v", table, err)
	}
	if out, err := exec.Command(bin, "stop", "--state-dir", state, "nope").CombinedOutput(); err == nil || !strings.Contains(string(out), "no such task") {
		t.Errorf("stop of unknown task: %s %v", out, err)
	}

	// Wait until every task has its children, then remember them all.
	var desc map[int]bool
	testsupport.Eventually(t, 10*time.Second, func() error {
		desc = descendants(t, cmd.Process.Pid)
		if len(desc) < 8 { // 3 leaders, 2+1+2 sleeps, 1 inner shell
			return fmt.Errorf("only %d descendants: %v", len(desc), desc)
		}
		return nil
	})
	groups := map[int]bool{}
	for _, ts := range st.Tasks {
		groups[ts.PID] = true
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("sitter exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sitter did not exit after SIGTERM")
	}
	// The exit must not leave anything behind: no former descendant and no
	// member of a task's process group.
	testsupport.Eventually(t, 5*time.Second, func() error {
		var left []string
		for pid, pp := range procTable(t) {
			if desc[pid] || groups[pp[1]] {
				left = append(left, fmt.Sprint(pid))
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("processes left after SIGTERM: %v", left)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(state, "sitter.sock")); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
	if st.LimitMode != "polling" {
		prefix := fmt.Sprintf("nightshift/sitter-%d", cmd.Process.Pid)
		for _, ctl := range []string{"memory", "cpu"} {
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", ctl, prefix)); !os.IsNotExist(err) {
				t.Errorf("cgroup %s/%s left behind: %v", ctl, prefix, err)
			}
		}
	}
}

func allRunning(st sitter.Status) bool {
	for _, ts := range st.Tasks {
		if ts.State != sitter.StateRunning {
			return false
		}
	}
	return true
}

func TestUsageErrors(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "Usage:") {
		t.Errorf("no args: code %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[[task]]\nname = \"a\"\ncommand = [\"true\"]\ncpu = -2\n"), 0o644)
	if code := run([]string{"run", "--state-dir", t.TempDir(), bad}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "bad.toml:4: task a: cpu") {
		t.Errorf("bad file: code %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"status", "--state-dir", t.TempDir()}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "is the sitter running") {
		t.Errorf("status without sitter: code %d, stderr %q", code, errb.String())
	}
}

// TestHelpAndVersion: every form of help is on stdout with exit 0 and
// names the arguments; --version names the build.
func TestHelpAndVersion(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"Commands:", "agent", "run", "status", "Exit codes:"}},
		{[]string{"-h"}, []string{"Commands:"}},
		{[]string{"help"}, []string{"Commands:"}},
		{[]string{"run", "--help"}, []string{"sitter run TASKS.toml", "Examples:", "--cgroup", "--state-dir"}},
		{[]string{"help", "tail"}, []string{"sitter tail TASK", "--lines"}},
		{[]string{"stop", "-h"}, []string{"sitter stop TASK"}},
		{[]string{"status", "--help"}, []string{"exits 0 when every task is running"}},
		{[]string{"agent", "--help"}, []string{"usage: sitter agent", "-instance", "Exit codes:"}},
		{[]string{"--version"}, []string{"sitter ", "commit"}},
	} {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != 0 || errb.Len() != 0 {
			t.Errorf("%q: exit %d, stderr %q; want 0 and an empty stderr", c.args, code, errb.String())
		}
		for _, w := range c.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%q: stdout lacks %q:\n%s", c.args, w, out.String())
			}
		}
	}
	// Flags after the arguments, and usage errors.
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"tail", "web", "-n", "5", "--state-dir", t.TempDir()}, 1, "is the sitter running"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"tail"}, 2, "want TASK, got 0"},
		{[]string{"status", "--bogus"}, 2, "unknown flag: --bogus"},
	} {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != c.code || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", c.args, code, errb.String(), c.code, c.want)
		}
	}
}

// TestRestartAfterKill9 kills the sitter with SIGKILL (it cannot clean up)
// and checks that the next sitter on the same state dir kills what the
// first one left before starting the tasks again.
func TestRestartAfterKill9(t *testing.T) {
	bin := buildSitter(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	tasks := filepath.Join(dir, "tasks.toml")
	if err := os.WriteFile(tasks, []byte("sample_interval = \"100ms\"\n[[task]]\nname = \"fam\"\nshell = \"sleep 300 & wait\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startSitter := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--cgroup", "off", "--state-dir", state, tasks)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
		return cmd
	}
	waitFamily := func(sitterPID int) map[int]bool {
		var d map[int]bool
		testsupport.Eventually(t, 10*time.Second, func() error {
			if d = descendants(t, sitterPID); len(d) < 2 {
				return fmt.Errorf("task and child never appeared: descendants %v", d)
			}
			return nil
		})
		return d
	}
	first := startSitter()
	orphans := waitFamily(first.Process.Pid)
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	for pid := range orphans {
		if _, ok := procTable(t)[pid]; !ok {
			t.Fatalf("pid %d died with the sitter; the test needs it orphaned", pid)
		}
	}
	second := startSitter()
	waitFamily(second.Process.Pid)
	testsupport.Eventually(t, 5*time.Second, func() error {
		var left []int
		procs := procTable(t)
		for pid := range orphans {
			if _, ok := procs[pid]; ok {
				left = append(left, pid)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("orphans of the killed sitter still alive: %v", left)
		}
		return nil
	})
}

// TestShownLinesEscapeTaskOutput: `sitter tail` shows what a task printed
// escaped, one line per line, without URL passwords.
func TestShownLinesEscapeTaskOutput(t *testing.T) {
	got := shownLines([]string{"a\x1b[2J\r", "amqp://u:pw@h/ \u202e"})
	want := "a\\x1b[2J\\r\namqp://u:xxxxx@h/ \\u202e"
	if got != want {
		t.Fatalf("shownLines = %q, want %q", got, want)
	}
}

// TestSecondSitterOnOneStateDirIsRefused runs two real sitters on one state
// dir. The second must exit at once naming the first's pid, and leave the
// first alone: its task running (not killed as an orphan), its control
// socket in place and answering. Once the first stops, the dir is free.
func TestSecondSitterOnOneStateDirIsRefused(t *testing.T) {
	bin := buildSitter(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	tasks := filepath.Join(dir, "tasks.toml")
	if err := os.WriteFile(tasks, []byte("sample_interval = \"100ms\"\n[[task]]\nname = \"fam\"\nshell = \"sleep 300 & wait\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	first := exec.Command(bin, "run", "--cgroup", "off", "--state-dir", state, tasks)
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- first.Wait() }()
	t.Cleanup(func() {
		if first.ProcessState == nil {
			_ = first.Process.Kill()
			<-exited
		}
	})
	statusPID := func() int {
		out, err := exec.Command(bin, "status", "--json", "--state-dir", state).Output()
		var st sitter.Status
		if err != nil || json.Unmarshal(out, &st) != nil || len(st.Tasks) != 1 || st.Tasks[0].State != sitter.StateRunning {
			return 0
		}
		return st.Tasks[0].PID
	}
	var taskPID int
	for deadline := time.Now().Add(15 * time.Second); taskPID == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("first sitter's task never ran")
		}
		taskPID = statusPID()
	}

	var stderr bytes.Buffer
	second := exec.Command(bin, "run", "--cgroup", "off", "--state-dir", state, tasks)
	second.Stderr = &stderr
	done := make(chan error, 1)
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- second.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("second sitter on the same state dir exited 0")
		}
	case <-time.After(10 * time.Second):
		_ = second.Process.Kill()
		t.Fatal("second sitter on the same state dir kept running")
	}
	if want := fmt.Sprintf("pid %d", first.Process.Pid); !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), "in use by another sitter") {
		t.Errorf("second sitter's error lacks %q:\n%s", want, stderr.String())
	}
	if strings.Contains(stderr.String(), "left by a previous sitter") {
		t.Errorf("second sitter swept orphans:\n%s", stderr.String())
	}
	if err := syscall.Kill(taskPID, 0); err != nil {
		t.Errorf("first sitter's task %d is gone: %v", taskPID, err)
	}
	if got := statusPID(); got != taskPID {
		t.Errorf("after the second sitter: status shows task pid %d, want %d (the socket must still reach the first)", got, taskPID)
	}

	if err := first.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("first sitter: %v", err)
	}
	third := exec.Command(bin, "run", "--cgroup", "off", "--state-dir", state, tasks)
	if err := third.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = third.Process.Signal(syscall.SIGTERM); _ = third.Wait() })
	for deadline := time.Now().Add(15 * time.Second); statusPID() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a sitter could not take the state dir after the first stopped")
		}
	}
}
