package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Delegation: a sitter isolated as its worker's own user cannot make
// cgroups in hierarchies root owns, so it only polled its limits. The
// provisioner (root) makes one group per instance and hands it to the
// worker's uid, as systemd's Delegate= does: the group's directory (so the
// sitter may make a group per task run inside it) and the files that move
// processes. The group's own limits stay root's, and the sitter can reach
// nothing above it. Only cgroup v1 is delegated: on v2 moving a process
// needs write access to the common ancestor of where it is and where it
// goes, which means starting the sitter inside the delegated group; that
// is not built, and a v2 sitter that is not root polls, as before.

// delegatedFiles are what the delegate writes in its group (v1).
var delegatedFiles = []string{"cgroup.procs", "tasks"}

// Delegate makes the group prefix in the cpu and memory hierarchies under
// root and gives it to uid:gid. It returns the mechanism ("cgroup-v1"), or
// "" when there is nothing to delegate here (cgroup v2, or hierarchies
// this process cannot write), which leaves the sitter polling.
func Delegate(root, prefix string, uid, gid int) (string, error) {
	if !validPrefix(prefix) {
		return "", fmt.Errorf("cgroup delegate: bad prefix %q", prefix)
	}
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return "", nil
	}
	for _, ctl := range []string{"cpu", "memory"} {
		if syscall.Access(filepath.Join(root, ctl), 2 /* W_OK */) != nil {
			return "", nil
		}
		if _, err := os.Stat(filepath.Join(root, ctl, "cgroup.procs")); err != nil {
			return "", nil
		}
	}
	for _, ctl := range []string{"cpu", "memory"} {
		dir := filepath.Join(root, ctl, prefix)
		// A group left by an earlier launch of this id: its sub-groups
		// were the worker's; start over.
		if err := removeTree(context.Background(), dir, 0); err != nil {
			return "", fmt.Errorf("cgroup delegate: %w", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("cgroup delegate: %w", err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return "", fmt.Errorf("cgroup delegate: %w", err)
		}
		for _, f := range delegatedFiles {
			if err := os.Chown(filepath.Join(dir, f), uid, gid); err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", fmt.Errorf("cgroup delegate: %w", err)
			}
		}
	}
	return "cgroup-v1", nil
}

// Release removes a delegated group with every group made inside it,
// deepest first, killing what is still in them, and then the empty parents
// of prefix (shared by other instances: removed only when empty). It
// waits up to wait for killed processes to leave. A group that is not
// there is no error.
func Release(ctx context.Context, root, prefix string, wait time.Duration) error {
	if !validPrefix(prefix) {
		return fmt.Errorf("cgroup release: bad prefix %q", prefix)
	}
	var errs []error
	for _, ctl := range []string{"cpu", "memory"} {
		dir := filepath.Join(root, ctl, prefix)
		if err := removeTree(ctx, dir, wait); err != nil {
			errs = append(errs, fmt.Errorf("cgroup release: %w", err))
			continue
		}
		for range strings.Count(prefix, "/") {
			dir = filepath.Dir(dir)
			_ = os.Remove(dir) // fails while another instance's group is there
		}
	}
	return errors.Join(errs...)
}

func validPrefix(p string) bool {
	return p != "" && !strings.Contains(p, "..") && !strings.HasPrefix(p, "/") && !strings.ContainsRune(p, 0)
}

// removeTree removes the group dir and the groups below it, deepest
// first (cgroupfs removes only empty groups: no child, no process).
func removeTree(ctx context.Context, dir string, wait time.Duration) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a cgroup directory", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() && e.Type()&os.ModeSymlink == 0 {
			if err := removeTree(ctx, filepath.Join(dir, e.Name()), wait); err != nil {
				return err
			}
		}
	}
	rctx, cancel := context.WithTimeout(ctx, max(wait, time.Millisecond))
	defer cancel()
	return (&Group{version: 1, dirs: []string{dir}}).Remove(rctx)
}
