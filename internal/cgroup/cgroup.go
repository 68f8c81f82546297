// Package cgroup implements sitter.Limiter over the kernel's cgroup
// filesystem, v2 (unified) or v1 (cpu and memory hierarchies). It owns the
// file layout and the detection of which one is usable; it writes files and
// imports no third-party code.
package cgroup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"nightshift/sitter"
)

// DefaultRoot is where cgroup filesystems are mounted.
const DefaultRoot = "/sys/fs/cgroup"

// cfsPeriod is the CPU accounting period in microseconds (the kernel's
// default); the quota is cores × period.
const cfsPeriod = 100000

// Manager creates per-run groups under root/<ctl>/<prefix>.
type Manager struct {
	version int // 1 or 2
	root    string
	prefix  string
	// delegated: prefix is a group the provisioner made and handed to
	// this user (Delegate); it is used as it is and left for the
	// provisioner to release.
	delegated bool
}

var _ sitter.Limiter = (*Manager)(nil)

// Detect picks the mechanism for this host: v2 when root/cgroup.controllers
// exists and cpu and memory are delegated to us (listed in the root's
// cgroup.subtree_control and writable), else v1 when root/cpu and
// root/memory are writable cgroup v1 hierarchies, else nil: the sitter then
// polls only. prefix (e.g. "nightshift/<id>") keeps concurrent sitters apart.
func Detect(root, prefix string) (*Manager, error) {
	if prefix == "" || strings.Contains(prefix, "..") {
		return nil, fmt.Errorf("cgroup: bad prefix %q", prefix)
	}
	if isDelegatedV1(root, prefix) {
		return &Manager{version: 1, root: root, prefix: prefix, delegated: true}, nil
	}
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		if delegatedV2(root) {
			m := &Manager{version: 2, root: root, prefix: prefix}
			if err := m.prepareV2(); err != nil {
				return nil, err
			}
			return m, nil
		}
		return nil, nil
	}
	for _, ctl := range []string{"cpu", "memory"} {
		if syscall.Access(filepath.Join(root, ctl), 2 /* W_OK */) != nil {
			return nil, nil
		}
		if _, err := os.Stat(filepath.Join(root, ctl, "cgroup.procs")); err != nil {
			return nil, nil
		}
	}
	m := &Manager{version: 1, root: root, prefix: prefix}
	for _, ctl := range []string{"cpu", "memory"} {
		if err := os.MkdirAll(filepath.Join(root, ctl, prefix), 0o755); err != nil {
			return nil, fmt.Errorf("cgroup v1: %w", err)
		}
	}
	return m, nil
}

// isDelegatedV1 reports whether prefix is a v1 group in both the cpu and
// the memory hierarchies that this process may make groups in and move
// processes into although it cannot write the hierarchies themselves: one
// handed to its user (Delegate).
func isDelegatedV1(root, prefix string) bool {
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return false
	}
	for _, ctl := range []string{"cpu", "memory"} {
		if syscall.Access(filepath.Join(root, ctl), 2 /* W_OK */) == nil {
			return false // it may make its own groups: nothing was handed to it
		}
		dir := filepath.Join(root, ctl, prefix)
		if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
			return false
		}
		if syscall.Access(dir, 2 /* W_OK */) != nil || syscall.Access(filepath.Join(dir, "cgroup.procs"), 2) != nil {
			return false
		}
	}
	return true
}

func delegatedV2(root string) bool {
	b, err := os.ReadFile(filepath.Join(root, "cgroup.subtree_control"))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	has := func(c string) bool {
		for _, x := range f {
			if x == c {
				return true
			}
		}
		return false
	}
	return has("cpu") && has("memory") && syscall.Access(root, 2) == nil
}

// prepareV2 creates the prefix chain and enables cpu and memory in each
// level, as v2 requires controllers to be enabled top-down.
func (m *Manager) prepareV2() error {
	dir := m.root
	for _, part := range strings.Split(m.prefix, "/") {
		dir = filepath.Join(dir, part)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup v2: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+cpu +memory"), 0); err != nil {
			return fmt.Errorf("cgroup v2: enable controllers in %s: %w", dir, err)
		}
	}
	return nil
}

// Mode reports cgroup-v1 or cgroup-v2.
func (m *Manager) Mode() string { return "cgroup-v" + strconv.Itoa(m.version) }

// Create makes a new group with the given caps.
func (m *Manager) Create(ctx context.Context, name string, l sitter.Limits) (sitter.Group, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cgroup create %s: %w", name, err)
	}
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("cgroup create: bad name %q", name)
	}
	g := &Group{version: m.version}
	if m.version == 2 {
		g.dirs = []string{filepath.Join(m.root, m.prefix, name)}
	} else {
		g.dirs = []string{filepath.Join(m.root, "memory", m.prefix, name), filepath.Join(m.root, "cpu", m.prefix, name)}
	}
	for _, d := range g.dirs {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			_ = g.Remove(ctx)
			return nil, fmt.Errorf("cgroup create %s: %w", name, err)
		}
	}
	if err := g.setLimits(l); err != nil {
		_ = g.Remove(ctx)
		return nil, fmt.Errorf("cgroup create %s: %w", name, err)
	}
	return g, nil
}

// Close removes the prefix directories (they must be empty: remove every
// group first).
func (m *Manager) Close() error {
	if m.delegated {
		return nil // the provisioner's, released with the instance
	}
	var dirs []string
	if m.version == 2 {
		dirs = []string{filepath.Join(m.root, m.prefix)}
	} else {
		dirs = []string{filepath.Join(m.root, "cpu", m.prefix), filepath.Join(m.root, "memory", m.prefix)}
	}
	var errs []error
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("cgroup close: %w", err))
		}
	}
	// Parents such as "nightshift" are shared with other sitters; remove
	// them only if we were the last (rmdir fails on a non-empty dir).
	for _, d := range dirs {
		for range strings.Count(m.prefix, "/") {
			d = filepath.Dir(d)
			_ = os.Remove(d)
		}
	}
	return errors.Join(errs...)
}

// Group is one run's cgroup (one directory per v1 hierarchy).
type Group struct {
	version int
	dirs    []string // v1: memory first, then cpu
}

func write(dir, file, value string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(dir, file), err)
	}
	return nil
}

func (g *Group) setLimits(l sitter.Limits) error {
	if g.version == 2 {
		d := g.dirs[0]
		if l.CPU > 0 {
			if err := write(d, "cpu.max", fmt.Sprintf("%d %d", quota(l.CPU), cfsPeriod)); err != nil {
				return err
			}
		}
		if l.MemBytes > 0 {
			if err := write(d, "memory.max", strconv.FormatUint(l.MemBytes, 10)); err != nil {
				return err
			}
		}
		return nil
	}
	if l.MemBytes > 0 {
		if err := write(g.dirs[0], "memory.limit_in_bytes", strconv.FormatUint(l.MemBytes, 10)); err != nil {
			return err
		}
	}
	if l.CPU > 0 {
		if err := write(g.dirs[1], "cpu.cfs_period_us", strconv.Itoa(cfsPeriod)); err != nil {
			return err
		}
		if err := write(g.dirs[1], "cpu.cfs_quota_us", strconv.Itoa(quota(l.CPU))); err != nil {
			return err
		}
	}
	return nil
}

// quota converts cores to microseconds per period; the kernel refuses
// less than 1ms.
func quota(cores float64) int {
	return max(int(cores*cfsPeriod), 1000)
}

// Add moves pid into the group.
func (g *Group) Add(pid int) error {
	for _, d := range g.dirs {
		if err := write(d, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("cgroup add %d: %w", pid, err)
		}
	}
	return nil
}

// PIDs lists the group's processes.
func (g *Group) PIDs() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(g.dirs[0], "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("cgroup pids: %w", err)
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

// OOM reports whether the kernel OOM-killed a member, and peak usage.
func (g *Group) OOM() (bool, uint64, error) {
	d := g.dirs[0]
	var eventsFile, peakFile string
	if g.version == 2 {
		eventsFile, peakFile = "memory.events", "memory.peak"
	} else {
		eventsFile, peakFile = "memory.oom_control", "memory.max_usage_in_bytes"
	}
	b, err := os.ReadFile(filepath.Join(d, eventsFile))
	if err != nil {
		return false, 0, fmt.Errorf("cgroup oom: %w", err)
	}
	kills := keyed(b, "oom_kill")
	var peak uint64
	if pb, err := os.ReadFile(filepath.Join(d, peakFile)); err == nil {
		peak, _ = strconv.ParseUint(strings.TrimSpace(string(pb)), 10, 64)
	}
	return kills > 0, peak, nil
}

// keyed reads "key value" lines as found in memory.events/oom_control.
func keyed(b []byte, key string) uint64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == key {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// Remove kills every member and deletes the directories. rmdir fails with
// EBUSY until the killed processes are gone, so it retries until ctx ends.
func (g *Group) Remove(ctx context.Context) error {
	if g.version == 2 {
		// cgroup.kill (5.14+) kills atomically, including forks in flight.
		_ = write(g.dirs[0], "cgroup.kill", "1")
	}
	var errs []error
	for _, d := range g.dirs {
		for {
			if pids, err := (&Group{dirs: []string{d}}).PIDs(); err == nil {
				for _, pid := range pids {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			err := os.Remove(d)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) {
				errs = append(errs, fmt.Errorf("cgroup remove: %w", err))
				break
			}
			select {
			case <-ctx.Done():
				errs = append(errs, fmt.Errorf("cgroup remove %s: %w", d, ctx.Err()))
			case <-time.After(5 * time.Millisecond):
				continue
			}
			break
		}
	}
	return errors.Join(errs...)
}
