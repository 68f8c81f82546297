package localworker_test

import (
	"context"
	"errors"
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

	"github.com/jonboulle/clockwork"

	"nightshift/internal/runlayout"
	"nightshift/internal/testsupport"
	"nightshift/internal/worker/localworker"
	"nightshift/internal/workeruser"
	"nightshift/provisioner"
)

// TestIsolatedInstancesGetOwnUIDs: two instances of one job each run
// under a uid of their own from the range, so one's task can neither read
// the other's directory nor signal or inspect its processes; a uid still
// held by a running process is not handed out again, and is once
// terminate has killed everything of it (found by its uid, too).
func TestIsolatedInstancesGetOwnUIDs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("isolation needs root (CI runs as root)")
	}
	if testing.Short() {
		t.Skip("builds the sitter")
	}
	sitterBin := buildSitter(t)
	home := t.TempDir()
	run := fmt.Sprintf("uid%d", os.Getpid())
	lay := runlayout.Of(home, run)
	root := publicDir(t, "nsworker-root-")
	absHome, err := filepath.Abs(home)
	if err != nil {
		t.Fatal(err)
	}
	// A range of the default's top, where nothing of this host lives.
	r := localworker.UIDRange{First: 65500, Last: 65519}
	drv, err := localworker.New(localworker.Config{Home: home, Run: run, Grace: 2 * time.Second,
		Command:   []string{sitterBin, "agent", "--cgroup", "off"},
		Isolation: &localworker.Isolation{Users: &workeruser.Users{}, Root: root, UIDs: &r}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { localworker.Sweep(context.Background(), home, run) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	broker := "amqp://guest:guest@127.0.0.1:5672/"

	// A job naming its user takes none of the range.
	if got, err := drv.PickUIDs(ctx, workerSpec(t, "named", "nobody", "true"), 1, heldNone); err != nil || got != nil {
		t.Errorf("PickUIDs for a job with worker.user = %v, %v; want none", got, err)
	}
	held := map[uint32]bool{r.First: true} // a live record holds it
	uids, err := drv.PickUIDs(ctx, workerSpec(t, "a", "", "true"), 2, func() (map[uint32]bool, error) { return held, nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(uids) != 2 || uids[0] == uids[1] || slices.Contains(uids, r.First) || uids[0] < r.First || uids[1] > r.Last {
		t.Fatalf("PickUIDs = %v; want two distinct uids of %d-%d but %d", uids, r.First, r.Last, r.First)
	}

	if _, err := drv.Launch(ctx, provisioner.InstanceSpec{ID: "a-1", Job: "a", Run: run, BrokerURL: broker, UID: uids[0],
		Spec: workerSpec(t, "a", "", "echo ok > \"$HOME/secret.txt\"; exec sleep 300")}); err != nil {
		t.Fatal(err)
	}
	var victims []int
	testsupport.Eventually(t, 30*time.Second, func() error {
		if victims = instancePIDs(run, "a-1"); len(victims) < 2 {
			return fmt.Errorf("a-1 has processes %v, want its sitter and its task", victims)
		}
		return nil
	})
	dirA := lay.WorkerDir(root, "a-1")
	var script strings.Builder
	script.WriteString("id -u > \"$HOME/probe.tmp\"\n")
	fmt.Fprintf(&script, "echo \"read: $(cat %q 2>&1 >/dev/null)\" >> \"$HOME/probe.tmp\"\n", filepath.Join(dirA, "secret.txt"))
	for _, pid := range victims {
		fmt.Fprintf(&script, "echo \"kill %d: $(kill -0 %d 2>&1)\" >> \"$HOME/probe.tmp\"\n", pid, pid)
		fmt.Fprintf(&script, "echo \"environ %d: $(cat /proc/%d/environ 2>&1 >/dev/null)\" >> \"$HOME/probe.tmp\"\n", pid, pid)
	}
	script.WriteString("mv \"$HOME/probe.tmp\" \"$HOME/probe.out\"\nexec sleep 300\n")
	if _, err := drv.Launch(ctx, provisioner.InstanceSpec{ID: "a-2", Job: "a", Run: run, BrokerURL: broker, UID: uids[1],
		Spec: workerSpec(t, "a", "", script.String())}); err != nil {
		t.Fatal(err)
	}
	dirB := lay.WorkerDir(root, "a-2")
	var report []byte
	testsupport.Eventually(t, 30*time.Second, func() error {
		report, err = os.ReadFile(filepath.Join(dirB, "probe.out"))
		return err
	})
	lines := strings.Split(strings.TrimSpace(string(report)), "\n")
	if lines[0] != strconv.Itoa(int(uids[1])) {
		t.Errorf("a-2's task: id -u = %s, want %d", lines[0], uids[1])
	}
	for _, l := range lines[1:] {
		if !strings.Contains(l, "Permission denied") && !strings.Contains(l, "Operation not permitted") {
			t.Errorf("a-2's task reached a-1: %q (want EACCES or EPERM); report:\n%s", l, report)
		}
	}
	for id, uid := range map[string]uint32{"a-1": uids[0], "a-2": uids[1]} {
		for _, pid := range instancePIDs(run, id) {
			if got, err := uidOf(pid); err != nil || got != int(uid) {
				t.Errorf("%s pid %d runs as uid %d (%v), want %d", id, pid, got, err, uid)
			}
		}
		fi, err := os.Stat(lay.WorkerDir(root, id))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != uid {
			t.Errorf("%s's directory is %d:%d, want %d:%d", id, st.Uid, st.Gid, uid, uid)
		}
		// Its cgroup, where this host has v1 hierarchies to hand over.
		cg := filepath.Join("/sys/fs/cgroup/cpu", localworker.CgroupPrefix(absHome, run, id))
		if fi, err := os.Stat(cg); err != nil {
			t.Logf("no cgroup for %s here: %v", id, err)
		} else if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != uid {
			t.Errorf("%s's cgroup %s is %d:%d, want %d:%d", id, cg, st.Uid, st.Gid, uid, uid)
		}
	}

	// A process of a-1's uid that left its session and cleared its
	// environment still holds the uid: not handed out, and killed by
	// terminate.
	stray := "cd /; exec env -i setsid sleep 300 </dev/null >/dev/null 2>&1 &"
	if out, err := runAs(ctx, uids[0], stray); err != nil {
		t.Fatalf("stray: %v: %s", err, out)
	}
	if got, err := drv.PickUIDs(ctx, workerSpec(t, "a", "", "true"), 1, func() (map[uint32]bool, error) { return map[uint32]bool{r.First: true}, nil }); err != nil || len(got) != 1 || got[0] == uids[0] || got[0] == uids[1] {
		t.Errorf("PickUIDs while a-1 and a-2 run = %v, %v; want neither's uid", got, err)
	}
	if err := drv.Terminate(ctx, "a-1"); err != nil {
		t.Fatal(err)
	}
	if left := pidsOfUID(uids[0]); len(left) > 0 {
		t.Errorf("after terminate, processes of a-1's uid %d remain: %v", uids[0], left)
	}
	if got, err := drv.PickUIDs(ctx, workerSpec(t, "a", "", "true"), 1, func() (map[uint32]bool, error) { return map[uint32]bool{r.First: true}, nil }); err != nil || len(got) != 1 || got[0] != uids[0] {
		t.Errorf("PickUIDs after a-1 terminated = %v, %v; want its uid %d back", got, err, uids[0])
	}
	// The uid's next holder must not find what a-1 left: its directory
	// is root's now.
	out, err := runAs(ctx, uids[0], "ls "+lay.WorkerDir(root, "a-1")+" 2>&1; cat "+lay.WorkerDir(root, "a-1")+"/* 2>&1; true")
	if err != nil || !strings.Contains(string(out), "Permission denied") {
		t.Errorf("uid %d after a-1 ended reads its directory: %v\n%s", uids[0], err, out)
	}
}

// runAs runs a shell command as uid (gid the same), as a root helper.
func runAs(ctx context.Context, uid uint32, script string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	return cmd.CombinedOutput()
}

// pidsOfUID lists the live processes whose real uid is uid.
func pidsOfUID(uid uint32) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil || strings.Contains(string(st), ") Z ") {
			continue
		}
		if got, err := uidOf(pid); err == nil && got == int(uid) {
			out = append(out, pid)
		}
	}
	return out
}

func heldNone() (map[uint32]bool, error) { return nil, nil }

// TestUIDClaimsKeepRunsApart: two runs on one host each keep their own
// ledger, so a uid one recorded for a worker not running yet (or whose
// provisioner is down) is invisible to the other's ledger and /proc; the
// host-wide claim keeps the other run off it until the first run's worker
// directory is removed (mgmt rm). A run takes its own claims again.
func TestUIDClaimsKeepRunsApart(t *testing.T) {
	root := publicDir(t, "nsworker-root-")
	r := localworker.UIDRange{First: 65510, Last: 65519}
	spec := workerSpec(t, "a", "", "true")
	ctx := context.Background()
	clock := clockwork.NewFakeClock()
	open := func(home, run string) *localworker.Driver {
		d, err := localworker.New(localworker.Config{Home: home, Run: run, Command: []string{"true"}, Clock: clock,
			Isolation: &localworker.Isolation{Users: &workeruser.Users{}, Root: root, UIDs: &r,
				PasswdFile: "/nonexistent", GroupFile: "/nonexistent"}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	homeA, homeB := t.TempDir(), t.TempDir()
	a, b := open(homeA, "one"), open(homeB, "one") // one run name, two homes
	got1, err := a.PickUIDs(ctx, spec, 2, heldNone)
	if err != nil || len(got1) != 2 {
		t.Fatalf("run A picked %v, %v", got1, err)
	}
	got2, err := b.PickUIDs(ctx, spec, 2, heldNone)
	if err != nil || len(got2) != 2 || slices.Contains(got2, got1[0]) || slices.Contains(got2, got1[1]) {
		t.Errorf("run B picked %v (%v) while run A holds %v; want none of A's", got2, err, got1)
	}
	// A's ledger freed them: A takes its own claims again (once a fresh
	// scan of /proc shows nothing of them runs).
	clock.Advance(time.Minute)
	if again, err := a.PickUIDs(ctx, spec, 2, heldNone); err != nil || !slices.Equal(again, got1) {
		t.Errorf("run A picked %v (%v) again, want its own %v", again, err, got1)
	}
	// A is removed (mgmt rm removes its worker directory): its uids are
	// free for B.
	if err := os.RemoveAll(runlayout.Of(absPath(t, homeA), "one").WorkerRunDir(root)); err != nil {
		t.Fatal(err)
	}
	held := map[uint32]bool{got2[0]: true, got2[1]: true}
	got3, err := b.PickUIDs(ctx, spec, 2, func() (map[uint32]bool, error) { return held, nil })
	if err != nil || !slices.Equal(got3, got1) {
		t.Errorf("run B picked %v (%v) after A was removed, want A's %v", got3, err, got1)
	}
}

func absPath(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestIsolatedLaunchWithoutUIDFails: when uid allocation fails (the range
// is exhausted, or the claim directory is unusable) picking says so, and a
// launch that consequently carries no uid is refused: nothing of the
// instance runs, under the shared worker user or any other.
func TestIsolatedLaunchWithoutUIDFails(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("isolation needs root (CI runs as root)")
	}
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	root := publicDir(t, "nsworker-root-")
	home := t.TempDir()
	run := fmt.Sprintf("nouid%d", os.Getpid())
	r := localworker.UIDRange{First: 65518, Last: 65519}
	drv, err := localworker.New(localworker.Config{Home: home, Run: run, Grace: time.Second,
		Command: []string{"/bin/sh", "-c", "exec sleep 300"},
		Isolation: &localworker.Isolation{Users: &workeruser.Users{}, User: "nobody", Root: root, UIDs: &r,
			PasswdFile: "/nonexistent", GroupFile: "/nonexistent"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { localworker.Sweep(context.Background(), home, run) })
	ctx := context.Background()
	spec := workerSpec(t, "a", "", "true")

	full := func() (map[uint32]bool, error) { return map[uint32]bool{65518: true, 65519: true}, nil }
	if got, err := drv.PickUIDs(ctx, spec, 1, full); err == nil || !strings.Contains(err.Error(), "0 free, 1 wanted") || !errors.Is(err, provisioner.ErrUIDsExhausted) {
		t.Errorf("PickUIDs with the range held = %v, %v; want an error saying it is exhausted, wrapping ErrUIDsExhausted", got, err)
	}
	claims := filepath.Join(root, ".uids")
	if err := os.RemoveAll(claims); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(claims, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := drv.PickUIDs(ctx, spec, 1, heldNone); err == nil || !strings.Contains(err.Error(), "worker uids") {
		t.Errorf("PickUIDs with its claim directory a file = %v, %v; want an error", got, err)
	}

	_, err = drv.Launch(ctx, provisioner.InstanceSpec{ID: "a-1", Job: "a", Run: run, Spec: spec})
	if err == nil || !strings.Contains(err.Error(), "refusing to run it as the shared user nobody") {
		t.Errorf("Launch without a uid = %v; want it refused", err)
	}
	if pids := instancePIDs(run, "a-1"); len(pids) > 0 {
		t.Errorf("a-1 runs (pids %v) though it has no uid of its own", pids)
	}
	if _, err := os.Stat(filepath.Join(localworker.InstanceDir(absPath(t, home), run, "a-1"), "owner.json")); err == nil {
		t.Errorf("a-1 has an ownership marker: something was started")
	}
}

// TestPickUIDsReusesAScanSafely: picks share one /proc scan for a while,
// yet never hand out a uid a process holds that started after the scan
// under a uid the ledger held then (its instance launched later) or that
// this driver handed out since, once the record that held it has ended.
func TestPickUIDsReusesAScanSafely(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("starts processes of other uids (CI runs as root)")
	}
	r := localworker.UIDRange{First: 65480, Last: 65483}
	clock := clockwork.NewFakeClock() // the scan never goes stale here
	d, err := localworker.New(localworker.Config{Home: t.TempDir(), Run: "scan", Command: []string{"true"}, Clock: clock,
		Isolation: &localworker.Isolation{Users: &workeruser.Users{}, Root: publicDir(t, "nsworker-root-"), UIDs: &r,
			PasswdFile: "/nonexistent", GroupFile: "/nonexistent"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec := workerSpec(t, "a", "", "true")
	held := map[uint32]bool{r.First: true} // recorded, not launched yet
	heldBy := func() (map[uint32]bool, error) { return held, nil }
	got, err := d.PickUIDs(ctx, spec, 1, heldBy) // scans
	if err != nil || len(got) != 1 || got[0] != r.First+1 {
		t.Fatalf("first pick = %v, %v; want [%d]", got, err, r.First+1)
	}
	// Both instances launch after the scan, and their records end while
	// a process of each still runs (a kill pending).
	for _, u := range []uint32{r.First, got[0]} {
		if out, err := runAs(ctx, u, "cd /; exec setsid sleep 300 </dev/null >/dev/null 2>&1 &"); err != nil {
			t.Fatalf("process of %d: %v: %s", u, err, out)
		}
		t.Cleanup(func() {
			for _, pid := range pidsOfUID(u) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		})
	}
	held = map[uint32]bool{}
	again, err := d.PickUIDs(ctx, spec, 2, heldBy)
	if err != nil || len(again) != 2 || slices.Contains(again, r.First) || slices.Contains(again, got[0]) {
		t.Errorf("pick while processes of %d and %d run = %v, %v; want neither", r.First, got[0], again, err)
	}
}
