package psutil

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/testsupport"
	"nightshift/sitter"
)

func TestResolveCgroup(t *testing.T) {
	cases := []struct {
		name, mountinfo string
		self, task      string // /proc/<pid>/cgroup contents
		want            cgFiles
		ok              bool
	}{
		{name: "v1 co-mounted cpu,cpuacct", mountinfo: "v1-comounted.mountinfo",
			self: "3:cpu,cpuacct:/\n2:memory:/\n0::/\n", task: "3:cpu,cpuacct:/ns/t.1\n2:memory:/ns/t.1\n0::/\n",
			want: cgFiles{cpu: "/sys/fs/cgroup/cpu,cpuacct/ns/t.1/cpuacct.usage", cpuKind: cpuV1Nanos,
				mem: "/sys/fs/cgroup/memory/ns/t.1/memory.stat", memKind: memV1Stat}, ok: true},
		// The limiter makes cpu and memory groups; cpuacct is mounted on
		// its own, so the task shares the sitter's cpuacct group, whose
		// counter would count the sitter and everything else in it.
		{name: "v1 separate cpuacct", mountinfo: "v1-separate-cpuacct.mountinfo",
			self: "2:cpuacct:/\n1:cpu:/\n4:memory:/\n", task: "2:cpuacct:/\n1:cpu:/ns/t.1\n4:memory:/ns/t.1\n",
			want: cgFiles{mem: "/sys/fs/cgroup/memory/ns/t.1/memory.stat", memKind: memV1Stat}},
		{name: "v2", mountinfo: "v2.mountinfo", self: "0::/system.slice/sitter.service\n", task: "0::/ns/t.1\n",
			want: cgFiles{cpu: "/sys/fs/cgroup/ns/t.1/cpu.stat", cpuKind: cpuV2Stat,
				mem: "/sys/fs/cgroup/ns/t.1/memory.stat", memKind: memV2Stat}, ok: true},
		{name: "v2 task in the sitter's group", mountinfo: "v2.mountinfo", self: "0::/a\n", task: "0::/a\n"},
		{name: "container mounts a subtree", mountinfo: "container-v1.mountinfo",
			self: "3:cpu,cpuacct:/docker/abc\n2:memory:/docker/abc\n", task: "3:cpu,cpuacct:/docker/abc/t.1\n2:memory:/docker/abc/t.1\n",
			want: cgFiles{cpu: "/sys/fs/cgroup/cpu acct/t.1/cpuacct.usage", cpuKind: cpuV1Nanos,
				mem: "/sys/fs/cgroup/memory/t.1/memory.stat", memKind: memV1Stat}, ok: true},
		{name: "task outside the mounted subtree", mountinfo: "container-v1.mountinfo",
			self: "3:cpu,cpuacct:/docker/abc\n2:memory:/docker/abc\n", task: "3:cpu,cpuacct:/docker/abcd/t\n2:memory:/docker/abcd/t\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mi, err := os.ReadFile(filepath.Join("testdata/cgroup", c.mountinfo))
			if err != nil {
				t.Fatal(err)
			}
			self, err := cgPaths([]byte(c.self))
			if err != nil {
				t.Fatal(err)
			}
			task, err := cgPaths([]byte(c.task))
			if err != nil {
				t.Fatal(err)
			}
			got, ok := resolveCgroup(parseMountinfo(mi), self, task)
			if ok != c.ok || got != c.want {
				t.Errorf("resolveCgroup = %+v, %v\nwant          %+v, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

func TestCgPathsErrors(t *testing.T) {
	for _, in := range []string{"4:memory\n", "4:memory:relative\n", "garbage"} {
		if _, err := cgPaths([]byte(in)); err == nil || !strings.HasPrefix(err.Error(), "cgroup: line") {
			t.Errorf("cgPaths(%q) err = %v, want the bad line named", in, err)
		}
	}
}

func TestParseCounter(t *testing.T) {
	cases := []struct {
		name string
		kind counterKind
		in   string
		cpu  float64
		mem  uint64
		err  string
	}{
		{"cpuacct.usage", cpuV1Nanos, "2500000000\n", 2.5, 0, ""},
		{"cpuacct.usage garbage", cpuV1Nanos, "n/a\n", 0, 0, `cpuacct.usage: "n/a" is not a count of nanoseconds`},
		{"v2 cpu.stat", cpuV2Stat, "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n", 1.5, 0, ""},
		{"v2 cpu.stat without usage", cpuV2Stat, "user_usec 1\n", 0, 0, "cpu.stat: want fields usage_usec"},
		{"v1 memory.stat", memV1Stat, "cache 9\nrss 5\ntotal_cache 100\ntotal_rss 4096\ntotal_mapped_file 1024\n", 0, 5120, ""},
		{"v1 memory.stat bad value", memV1Stat, "total_rss x\ntotal_mapped_file 1\n", 0, 0, `memory.stat: field total_rss: "x" is not a count`},
		{"v2 memory.stat", memV2Stat, "anon 8192\nfile 999999\nfile_mapped 4096\n", 0, 12288, ""},
		{"v2 memory.stat short", memV2Stat, "anon 8192\n", 0, 0, "memory.stat: want fields anon and file_mapped, found 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cpu, mem, err := parseCounter(c.kind, []byte(c.in))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want containing %q", err, c.err)
				}
				return
			}
			if err != nil || cpu != c.cpu || mem != c.mem {
				t.Errorf("parseCounter = %g, %d, %v; want %g, %d", cpu, mem, err, c.cpu, c.mem)
			}
		})
	}
}

func FuzzCgroupFiles(f *testing.F) {
	f.Add([]byte("3:cpu,cpuacct:/a\n0::/\n"), []byte("total_rss 1\ntotal_mapped_file 2\n"))
	f.Add([]byte("0::/x y\n"), []byte("anon 1\nfile_mapped"))
	f.Fuzz(func(t *testing.T, cg, stat []byte) {
		if paths, err := cgPaths(cg); err == nil {
			for k, p := range paths {
				if !strings.HasPrefix(p, "/") || k == "" {
					t.Fatalf("cgPaths(%q) gave %q: %q", cg, k, p)
				}
			}
		} else if !strings.HasPrefix(err.Error(), "cgroup: ") {
			t.Fatalf("error %q does not say where it came from", err)
		}
		for _, kind := range []counterKind{cpuV1Nanos, cpuV2Stat, memV1Stat, memV2Stat} {
			if _, _, err := parseCounter(kind, stat); err != nil &&
				!strings.HasPrefix(err.Error(), "memory.stat: ") && !strings.HasPrefix(err.Error(), "cpu.stat: ") &&
				!strings.HasPrefix(err.Error(), "cpuacct.usage: ") {
				t.Fatalf("error %q does not name its file", err)
			}
		}
		parseMountinfo(cg)
	})
}

// fixedGroup is a sitter.Group whose members the test sets.
type fixedGroup struct{ pids []int }

func (g fixedGroup) Add(int) error                { return nil }
func (g fixedGroup) PIDs() ([]int, error)         { return g.pids, nil }
func (g fixedGroup) OOM() (bool, uint64, error)   { return false, 0, nil }
func (g fixedGroup) Remove(context.Context) error { return nil }
func (g fixedGroup) String() string               { return fmt.Sprint(g.pids) }

// TestTreesCgroupCounters puts a process into cpuacct and memory groups of
// its own (cgroup v1, as root) and checks that Trees reports the groups'
// counters for the run, with two cached files and no walk.
func TestTreesCgroupCounters(t *testing.T) {
	root := "/sys/fs/cgroup"
	name := fmt.Sprintf("nightshift-psutil-test-%d", os.Getpid())
	var dirs []string
	for _, ctl := range []string{"cpuacct", "memory"} {
		d := filepath.Join(root, ctl, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Skipf("no writable cgroup v1 %s hierarchy (needs root): %v", ctl, err)
		}
		dirs = append(dirs, d)
		t.Cleanup(func() { _ = os.Remove(d) })
	}
	// v1 leaves pages charged where they were touched, so the process
	// waits until it is in the groups and only then execs sleep, whose
	// pages are then the group's.
	moved := filepath.Join(t.TempDir(), "moved")
	cmd := spawn(t, `while [ ! -e `+moved+` ]; do sleep 0.01; done; exec sleep 30`, nil)
	pid := cmd.Process.Pid
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			t.Skipf("cannot move a process into %s: %v", d, err)
		}
	}
	if err := os.WriteFile(moved, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The group must be empty before it can be removed.
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL); _ = cmd.Wait() })
	s := New()
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	first, err := s.Trees(ctx, []sitter.Root{{PID: pid}})
	if err != nil || len(first[pid]) == 0 {
		t.Fatalf("tree = %+v, %v", first, err)
	}
	r := sitter.Root{PID: pid, Start: first[pid][0].Start, Group: fixedGroup{pids: []int{pid}}}
	var tree []sitter.ProcSample
	// The checks below judge the last tree; a timeout only ends the wait.
	_ = testsupport.Poll(10*time.Second, func() error {
		trees, err := s.Trees(ctx, []sitter.Root{r})
		if err != nil {
			t.Fatal(err)
		}
		if tree = trees[pid]; len(tree) != 1 || tree[0].RSSBytes == 0 {
			return fmt.Errorf("cgroup tree %+v", tree)
		}
		return nil
	})
	if len(tree) != 1 || tree[0].PID != pid || tree[0].RSSBytes == 0 || tree[0].CPUSeconds <= 0 {
		t.Fatalf("cgroup tree = %+v, want the leader alone carrying the group's memory and CPU", tree)
	}
	if !s.cgroups[cgKey{pid: pid, start: r.Start}].ok {
		if _, err := os.Stat(filepath.Join(root, "cpuacct", name, "cpuacct.usage")); err == nil {
			t.Fatalf("run not resolved to its groups: %+v (mounts %+v)", s.cgroups, s.mounts)
		}
		t.Skip("this host's cgroup layout gives no counters")
	}
	// Files of the earlier walks age out in the sweep; the sample reads
	// the two counters only.
	used := 0
	for _, c := range s.fds {
		if c.gen == s.gen {
			used++
		}
	}
	if used != 2 {
		t.Errorf("%d files read for a cgroup run, want its 2 counters: %+v", used, s.fds)
	}
	b, _ := os.ReadFile(filepath.Join(dirs[1], "memory.stat"))
	_, want, err := parseCounter(memV1Stat, b)
	trees, _ := s.Trees(ctx, []sitter.Root{r})
	if got := trees[pid][0].RSSBytes; err != nil || got != want {
		t.Errorf("rss = %d, memory.stat says %d (%v)", got, want, err)
	}
}
