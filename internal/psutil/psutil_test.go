package psutil

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"nightshift/sitter"
)

func TestProcessesSeesChildTree(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ctx := context.Background()
	s := New()
	var tree []sitter.ProcSample
	for range 200 { // the shell needs a moment to fork sleep
		procs, err := s.Processes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tree = sitter.TreeOf(procs, cmd.Process.Pid, nil); len(tree) >= 2 {
			break
		}
	}
	if len(tree) < 2 {
		t.Fatalf("tree of %d = %+v, want the shell and its sleep", cmd.Process.Pid, tree)
	}
	var self bool
	procs, _ := s.Processes(ctx)
	for _, p := range procs {
		if p.PID == os.Getpid() {
			self = p.RSSBytes > 0 && p.PPID > 0
		}
	}
	if !self {
		t.Errorf("own process missing or without rss/ppid")
	}
}

func TestHost(t *testing.T) {
	h, err := New().Host(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h.MemTotalMB <= 0 || h.MemUsedMB <= 0 || h.MemUsedMB > h.MemTotalMB {
		t.Errorf("implausible memory: %+v", h)
	}
}

func TestCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New().Processes(ctx); err == nil {
		t.Error("Processes with a canceled context: want error")
	}
}
