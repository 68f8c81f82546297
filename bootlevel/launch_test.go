package bootlevel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"nightshift/launchplan"
)

func TestLaunchBootsLevelsInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{}
		e, st := newEngine(t, drv)
		var (
			once                  sync.Once
			pendingAtFirstAcquire []ServiceState
		)
		drv.acquire = func(ctx context.Context, svc *launchplan.Service) (Host, error) {
			once.Do(func() {
				recs, _ := st.Services(ctx, "r1")
				for _, r := range recs {
					pendingAtFirstAcquire = append(pendingAtFirstAcquire, r.State)
				}
			})
			return Host{Hostname: svc.Name + ".example", InstanceID: "i-" + svc.Name}, nil
		}
		durations := map[string]time.Duration{"a": 2 * time.Second, "b": time.Second, "c": 3 * time.Second, "d": time.Second, "e": time.Second}
		drv.script = func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Step == StepBoot {
				if err := sleep(ctx, durations[req.Service.Name]); err != nil {
					return StepResult{ExitCode: NoExit}, err
				}
			}
			return StepResult{}, nil
		}
		var seqs []int64
		e.OnEvent = func(ev Event) { seqs = append(seqs, ev.Seq) }
		p := plan(
			[]launchplan.Service{service("a"), service("b")},
			[]launchplan.Service{service("c"), service("d")},
			[]launchplan.Service{service("e")},
		)
		rep, err := e.Launch(t.Context(), p, LaunchOptions{Run: "r1"})
		if err != nil {
			t.Fatalf("Launch: %v", err)
		}
		if rep.State != RunReady {
			t.Fatalf("run state %s, want ready", rep.State)
		}
		// The store held a pending record of every service before anything ran.
		if len(pendingAtFirstAcquire) != 5 || slices.Contains(pendingAtFirstAcquire, ServiceReady) ||
			!slices.Contains(pendingAtFirstAcquire, ServicePending) {
			t.Fatalf("records at first acquire: %v, want 5 pending or booting", pendingAtFirstAcquire)
		}
		levelOf := map[string]int{"a": 1, "b": 1, "c": 2, "d": 2, "e": 3}
		lastEnd := map[int]time.Time{}
		firstStart := map[int]time.Time{}
		for _, c := range drv.all() {
			l := levelOf[c.Service]
			if c.End.After(lastEnd[l]) {
				lastEnd[l] = c.End
			}
			if firstStart[l].IsZero() || c.Start.Before(firstStart[l]) {
				firstStart[l] = c.Start
			}
		}
		for l := 2; l <= 3; l++ {
			if firstStart[l].Before(lastEnd[l-1]) {
				t.Errorf("level %d started at %v before level %d finished at %v", l, firstStart[l], l-1, lastEnd[l-1])
			}
		}
		// Each service runs acquire, boot, ready in that order, once.
		for svc := range levelOf {
			var seq []Step
			for _, c := range drv.all() {
				if c.Service == svc {
					seq = append(seq, c.Step)
				}
			}
			if want := []Step{StepAcquire, StepBoot, StepReady}; !slices.Equal(seq, want) {
				t.Errorf("%s steps %v, want %v", svc, seq, want)
			}
		}
		for n, s := range states(rep) {
			if s != ServiceReady {
				t.Errorf("service %s is %s", n, s)
			}
		}
		var levelStarts []int
		for _, ev := range st.eventsOf("r1") {
			if ev.Kind == EventLevelStart {
				levelStarts = append(levelStarts, ev.Level)
			}
		}
		if !slices.Equal(levelStarts, []int{1, 2, 3}) {
			t.Errorf("level.start events %v", levelStarts)
		}
		// OnEvent saw every stored event, in order.
		if n := len(st.eventsOf("r1")); len(seqs) != n || !slices.IsSorted(seqs) || seqs[0] != 1 {
			t.Errorf("OnEvent got %d events (%v...), store has %d", len(seqs), seqs[:min(3, len(seqs))], n)
		}
	})
}

func TestLaunchParallelism(t *testing.T) {
	cases := []struct {
		name          string
		level, engine int
		want          time.Duration
	}{
		{"unbounded", 0, 0, time.Second},
		{"level 5", 5, 0, 4 * time.Second},
		{"engine 10", 0, 10, 2 * time.Second},
		{"smaller wins", 5, 2, 10 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
					if req.Step == StepBoot {
						return StepResult{}, sleep(ctx, time.Second)
					}
					return StepResult{}, nil
				}}
				e, _ := newEngine(t, drv)
				e.Parallelism = tc.engine
				p := plan(names("s", 20))
				p.Levels[0].Parallelism = tc.level
				start := time.Now()
				if _, err := e.Launch(t.Context(), p, LaunchOptions{Run: "par"}); err != nil {
					t.Fatal(err)
				}
				if got := time.Since(start); got != tc.want {
					t.Errorf("20 services of 1 s took %v of fake time, want %v", got, tc.want)
				}
			})
		})
	}
}

func TestAttributesFlowToLaterLevels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Service.Name == "db" && req.Step == StepBoot {
				return StepResult{Outputs: map[string]string{"port": "5672", "password": "s3cr3t-pw"}}, nil
			}
			return StepResult{}, nil
		}}
		e, st := newEngine(t, drv)
		db := service("db")
		db.Exports = []string{"port", "password"}
		db.Ready = prog("/bin/ready-db", "--port=${.port}")
		db.Attributes = map[string]string{
			"url":  "amqp://u:${.password}@${.hostname}:${.port}/",
			"zone": "${global.region}-${env.HOME_REGION}",
		}
		web := service("web")
		web.Boot = prog("/bin/web", "--db=${db.url}", "--port=${db.port}", "--self=${.name}")
		web.Attributes = map[string]string{"name": "web-${db.zone}"}
		web.Env = map[string]string{"DB_PORT": "${db.port}", "DB_PASS": "${db.password}"}
		rep, err := e.Launch(t.Context(), plan([]launchplan.Service{db}, []launchplan.Service{web}), LaunchOptions{Run: "attrs"})
		if err != nil {
			t.Fatal(err)
		}
		var boot StepRequest
		for _, c := range drv.all() {
			if c.Service == "web" && c.Step == StepBoot {
				boot = c.Req
			}
			if c.Service == "db" && c.Step == StepReady && !slices.Equal(c.Req.Program.Args, []string{"--port=5672"}) {
				t.Errorf("db ready args %q: own export not expanded", c.Req.Program.Args)
			}
		}
		wantArgs := []string{"--db=amqp://u:s3cr3t-pw@db.example:5672/", "--port=5672", "--self=web-eu-north"}
		if !slices.Equal(boot.Program.Args, wantArgs) {
			t.Errorf("web boot args %q, want %q", boot.Program.Args, wantArgs)
		}
		wantEnv := map[string]string{
			"DB_PORT": "5672", "DB_PASS": "s3cr3t-pw",
			"NIGHTSHIFT_RUN": "attrs", "NIGHTSHIFT_SERVICE": "web", "NIGHTSHIFT_LEVEL": "2",
			"NIGHTSHIFT_HOSTNAME": "web.example", "NIGHTSHIFT_INSTANCE_ID": "i-web",
		}
		for k, v := range wantEnv {
			if boot.Env[k] != v {
				t.Errorf("web env %s=%q, want %q", k, boot.Env[k], v)
			}
		}
		if want := filepath.Join(e.Home, "runs", "attrs", "work", "web"); boot.WorkDir != want {
			t.Errorf("workdir %q, want %q", boot.WorkDir, want)
		}
		if fi, err := os.Stat(boot.WorkDir); err != nil || !fi.IsDir() {
			t.Errorf("default workdir not created: %v", err)
		}
		dbRec := st.service(t, "attrs", "db")
		for k, v := range map[string]string{"port": "5672", "hostname": "db.example", "instance_id": "i-db", "run": "attrs", "level": "1", "zone": "eu-north"} {
			if dbRec.Attributes[k] != v {
				t.Errorf("db attribute %s=%q, want %q", k, dbRec.Attributes[k], v)
			}
		}
		if rep.State != RunReady {
			t.Errorf("state %s", rep.State)
		}
		// The secret reached the program but never an event or the log.
		for _, ev := range st.eventsOf("attrs") {
			if strings.Contains(ev.Message, "s3cr3t-pw") {
				t.Errorf("event leaks a secret: %+v", ev)
			}
		}
		logData, err := os.ReadFile(filepath.Join(e.Home, "runs", "attrs", "logs", "web.log"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(logData), "s3cr3t-pw") || !strings.Contains(string(logData), "boot: /bin/web") {
			t.Errorf("web log:\n%s", logData)
		}
	})
}

func TestMissingExportFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{}
		e, st := newEngine(t, drv)
		db := service("db")
		db.Exports = []string{"port"}
		_, err := e.Launch(t.Context(), plan([]launchplan.Service{db}), LaunchOptions{Run: "exp"})
		var se *StepError
		if !errors.As(err, &se) || se.Step != StepBoot || !strings.Contains(se.Error(), "did not export port") {
			t.Fatalf("err = %v, want a boot StepError about the missing export", err)
		}
		if drv.count("db", StepReady) != 0 {
			t.Error("ready ran after a failed boot")
		}
		if rec := st.service(t, "exp", "db"); rec.State != ServiceFailed || !strings.Contains(rec.Error, "did not export port") {
			t.Errorf("record %s %q", rec.State, rec.Error)
		}
	})
}

func TestBadReferenceFailsWithPosition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{}
		e, _ := newEngine(t, drv)
		web := service("web")
		web.Boot = prog("/bin/web", "${nosuch.attr}")
		_, err := e.Launch(t.Context(), plan([]launchplan.Service{web}), LaunchOptions{Run: "ref"})
		if err == nil || !strings.Contains(err.Error(), "nosuch.attr") || !strings.Contains(err.Error(), `service "web" (level 1) step boot failed`) {
			t.Fatalf("err = %v", err)
		}
		if drv.count("web", StepBoot) != 0 {
			t.Error("boot ran with an unexpandable argument")
		}
	})
}

func TestBootFailureReport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Service.Name == "web" && req.Step == StepBoot {
				return StepResult{ExitCode: 3, Tail: []string{"starting", "connect amqp://app:hunter22@mq/ refused"}}, nil
			}
			return StepResult{}, nil
		}}
		e, st := newEngine(t, drv)
		rep, err := e.Launch(t.Context(), plan([]launchplan.Service{service("db")}, []launchplan.Service{service("web")}, []launchplan.Service{service("late")}), LaunchOptions{Run: "bf"})
		var se *StepError
		if !errors.As(err, &se) {
			t.Fatalf("err = %v, want a StepError", err)
		}
		logPath := filepath.Join(e.Home, "runs", "bf", "logs", "web.log")
		if se.Service != "web" || se.Level != 2 || se.Step != StepBoot || se.ExitCode != 3 || se.LogPath != logPath {
			t.Errorf("StepError %+v", se)
		}
		want := `service "web" (level 2) step boot failed: exit code 3; last output:` + "\n  starting\n  connect amqp://app:xxxxx@mq/ refused\nfull log: " + logPath
		if se.Error() != want {
			t.Errorf("Error():\n%s\nwant:\n%s", se.Error(), want)
		}
		if rep.State != RunFailed || len(rep.Failures) != 1 {
			t.Errorf("report state %s failures %d", rep.State, len(rep.Failures))
		}
		if s := states(rep); s["db"] != ServiceReady || s["web"] != ServiceFailed || s["late"] != ServicePending {
			t.Errorf("states %v", s)
		}
		if drv.count("late", StepAcquire) != 0 {
			t.Error("level 3 started after level 2 failed")
		}
		// keep is the default: nothing was terminated.
		if hasPrefix(drv.steps(), "db:terminate") || hasPrefix(drv.steps(), "db:release") {
			t.Errorf("keep policy terminated something: %v", drv.steps())
		}
		if rec := st.service(t, "bf", "web"); rec.Error != `service "web" (level 2) step boot failed: exit code 3` {
			t.Errorf("record error %q", rec.Error)
		}
	})
}

func TestReadyTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Step == StepReady {
				return StepResult{ExitCode: 1, Tail: []string{"connection refused"}}, sleep(ctx, 500*time.Millisecond)
			}
			return StepResult{}, nil
		}}
		e, st := newEngine(t, drv)
		svc := service("slow")
		svc.ReadyTimeout = 10 * time.Second
		svc.ReadyInterval = time.Second
		svc.ReadyStartPeriod = 4 * time.Second
		var mu sync.Mutex
		var live []Event
		e.OnEvent = func(ev Event) {
			mu.Lock()
			defer mu.Unlock()
			if ev.Kind == EventStepRetry {
				live = append(live, ev)
			}
		}
		start := time.Now()
		_, err := e.Launch(t.Context(), plan([]launchplan.Service{svc}), LaunchOptions{Run: "rt"})
		elapsed := time.Since(start)
		var se *StepError
		if !errors.As(err, &se) || se.Step != StepReady || se.ExitCode != 1 || !strings.Contains(se.Error(), "not ready within 10s after 7 attempts") {
			t.Fatalf("err = %v", err)
		}
		if elapsed != 9500*time.Millisecond {
			t.Errorf("gave up after %v, want 9.5s (no attempt could start before 10s)", elapsed)
		}
		if n := drv.count("slow", StepReady); n != 7 {
			t.Errorf("%d ready attempts, want 7 (every 1.5 s in 10 s)", n)
		}
		// Attempts inside the 4 s start period are not reported as failures;
		// the 3 after it (all but the last) fail alike, so history keeps the
		// first and the last, the last with the count.
		var retries []string
		for _, ev := range st.eventsOf("rt") {
			if ev.Kind == EventStepRetry {
				retries = append(retries, ev.Message)
			}
		}
		if len(retries) != 2 || !strings.Contains(retries[0], "ready attempt 4 failed") || !strings.Contains(retries[1], "ready attempt 6 failed") ||
			!strings.Contains(retries[1], "(3 identical failures since attempt 4)") {
			t.Errorf("retry events %q, want attempt 4's and attempt 6's with a count of 3", retries)
		}
		// A live view sees every attempt: the first stored, then each
		// repeat as a transient update carrying the running count; the
		// stored summary comes last.
		mu.Lock()
		defer mu.Unlock()
		var got []string
		for _, ev := range live {
			got = append(got, fmt.Sprintf("%v %s", ev.Transient, ev.Message[strings.Index(ev.Message, "ready attempt"):strings.Index(ev.Message, " failed")]))
		}
		want := []string{"false ready attempt 4", "true ready attempt 5", "true ready attempt 6", "false ready attempt 6"}
		if !slices.Equal(got, want) {
			t.Errorf("live retry events %q, want %q", got, want)
		}
		if len(live) == 4 && (!strings.Contains(live[1].Message, "(2 identical failures since attempt 4)") || live[1].Seq != 0) {
			t.Errorf("transient update %+v: want a running count and no stored seq", live[1])
		}
	})
}

func TestBootTimeoutKillsAndReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Step == StepBoot {
				if err := sleep(ctx, time.Hour); err != nil {
					return StepResult{ExitCode: NoExit, Tail: []string{"killed"}}, err
				}
			}
			return StepResult{}, nil
		}}
		e, _ := newEngine(t, drv)
		svc := service("hang")
		svc.BootTimeout = 30 * time.Second
		start := time.Now()
		_, err := e.Launch(t.Context(), plan([]launchplan.Service{svc}), LaunchOptions{Run: "bt"})
		var se *StepError
		if !errors.As(err, &se) || se.ExitCode != NoExit || !strings.Contains(se.Error(), "boot timed out after 30s") {
			t.Fatalf("err = %v", err)
		}
		if d := time.Since(start); d != 30*time.Second {
			t.Errorf("took %v", d)
		}
	})
}

func TestFailureCancelsSiblings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Step != StepBoot {
				return StepResult{}, nil
			}
			if req.Service.Name == "bad" {
				return StepResult{ExitCode: 2}, sleep(ctx, time.Second)
			}
			if err := sleep(ctx, time.Hour); err != nil {
				return StepResult{ExitCode: NoExit}, err
			}
			return StepResult{}, nil
		}}
		e, st := newEngine(t, drv)
		p := plan([]launchplan.Service{service("bad"), service("slow1"), service("slow2"), service("queued")})
		p.Levels[0].Parallelism = 3
		start := time.Now()
		rep, err := e.Launch(t.Context(), p, LaunchOptions{Run: "sib"})
		if err == nil {
			t.Fatal("launch succeeded")
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("took %v, want the 1 s until bad failed", d)
		}
		if len(rep.Failures) != 1 || rep.Failures[0].Service != "bad" {
			t.Errorf("failures %v", rep.Failures)
		}
		for _, n := range []string{"slow1", "slow2", "queued"} {
			rec := st.service(t, "sib", n)
			if rec.State != ServiceFailed || rec.Error != "cancelled: sibling bad failed" {
				t.Errorf("%s: %s %q", n, rec.State, rec.Error)
			}
		}
		if drv.count("queued", StepAcquire) != 0 {
			t.Error("a service waiting for a slot was started after its sibling failed")
		}
	})
}

func TestCancelStopsPromptly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Step == StepBoot {
				if err := sleep(ctx, time.Hour); err != nil {
					return StepResult{ExitCode: NoExit}, err
				}
			}
			return StepResult{}, nil
		}}
		e, st := newEngine(t, drv)
		time.AfterFunc(5*time.Second, cancel)
		start := time.Now()
		rep, err := e.Launch(ctx, plan(names("s", 3), names("t", 2)), LaunchOptions{Run: "cx", OnFailure: FailRollback})
		var ie *InterruptedError
		if !errors.As(err, &ie) || ie.Level != 1 || len(ie.Steps) != 3 || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want an InterruptedError in level 1 naming s00-s02", err)
		}
		for _, s := range ie.Steps {
			if s.Step != StepBoot {
				t.Errorf("%s interrupted in step %s, want boot", s.Service, s.Step)
			}
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("returned after %v, want 5s", d)
		}
		if rep.State != RunInterrupted {
			t.Errorf("state %s", rep.State)
		}
		for _, n := range []string{"t00", "t01"} {
			if rec := st.service(t, "cx", n); rec.State != ServicePending {
				t.Errorf("%s of a level never reached: %s, want pending", n, rec.State)
			}
		}
		for _, n := range []string{"s00", "s01", "s02"} {
			if rec := st.service(t, "cx", n); rec.State != ServiceFailed || !strings.Contains(rec.Error, "cancelled") {
				t.Errorf("%s: %s %q", n, rec.State, rec.Error)
			}
		}
		// Rollback needs time the caller took away; it is skipped and said so.
		if hasPrefix(drv.steps(), "s00:terminate") {
			t.Error("rolled back after cancellation")
		}
		found := false
		for _, ev := range st.eventsOf("cx") {
			found = found || strings.Contains(ev.Message, "rollback skipped")
		}
		if !found {
			t.Error("no event says rollback was skipped")
		}
	})
}

func TestRollbackTerminatesWhatItStartedInReverse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Service.Name == "c1" && req.Step == StepReady {
				return StepResult{ExitCode: 1}, nil
			}
			return StepResult{}, nil
		}}
		e, st := newEngine(t, drv)
		c1 := service("c1")
		c1.ReadyTimeout = 0
		p := plan([]launchplan.Service{service("a1"), service("a2")}, []launchplan.Service{service("b1")}, []launchplan.Service{c1}, []launchplan.Service{service("d1")})
		rep, err := e.Launch(t.Context(), p, LaunchOptions{Run: "rb", OnFailure: FailRollback})
		if err == nil {
			t.Fatal("launch succeeded")
		}
		var order []string
		for _, c := range drv.all() {
			if c.Step == StepTerminate {
				order = append(order, c.Service)
			}
		}
		if len(order) != 4 || order[0] != "c1" || order[1] != "b1" || !slices.Contains(order[2:], "a1") || !slices.Contains(order[2:], "a2") {
			t.Errorf("terminate order %v, want c1, b1, then a1 and a2", order)
		}
		if drv.count("a1", StepRelease) != 1 {
			t.Error("a1 not released")
		}
		s := states(rep)
		for _, n := range []string{"a1", "a2", "b1", "c1"} {
			if s[n] != ServiceTerminated {
				t.Errorf("%s is %s after rollback", n, s[n])
			}
		}
		if s["d1"] != ServicePending {
			t.Errorf("d1 never started but is %s", s["d1"])
		}
		if drv.count("d1", StepTerminate) != 0 {
			t.Error("d1 never booted but its terminate ran")
		}
		if r, _ := st.GetRun(t.Context(), "rb"); r.State != RunFailed {
			t.Errorf("run state %s", r.State)
		}
	})
}

func TestRollbackSparesWhatAnEarlierLaunchStarted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		failWeb := true
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Service.Name == "web" && req.Step == StepBoot && failWeb {
				return StepResult{ExitCode: 1}, nil
			}
			return StepResult{}, nil
		}}
		e, _ := newEngine(t, drv)
		p := plan([]launchplan.Service{service("db")}, []launchplan.Service{service("web")})
		if _, err := e.Launch(t.Context(), p, LaunchOptions{Run: "rs"}); err == nil {
			t.Fatal("first launch succeeded")
		}
		// The resumed launch fails again and rolls back: db was started by
		// the first call, so it stays.
		rep, err := e.Launch(t.Context(), p, LaunchOptions{Run: "rs", OnFailure: FailRollback})
		if err == nil {
			t.Fatal("second launch succeeded")
		}
		if s := states(rep); s["db"] != ServiceReady || s["web"] != ServiceTerminated {
			t.Errorf("states %v", s)
		}
		if drv.count("db", StepBoot) != 1 || drv.count("db", StepTerminate) != 0 {
			t.Errorf("db calls %v", drv.steps())
		}
	})
}

func TestUnknownDriverRefusedBeforeAnythingRuns(t *testing.T) {
	drv := &fakeDriver{}
	e, st := newEngine(t, drv)
	svc := service("vm")
	svc.Driver = launchplan.DriverEC2
	_, err := e.Launch(t.Context(), plan([]launchplan.Service{service("a")}, []launchplan.Service{svc}), LaunchOptions{Run: "nd"})
	if err == nil || !strings.Contains(err.Error(), `no driver "ec2"`) || !strings.Contains(err.Error(), "/plans/test.toml:1") {
		t.Fatalf("err = %v", err)
	}
	if len(drv.all()) != 0 {
		t.Errorf("driver calls %v", drv.steps())
	}
	if _, err := st.GetRun(t.Context(), "nd"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused launch left a run behind: %v", err)
	}
}

func TestTypedServiceUsesTypeImplementation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		local := &fakeDriver{}
		broker := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Step == StepBoot {
				return StepResult{Outputs: map[string]string{"url": "amqp://guest:guest@127.0.0.1:5672/"}}, nil
			}
			return StepResult{}, nil
		}}
		e, _ := newEngine(t, local)
		e.Types = map[string]Driver{"broker": broker}
		mq := launchplan.Service{Name: "mq", Driver: launchplan.DriverLocal, Type: "broker", Exports: []string{"url"}, Pos: launchplan.Pos{File: "p.toml", Line: 3}}
		if _, err := e.Launch(t.Context(), plan([]launchplan.Service{mq}), LaunchOptions{Run: "ty"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Terminate(t.Context(), "ty"); err != nil {
			t.Fatal(err)
		}
		want := []string{"mq:acquire", "mq:boot", "mq:ready", "mq:terminate", "mq:release"}
		if got := broker.steps(); !slices.Equal(got, want) {
			t.Errorf("type calls %v, want %v", got, want)
		}
		for _, c := range broker.all() {
			if c.Req.Service != nil && c.Req.Program.Path != "" {
				t.Errorf("typed step %s got a program %+v", c.Step, c.Req.Program)
			}
		}
		if len(local.all()) != 0 {
			t.Errorf("local driver used for a typed service: %v", local.steps())
		}
	})
}

func TestNoBootOrReadyProgram(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{}
		e, _ := newEngine(t, drv)
		svc := service("host")
		svc.Boot, svc.Ready = nil, nil
		rep, err := e.Launch(t.Context(), plan([]launchplan.Service{svc}), LaunchOptions{Run: "np"})
		if err != nil || rep.State != RunReady {
			t.Fatalf("err %v state %v", err, rep.State)
		}
		if got := drv.steps(); !slices.Equal(got, []string{"host:acquire"}) {
			t.Errorf("calls %v", got)
		}
	})
}

func TestLaunchRejectsBadOptions(t *testing.T) {
	e, _ := newEngine(t, &fakeDriver{})
	cases := []struct {
		name string
		p    *launchplan.Plan
		opts LaunchOptions
		want string
	}{
		{"nil plan", nil, LaunchOptions{Run: "x"}, "no plan"},
		{"policy", plan([]launchplan.Service{service("a")}), LaunchOptions{Run: "x", OnFailure: "explode"}, `unknown failure policy "explode"`},
		{"run name", plan([]launchplan.Service{service("a")}), LaunchOptions{Run: "../x"}, `run name "../x" must match`},
		{"duplicate", plan([]launchplan.Service{service("a"), service("a")}), LaunchOptions{Run: "dup"}, `service "a" at /plans/test.toml:1: declared twice`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.Launch(t.Context(), tc.p, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := (&Engine{}).Launch(t.Context(), plan(), LaunchOptions{}); err == nil {
		t.Error("engine without store launched")
	}
}

func TestStoreFailureStopsBeforeAction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{}
		e, st := newEngine(t, drv)
		p := plan([]launchplan.Service{service("a")})
		st.failPut = "a"
		_, err := e.Launch(t.Context(), p, LaunchOptions{Run: "sf"})
		if err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("err = %v", err)
		}
		if len(drv.all()) != 0 {
			t.Errorf("driver ran although the record could not be written: %v", drv.steps())
		}
	})
}

func TestGeneratedRunName(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, _ := newEngine(t, &fakeDriver{})
		rep, err := e.Launch(t.Context(), plan([]launchplan.Service{service("a")}), LaunchOptions{})
		if err != nil || len(rep.Run) != 8 {
			t.Fatalf("err %v run %q", err, rep.Run)
		}
	})
}

func TestDriverErrors(t *testing.T) {
	cases := []struct {
		name    string
		drv     *fakeDriver
		step    Step
		wantErr string
	}{
		{"acquire", &fakeDriver{acquire: func(context.Context, *launchplan.Service) (Host, error) {
			return Host{}, errors.New("no capacity in eu-west-1a")
		}}, StepAcquire, "step acquire failed: no capacity in eu-west-1a"},
		{"run", &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			return StepResult{ExitCode: NoExit}, errors.New("exec /bin/boot-a: permission denied")
		}}, StepBoot, "step boot failed: exec /bin/boot-a: permission denied"},
		{"secret in driver error", &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			return StepResult{ExitCode: NoExit}, errors.New("dial amqp://app:hunter22@mq:5672/: refused")
		}}, StepBoot, "step boot failed: dial amqp://app:xxxxx@mq:5672/: refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e, st := newEngine(t, tc.drv)
				_, err := e.Launch(t.Context(), plan([]launchplan.Service{service("a")}), LaunchOptions{Run: "de"})
				var se *StepError
				if !errors.As(err, &se) || se.Step != tc.step || se.ExitCode != NoExit || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v", err)
				}
				if rec := st.service(t, "de", "a"); rec.State != ServiceFailed || !strings.Contains(rec.Error, tc.wantErr) {
					t.Errorf("record %s %q", rec.State, rec.Error)
				}
			})
		})
	}
	t.Run("release", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			drv := &fakeDriver{release: func(svc *launchplan.Service) error { return errors.New("instance stuck in shutting-down") }}
			e, _ := newEngine(t, drv)
			if _, err := e.Launch(t.Context(), plan([]launchplan.Service{service("a")}), LaunchOptions{Run: "rl"}); err != nil {
				t.Fatal(err)
			}
			rep, err := e.Terminate(t.Context(), "rl")
			if err == nil || !strings.Contains(err.Error(), "step release failed: instance stuck") || !slices.Equal(rep.Remaining, []string{"a"}) {
				t.Fatalf("err %v remaining %v", err, rep.Remaining)
			}
		})
	})
}

// TestRunEnvServesRunScopedValues: RunEnv answers ${env.NAME} for one run
// before Getenv, and what it gives is scrubbed from the run's events like
// a secret attribute, even when a failing step echoes it.
func TestRunEnvServesRunScopedValues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const secret = "f00dfeedf00dfeedf00dfeed"
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Service.Name == "web" && req.Step == StepBoot {
				return StepResult{}, fmt.Errorf("boot printed %s and died", req.Env["RUN_KEY"])
			}
			return StepResult{}, nil
		}}
		e, st := newEngine(t, drv)
		e.RunEnv = func(run, name string) (string, bool) {
			if name == "RUN_KEY" {
				return secret + "-" + run, true
			}
			return "", false
		}
		web := service("web")
		web.Env = map[string]string{"RUN_KEY": "${env.RUN_KEY}", "REGION": "${env.HOME_REGION}"}
		_, err := e.Launch(t.Context(), plan([]launchplan.Service{web}), LaunchOptions{Run: "keyed"})
		if err == nil {
			t.Fatal("launch succeeded; the boot was scripted to fail")
		}
		var boot StepRequest
		for _, c := range drv.all() {
			if c.Service == "web" && c.Step == StepBoot {
				boot = c.Req
			}
		}
		if boot.Env["RUN_KEY"] != secret+"-keyed" || boot.Env["REGION"] != "north" {
			t.Fatalf("boot env %v, want the run's key from RunEnv and the region from Getenv", boot.Env)
		}
		evs, err := st.Events(t.Context(), "keyed", 0)
		if err != nil {
			t.Fatal(err)
		}
		failed := false
		for _, ev := range evs {
			if strings.Contains(ev.Message, secret) {
				t.Errorf("event %q shows the run's key", ev.Message)
			}
			failed = failed || strings.Contains(ev.Message, "boot printed")
		}
		if !failed {
			t.Errorf("no event carries the boot failure: %+v", evs)
		}
	})
}

// TestInterruptNamesTheStepItCut: a launch stopped while a service waits
// for its ready check says ready, not boot, and the run resumes from there.
func TestInterruptNamesTheStepItCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(t.Context())
		block := true
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Step == StepReady && req.Service.Name == "t00" && block {
				if err := sleep(ctx, time.Hour); err != nil {
					return StepResult{ExitCode: NoExit}, err
				}
			}
			return StepResult{}, nil
		}}
		e, st := newEngine(t, drv)
		time.AfterFunc(5*time.Second, func() { cancel(errors.New("hangup signal received")) })
		p := plan(names("s", 1), names("t", 1))
		rep, err := e.Launch(ctx, p, LaunchOptions{Run: "ir"})
		var ie *InterruptedError
		if !errors.As(err, &ie) || ie.Level != 2 || len(ie.Steps) != 1 || ie.Steps[0].Service != "t00" || ie.Steps[0].Step != StepReady {
			t.Fatalf("err = %v, want t00 interrupted in step ready of level 2", err)
		}
		if !strings.Contains(err.Error(), "interrupted (hangup signal received) in level 2: service t00 in step ready") {
			t.Errorf("err = %v", err)
		}
		if rep.State != RunInterrupted {
			t.Errorf("state %s", rep.State)
		}
		block = false
		rep, err = e.Launch(t.Context(), p, LaunchOptions{Run: "ir"})
		if err != nil || rep.State != RunReady {
			t.Fatalf("resume: %v, state %s", err, rep.State)
		}
		if rec := st.service(t, "ir", "s00"); rec.State != ServiceReady {
			t.Errorf("s00 after resume: %s", rec.State)
		}
	})
}
