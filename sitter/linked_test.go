package sitter_test

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/psutil"
	"nightshift/sitter"
)

func running(ts sitter.TaskStatus) bool { return ts.State == sitter.StateRunning }

// TestLinkedTaskFollowsItsLeader: a task that follows another starts with
// it, restarts whenever the leader starts a new run (a crash or an
// operator's restart), stops when the leader stops for good and starts
// again with it; its own crash restarts it alone.
func TestLinkedTaskFollowsItsLeader(t *testing.T) {
	ctx := context.Background()
	leader := sitter.Task{Name: "main", Command: []string{"sleep", "300"}, BackoffInitial: dur(50 * time.Millisecond), StopGrace: dur(time.Second)}
	side := sitter.Task{Name: "side", Command: []string{"sleep", "300"}, Follows: "main", BackoffInitial: dur(50 * time.Millisecond), StopGrace: dur(time.Second)}
	h := start(t, sitter.Config{}, leader, side)
	m1 := h.waitTask(t, "main", 5*time.Second, "running", running)
	s1 := h.waitTask(t, "side", 5*time.Second, "running with its leader", running)

	// The leader crashes and is restarted: its linked task restarts too.
	if err := syscall.Kill(m1.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m2 := h.waitTask(t, "main", 5*time.Second, "restarted", func(ts sitter.TaskStatus) bool { return running(ts) && ts.PID != m1.PID })
	s2 := h.waitTask(t, "side", 5*time.Second, "restarted with its leader", func(ts sitter.TaskStatus) bool { return running(ts) && ts.PID != s1.PID })
	waitDead(t, s1.PID, 5*time.Second)

	// The linked task crashes: it restarts alone, the leader keeps its run.
	if err := syscall.Kill(s2.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s3 := h.waitTask(t, "side", 5*time.Second, "restarted by its own policy", func(ts sitter.TaskStatus) bool { return running(ts) && ts.PID != s2.PID })
	if got := h.task(t, "main"); got.PID != m2.PID || !running(got) {
		t.Errorf("the leader %+v changed when its linked task crashed (was pid %d)", got, m2.PID)
	}

	// An operator's restart of the leader restarts it too.
	if err := h.s.RestartTask(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	h.waitTask(t, "side", 5*time.Second, "restarted with its leader", func(ts sitter.TaskStatus) bool { return running(ts) && ts.PID != s3.PID })

	// The leader stopped for good: the linked task stops; started again,
	// both run.
	if err := h.s.StopTask(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	h.waitTask(t, "side", 5*time.Second, "stopped with its leader", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateStopped })
	if err := h.s.StartTask(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	h.waitTask(t, "side", 5*time.Second, "started with its leader", running)
}

// TestLinkedTaskStopsWhenItsLeaderFails: a leader that gives up (failed)
// takes its linked tasks down with it, so the worker is one unit that the
// pool replaces whole.
func TestLinkedTaskStopsWhenItsLeaderFails(t *testing.T) {
	leader := sitter.Task{Name: "main", Shell: "sleep 0.3; exit 3", Restart: sitter.RestartNever}
	side := sitter.Task{Name: "side", Command: []string{"sleep", "300"}, Follows: "main", StopGrace: dur(time.Second)}
	h := start(t, sitter.Config{}, leader, side)
	s1 := h.waitTask(t, "side", 5*time.Second, "running", running)
	h.waitTask(t, "main", 10*time.Second, "failed", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateFailed })
	h.waitTask(t, "side", 5*time.Second, "stopped with its failed leader", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateStopped })
	waitDead(t, s1.PID, 5*time.Second)
}

// TestFollowsIsChecked: a task follows one added before it, not itself,
// and not one that follows another.
func TestFollowsIsChecked(t *testing.T) {
	s, err := sitter.New(sitter.Config{StateDir: t.TempDir(), Sampler: psutil.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	add := func(name, follows string) error {
		return s.AddTask(ctx, sitter.Task{Name: name, Command: []string{"true"}, Follows: follows})
	}
	for _, c := range []struct{ name, follows, want string }{
		{"a", "nobody", "not added"},
		{"a", "a", "cannot follow itself"},
	} {
		if err := add(c.name, c.follows); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s follows %s: %v, want %q", c.name, c.follows, err, c.want)
		}
	}
	if err := add("a", ""); err != nil {
		t.Fatal(err)
	}
	if err := add("b", "a"); err != nil {
		t.Fatal(err)
	}
	if err := add("c", "b"); err == nil || !strings.Contains(err.Error(), "one leader") {
		t.Errorf("a chain: %v, want refused", err)
	}
}
