package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift/internal/bench"
	"nightshift/internal/service/builtin"
	"nightshift/internal/testsupport"
	"nightshift/launchplan"
	"nightshift/sitter"
)

func testEnv(t *testing.T) *env {
	root, err := moduleRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	// As root the provisioners run workers as their own user, which must
	// reach the binaries built under work.
	for _, d := range []string{filepath.Dir(work), work} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &env{root: root, work: work, quick: true, settle: 200 * time.Millisecond,
		clock: clockwork.NewRealClock(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// The generated plans must be valid launch plans, or the boot scenario
// measures an error message.
func TestGeneratedPlansValidate(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		levels int
		boot   []string
	}{{1, []string{"/bin/true"}}, {5, []string{"/bin/true"}}, {1, []string{"/bin/sleep", "1"}}} {
		p, err := writePlan(dir, fmt.Sprintf("p-%d-%d", tc.levels, len(tc.boot)), tc.levels, tc.boot)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := launchplan.Load(p, launchplan.Options{Types: builtin.Names(), Replicas: builtin.Replicas})
		if err != nil {
			t.Fatalf("generated plan %s does not validate: %v", p, err)
		}
		if len(plan.Levels) != tc.levels {
			t.Errorf("%s: %d levels, want %d", p, len(plan.Levels), tc.levels)
		}
		for _, l := range plan.Levels {
			if len(l.Services) != servicesPerLevel {
				t.Errorf("%s level %d: %d services, want %d", p, l.Index, len(l.Services), servicesPerLevel)
			}
		}
	}
}

// The sitter tasks file must load with the sitter's own parser and ask for
// what the issue specifies: always restart, no give-up, limits sampled.
func TestSitterTasksValidate(t *testing.T) {
	f, err := sitter.ParseFile("tasks.toml", []byte(sitterTasks(idleChildren)))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Tasks) != idleChildren || f.SampleInterval.D() != time.Second {
		t.Fatalf("%d tasks, sample_interval %v", len(f.Tasks), f.SampleInterval.D())
	}
	for _, task := range f.Tasks {
		task = task.WithDefaults()
		if task.Restart != sitter.RestartAlways || *task.MaxRestarts >= 0 || task.BackoffInitial.D() > time.Millisecond ||
			task.CPU == 0 || task.Mem == 0 || !slices.Equal(task.Argv(), []string{"sleep", "3600"}) {
			t.Fatalf("task %s is not an always-restarted idle sleep with limits: %+v", task.Name, task)
		}
	}
}

func TestSupervisordConfGolden(t *testing.T) {
	got := []byte(supervisordConf("/W", 2))
	want, err := os.ReadFile("testdata/supervisord.conf.golden")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("supervisord.conf differs from testdata/supervisord.conf.golden:\n%s", got)
	}
}

func TestRunFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-run", "nope"}, 2, `unknown scenario "nope"`},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"-bogus"}, 2, "flag provided but not defined"},
		{[]string{"-fuzztime", "soon"}, 2, `-fuzztime "soon": want a positive duration`},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.msg) {
			t.Errorf("run %q = %d, stderr %q; want %d and %q", tc.args, code, errb.String(), tc.code, tc.msg)
		}
	}
}

// The fuzz step needs nothing built in quick mode, where it is skipped, so
// it shows the whole path from flags to both report files.
func TestRunWritesReport(t *testing.T) {
	md := filepath.Join(t.TempDir(), "B.md")
	var out, errb bytes.Buffer
	if code := run([]string{"-quick", "-run", "fuzz", "-out", md}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	b, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| fuzz |", "not measured: full mode only", "(quick mode), ", "`go run ./cmd/nsbench -quick -run fuzz -out "} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %q:\n%s", want, b)
		}
	}
	var rep bench.Report
	js, err := os.ReadFile(strings.TrimSuffix(md, ".md") + ".json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &rep); err != nil || len(rep.Outcomes) != 1 || rep.Outcomes[0].Status != bench.StatusNotMeasured || rep.Meta.NProc < 1 || rep.Meta.GoVersion == "" {
		t.Errorf("json: %v %+v", err, rep)
	}
}

func TestChildrenAndProcReaders(t *testing.T) {
	cmd := exec.Command("sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	testsupport.Eventually(t, 5*time.Second, func() error {
		if !slices.Contains(sleepers(children(os.Getpid())), cmd.Process.Pid) {
			return fmt.Errorf("child %d never listed among %v", cmd.Process.Pid, children(os.Getpid()))
		}
		return nil
	})
	if _, err := cpuTicks(os.Getpid()); err != nil {
		t.Error(err)
	}
	if mb, err := rssMB(os.Getpid()); err != nil || mb <= 0 {
		t.Errorf("rss %v, %v", mb, err)
	}
	if _, err := cpuTicks(1 << 30); err == nil || !strings.Contains(err.Error(), "read cpu of pid") {
		t.Errorf("missing pid: %v", err)
	}
}

// bashSupervisor is a real, tiny supervisor: 100 sleeps, and a new one each
// time one dies. It lets the measuring loop run end to end without the
// sitter or supervisord.
const bashSupervisor = `for i in $(seq 100); do sleep 3600 & done; while :; do wait -n; sleep 3600 & done`

func TestMeasureSupervisor(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		skipOrFail(t, "bash not installed (apt-get install bash)")
	}
	// Children inherit the mark, so the sweep check below sees only ours
	// and not other people's sleeps on this shared machine.
	mark := strconv.Itoa(os.Getpid())
	t.Setenv("NSBENCH_TEST_MARK", mark)
	e := testEnv(t)
	r, err := e.measureSupervisor(context.Background(), "bash", []string{"bash", "-c", bashSupervisor}, e.work, 500*time.Millisecond, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.restarts)+r.timeouts != 3 || len(r.restarts) == 0 {
		t.Errorf("restarts %v, timeouts %d; want 3 crashes timed", r.restarts, r.timeouts)
	}
	if r.rssMB <= 0 || r.cpuPerMin < 0 {
		t.Errorf("rss %v MB, cpu %v s/min", r.rssMB, r.cpuPerMin)
	}
	// bash dies on SIGTERM and leaves its sleeps behind: the sweep must
	// have killed every one of them.
	if left := strayBenchSleeps(t, mark); len(left) > 0 {
		t.Errorf("children outlived the measurement: %v", left)
	}
}

func TestMeasureSupervisorFailures(t *testing.T) {
	e := testEnv(t)
	_, err := e.measureSupervisor(context.Background(), "crashy", []string{"sh", "-c", "echo boom; exit 3"}, e.work, time.Second, 1, nil)
	if err == nil || !strings.Contains(err.Error(), "crashy exited during start-up") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("err = %v, want start-up exit with its output", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = e.measureSupervisor(ctx, "slow", []string{"sh", "-c", "sleep 3600"}, e.work, time.Second, 1, nil)
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("err = %v, want the context's deadline", err)
	}
	_, err = e.measureSupervisor(context.Background(), "missing", []string{filepath.Join(e.work, "no-such-binary")}, e.work, time.Second, 1, nil)
	if err == nil || !strings.Contains(err.Error(), "start missing") {
		t.Errorf("err = %v", err)
	}
}

// strayBenchSleeps lists live `sleep 3600` processes that carry this
// test's mark in their environment.
func strayBenchSleeps(t *testing.T, mark string) []int {
	t.Helper()
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(b, []byte("sleep\x003600\x00")) {
			continue
		}
		var pid int
		fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d", &pid)
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if bytes.Contains(env, []byte("NSBENCH_TEST_MARK="+mark+"\x00")) && syscall.Kill(pid, 0) == nil {
			out = append(out, pid)
		}
	}
	return out
}

// skipOrFail skips when a needed program is missing, except under
// NIGHTSHIFT_TEST_STRICT=1 (CI), where a missing dependency is a failure.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("NIGHTSHIFT_TEST_STRICT") == "1" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// TestBootScenario runs the quick boot scenario against the real launch
// binary: every figure must come with a command, and the level curve must
// get a verdict. It asserts nothing about how fast launch is.
func TestBootScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs cmd/launch")
	}
	e := testEnv(t)
	o := bench.Execute(context.Background(), e.clock, bench.Scenario{Name: "boot", Run: e.bootScenario})
	if o.Status != bench.StatusMeasured {
		t.Fatalf("boot: %s: %s", o.Status, o.Reason)
	}
	names := map[string]bool{}
	for _, f := range o.Figures {
		names[f.Name] = true
		if f.Command == "" || !strings.Contains(f.Command, "launch --home $HOME_DIR --plain $WORK/boot/") || f.Value <= 0 {
			t.Errorf("figure %q: value %v, command %q", f.Name, f.Value, f.Command)
		}
	}
	for _, want := range []string{"5x20 no-op plan: wall time of launch", "parallel speed-up on that level (sum of boots 20 s / wall)"} {
		if !names[want] {
			t.Errorf("no figure %q among %v", want, names)
		}
	}
	if len(o.Series) != 1 || len(o.Series[0].Points) != 3 || o.Series[0].Linearity == nil {
		t.Errorf("level curve: %+v", o.Series)
	}
}

// TestWindowSync: side-by-side windows start together, and a supervisor
// that fails before its window releases the one waiting for it.
func TestWindowSync(t *testing.T) {
	ctx := context.Background()
	var nilSync *windowSync
	if err := nilSync.arrive(ctx); err != nil {
		t.Fatal(err)
	}
	nilSync.leave()
	nilSync.crashTurn()()

	for _, other := range []string{"arrives", "leaves"} {
		t.Run(other, func(t *testing.T) {
			ws := newWindowSync(2)
			released := make(chan error, 1)
			go func() { released <- ws.arrive(ctx) }()
			select {
			case <-released:
				t.Fatal("released before the other supervisor was ready")
			case <-time.After(50 * time.Millisecond):
			}
			if other == "arrives" {
				go func() { _ = ws.arrive(ctx) }()
			} else {
				ws.leave()
			}
			select {
			case err := <-released:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("still waiting after the other supervisor " + other)
			}
		})
	}
	ws := newWindowSync(2)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := ws.arrive(cctx); err == nil {
		t.Error("arrive with a canceled context returned nil while the other never came")
	}
}

// A report nsbench cannot parse stops the write with the file's name in
// the error, and neither the report nor its JSON is touched.
func TestWriteReportKeepsMalformedFile(t *testing.T) {
	dir := t.TempDir()
	md := filepath.Join(dir, "B.md")
	oldMD := []byte("# by hand\n<!-- nsbench:begin ha -->\nrows without an end\n")
	oldJS := []byte(`{"meta":{},"outcomes":[]}`)
	if err := os.WriteFile(md, oldMD, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(jsonPath(md), oldJS, 0o644); err != nil {
		t.Fatal(err)
	}
	rep := bench.Report{Outcomes: []bench.Outcome{{Scenario: "ha", Status: bench.StatusMeasured}}}
	err := writeReport(md, rep)
	if err == nil || !strings.Contains(err.Error(), md) || !strings.Contains(err.Error(), "has no end marker") {
		t.Fatalf("err = %v", err)
	}
	for path, want := range map[string][]byte{md: oldMD, jsonPath(md): oldJS} {
		if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
			t.Errorf("%s changed to:\n%s", path, got)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// Two runs of different scenarios into one file: the second keeps the
// first's block in the markdown and its outcome in the JSON.
func TestWriteReportMergesRuns(t *testing.T) {
	md := filepath.Join(t.TempDir(), "B.md")
	boot := bench.Report{Meta: bench.Meta{Command: "go run ./cmd/nsbench -run boot"}, Outcomes: []bench.Outcome{
		{Scenario: "boot", Title: "Boot", Status: bench.StatusMeasured, Result: bench.Result{Figures: []bench.Figure{{Name: "boot wall", Value: 1}}}}}}
	ha := bench.Report{Meta: bench.Meta{Command: "go run ./cmd/nsbench -run ha"}, Outcomes: []bench.Outcome{
		{Scenario: "ha", Title: "HA", Status: bench.StatusMeasured, Result: bench.Result{Figures: []bench.Figure{{Name: "takeover", Value: 2}}}}}}
	for _, r := range []bench.Report{boot, ha} {
		if err := writeReport(md, r); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<!-- nsbench:begin boot -->", "| boot | boot wall |", "<!-- nsbench:begin ha -->", "| ha | takeover |"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %q:\n%s", want, b)
		}
	}
	var rep bench.Report
	js, err := os.ReadFile(jsonPath(md))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Outcomes) != 2 || rep.Outcomes[0].Scenario != "boot" || rep.Outcomes[1].Scenario != "ha" {
		t.Errorf("json outcomes: %+v", rep.Outcomes)
	}
}

// The committed report must stay mergeable: a hand edit that breaks a
// marker would otherwise surface only when someone next runs a scenario.
// Merging a run of nothing must give the file back byte for byte.
func TestCommittedReportMerges(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "BENCHMARKS.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := bench.MergeMarkdown(b, bench.Report{})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if !bytes.Equal(got, b) {
		t.Errorf("%s changes when merged with an empty run", path)
	}
	js, err := os.ReadFile(jsonPath(path))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bench.MergeJSON(js, bench.Report{}); err != nil {
		t.Errorf("%s: %v", jsonPath(path), err)
	}
}
