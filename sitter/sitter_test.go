package sitter_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/psutil"
	"nightshift/internal/testsupport"
	"nightshift/sitter"
)

// TestLimitsCaught runs a CPU spinner, a memory hog and a sleeper past its
// time limit, in polling mode and (when the host allows) cgroup mode. Each
// must be caught quickly, recorded with measured value and limit, take its
// children with it, and be restarted by policy.
func TestLimitsCaught(t *testing.T) {
	for _, mode := range []string{"polling", "cgroup"} {
		t.Run(mode, func(t *testing.T) {
			limiter := limiterFor(t, mode)
			dir := t.TempDir()
			base := sitter.Task{Restart: sitter.RestartOnFailure, MaxRestarts: intp(-1),
				BackoffInitial: dur(100 * time.Millisecond), StopGrace: dur(500 * time.Millisecond)}
			spinner, hog, sleeper := base, base, base
			spinner.Name, spinner.CPU = "spinner", 0.1
			// The background sleep is the child that must die with the task.
			spinner.Shell = fmt.Sprintf(`sleep 300 & echo $! > %s/$$.child; while :; do :; done`, dir)
			hog.Name, hog.Mem, hog.Command = "hog", 48, []string{memhogBin, "-mb", "200", "-step", "8", "-every", "10ms"}
			sleeper.Name, sleeper.TimeLimit = "sleeper", dur(300*time.Millisecond)
			sleeper.Shell = fmt.Sprintf(`sleep 300 & echo $! > %s/$$.child; wait`, dir)
			// Well within every limit: must never be touched.
			calm := base
			calm.Name, calm.CPU, calm.Mem, calm.TimeLimit = "calm", 0.5, 48, dur(time.Hour)
			calm.Command = []string{memhogBin, "-mb", "16"}
			rec := &recordingSampler{Sampler: psutil.New()}
			h := start(t, sitter.Config{Limiter: limiter, Sampler: rec}, spinner, hog, sleeper, calm)
			if got := h.s.Status().LimitMode; (mode == "polling") != (got == "polling") {
				t.Fatalf("limit mode = %s in %s test", got, mode)
			}

			// How fast each is caught is counted in samples, not
			// milliseconds: under load every sample comes late, so a
			// wall-clock bound either flakes or is too loose to mean much.
			cases := []struct {
				task  string
				kind  sitter.ViolationKind
				limit float64
				// prompt fails the test if the violation came later than
				// the rule allows, given the scans taken meanwhile.
				prompt func(first sitter.TaskStatus, v *sitter.Violation) string
			}{
				// CPU must be over on two samples in a row (the first
				// sample of a run counts from its start). Replaying the same
				// scans, no two consecutive ones before the catching scan
				// may both show the spinner clearly over the limit (by half
				// again: the replay's timestamps differ from the sitter's by
				// a little). Under load the spinner itself may get less than
				// the limit on some samples; those rightly do not count.
				{"spinner", sitter.ViolationCPU, 0.1, func(first sitter.TaskStatus, v *sitter.Violation) string {
					scans := rec.between(first.StartedAt, v.At)
					prev := sitter.Measure(nil, first.StartedAt, sitter.Usage{})
					var cpu []float64
					for _, sc := range scans {
						prev = sitter.Measure(sitter.TreeOf(sc.procs, first.PID, nil), sc.at, prev)
						cpu = append(cpu, prev.CPU)
					}
					for i := 0; i+2 < len(cpu); i++ {
						if cpu[i] > 0.15 && cpu[i+1] > 0.15 {
							return fmt.Sprintf("scans %d and %d after start both measured over the limit (cores per scan %.2f) but scan %d caught it", i+1, i+2, cpu, len(cpu))
						}
					}
					return ""
				}},
				// Memory counts on the first sample over: no earlier scan
				// may have seen the tree over the limit. (With a cgroup the
				// kernel may kill it at the cap before any scan does.)
				{"hog", sitter.ViolationMem, 48, func(first sitter.TaskStatus, v *sitter.Violation) string {
					over := 0
					for _, sc := range rec.between(first.StartedAt, v.At) {
						if u := sitter.Measure(sitter.TreeOf(sc.procs, first.PID, nil), sc.at, sitter.Usage{}); u.MemMB > 48 {
							over++
						}
					}
					if over > 1 {
						return fmt.Sprintf("%d scans saw the tree over 48 MB before it was caught, want the first to catch it", over)
					}
					return ""
				}},
				// time_limit is a timer: it fires at the deadline, not
				// several samples later.
				{"sleeper", sitter.ViolationTime, 0.3, func(first sitter.TaskStatus, v *sitter.Violation) string {
					if v.Measured < 0.3 {
						return fmt.Sprintf("stopped early: %gs", v.Measured)
					}
					deadline := first.StartedAt.Add(300 * time.Millisecond)
					if n := len(rec.between(deadline, v.At)); n > 2 {
						return fmt.Sprintf("fired %d scans after its deadline, want at most 2", n)
					}
					return ""
				}},
			}
			var wg sync.WaitGroup
			for _, c := range cases {
				wg.Go(func() {
					first := h.waitTask(t, c.task, 10*time.Second, "first run", func(ts sitter.TaskStatus) bool { return ts.PID > 0 })
					child := 0
					if c.task != "hog" {
						child = readPID(t, filepath.Join(dir, fmt.Sprintf("%d.child", first.PID)), 5*time.Second)
					}
					ts := h.waitTask(t, c.task, 15*time.Second, "a violation", func(ts sitter.TaskStatus) bool { return ts.LastViolation != nil })
					v := ts.LastViolation
					if v.Kind != c.kind || v.Limit != c.limit || v.Measured < v.Limit {
						t.Errorf("%s: violation %+v, want kind %s with measured >= limit %g", c.task, v, c.kind, c.limit)
					}
					if msg := c.prompt(first, v); msg != "" {
						t.Errorf("%s: %s (violation %+v, run started %s)", c.task, msg, v, first.StartedAt.Format(time.StampMicro))
					}
					h.waitTask(t, c.task, 10*time.Second, "restart by policy", func(ts sitter.TaskStatus) bool {
						return ts.Restarts >= 1 && ts.PID > 0 && ts.PID != first.PID
					})
					waitDead(t, first.PID, 5*time.Second)
					if child != 0 {
						waitDead(t, child, 5*time.Second) // the sleep died with its task
					}
				})
			}
			wg.Wait()
			if ts := h.task(t, "calm"); ts.State != sitter.StateRunning || ts.Restarts != 0 || ts.LastViolation != nil || ts.MemMB < 16 {
				t.Errorf("well-behaved task was disturbed or not measured: %+v", ts)
			}
		})
	}
}

// TestChildrenDieWithTask checks /proc for a task's grandchild after a
// violation kills the task.
func TestChildrenDieWithTask(t *testing.T) {
	dir := t.TempDir()
	task := sitter.Task{Name: "parent", Restart: sitter.RestartNever, TimeLimit: dur(300 * time.Millisecond),
		StopGrace: dur(2 * time.Second),
		// A nested shell makes the sleep a grandchild; the outer shell
		// ignores TERM so only the group kill reaches everything.
		Shell: fmt.Sprintf(`sh -c 'sleep 300 & echo $! > %s/gc; wait' & wait`, dir)}
	h := start(t, sitter.Config{}, task)
	gc := readPID(t, filepath.Join(dir, "gc"), 5*time.Second)
	if !alive(gc) {
		t.Fatalf("grandchild %d not running", gc)
	}
	ts := h.waitTask(t, "parent", 10*time.Second, "failed after time limit", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateFailed })
	if ts.LastViolation == nil || ts.LastViolation.Kind != sitter.ViolationTime || !strings.Contains(ts.Reason, "restart=never") {
		t.Errorf("status %+v, want failed by time violation with restart=never", ts)
	}
	waitDead(t, gc, 5*time.Second)
}

func TestGiveUpAfterMaxRestarts(t *testing.T) {
	task := sitter.Task{Name: "crasher", Shell: "exit 3", Restart: sitter.RestartOnFailure,
		MaxRestarts: intp(3), RestartWindow: dur(time.Minute),
		BackoffInitial: dur(100 * time.Millisecond), BackoffMax: dur(200 * time.Millisecond)}
	began := time.Now()
	h := start(t, sitter.Config{}, task)
	ts := h.waitTask(t, "crasher", 15*time.Second, "failed", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateFailed })
	if ts.Restarts != 3 || ts.ExitCode != 3 || !strings.Contains(ts.Reason, "gave up: 3 restarts within 1m0s (max_restarts 3); last run: exit status 3") {
		t.Errorf("status %+v", ts)
	}
	// Back-off 100ms, 200ms, 200ms (capped) must all have been waited.
	if took := time.Since(began); took < 500*time.Millisecond {
		t.Errorf("gave up after %s, faster than the back-off allows", took)
	}
	// An operator start forgets the history and runs it again.
	if err := h.s.StartTask(context.Background(), "crasher"); err != nil {
		t.Fatal(err)
	}
	h.waitTask(t, "crasher", 5*time.Second, "backoff after fresh start", func(ts sitter.TaskStatus) bool {
		return ts.State == sitter.StateBackoff || ts.State == sitter.StateRunning
	})
}

func TestExitPolicies(t *testing.T) {
	cases := []struct {
		name  string
		task  sitter.Task
		state sitter.TaskState
	}{
		{"allow-exit clean exit is final", sitter.Task{Shell: "exit 0"}, sitter.StateExited},
		{"restart never on failure", sitter.Task{Shell: "exit 1", Restart: sitter.RestartNever}, sitter.StateFailed},
		{"missing binary fails clearly", sitter.Task{Command: []string{"/nonexistent/bin"}, Restart: sitter.RestartNever}, sitter.StateFailed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.task.Name = "t"
			h := start(t, sitter.Config{}, c.task)
			ts := h.waitTask(t, "t", 10*time.Second, string(c.state), func(ts sitter.TaskStatus) bool { return ts.State == c.state })
			if ts.Restarts != 0 {
				t.Errorf("restarted %d times", ts.Restarts)
			}
			if c.task.Command != nil && !strings.Contains(ts.Reason, "/nonexistent/bin") {
				t.Errorf("reason %q does not name the binary", ts.Reason)
			}
		})
	}
}

func TestControlMethods(t *testing.T) {
	ctx := context.Background()
	h := start(t, sitter.Config{}, sitter.Task{Name: "svc", Shell: "echo hello; echo oops >&2; exec sleep 300", StopGrace: dur(time.Second)},
		sitter.Task{Name: "idle", Command: []string{"sleep", "300"}, Autostart: boolp(false)})
	first := h.waitTask(t, "svc", 5*time.Second, "running", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateRunning })
	if h.task(t, "idle").State != sitter.StateStopped {
		t.Errorf("autostart=false task is %s", h.task(t, "idle").State)
	}
	if err := h.s.StopTask(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	if ts := h.task(t, "svc"); ts.State != sitter.StateStopped || ts.PID != 0 {
		t.Errorf("after stop: %+v", ts)
	}
	waitDead(t, first.PID, 2*time.Second)
	if err := h.s.StartTask(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	second := h.waitTask(t, "svc", 5*time.Second, "running again", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateRunning })
	if err := h.s.RestartTask(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	third := h.waitTask(t, "svc", 5*time.Second, "running after restart", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateRunning })
	if third.PID == second.PID {
		t.Errorf("restart kept pid %d", third.PID)
	}
	waitDead(t, second.PID, 2*time.Second)
	lt := waitTail(t, h.s, "svc")
	if lt.Stdout[len(lt.Stdout)-1] != "hello" || lt.Stderr[len(lt.Stderr)-1] != "oops" {
		t.Errorf("tail = %+v", lt)
	}
	if err := h.s.RemoveTask(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	waitDead(t, third.PID, 2*time.Second)
	if err := h.s.StopTask(ctx, "svc"); !errors.Is(err, sitter.ErrNoTask) {
		t.Errorf("stop removed task: %v, want ErrNoTask", err)
	}
	if err := h.s.Drain(ctx, "idle"); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("drain of a stopped task: %v", err)
	}
	if err := h.s.AddTask(ctx, sitter.Task{Name: "idle", Shell: "true"}); err == nil {
		t.Error("duplicate AddTask accepted")
	}
	// Added while serving: runs at once.
	if err := h.s.AddTask(ctx, sitter.Task{Name: "late", Command: []string{"sleep", "300"}}); err != nil {
		t.Fatal(err)
	}
	h.waitTask(t, "late", 5*time.Second, "running", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateRunning })
}

func waitTail(t *testing.T, s *sitter.Sitter, name string) sitter.LogTail {
	t.Helper()
	var lt sitter.LogTail
	testsupport.Eventually(t, 5*time.Second, func() error {
		var err error
		if lt, err = s.TailLog(name, 5); err != nil {
			t.Fatal(err)
		}
		if len(lt.Stdout) == 0 || len(lt.Stderr) == 0 {
			return fmt.Errorf("no log lines for %s: %+v", name, lt)
		}
		return nil
	})
	return lt
}

// TestStopGraceThenKill: a task that ignores the stop signal is killed
// after stop_grace, and StopTask waits for that.
func TestStopGraceThenKill(t *testing.T) {
	grace := 300 * time.Millisecond
	h := start(t, sitter.Config{}, sitter.Task{Name: "stubborn", Shell: `trap "" TERM; sleep 300 & wait`, StopGrace: dur(grace)})
	ts := h.waitTask(t, "stubborn", 5*time.Second, "running", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateRunning })
	began := time.Now()
	if err := h.s.StopTask(context.Background(), "stubborn"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took < grace {
		t.Errorf("stop returned after %s, before the grace of %s", took, grace)
	}
	if got := h.task(t, "stubborn"); got.State != sitter.StateStopped || !strings.Contains(got.Reason, "SIGKILL") {
		t.Errorf("after stop: %+v, want stopped by SIGKILL", got)
	}
	waitDead(t, ts.PID, 2*time.Second)
}

// TestDrainAndWorkStatus exercises the busy/idle and drain protocol with a
// shell worker.
func TestDrainAndWorkStatus(t *testing.T) {
	worker := `echo busy > "$NIGHTSHIFT_STATUS_FILE"
while [ ! -e "$NIGHTSHIFT_DRAIN_FILE" ]; do sleep 0.05; done
echo idle > "$NIGHTSHIFT_STATUS_FILE.tmp" && mv "$NIGHTSHIFT_STATUS_FILE.tmp" "$NIGHTSHIFT_STATUS_FILE"
exit 0`
	h := start(t, sitter.Config{}, sitter.Task{Name: "w", Shell: worker, Restart: sitter.RestartAlways})
	h.waitTask(t, "w", 5*time.Second, "busy", func(ts sitter.TaskStatus) bool { return ts.Work == sitter.WorkBusy })
	if err := h.s.Drain(context.Background(), "w"); err != nil {
		t.Fatal(err)
	}
	ts := h.waitTask(t, "w", 5*time.Second, "exited", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateExited })
	if !strings.HasPrefix(ts.Reason, "drained") || ts.Restarts != 0 {
		t.Errorf("after drain: %+v, want exited/drained without restart", ts)
	}
}

// TestWorkStatusFollowsWrites: every later write to the status file is
// seen, in place or by rename, and so is its removal; the sitter reads the
// file only when inotify says it changed, so a missed event would freeze
// the first value.
func TestWorkStatusFollowsWrites(t *testing.T) {
	h := start(t, sitter.Config{}, sitter.Task{Name: "flip", Command: []string{"sleep", "300"}, StopGrace: dur(time.Second)})
	h.waitTask(t, "flip", 5*time.Second, "running", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateRunning })
	file := filepath.Join(h.dir, "tasks", "flip", "flip.status")
	inPlace := func(s string) func() error { return func() error { return os.WriteFile(file, []byte(s+"\n"), 0o644) } }
	renamed := func(s string) func() error {
		return func() error {
			if err := os.WriteFile(file+".tmp", []byte(s+"\n"), 0o644); err != nil {
				return err
			}
			return os.Rename(file+".tmp", file)
		}
	}
	steps := []struct {
		name  string
		write func() error
		want  sitter.Work
	}{
		{"busy in place", inPlace("busy"), sitter.WorkBusy},
		{"idle by rename", renamed("idle"), sitter.WorkIdle},
		{"busy by rename", renamed("busy"), sitter.WorkBusy},
		{"removed", func() error { return os.Remove(file) }, sitter.WorkUnknown},
		{"idle in place", inPlace("idle"), sitter.WorkIdle},
		{"garbage", inPlace("sleeping"), sitter.WorkUnknown},
		{"busy again", inPlace("busy"), sitter.WorkBusy},
	}
	for _, st := range steps {
		if err := st.write(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		h.waitTask(t, "flip", 5*time.Second, st.name, func(ts sitter.TaskStatus) bool { return ts.Work == st.want })
	}
}

// TestWorkStatusAfterTaskDirRemoved: a task dir deleted under a running
// task takes its inotify watch with it; after the next start the sitter
// watches the new dir, so later writes are seen again.
func TestWorkStatusAfterTaskDirRemoved(t *testing.T) {
	h := start(t, sitter.Config{}, sitter.Task{Name: "gone", Command: []string{"sleep", "300"}, StopGrace: dur(time.Second)})
	h.waitTask(t, "gone", 5*time.Second, "running", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateRunning })
	dir := filepath.Join(h.dir, "tasks", "gone")
	file := filepath.Join(dir, "gone.status")
	if err := os.WriteFile(file, []byte("busy\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitTask(t, "gone", 5*time.Second, "busy", func(ts sitter.TaskStatus) bool { return ts.Work == sitter.WorkBusy })
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	h.waitTask(t, "gone", 5*time.Second, "unknown once the dir is gone", func(ts sitter.TaskStatus) bool { return ts.Work == sitter.WorkUnknown })
	if err := h.s.RestartTask(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	h.waitTask(t, "gone", 5*time.Second, "running again", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateRunning })
	// Let a sample read the new, empty dir before the writes, so that
	// only the new watch can report them.
	time.Sleep(3 * sampleEvery)
	for _, w := range []string{"idle", "busy"} {
		if err := os.WriteFile(file, []byte(w+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		h.waitTask(t, "gone", 5*time.Second, w+" after the restart", func(ts sitter.TaskStatus) bool { return string(ts.Work) == w })
	}
}

func TestHealthCheckFailureRestarts(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "healthy")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h := start(t, sitter.Config{}, sitter.Task{Name: "h", Command: []string{"sleep", "300"},
		HealthCommand: []string{"test", "-e", flag}, HealthInterval: dur(100 * time.Millisecond),
		BackoffInitial: dur(100 * time.Millisecond), StopGrace: dur(time.Second)})
	first := h.waitTask(t, "h", 5*time.Second, "running", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateRunning })
	os.Remove(flag)
	ts := h.waitTask(t, "h", 5*time.Second, "health violation", func(ts sitter.TaskStatus) bool { return ts.LastViolation != nil })
	if ts.LastViolation.Kind != sitter.ViolationHealth || ts.LastViolation.Measured != 1 {
		t.Errorf("violation %+v, want health with status 1", ts.LastViolation)
	}
	h.waitTask(t, "h", 5*time.Second, "restarted", func(ts sitter.TaskStatus) bool { return ts.Restarts == 1 && ts.PID != first.PID && ts.PID > 0 })
}

func TestLogRotation(t *testing.T) {
	// ~3.5 MB of 100-byte lines against 1 MiB files and 2 backups: three
	// rotations happen and the oldest backup is pruned.
	h := start(t, sitter.Config{}, sitter.Task{Name: "chatty", LogMaxMB: 1, LogBackups: 2,
		Shell: `head -c 3500000 /dev/zero | tr '\0' x | fold -w 99; echo END; exec sleep 300`})
	const written = 3500000/99*100 + 3500000%99 + 1 + 4
	logs := filepath.Join(h.dir, "logs")
	current := filepath.Join(logs, "chatty.stdout.log")
	var backups []string
	var b []byte
	testsupport.Eventually(t, 15*time.Second, func() error {
		backups, _ = filepath.Glob(filepath.Join(logs, "chatty.stdout-*.log"))
		b, _ = os.ReadFile(current)
		// lumberjack prunes old backups in the background.
		if !strings.HasSuffix(string(b), "END\n") || len(backups) != 2 {
			return fmt.Errorf("rotation not seen: backups %v, current %d bytes", backups, len(b))
		}
		return nil
	})
	total := int64(len(b))
	for _, bk := range backups {
		fi, err := os.Stat(bk)
		if err != nil {
			t.Fatal(err)
		}
		// lumberjack rotates before a write that would cross the
		// limit, and output arrives in pipe-sized chunks (<= 64 KiB).
		if fi.Size() > 1<<20 || fi.Size() < 1<<20-64<<10 {
			t.Errorf("backup %s is %d bytes, want within 64 KiB under 1 MiB", bk, fi.Size())
		}
		total += fi.Size()
	}
	if len(b) > 1<<20 {
		t.Errorf("current log %d bytes, over the limit", len(b))
	}
	if total >= written {
		t.Errorf("kept %d of %d bytes: the oldest backup was not pruned", total, written)
	}
}

type recordingSink struct {
	mu   sync.Mutex
	hbs  []sitter.Heartbeat
	fail bool
}

func (r *recordingSink) SendHeartbeat(ctx context.Context, hb sitter.Heartbeat) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hbs = append(r.hbs, hb)
	if r.fail {
		return errors.New("broker amqp://guest:secret@127.0.0.1:5672/ unreachable")
	}
	return nil
}

func (r *recordingSink) count() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.hbs) }

func TestHeartbeats(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("failing=%v", fail), func(t *testing.T) {
			sink := &recordingSink{fail: fail}
			var logs syncBuffer
			h := start(t, sitter.Config{Sink: sink, HeartbeatInterval: 50 * time.Millisecond, InstanceID: "i-123", Job: "j",
				Logger: slog.New(slog.NewTextHandler(&logs, nil))},
				sitter.Task{Name: "beat", Command: []string{"sleep", "300"}, TimeLimit: dur(200 * time.Millisecond),
					Restart: sitter.RestartAlways, BackoffInitial: dur(50 * time.Millisecond), MaxRestarts: intp(-1)})
			// Supervision goes on whatever the sink does: the time limit
			// keeps restarting the task.
			h.waitTask(t, "beat", 10*time.Second, "two policy restarts", func(ts sitter.TaskStatus) bool { return ts.Restarts >= 2 })
			if n := sink.count(); n < 3 {
				t.Fatalf("sink got %d heartbeats", n)
			}
			sink.mu.Lock()
			defer sink.mu.Unlock()
			last := sink.hbs[len(sink.hbs)-1]
			if last.InstanceID != "i-123" || last.Job != "j" || last.Host == "" || len(last.Tasks) != 1 || last.Tasks[0].Name != "beat" ||
				last.Vitals.MemTotalMB <= 0 || last.LimitMode != "polling" {
				t.Errorf("heartbeat %+v", last)
			}
			states := map[sitter.TaskState]bool{}
			for _, hb := range sink.hbs {
				states[hb.Tasks[0].State] = true
			}
			if !states[sitter.StateRunning] {
				t.Errorf("no heartbeat saw the task running: %v", states)
			}
			if fail {
				l := logs.String()
				if strings.Count(l, "send heartbeat failed") != 1 || strings.Contains(l, "secret") || !strings.Contains(l, "guest:xxxxx@") {
					t.Errorf("want exactly one redacted failure line, got:\n%s", l)
				}
			}
		})
	}
}

// TestKill9Restarts: a task killed -9 from outside counts as a failure and
// is restarted.
func TestKill9Restarts(t *testing.T) {
	h := start(t, sitter.Config{}, sitter.Task{Name: "victim", Command: []string{"sleep", "300"},
		BackoffInitial: dur(50 * time.Millisecond)})
	first := h.waitTask(t, "victim", 5*time.Second, "running", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateRunning })
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ts := h.waitTask(t, "victim", 5*time.Second, "restarted", func(ts sitter.TaskStatus) bool {
		return ts.State == sitter.StateRunning && ts.PID != first.PID
	})
	if ts.Restarts != 1 {
		t.Errorf("restarts = %d, want 1", ts.Restarts)
	}
}

func TestServeContract(t *testing.T) {
	s, err := sitter.New(sitter.Config{StateDir: t.TempDir(), Sampler: psutil.New()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.AddTask(ctx, sitter.Task{Name: "a", Command: []string{"sleep", "300"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.StopTask(ctx, "a"); !errors.Is(err, sitter.ErrNotServing) {
		t.Errorf("control before Serve: %v, want ErrNotServing", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	testsupport.Eventually(t, 5*time.Second, func() error {
		if st := s.Status().Tasks[0].State; st != sitter.StateRunning {
			return fmt.Errorf("task never ran: %s", st)
		}
		return nil
	})
	pid := s.Status().Tasks[0].PID
	if err := s.Serve(ctx); err == nil {
		t.Error("second Serve accepted")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := s.Status().Tasks[0]; st.State != sitter.StateStopped {
		t.Errorf("after Serve returned: %+v", st)
	}
	waitDead(t, pid, 2*time.Second)
	if err := s.AddTask(context.Background(), sitter.Task{Name: "b", Shell: "true"}); !errors.Is(err, sitter.ErrNotServing) {
		t.Errorf("AddTask after shutdown: %v", err)
	}
	if _, err := sitter.New(sitter.Config{Sampler: psutil.New()}); err == nil {
		t.Error("New without StateDir accepted")
	}
}
