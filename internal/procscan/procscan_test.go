package procscan

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestFindAndKill(t *testing.T) {
	home := t.TempDir()
	run := "scan" + filepath.Base(home)
	start := func(envRun string) *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		cmd.Env = append(os.Environ(), "NIGHTSHIFT_HOME="+home, "NIGHTSHIFT_RUN="+envRun)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go cmd.Wait() // reap, so a killed child does not linger as a zombie
		t.Cleanup(func() { cmd.Process.Kill() })
		return cmd
	}
	mine := start(run)
	other := start(run + "-other")

	found, err := Find("", home, run)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].PID != mine.Process.Pid {
		t.Fatalf("Find = %v, want only pid %d", found, mine.Process.Pid)
	}

	killed, remaining, err := Kill("", home, run, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(killed) != 1 || len(remaining) != 0 {
		t.Fatalf("killed %v remaining %v", killed, remaining)
	}
	if again, _ := Find("", home, run+"-other"); len(again) != 1 || again[0].PID != other.Process.Pid {
		t.Fatalf("other run's process was touched: %v", again)
	}
}
