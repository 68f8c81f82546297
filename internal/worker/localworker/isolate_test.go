package localworker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/cgroup"
	"nightshift/internal/envelope"
	"nightshift/internal/nsenv"
	"nightshift/internal/runlayout"
	"nightshift/internal/testsupport"
	"nightshift/internal/worker/localworker"
	"nightshift/internal/workeruser"
	"nightshift/provisioner"
)

// publicDir is a temporary directory every user may traverse, as the
// sitter binary's and the workers' root must be.
func publicDir(t *testing.T, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// buildSitter compiles cmd/sitter where a worker user can run it.
func buildSitter(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(publicDir(t, "nsworker-bin-"), "sitter")
	out, err := exec.Command("go", "build", "-o", bin, "nightshift/cmd/sitter").CombinedOutput()
	if err != nil {
		t.Fatalf("build sitter: %v\n%s", err, out)
	}
	return bin
}

// uidOf reads the real uid from /proc/<pid>/status.
func uidOf(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			return strconv.Atoi(strings.Fields(rest)[0])
		}
	}
	return 0, fmt.Errorf("pid %d: no Uid line", pid)
}

// instancePIDs lists the live processes whose environment names instance
// id of run: the sitter and its task's tree.
func instancePIDs(run, id string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		if bytes.Contains(env, []byte("\x00"+nsenv.InstanceID+"="+id+"\x00")) &&
			bytes.Contains(env, []byte(nsenv.Run+"="+run+"\x00")) {
			if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && !bytes.Contains(st, []byte(") Z ")) {
				out = append(out, pid)
			}
		}
	}
	return out
}

func workerSpec(t *testing.T, name, user, shell string) json.RawMessage {
	t.Helper()
	w := map[string]any{"name": name, "shell": shell, "restart": "never"}
	if user != "" {
		w["user"] = user
	}
	b, err := json.Marshal(map[string]any{"driver": "local", "worker": w})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestIsolatedWorker runs real sitters under a root driver with
// isolation: the sitter and its task run as the worker user; the task
// cannot open the run's secret, command key or ledger, nor another
// worker's directories; terminate and the teardown sweep still kill trees
// of another uid.
func TestIsolatedWorker(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("isolation needs root (CI runs as root)")
	}
	if testing.Short() {
		t.Skip("builds the sitter")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	sitterBin := buildSitter(t)
	home := t.TempDir()
	run := fmt.Sprintf("iso%d", os.Getpid())
	lay := runlayout.Of(home, run)
	if err := os.MkdirAll(lay.Dir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := envelope.LoadOrCreateSecret(lay.Secret()); err != nil {
		t.Fatal(err)
	}
	if _, err := envelope.LoadOrCreateCommandKey(envelope.CommandKeyPath(lay.Secret())); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lay.ProvisionerDB(), []byte("ledger"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := publicDir(t, "nsworker-root-")
	users := &workeruser.Users{}
	drv, err := localworker.New(localworker.Config{Home: home, Run: run, Grace: 2 * time.Second,
		Command:   []string{sitterBin, "agent", "--cgroup", "off"},
		Isolation: &localworker.Isolation{Users: users, Root: root}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { localworker.Sweep(context.Background(), home, run) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	me, err := users.Resolve(ctx, "", "") // creates nightshift-worker on first use
	if err != nil {
		t.Fatal(err)
	}
	if me.UID == 0 {
		t.Fatalf("worker user %s is root", me.Name)
	}
	broker := "amqp://guest:guest@127.0.0.1:5672/"

	// Another job's worker, as another user.
	if _, err := drv.Launch(ctx, provisioner.InstanceSpec{ID: "other-1", Job: "other", Run: run, BrokerURL: broker,
		Spec: workerSpec(t, "other", nobody.Username, "exec sleep 300")}); err != nil {
		t.Fatal(err)
	}
	otherDir := lay.WorkerDir(root, "other-1")
	targets := []string{lay.Secret(), envelope.CommandKeyPath(lay.Secret()), lay.ProvisionerDB(),
		lay.Instance("other-1"), lay.Instance("probe-1"), otherDir, filepath.Join(otherDir, runlayout.URLFile)}
	var script strings.Builder
	script.WriteString("id -u > \"$HOME/probe.tmp\"\n")
	for _, p := range targets {
		// cat for files, ls for directories: either says why it failed.
		fmt.Fprintf(&script, "echo \"%s: $( (if test -d %q; then ls %q; else cat %q; fi) 2>&1 >/dev/null)\" >> \"$HOME/probe.tmp\"\n", p, p, p, p)
	}
	script.WriteString("mv \"$HOME/probe.tmp\" \"$HOME/probe.out\"\nexec sleep 300\n")
	if _, err := drv.Launch(ctx, provisioner.InstanceSpec{ID: "probe-1", Job: "probe", Run: run, BrokerURL: broker,
		Spec: workerSpec(t, "probe", "", script.String())}); err != nil {
		t.Fatal(err)
	}
	probeDir := lay.WorkerDir(root, "probe-1")
	var report []byte
	testsupport.Eventually(t, 30*time.Second, func() error {
		report, err = os.ReadFile(filepath.Join(probeDir, "probe.out"))
		return err
	})
	lines := strings.Split(strings.TrimSpace(string(report)), "\n")
	if lines[0] != strconv.Itoa(int(me.UID)) {
		t.Errorf("task's id -u = %s, want %d", lines[0], me.UID)
	}
	for i, p := range targets {
		if want := p + ": "; len(lines) <= i+1 || !strings.HasPrefix(lines[i+1], want) || !strings.Contains(lines[i+1], "Permission denied") {
			t.Errorf("the task could reach %s (want EACCES); report:\n%s", p, report)
		}
	}

	// The sitter and every process of its task run as the worker user.
	pids := instancePIDs(run, "probe-1")
	if len(pids) < 2 {
		t.Fatalf("probe-1 has processes %v, want its sitter and its task", pids)
	}
	for _, pid := range pids {
		if uid, err := uidOf(pid); err != nil || uid != int(me.UID) {
			t.Errorf("pid %d runs as uid %d (%v), want %d", pid, uid, err, me.UID)
		}
	}
	// other-1's sitter runs as nobody and so does its task, whose spec
	// names nobody too: a sitter already that user starts it without
	// switching (which it could not).
	otherPIDs := instancePIDs(run, "other-1")
	if len(otherPIDs) < 2 {
		t.Errorf("other-1 has processes %v, want its sitter and its task", otherPIDs)
	}
	for _, pid := range otherPIDs {
		if uid, _ := uidOf(pid); uid != mustAtoi(t, nobody.Uid) {
			t.Errorf("other-1 pid %d runs as uid %d, want nobody's %s", pid, uid, nobody.Uid)
		}
	}

	// What the worker owns, and what stays the provisioner's.
	for _, c := range []struct {
		path string
		uid  int
		mode os.FileMode
	}{
		{lay.Dir(), 0, 0o700}, {lay.Secret(), 0, 0o600}, {envelope.CommandKeyPath(lay.Secret()), 0, 0o600},
		{lay.ProvisionerDB(), 0, 0o600}, {lay.Instance("probe-1"), 0, 0o700},
		{filepath.Join(lay.Instance("probe-1"), "stderr"), 0, 0o600},
		{lay.WorkerRunDir(root), 0, 0o711},
		{probeDir, int(me.UID), 0o700}, {filepath.Join(probeDir, runlayout.URLFile), int(me.UID), 0o600},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		if uid := int(fi.Sys().(*syscall.Stat_t).Uid); uid != c.uid || fi.Mode().Perm() != c.mode {
			t.Errorf("%s: uid %d mode %04o, want uid %d mode %04o", c.path, uid, fi.Mode().Perm(), c.uid, c.mode)
		}
	}
	if got := localworker.SitterDir(home, run, "probe-1"); got != filepath.Join(probeDir, runlayout.SitterDir) {
		t.Errorf("SitterDir = %s, want the worker's own", got)
	}

	// Terminate kills a tree of another uid.
	if err := drv.Terminate(ctx, "probe-1"); err != nil {
		t.Fatal(err)
	}
	if left := instancePIDs(run, "probe-1"); len(left) > 0 {
		t.Errorf("after terminate probe-1 still has %v", left)
	}
	// So does the teardown sweep, found by marker and environment.
	killed, err := localworker.Sweep(ctx, home, run)
	if err != nil || len(killed) != 1 || killed[0] != "other-1" {
		t.Errorf("sweep killed %v, %v; want [other-1]", killed, err)
	}
	if left := instancePIDs(run, "other-1"); len(left) > 0 {
		t.Errorf("after the sweep other-1 still has %v", left)
	}
	// mgmt rm removes the workers' directories, found through the run's.
	if err := localworker.RemoveWorkerDirs(home, run); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lay.WorkerRunDir(root)); !os.IsNotExist(err) {
		t.Errorf("worker directories left: %v", err)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIsolatedWorkerGetsACgroup: an isolated sitter runs as its worker's
// user, which cannot make cgroups in root's hierarchies, so it enforced
// its limits by polling alone. The driver now makes the instance a cgroup
// (v1) and hands it to the user: the sitter puts its task's run in a group
// of its own inside it, with the task's limits; terminate removes it all.
func TestIsolatedWorkerGetsACgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("isolation needs root (CI runs as root)")
	}
	if testing.Short() {
		t.Skip("builds the sitter")
	}
	const cgRoot = "/sys/fs/cgroup"
	probe := "nightshift-workers/probe-" + strconv.Itoa(os.Getpid())
	if mode, err := cgroup.Delegate(cgRoot, probe, 0, 0); err != nil || mode == "" {
		t.Skipf("no cgroup v1 hierarchy to delegate here (%q, %v)", mode, err)
	}
	if err := cgroup.Release(context.Background(), cgRoot, probe, time.Second); err != nil {
		t.Fatal(err)
	}
	sitterBin := buildSitter(t)
	home := t.TempDir()
	run := fmt.Sprintf("cg%d", os.Getpid())
	if err := os.MkdirAll(runlayout.Of(home, run).Dir(), 0o700); err != nil {
		t.Fatal(err)
	}
	root := publicDir(t, "nsworker-root-")
	users := &workeruser.Users{}
	drv, err := localworker.New(localworker.Config{Home: home, Run: run, Grace: 2 * time.Second,
		Command:   []string{sitterBin, "agent"},
		Isolation: &localworker.Isolation{Users: users, Root: root, CgroupRoot: cgRoot}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { localworker.Sweep(context.Background(), home, run) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	me, err := users.Resolve(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	w := map[string]any{"name": "probe", "restart": "never", "cpu": 0.5, "mem": 64,
		"shell": "exec sleep 300"}
	spec, err := json.Marshal(map[string]any{"driver": "local", "worker": w})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := drv.Launch(ctx, provisioner.InstanceSpec{ID: "probe-1", Job: "probe", Run: run,
		BrokerURL: "amqp://guest:guest@127.0.0.1:5672/", Spec: spec}); err != nil {
		t.Fatal(err)
	}
	home, err = filepath.Abs(home)
	if err != nil {
		t.Fatal(err)
	}
	prefix := localworker.CgroupPrefix(home, run, "probe-1")
	if other := localworker.CgroupPrefix(home+"2", run, "probe-1"); other == prefix {
		t.Errorf("two homes' runs of one name share the cgroup %s", prefix)
	}
	for _, ctl := range []string{"cpu", "memory"} {
		dir := filepath.Join(cgRoot, ctl, prefix)
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatalf("the instance's %s cgroup: %v", ctl, err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != me.UID {
			t.Errorf("%s owned by uid %d, want the worker's %d", dir, uid, me.UID)
		}
	}
	// The task (sleep, the worker's uid, not the sitter) is moved into a
	// group of its own under the instance's, in both hierarchies.
	testsupport.Eventually(t, 30*time.Second, func() error {
		var saw []string
		for _, pid := range instancePIDs(run, "probe-1") {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if strings.TrimSpace(string(comm)) != "sleep" {
				continue
			}
			cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
			if err != nil {
				return err
			}
			in := 0
			for _, line := range strings.Split(string(cg), "\n") {
				f := strings.SplitN(line, ":", 3)
				if len(f) == 3 && (slices.Contains(strings.Split(f[1], ","), "cpu") || slices.Contains(strings.Split(f[1], ","), "memory")) &&
					strings.HasPrefix(f[2], "/"+prefix+"/") {
					in++
				}
			}
			if in == 2 {
				return nil
			}
			saw = append(saw, string(cg))
		}
		return fmt.Errorf("no task process in a cpu and a memory group under /%s: %q", prefix, saw)
	})
	if err := drv.Terminate(ctx, "probe-1"); err != nil {
		t.Fatal(err)
	}
	for _, ctl := range []string{"cpu", "memory"} {
		if _, err := os.Stat(filepath.Join(cgRoot, ctl, prefix)); !os.IsNotExist(err) {
			t.Errorf("the instance's %s cgroup is left after terminate: %v", ctl, err)
		}
	}
}
