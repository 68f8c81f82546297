package process

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func syscallGetpgid() (int, error) { return syscall.Getpgid(0) }

// start runs a shell script as a child and returns it with a same func
// that, like the real callers, treats a zombie as gone.
func start(t *testing.T, script string) (*exec.Cmd, func() bool) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	pid := cmd.Process.Pid
	return cmd, func() bool {
		st, err := ReadStat("", pid)
		return err == nil && !st.Zombie()
	}
}

// waitTrap gives the shell time to install its trap before it is signalled.
func waitTrap() { time.Sleep(200 * time.Millisecond) }

func TestStop(t *testing.T) {
	cases := []struct {
		name       string
		script     string
		grace      time.Duration
		cancelled  bool
		wantKilled bool
		maxTook    time.Duration
	}{
		{name: "goes on SIGTERM", script: "exec sleep 30", grace: 10 * time.Second, maxTook: 5 * time.Second},
		{name: "ignores SIGTERM", script: `trap "" TERM; sleep 30 & wait; sleep 30`, grace: 300 * time.Millisecond, wantKilled: true, maxTook: 5 * time.Second},
		{name: "ctx ended skips the grace", script: `trap "" TERM; while :; do sleep 1; done`, grace: time.Minute, cancelled: true, wantKilled: true, maxTook: 10 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd, same := start(t, c.script)
			waitTrap()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if c.cancelled {
				cancel()
			}
			killed := false
			began := time.Now()
			if err := Stop(ctx, cmd.Process.Pid, c.grace, same, func() { killed = true }); err != nil {
				t.Fatalf("Stop = %v", err)
			}
			if took := time.Since(began); took > c.maxTook {
				t.Errorf("Stop took %s, want under %s", took, c.maxTook)
			}
			if same() {
				t.Error("process still runs after Stop returned nil")
			}
			if killed != c.wantKilled {
				t.Errorf("SIGKILL escalation = %v, want %v", killed, c.wantKilled)
			}
		})
	}
}

// TestStopLeavesAStrangerAlone: a pid that is no longer the process meant
// (same says no) gets no signal at all.
func TestStopLeavesAStrangerAlone(t *testing.T) {
	cmd, same := start(t, "exec sleep 30")
	if err := Stop(context.Background(), cmd.Process.Pid, time.Second, func() bool { return false }, nil); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	if !same() {
		t.Fatal("Stop signalled a process that same() disowned")
	}
}

func TestStopRefusesInitAndGroups(t *testing.T) {
	for _, pid := range []int{1, 0, -5} {
		if err := Stop(context.Background(), pid, time.Second, func() bool { return true }, nil); err == nil {
			t.Errorf("Stop(pid %d) = nil, want a refusal", pid)
		}
	}
}
