package cgroup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nightshift/sitter"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// fakeV1 lays out what Detect looks for in a v1 hierarchy.
func fakeV1(t *testing.T) string {
	root := t.TempDir()
	for _, ctl := range []string{"cpu", "memory"} {
		if err := os.MkdirAll(filepath.Join(root, ctl), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, ctl, "cgroup.procs"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestDetect(t *testing.T) {
	t.Run("v1", func(t *testing.T) {
		m, err := Detect(fakeV1(t), "ns/test")
		if err != nil || m == nil || m.Mode() != "cgroup-v1" {
			t.Fatalf("Detect = %v, %v; want cgroup-v1", m, err)
		}
	})
	t.Run("v2 delegated", func(t *testing.T) {
		root := t.TempDir()
		os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu io memory pids"), 0o644)
		os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("cpu memory"), 0o644)
		m, err := Detect(root, "ns/test")
		if err != nil || m == nil || m.Mode() != "cgroup-v2" {
			t.Fatalf("Detect = %v, %v; want cgroup-v2", m, err)
		}
		if got := read(t, filepath.Join(root, "ns", "test", "cgroup.subtree_control")); got != "+cpu +memory" {
			t.Errorf("controllers not enabled down the prefix: %q", got)
		}
	})
	t.Run("v2 not delegated", func(t *testing.T) {
		root := t.TempDir()
		os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu memory"), 0o644)
		os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("pids"), 0o644)
		if m, err := Detect(root, "ns/test"); m != nil || err != nil {
			t.Fatalf("Detect = %v, %v; want polling (nil, nil)", m, err)
		}
	})
	t.Run("nothing", func(t *testing.T) {
		if m, err := Detect(t.TempDir(), "ns/test"); m != nil || err != nil {
			t.Fatalf("Detect = %v, %v; want polling (nil, nil)", m, err)
		}
	})
	t.Run("bad prefix", func(t *testing.T) {
		if _, err := Detect(t.TempDir(), "../x"); err == nil {
			t.Fatal("want error for a prefix escaping the root")
		}
	})
}

func TestCreateWritesLimitsV1(t *testing.T) {
	root := fakeV1(t)
	m, err := Detect(root, "ns/a")
	if err != nil || m == nil {
		t.Fatal(m, err)
	}
	g, err := m.Create(context.Background(), "spin.1", sitter.Limits{CPU: 0.25, MemBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(root, "cpu/ns/a/spin.1/cpu.cfs_quota_us")); got != "25000" {
		t.Errorf("quota = %s, want 25000", got)
	}
	if got := read(t, filepath.Join(root, "memory/ns/a/spin.1/memory.limit_in_bytes")); got != fmt.Sprint(64<<20) {
		t.Errorf("memory limit = %s", got)
	}
	os.WriteFile(filepath.Join(root, "memory/ns/a/spin.1/memory.oom_control"), []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"), 0o644)
	os.WriteFile(filepath.Join(root, "memory/ns/a/spin.1/memory.max_usage_in_bytes"), []byte("83886080\n"), 0o644)
	killed, peak, err := g.OOM()
	if err != nil || !killed || peak != 80<<20 {
		t.Errorf("OOM = %v %d %v, want true 80MiB", killed, peak, err)
	}
	if _, err := m.Create(context.Background(), "../evil", sitter.Limits{}); err == nil {
		t.Error("want error for a name with a slash")
	}
}

func TestCreateWritesLimitsV2(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu memory"), 0o644)
	os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("cpu memory"), 0o644)
	m, err := Detect(root, "ns")
	if err != nil || m == nil {
		t.Fatal(m, err)
	}
	g, err := m.Create(context.Background(), "hog.1", sitter.Limits{CPU: 1.5, MemBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(root, "ns/hog.1/cpu.max")); got != "150000 100000" {
		t.Errorf("cpu.max = %q", got)
	}
	if got := read(t, filepath.Join(root, "ns/hog.1/memory.max")); got != fmt.Sprint(1<<30) {
		t.Errorf("memory.max = %q", got)
	}
	os.WriteFile(filepath.Join(root, "ns/hog.1/memory.events"), []byte("low 0\nhigh 0\nmax 9\noom 1\noom_kill 0\n"), 0o644)
	if killed, _, _ := g.OOM(); killed {
		t.Error("oom_kill 0 reported as killed")
	}
}

// TestRealV1 runs against the host's cgroup v1 hierarchy when we may.
func TestRealV1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	prefix := fmt.Sprintf("nightshift-test/%d", os.Getpid())
	m, err := Detect(DefaultRoot, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if m == nil || m.Mode() != "cgroup-v1" {
		t.Skipf("host has no writable cgroup v1 (mode %v)", m)
	}
	t.Cleanup(func() {
		_ = m.Close()
		_ = os.Remove(filepath.Join(DefaultRoot, "cpu", "nightshift-test"))
		_ = os.Remove(filepath.Join(DefaultRoot, "memory", "nightshift-test"))
	})
	ctx := context.Background()
	g, err := m.Create(ctx, "hog.1", sitter.Limits{MemBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	// tail holds all 200 MB (there is no newline) until EOF, so the cap
	// must stop it first; the size bounds the damage if it does not.
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(tctx, "sh", "-c", "read x; head -c 200M /dev/zero | tail")
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	pids, err := g.PIDs()
	if err != nil || len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Fatalf("PIDs = %v, %v; want [%d]", pids, err, cmd.Process.Pid)
	}
	stdin.Write([]byte("go\n"))
	err = cmd.Wait()
	if err == nil {
		t.Fatal("hog exited cleanly; want an OOM kill")
	}
	killed, peak, err := g.OOM()
	if err != nil || !killed || peak < 30<<20 {
		t.Fatalf("OOM = %v %d %v; want killed near 32MiB", killed, peak, err)
	}
	if err := g.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(DefaultRoot, "memory", prefix, "hog.1")); !os.IsNotExist(err) {
		t.Errorf("group dir still there after Remove: %v", err)
	}
}
