package localworker_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/runlayout"
	"nightshift/internal/testsupport"
	"nightshift/internal/worker/localworker"
	"nightshift/internal/workeruser"
	"nightshift/provisioner"
)

// TestEndedUIDFilesAreSwept: what a worker with a uid of its own leaves in
// /tmp, /var/tmp and /dev/shm (files, a directory tree, a link) is gone
// once terminate returns, and what an earlier holder of the uid left is
// gone before a launch under it starts anything; the walk follows no link
// (a file of the uid in a directory it cannot search, which a link of it
// names, stays), nor enters the workers' root (the ended worker's
// directory keeps its file for mgmt logs),
// and files of other uids stay, also inside a directory of the uid (which
// is then root's) and beside the uid's inside another uid's directory.
func TestEndedUIDFilesAreSwept(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("isolation needs root (CI runs as root)")
	}
	if _, err := os.Stat("/dev/shm"); err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	const other = 65489 // a uid no worker of this test holds
	pfx := fmt.Sprintf("nsweep%d-", os.Getpid())
	tmp := func(name string) string { return filepath.Join("/tmp", pfx+name) }
	shm := filepath.Join("/dev/shm", pfx+"y")
	vtmp := filepath.Join("/var/tmp", pfx+"z")
	t.Cleanup(func() {
		for _, p := range []string{tmp("x"), tmp("d"), tmp("l"), tmp("h"), tmp("other"), tmp("theirs"), tmp("stale"), shm, vtmp} {
			os.RemoveAll(p)
		}
	})
	// A file of the uid the worker can reach only through a link, which
	// the walk must not follow.
	hidden := filepath.Join(t.TempDir(), "hidden")
	root := publicDir(t, "nsworker-root-")
	home := t.TempDir()
	run := fmt.Sprintf("sweep%d", os.Getpid())
	script := `set -e; umask 022
echo secret > ` + tmp("x") + `
echo secret > ` + shm + `
echo secret > ` + vtmp + `
mkdir -p ` + tmp("d") + `/a/b; echo secret > ` + tmp("d") + `/a/b/f; chmod 1777 ` + tmp("d") + `
echo keep > "$HOME/keep"; ln -s "$HOME" ` + tmp("l") + `; ln -s ` + filepath.Dir(hidden) + ` ` + tmp("h") + `
echo secret > ` + tmp("theirs") + `/mine
touch "$HOME/ready"; exec sleep 300`
	r := localworker.UIDRange{First: 65490, Last: 65499}
	drv, err := localworker.New(localworker.Config{Home: home, Run: run, Grace: time.Second,
		Command: []string{"/bin/sh", "-c", script},
		Isolation: &localworker.Isolation{Users: &workeruser.Users{}, Root: root, UIDs: &r,
			PasswdFile: "/nonexistent", GroupFile: "/nonexistent"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { localworker.Sweep(context.Background(), home, run) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := workerSpec(t, "a", "", "true")
	uids, err := drv.PickUIDs(ctx, spec, 1, heldNone)
	if err != nil {
		t.Fatal(err)
	}
	uid := uids[0]

	// Another uid's file, and a world-writable directory of another uid
	// that the worker writes into.
	mk := func(p string, owner int, dir bool) {
		t.Helper()
		var err error
		if dir {
			err = os.Mkdir(p, 0o777)
			if err == nil {
				err = os.Chmod(p, 0o1777)
			}
		} else {
			err = os.WriteFile(p, []byte("theirs"), 0o644)
		}
		if err == nil {
			err = os.Lchown(p, owner, owner)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	mk(tmp("other"), other, false)
	mk(tmp("theirs"), other, true)
	// What an earlier holder of the uid left without being terminated.
	mk(tmp("stale"), int(uid), false)
	mk(hidden, int(uid), false)

	if _, err := drv.Launch(ctx, provisioner.InstanceSpec{ID: "a-1", Job: "a", Run: run, UID: uid, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(tmp("stale")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("what an earlier holder of uid %d left is still there after the launch: %v", uid, err)
	}
	var workerDir string
	testsupport.Eventually(t, 30*time.Second, func() error {
		l, err := os.Readlink(tmp("l"))
		if err != nil {
			return err
		}
		workerDir = l
		_, err = os.Stat(filepath.Join(l, "ready"))
		return err
	})
	// The other uid's file goes in the worker's directory too: the
	// directory must keep it when it stops being the worker's.
	mk(filepath.Join(tmp("d"), "others"), other, false)

	if err := drv.Terminate(ctx, "a-1"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{tmp("x"), shm, vtmp, tmp("d") + "/a", tmp("l"), tmp("h"), tmp("theirs") + "/mine"} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s, left by uid %d, is still there after terminate: %v", p, uid, err)
		}
	}
	for _, p := range []string{tmp("other"), tmp("theirs"), filepath.Join(tmp("d"), "others"), filepath.Join(workerDir, "keep"), hidden} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s, which the sweep must not touch, is gone: %v", p, err)
		}
	}
	if fi, err := os.Lstat(tmp("d")); err != nil {
		t.Errorf("the uid's directory holding another's file: %v", err)
	} else if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 {
		t.Errorf("the uid's directory holding another's file is uid %d's after terminate; want root's", st.Uid)
	}
}

// TestHostileHolderCannotPoisonItsUID: a worker that builds a tree in /tmp
// deeper than the sweep walks cannot make its terminate fail, nor every
// later launch under its uid: the directory where the walk stops becomes
// root's, 0700, so the uid cannot reach what is below it. And a directory
// an earlier holder of the uid kept in the run's worker directory (its
// terminate never ran) is root's, 0700, once a launch under the uid is
// prepared.
func TestHostileHolderCannotPoisonItsUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("isolation needs root (CI runs as root)")
	}
	top := filepath.Join("/tmp", fmt.Sprintf("ndeep%d", os.Getpid()))
	t.Cleanup(func() { os.RemoveAll(top) })
	// top is depth 1; the walk seals what it finds at depth 128.
	deep := top + strings.Repeat("/d", 140)
	sealed := top + strings.Repeat("/d", 127)
	root := publicDir(t, "nsworker-root-")
	home := t.TempDir()
	run := fmt.Sprintf("deep%d", os.Getpid())
	script := `set -e; umask 022; mkdir -p ` + deep + `; echo secret > ` + deep + `/f
touch "$HOME/ready"; exec sleep 300`
	r := localworker.UIDRange{First: 65480, Last: 65488}
	drv, err := localworker.New(localworker.Config{Home: home, Run: run, Grace: time.Second,
		Command: []string{"/bin/sh", "-c", script},
		Isolation: &localworker.Isolation{Users: &workeruser.Users{}, Root: root, UIDs: &r,
			PasswdFile: "/nonexistent", GroupFile: "/nonexistent"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { localworker.Sweep(context.Background(), home, run) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := workerSpec(t, "a", "", "true")
	uids, err := drv.PickUIDs(ctx, spec, 1, heldNone)
	if err != nil {
		t.Fatal(err)
	}
	uid := uids[0]
	if _, err := drv.Launch(ctx, provisioner.InstanceSpec{ID: "a-1", Job: "a", Run: run, UID: uid, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, 30*time.Second, func() error {
		_, err := os.Stat(filepath.Join(deep, "f"))
		return err
	})
	if err := drv.Terminate(ctx, "a-1"); err != nil {
		t.Fatalf("terminate of a worker that built a deep tree: %v", err)
	}
	fi, err := os.Lstat(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s, where the walk stopped, is uid %d's, mode %v; want root's, 0700", sealed, st.Uid, fi.Mode().Perm())
	}
	if out, err := runAs(ctx, uid, "cat "+deep+"/f"); err == nil {
		t.Errorf("uid %d still reads what it left below the walk's depth: %q", uid, out)
	}

	// An earlier holder's directory whose terminate never ran.
	runDir := runlayout.Of(absPath(t, home), run).WorkerRunDir(root)
	stale := filepath.Join(runDir, "a-0")
	if err := os.Mkdir(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "url"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{stale, filepath.Join(stale, "url")} {
		if err := os.Lchown(p, int(uid), int(uid)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := drv.Launch(ctx, provisioner.InstanceSpec{ID: "a-2", Job: "a", Run: run, UID: uid, Spec: spec}); err != nil {
		t.Fatalf("launch under the uid after its holder built a deep tree: %v", err)
	}
	if fi, err := os.Lstat(stale); err != nil {
		t.Error(err)
	} else if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o700 {
		t.Errorf("an earlier holder's directory is uid %d's, mode %v, at the next launch under uid %d; want root's, 0700", st.Uid, fi.Mode().Perm(), uid)
	}
	if out, err := runAs(ctx, uid, "cat "+filepath.Join(stale, "url")); err == nil {
		t.Errorf("uid %d reads an earlier holder's directory: %q", uid, out)
	}
	if err := drv.Terminate(ctx, "a-2"); err != nil {
		t.Fatal(err)
	}
}
