// Package e2e owns the end-to-end harness for whole Nightshift runs: it builds
// the real binaries, launches a plan in a throwaway home under a unique run
// name, observes it the way an operator does (mgmt status --json, /proc,
// ownership markers, pid files), injects faults, tears it down and proves
// that no process of the run is left. The end-to-end test, the chaos suite
// and the bad-input corpus test live beside it.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/nsenv"
	"nightshift/internal/process"
	"nightshift/internal/procscan"
	"nightshift/internal/runlayout"
	"nightshift/internal/worker/localworker"
	"nightshift/keeper"
	"nightshift/mgmt"
)

// Programs are the binaries a run of plans/local.toml needs.
var programs = []string{"./cmd/launch", "./cmd/mgmt", "./cmd/provisioner", "./cmd/controller",
	"./cmd/sitter", "./examples/sleeper", "./examples/queueworker", "./examples/producer"}

// ModuleRoot returns the directory holding the nightshift go.mod, found by
// walking up from the working directory (tests run in their package dir).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module nightshift\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root: no go.mod of module nightshift above the working directory")
		}
		dir = parent
	}
}

// Build compiles every program a run needs into binDir with one go build,
// so the packages are compiled once per test binary.
func Build(ctx context.Context, root, binDir string) error {
	args := append([]string{"build", "-o", binDir + string(filepath.Separator)}, programs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("build binaries into %s: %w\n%s", binDir, err, out)
	}
	return nil
}

// Env is what every run of one test binary shares: the module root and the
// built binaries. plan_dir points at a directory beside bin/ so that the
// plan's ${global.plan_dir}/../bin finds the workers without touching the
// repository's own bin/.
type Env struct {
	Root    string // module root
	BinDir  string // built binaries
	PlanDir string // value of -g plan_dir; PlanDir/../bin == BinDir
}

// NewEnv builds the binaries under dir (dir/bin) and prepares dir/plan.
func NewEnv(ctx context.Context, dir string) (*Env, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	e := &Env{Root: root, BinDir: filepath.Join(dir, "bin"), PlanDir: filepath.Join(dir, "plan")}
	// A provisioner running as root (CI) starts workers as their own
	// user, which must reach the sitter and the workers' binaries.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("prepare %s: %w", dir, err)
	}
	for _, d := range []string{e.BinDir, e.PlanDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("prepare %s: %w", d, err)
		}
	}
	if err := Build(ctx, root, e.BinDir); err != nil {
		return nil, err
	}
	return e, nil
}

// WorkerWritableDir is a temporary directory a test's workers may write
// into (records, markers): under a root provisioner they run as their own
// user, not the test's.
func WorkerWritableDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "nse2e-shared-")
	if err != nil {
		t.Fatal(err)
	}
	// Test data only: every worker user may write it.
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// WorkerWritableFile is an empty file in a WorkerWritableDir that every
// worker may append to, whatever its uid: isolated workers each run under
// a uid of their own, so a file the first one created (mode 0600) would
// refuse the next.
func WorkerWritableFile(t testing.TB, name string) string {
	t.Helper()
	f := filepath.Join(WorkerWritableDir(t), name)
	if err := os.WriteFile(f, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	// Test data only; Chmod because the umask trimmed WriteFile's mode.
	if err := os.Chmod(f, 0o666); err != nil {
		t.Fatal(err)
	}
	return f
}

// Run is one launched run in its own home.
type Run struct {
	T    testing.TB
	Env  *Env
	Home string
	Name string
	Plan string // plan file path
	// Env is added to every command's environment (after the home), as
	// a user's exports would be.
	ExtraEnv []string
}

// NewRun prepares a run of plan (absolute, or relative to the module root) in a fresh
// home with a unique name, and registers a cleanup that tears it down and
// kills whatever is left even when the test failed half way.
func (e *Env) NewRun(t testing.TB, plan, prefix string) *Run {
	t.Helper()
	home, err := os.MkdirTemp("", "nse2e-home-")
	if err != nil {
		t.Fatalf("temp home: %v", err)
	}
	// The run name becomes broker node and queue names; keep it short and
	// unique across concurrent test binaries.
	name := fmt.Sprintf("%s%d%03d", prefix, os.Getpid()%100000, time.Now().UnixNano()%1000)
	if !filepath.IsAbs(plan) {
		plan = filepath.Join(e.Root, plan)
	}
	r := &Run{T: t, Env: e, Home: home, Name: name, Plan: plan}
	t.Cleanup(func() { r.cleanup() })
	t.Logf("run %s: home %s", name, home)
	return r
}

func (r *Run) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if left, _ := procscan.Find("", r.Home, r.Name); len(left) > 0 {
		r.T.Logf("cleanup run %s: %d processes still live, tearing down", r.Name, len(left))
		if res := r.Mgmt(ctx, "teardown", r.Name); res.Code != 0 {
			r.T.Logf("cleanup teardown exit %d: %s", res.Code, res.Stderr)
		}
	}
	killed, remaining, err := procscan.Kill("", r.Home, r.Name, 10*time.Second)
	if len(killed) > 0 || len(remaining) > 0 || err != nil {
		r.T.Logf("cleanup run %s: SIGKILLed %v, remaining %v, err %v", r.Name, killed, remaining, err)
	}
	if !r.T.Failed() {
		// Isolated workers' directories are outside the home.
		_ = localworker.RemoveWorkerDirs(r.Home, r.Name)
		os.RemoveAll(r.Home)
	} else {
		r.T.Logf("run %s failed: home kept at %s for inspection", r.Name, r.Home)
	}
}

// Result is one finished command.
type Result struct {
	Code           int
	Stdout, Stderr string
	Took           time.Duration
}

// Cmd runs one of the built programs with the run's home in its
// environment, the way a user's shell would after export NIGHTSHIFT_HOME.
func (r *Run) Cmd(ctx context.Context, prog string, args ...string) Result {
	cmd := exec.CommandContext(ctx, filepath.Join(r.Env.BinDir, prog), args...)
	cmd.Dir = r.Env.Root
	cmd.Env = append(append(cleanEnv(), nsenv.Home+"="+r.Home), r.ExtraEnv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// Daemons started by launch inherit our pipes unless they detach them;
	// do not wait forever for them to close.
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	res := Result{Stdout: out.String(), Stderr: errb.String(), Took: time.Since(start)}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.Code = exitErr.ExitCode()
	default:
		res.Code = -1
		res.Stderr += "\nrun " + prog + ": " + err.Error()
	}
	return res
}

// cleanEnv drops any NIGHTSHIFT_* the test process inherited, so a run never
// picks up the developer's own home or run.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, nsenv.Prefix) {
			out = append(out, kv)
		}
	}
	return out
}

// Mgmt runs mgmt --home HOME args....
func (r *Run) Mgmt(ctx context.Context, args ...string) Result {
	return r.Cmd(ctx, "mgmt", append([]string{"--home", r.Home}, args...)...)
}

// Launch launches the plan and fails the test unless it exits 0.
func (r *Run) Launch(ctx context.Context) {
	r.T.Helper()
	r.T.Logf("launch %s as run %s", r.Plan, r.Name)
	res := r.Cmd(ctx, "launch", "--home", r.Home, "--plain", "--name", r.Name, "-g", "plan_dir="+r.Env.PlanDir, r.Plan)
	if res.Code != 0 {
		r.T.Fatalf("launch exit %d after %s\nstdout:\n%s\nstderr:\n%s", res.Code, res.Took, res.Stdout, res.Stderr)
	}
	r.T.Logf("launch: run %s ready after %s", r.Name, res.Took.Round(time.Millisecond))
}

// Status reads mgmt status --json.
func (r *Run) Status(ctx context.Context) (*mgmt.RunStatus, error) {
	res := r.Mgmt(ctx, "status", "--json", r.Name)
	// 3: read fine, but the run is not ready and at policy (yet).
	if res.Code != 0 && res.Code != 3 {
		return nil, fmt.Errorf("mgmt status exit %d: %s", res.Code, strings.TrimSpace(res.Stderr))
	}
	var st mgmt.RunStatus
	if err := json.Unmarshal([]byte(res.Stdout), &st); err != nil {
		return nil, fmt.Errorf("mgmt status --json: %w\n%s", err, res.Stdout)
	}
	return &st, nil
}

// Job returns the named job of a status, or nil.
func Job(st *mgmt.RunStatus, name string) *mgmt.JobStatus {
	for i := range st.Jobs {
		if st.Jobs[i].Name == name {
			return &st.Jobs[i]
		}
	}
	return nil
}

// Running returns the ids of a job's workers in state running.
func Running(j *mgmt.JobStatus) []string {
	if j == nil {
		return nil
	}
	var ids []string
	for _, w := range j.Workers {
		if w.State == "running" {
			ids = append(ids, w.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

// Healthy returns the ids of a job's running workers whose health is ok
// (they have sent a heartbeat recently).
func Healthy(j *mgmt.JobStatus) []string {
	if j == nil {
		return nil
	}
	var ids []string
	for _, w := range j.Workers {
		if w.State == "running" && w.Health == "ok" {
			ids = append(ids, w.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

// Cond judges one status; it says whether it holds and, either way, what it
// saw, so a timeout reports the last observation.
type Cond func(st *mgmt.RunStatus) (ok bool, saw string)

// WaitFor polls the status every interval until cond holds or timeout. It
// returns the status that satisfied cond.
func (r *Run) WaitFor(ctx context.Context, what string, timeout time.Duration, cond Cond) (*mgmt.RunStatus, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var saw string
	for {
		st, err := r.Status(ctx)
		if err != nil {
			saw = err.Error()
		} else {
			ok, s := cond(st)
			saw = s
			if ok {
				r.T.Logf("wait %q: met after %s: %s", what, time.Since(start).Round(time.Millisecond), saw)
				return st, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait %q: not met within %s; last saw: %s", what, timeout, saw)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Procs lists every live process of the run (broker node, daemons, sitters,
// workers), found by the environment every one of them carries.
func (r *Run) Procs() ([]procscan.Proc, error) {
	return procscan.Find("", r.Home, r.Name)
}

// Sitters maps each live instance id to its sitter's pid, from the
// ownership markers (checked against the pid's start time) and /proc.
func (r *Run) Sitters() (map[string]int, error) {
	owners, err := localworker.ListOwned(r.Home, r.Name)
	if err != nil {
		return nil, fmt.Errorf("sitters of run %s: %w", r.Name, err)
	}
	out := make(map[string]int, len(owners))
	for _, o := range owners {
		out[o.InstanceID] = o.PID
	}
	return out, nil
}

// SitterPIDsOf returns the live sitters whose instance id starts with job+"-".
func SitterPIDsOf(sitters map[string]int, job string) map[string]int {
	out := map[string]int{}
	for id, pid := range sitters {
		if strings.HasPrefix(id, job+"-") {
			out[id] = pid
		}
	}
	return out
}

// Workers returns the live worker processes (children of sitters) whose
// command runs program (such as "sleeper").
func (r *Run) Workers(program string) ([]procscan.Proc, error) {
	procs, err := r.Procs()
	if err != nil {
		return nil, err
	}
	var out []procscan.Proc
	for _, p := range procs {
		argv0, _, _ := strings.Cut(p.Command, " ")
		if filepath.Base(argv0) == program {
			out = append(out, p)
		}
	}
	return out, nil
}

// DaemonPID reads the pid file of a built-in daemon service
// (HOME/runs/RUN/work/<service>/<type>/pid) and reports whether it is alive.
func (r *Run) DaemonPID(service, typ string) (pid int, alive bool, err error) {
	return readPID(filepath.Join(r.RunDir(), "work", service, typ, "pid"))
}

// BrokerPID reads the private broker node's pid file.
func (r *Run) BrokerPID() (pid int, alive bool, err error) {
	return readPID(filepath.Join(r.RunDir(), "work", "broker", "rabbit", "pid"))
}

// KeeperPID reads the active keeper's pid file (pid and start time) and
// reports whether it is alive.
func (r *Run) KeeperPID() (pid int, alive bool, err error) {
	b, err := os.ReadFile(filepath.Join(keeper.Dir(r.Home, r.Name), "active.pid"))
	if err != nil {
		return 0, false, fmt.Errorf("keeper pid file: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, false, fmt.Errorf("keeper pid file holds %q", b)
	}
	pid, err = strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return 0, false, fmt.Errorf("keeper pid file holds %q", b)
	}
	return pid, Alive(pid), nil
}

// StopKeepers stops the run's keepers the way teardown does, so a test can
// watch what happens to a dead daemon with nobody to restart it.
func (r *Run) StopKeepers(ctx context.Context) error {
	return keeper.Stop(ctx, r.Home, r.Name, 5*time.Second)
}

// StartKeepers starts them again the way launch does.
func (r *Run) StartKeepers(ctx context.Context) (int, error) {
	return keeper.Start(ctx, r.Home, r.Name, []string{filepath.Join(r.Env.BinDir, "mgmt"), "--home", r.Home, "keep", r.Name})
}

// Service returns the named service of a status, or nil.
func Service(st *mgmt.RunStatus, name string) *mgmt.ServiceStatus {
	for i := range st.Levels {
		for j := range st.Levels[i].Services {
			if st.Levels[i].Services[j].Name == name {
				return &st.Levels[i].Services[j]
			}
		}
	}
	return nil
}

// RunDir is HOME/runs/RUN.
func (r *Run) RunDir() string { return runlayout.Of(r.Home, r.Name).Dir() }

func readPID(path string) (int, bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false, fmt.Errorf("pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false, fmt.Errorf("pid file %s: %q is not a pid", path, b)
	}
	return pid, Alive(pid), nil
}

// Alive reports whether pid is a live, non-zombie process.
func Alive(pid int) bool { return process.Alive(pid) }

// Kill9 SIGKILLs pid and waits (bounded) until it is gone or a zombie, so
// the caller's next observation sees the fault.
func (r *Run) Kill9(what string, pid int) error {
	r.T.Logf("fault: SIGKILL %s (pid %d)", what, pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill -9 %s pid %d: %w", what, pid, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for Alive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("kill -9 %s pid %d: still alive after 5s", what, pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Publish puts n work items on the run's work queue with the producer.
func (r *Run) Publish(ctx context.Context, n int) error {
	res := r.Cmd(ctx, "producer", "--home", r.Home, "--run", r.Name, "--count", strconv.Itoa(n))
	if res.Code != 0 {
		return fmt.Errorf("producer exit %d: %s", res.Code, res.Stderr)
	}
	r.T.Logf("publish: %s", strings.TrimSpace(res.Stdout))
	return nil
}

// Teardown runs mgmt teardown and returns its result.
func (r *Run) Teardown(ctx context.Context) Result {
	r.T.Logf("teardown run %s", r.Name)
	res := r.Mgmt(ctx, "teardown", r.Name)
	r.T.Logf("teardown exit %d after %s:\n%s%s", res.Code, res.Took.Round(time.Millisecond), res.Stdout, res.Stderr)
	return res
}

// AssertNoProcesses fails the test if /proc holds any process of the run.
// Exited children may take a moment to be reaped by init, so it allows a
// short grace before judging.
func (r *Run) AssertNoProcesses() {
	r.T.Helper()
	var left []procscan.Proc
	for deadline := time.Now().Add(3 * time.Second); ; {
		var err error
		left, err = r.Procs()
		if err != nil {
			r.T.Fatalf("scan /proc: %v", err)
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(left) != 0 {
		r.T.Errorf("run %s: %d processes left in /proc after teardown: %v", r.Name, len(left), left)
		return
	}
	r.T.Logf("run %s: /proc holds no process of the run", r.Name)
}

// Reconcile compares the running workers a status reports with the live
// sitter processes in /proc and returns a description of any difference.
func Reconcile(st *mgmt.RunStatus, sitters map[string]int) []string {
	var diffs []string
	inStatus := map[string]bool{}
	for _, j := range st.Jobs {
		for _, id := range Running(&j) {
			inStatus[id] = true
			if _, ok := sitters[id]; !ok {
				diffs = append(diffs, fmt.Sprintf("job %s: worker %s running in status but no live sitter", j.Name, id))
			}
		}
	}
	for id, pid := range sitters {
		if !inStatus[id] {
			diffs = append(diffs, fmt.Sprintf("sitter %s (pid %d) live but not running in status", id, pid))
		}
	}
	sort.Strings(diffs)
	return diffs
}
