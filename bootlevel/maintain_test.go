package bootlevel

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"nightshift/launchplan"
)

// crashAt rewrites the store as if the launcher died while the named
// service was booting: the run is still booting and the record says so.
func crashAt(t *testing.T, st *memStore, run, svc string) {
	t.Helper()
	ctx := t.Context()
	r, err := st.GetRun(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	r.State = RunBooting
	if err := st.UpdateRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	rec := st.service(t, run, svc)
	rec.State = ServiceBooting
	rec.ReadyAt = time.Time{}
	if err := st.PutService(ctx, rec); err != nil {
		t.Fatal(err)
	}
}

func TestResumeAfterCrash(t *testing.T) {
	cases := []struct {
		name       string
		readyPass  bool
		wantSteps  []string // web's calls during the resumed launch
		wantAdopts bool
	}{
		{"adopted when ready passes", true, []string{"web:ready"}, true},
		{"rebooted when ready fails", false, []string{"web:ready", "web:terminate", "web:release", "web:acquire", "web:boot", "web:ready"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				first := &fakeDriver{}
				e, st := newEngine(t, first)
				p := plan([]launchplan.Service{service("db"), service("mq")}, []launchplan.Service{service("web")})
				if _, err := e.Launch(t.Context(), p, LaunchOptions{Run: "cr"}); err != nil {
					t.Fatal(err)
				}
				crashAt(t, st, "cr", "web")

				var webReady atomic.Int32
				second := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
					if req.Service.Name == "web" && req.Step == StepReady && webReady.Add(1) == 1 && !tc.readyPass {
						return StepResult{ExitCode: 1}, nil
					}
					return StepResult{}, nil
				}}
				e.Drivers[launchplan.DriverLocal] = second
				rep, err := e.Launch(t.Context(), p, LaunchOptions{Run: "cr"})
				if err != nil {
					t.Fatal(err)
				}
				if rep.State != RunReady {
					t.Errorf("state %s", rep.State)
				}
				// Level 1 is only re-verified, never booted again.
				for _, n := range []string{"db", "mq"} {
					var got []string
					for _, s := range second.steps() {
						if strings.HasPrefix(s, n+":") {
							got = append(got, s)
						}
					}
					if !slices.Equal(got, []string{n + ":ready"}) {
						t.Errorf("%s calls on resume %v, want only a ready check", n, got)
					}
				}
				var web []string
				for _, s := range second.steps() {
					if strings.HasPrefix(s, "web:") {
						web = append(web, s)
					}
				}
				if !slices.Equal(web, tc.wantSteps) {
					t.Errorf("web calls %v, want %v", web, tc.wantSteps)
				}
				if rec := st.service(t, "cr", "web"); rec.State != ServiceReady || rec.Attributes["hostname"] != "web.example" {
					t.Errorf("web record %+v", rec)
				}
			})
		})
	}
}

func TestResumeRefusesChangedPlan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Service.Name == "b" && req.Step == StepBoot {
				return StepResult{ExitCode: 1}, nil
			}
			return StepResult{}, nil
		}}
		e, _ := newEngine(t, drv)
		p := plan([]launchplan.Service{service("a")}, []launchplan.Service{service("b")})
		if _, err := e.Launch(t.Context(), p, LaunchOptions{Run: "pc"}); err == nil {
			t.Fatal("first launch succeeded")
		}
		p2 := plan([]launchplan.Service{service("a")}, []launchplan.Service{service("b")})
		p2.Hash = "hash-2"
		_, err := e.Launch(t.Context(), p2, LaunchOptions{Run: "pc"})
		if err == nil || !strings.Contains(err.Error(), "changed since the run was launched") {
			t.Fatalf("err = %v", err)
		}
		drv.script = nil
		rep, err := e.Launch(t.Context(), p2, LaunchOptions{Run: "pc", AllowPlanChange: true})
		if err != nil || rep.State != RunReady {
			t.Fatalf("err %v state %v", err, rep.State)
		}
		if drv.count("a", StepBoot) != 1 {
			t.Errorf("a booted %d times", drv.count("a", StepBoot))
		}
		// A plan that drops a live service is refused even when allowed.
		p3 := plan([]launchplan.Service{service("a")})
		p3.Hash = "hash-3"
		if _, err := e.Launch(t.Context(), p3, LaunchOptions{Run: "pc", AllowPlanChange: true}); err == nil || !strings.Contains(err.Error(), "service b is ready but no longer in plan") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestResumeWhenReadyServiceFailsCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		broken := atomic.Bool{}
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Service.Name == "a" && req.Step == StepReady && broken.Load() {
				return StepResult{ExitCode: 1}, nil
			}
			return StepResult{}, nil
		}}
		e, _ := newEngine(t, drv)
		p := plan([]launchplan.Service{service("a")}, []launchplan.Service{service("b")})
		if _, err := e.Launch(t.Context(), p, LaunchOptions{Run: "rv"}); err != nil {
			t.Fatal(err)
		}
		broken.Store(true)
		rep, err := e.Launch(t.Context(), p, LaunchOptions{Run: "rv"})
		if err == nil || rep.State != RunFailed || states(rep)["a"] != ServiceFailed {
			t.Fatalf("err %v report %+v", err, rep)
		}
		if drv.count("a", StepBoot) != 1 {
			t.Error("launch rebooted a ready service")
		}
	})
}

func TestRelaunchTerminatedRunStartsAfresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{}
		e, st := newEngine(t, drv)
		p := plan([]launchplan.Service{service("a")})
		if _, err := e.Launch(t.Context(), p, LaunchOptions{Run: "tf"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Terminate(t.Context(), "tf"); err != nil {
			t.Fatal(err)
		}
		p.Hash = "hash-new" // a terminated run may be relaunched from a changed plan
		rep, err := e.Launch(t.Context(), p, LaunchOptions{Run: "tf"})
		if err != nil || rep.State != RunReady {
			t.Fatalf("err %v", err)
		}
		if drv.count("a", StepBoot) != 2 {
			t.Errorf("boots %d, want 2", drv.count("a", StepBoot))
		}
		if r, _ := st.GetRun(t.Context(), "tf"); r.PlanHash != "hash-new" {
			t.Errorf("plan hash %q", r.PlanHash)
		}
	})
}

func TestTerminateReverseContinuesAndIsIdempotent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var termBroken atomic.Bool
		termBroken.Store(true)
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Service.Name == "b1" && req.Step == StepTerminate && termBroken.Load() {
				return StepResult{ExitCode: 4, Tail: []string{"device busy"}}, nil
			}
			return StepResult{}, nil
		}}
		e, st := newEngine(t, drv)
		p := plan([]launchplan.Service{service("a")}, []launchplan.Service{service("b1"), service("b2")}, []launchplan.Service{service("c")})
		if _, err := e.Launch(t.Context(), p, LaunchOptions{Run: "tm"}); err != nil {
			t.Fatal(err)
		}
		before := len(drv.all())
		rep, err := e.Terminate(t.Context(), "tm")
		if err == nil || !strings.Contains(err.Error(), "could not terminate b1") || !strings.Contains(err.Error(), "exit code 4") {
			t.Fatalf("err = %v", err)
		}
		if !slices.Equal(rep.Remaining, []string{"b1"}) || rep.State != RunFailed {
			t.Errorf("remaining %v state %s", rep.Remaining, rep.State)
		}
		var order []string
		for _, c := range drv.all()[before:] {
			if c.Step == StepTerminate {
				order = append(order, c.Service)
			}
		}
		if len(order) != 4 || order[0] != "c" || order[3] != "a" {
			t.Errorf("terminate order %v, want c, b*, a", order)
		}
		if s := states(rep); s["a"] != ServiceTerminated || s["b2"] != ServiceTerminated || s["c"] != ServiceTerminated || s["b1"] != ServiceFailed {
			t.Errorf("states %v", s)
		}
		if drv.count("b1", StepRelease) != 0 {
			t.Error("b1 released although its terminate program failed")
		}

		termBroken.Store(false)
		rep, err = e.Terminate(t.Context(), "tm")
		if err != nil || rep.State != RunTerminated || len(rep.Remaining) != 0 {
			t.Fatalf("second terminate: err %v report %+v", err, rep)
		}
		if drv.count("a", StepTerminate) != 1 || drv.count("b1", StepTerminate) != 2 {
			t.Errorf("second terminate reran finished services: %v", drv.steps())
		}

		calls, events := len(drv.all()), len(st.eventsOf("tm"))
		rep, err = e.Terminate(t.Context(), "tm")
		if err != nil || rep.State != RunTerminated {
			t.Fatalf("third terminate: %v", err)
		}
		if len(drv.all()) != calls || len(st.eventsOf("tm")) != events {
			t.Error("terminating a terminated run did something")
		}
	})
}

func TestTerminateNeverBootedAndUnknownRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Service.Name == "a" && req.Step == StepBoot {
				return StepResult{ExitCode: 1}, nil
			}
			return StepResult{}, nil
		}}
		e, _ := newEngine(t, drv)
		p := plan([]launchplan.Service{service("a")}, []launchplan.Service{service("b")})
		if _, err := e.Launch(t.Context(), p, LaunchOptions{Run: "nb"}); err == nil {
			t.Fatal("launch succeeded")
		}
		rep, err := e.Terminate(t.Context(), "nb")
		if err != nil || rep.State != RunTerminated {
			t.Fatalf("err %v", err)
		}
		if drv.count("b", StepTerminate)+drv.count("b", StepRelease) != 0 {
			t.Error("never-booted service was terminated through the driver")
		}
		// a failed in boot: its terminate program still runs (it may have
		// left something behind) and its host is released.
		if drv.count("a", StepTerminate) != 1 || drv.count("a", StepRelease) != 1 {
			t.Errorf("calls %v", drv.steps())
		}
		if s := states(rep); s["b"] != ServiceTerminated {
			t.Errorf("b is %s", s["b"])
		}
		if _, err := e.Terminate(t.Context(), "nosuch"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "terminate run nosuch") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestTerminateTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Step == StepTerminate && req.Service.Name == "stuck" {
				return StepResult{ExitCode: NoExit}, sleep(ctx, time.Hour)
			}
			return StepResult{}, nil
		}}
		e, _ := newEngine(t, drv)
		stuck := service("stuck")
		stuck.TerminateTimeout = 20 * time.Second
		if _, err := e.Launch(t.Context(), plan([]launchplan.Service{stuck, service("ok")}), LaunchOptions{Run: "tt"}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		rep, err := e.Terminate(t.Context(), "tt")
		if err == nil || !strings.Contains(err.Error(), "terminate timed out after 20s") {
			t.Fatalf("err = %v", err)
		}
		if d := time.Since(start); d != 20*time.Second {
			t.Errorf("took %v", d)
		}
		if !slices.Equal(rep.Remaining, []string{"stuck"}) || states(rep)["ok"] != ServiceTerminated {
			t.Errorf("report %+v", rep)
		}
	})
}

func TestRepair(t *testing.T) {
	cases := []struct {
		name         string
		healAfter    int32 // db's ready passes from this boot on (0: never)
		maxRestarts  int
		wantRestarts int
		wantState    ServiceState
		wantErr      bool
	}{
		{"restart heals", 2, 3, 1, ServiceReady, false},
		{"gives up after max", 0, 2, 2, ServiceFailed, true},
		{"zero restarts only verifies", 2, 0, 0, ServiceFailed, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var boots atomic.Int32
				var broken atomic.Bool
				drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
					if req.Service.Name != "db" {
						return StepResult{}, nil
					}
					switch req.Step {
					case StepBoot:
						n := boots.Add(1)
						if tc.healAfter != 0 && n >= tc.healAfter {
							broken.Store(false)
						}
						return StepResult{Outputs: map[string]string{"port": "5672"}}, nil
					case StepReady:
						if broken.Load() {
							return StepResult{ExitCode: 7}, nil
						}
					}
					return StepResult{}, nil
				}}
				e, st := newEngine(t, drv)
				db := service("db")
				db.ReadyTimeout = 5 * time.Second
				web := service("web")
				web.Env = map[string]string{"DB": "${db.port}"}
				p := plan([]launchplan.Service{db}, []launchplan.Service{web})
				if _, err := e.Launch(t.Context(), p, LaunchOptions{Run: "rp"}); err != nil {
					t.Fatal(err)
				}
				broken.Store(true)
				rep, err := e.Repair(t.Context(), "rp", tc.maxRestarts)
				if (err != nil) != tc.wantErr {
					t.Fatalf("err = %v, want error %v", err, tc.wantErr)
				}
				rec := st.service(t, "rp", "db")
				if rec.Restarts != tc.wantRestarts || rec.State != tc.wantState {
					t.Errorf("db restarts %d state %s, want %d %s", rec.Restarts, rec.State, tc.wantRestarts, tc.wantState)
				}
				if got := drv.count("db", StepBoot); got != 1+tc.wantRestarts {
					t.Errorf("db booted %d times, want %d", got, 1+tc.wantRestarts)
				}
				if drv.count("web", StepBoot) != 1 {
					t.Error("web was rebooted by repair")
				}
				wantRun := RunReady
				if tc.wantErr {
					wantRun = RunFailed
				}
				if rep.State != wantRun {
					t.Errorf("run state %s, want %s", rep.State, wantRun)
				}
				noted := false
				for _, ev := range st.eventsOf("rp") {
					noted = noted || (ev.Kind == EventNote && strings.Contains(ev.Message, "web use its attributes and were not rebooted"))
				}
				if noted != (tc.wantRestarts > 0 && !tc.wantErr) {
					t.Errorf("dependents note present %v", noted)
				}
			})
		})
	}
}

func TestRepairRejects(t *testing.T) {
	e, _ := newEngine(t, &fakeDriver{})
	if _, err := e.Repair(t.Context(), "x", -1); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("err = %v", err)
	}
	if _, err := e.Repair(t.Context(), "missing", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("err = %v", err)
	}
}

func TestVerifyRecordsResults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var broken atomic.Bool
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Service.Name == "web" && req.Step == StepReady && broken.Load() {
				return StepResult{ExitCode: 1, Tail: []string{"503"}}, nil
			}
			return StepResult{}, nil
		}}
		e, st := newEngine(t, drv)
		web := service("web")
		web.ReadyTimeout = 3 * time.Second
		p := plan([]launchplan.Service{service("db")}, []launchplan.Service{web})
		if _, err := e.Launch(t.Context(), p, LaunchOptions{Run: "vf"}); err != nil {
			t.Fatal(err)
		}
		broken.Store(true)
		rep, err := e.Verify(t.Context(), "vf")
		if err == nil || rep.State != RunFailed || !strings.Contains(err.Error(), "web (failed)") {
			t.Fatalf("err %v state %s", err, rep.State)
		}
		if len(rep.Failures) != 1 || rep.Failures[0].ExitCode != 1 || !slices.Equal(rep.Failures[0].Tail, []string{"503"}) {
			t.Errorf("failures %+v", rep.Failures)
		}
		broken.Store(false)
		rep, err = e.Verify(t.Context(), "vf")
		if err != nil || rep.State != RunReady {
			t.Fatalf("err %v state %s", err, rep.State)
		}
		if rec := st.service(t, "vf", "web"); rec.State != ServiceReady || rec.Error != "" {
			t.Errorf("web %s %q", rec.State, rec.Error)
		}
		if drv.count("web", StepBoot) != 1 {
			t.Error("verify booted something")
		}
	})
}

func TestTerminateSkipsUnexpandableProgram(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Step == StepBoot {
				return StepResult{ExitCode: 1}, nil
			}
			return StepResult{}, nil
		}}
		e, st := newEngine(t, drv)
		svc := service("app")
		svc.Exports = []string{"pid"}
		svc.Terminate = prog("/bin/kill", "${.pid}")
		if _, err := e.Launch(t.Context(), plan([]launchplan.Service{svc}), LaunchOptions{Run: "sk"}); err == nil {
			t.Fatal("launch succeeded")
		}
		rep, err := e.Terminate(t.Context(), "sk")
		if err != nil || rep.State != RunTerminated {
			t.Fatalf("err %v", err)
		}
		if drv.count("app", StepTerminate) != 0 || drv.count("app", StepRelease) != 1 {
			t.Errorf("calls %v", drv.steps())
		}
		noted := false
		for _, ev := range st.eventsOf("sk") {
			noted = noted || strings.Contains(ev.Message, "terminate program skipped")
		}
		if !noted {
			t.Error("skipping the terminate program left no event")
		}
	})
}

// TestRestartTouchesOnlyNamed: a supervisor that saw one process die
// restarts that service through boot and ready, never checks or reboots
// the others, and refuses a run being torn down.
func TestRestartTouchesOnlyNamed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var dbDead atomic.Bool
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Service.Name == "db" && req.Step == StepBoot {
				dbDead.Store(false)
			}
			if req.Service.Name == "db" && req.Step == StepReady && dbDead.Load() {
				return StepResult{ExitCode: 1, Gone: true}, nil
			}
			return StepResult{}, nil
		}}
		e, st := newEngine(t, drv)
		db := service("db")
		db.ReadyTimeout = time.Minute
		p := plan([]launchplan.Service{db}, []launchplan.Service{service("web")})
		if _, err := e.Launch(t.Context(), p, LaunchOptions{Run: "rs"}); err != nil {
			t.Fatal(err)
		}
		dbDead.Store(true)
		start := time.Now()
		rep, err := e.Restart(t.Context(), "rs", []string{"db"})
		if err != nil {
			t.Fatalf("restart: %v", err)
		}
		if took := time.Since(start); took >= time.Second {
			t.Errorf("restart of a process known dead took %s; it must not wait out the ready timeout", took)
		}
		if rep.State != RunReady || st.service(t, "rs", "db").Restarts != 1 {
			t.Errorf("run %s, db restarts %d", rep.State, st.service(t, "rs", "db").Restarts)
		}
		if drv.count("db", StepBoot) != 2 || drv.count("web", StepBoot) != 1 || drv.count("web", StepReady) != 1 {
			t.Errorf("boots db %d web %d, web ready checks %d: only db may be touched",
				drv.count("db", StepBoot), drv.count("web", StepBoot), drv.count("web", StepReady))
		}
		if _, err := e.Restart(t.Context(), "rs", []string{"nope"}); err == nil {
			t.Error("restart of an unknown service succeeded")
		}
		run, _ := st.GetRun(t.Context(), "rs")
		run.State = RunTerminating
		if err := st.UpdateRun(t.Context(), run); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Restart(t.Context(), "rs", []string{"db"}); err == nil || !strings.Contains(err.Error(), "terminating") {
			t.Errorf("restart during teardown: err %v, want a refusal", err)
		}
		if drv.count("db", StepBoot) != 2 {
			t.Error("a service of a run being torn down was rebooted")
		}
	})
}

// TestRestartTerminateIsMarkedReboot: the terminate a restart runs before
// booting a service again says so (a broker keeps its users through it);
// a teardown's terminate does not.
func TestRestartTerminateIsMarkedReboot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var reboots []bool
		var dead atomic.Bool
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			if req.Service.Name == "db" && req.Step == StepBoot {
				dead.Store(false)
			}
			if req.Service.Name == "db" && req.Step == StepReady && dead.Load() {
				return StepResult{ExitCode: 1, Gone: true}, nil
			}
			if req.Service.Name == "db" && req.Step == StepTerminate {
				mu.Lock()
				reboots = append(reboots, req.Reboot)
				mu.Unlock()
			}
			return StepResult{}, nil
		}}
		e, _ := newEngine(t, drv)
		p := plan([]launchplan.Service{service("db")})
		if _, err := e.Launch(t.Context(), p, LaunchOptions{Run: "rb"}); err != nil {
			t.Fatal(err)
		}
		dead.Store(true)
		if _, err := e.Restart(t.Context(), "rb", []string{"db"}); err != nil {
			t.Fatalf("restart: %v", err)
		}
		if _, err := e.Terminate(t.Context(), "rb"); err != nil {
			t.Fatalf("teardown: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(reboots, []bool{true, false}) {
			t.Errorf("terminate steps marked reboot %v, want [true false]: the restart's, then the teardown's", reboots)
		}
	})
}
