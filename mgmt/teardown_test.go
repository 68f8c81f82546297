package mgmt_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"nightshift/bootlevel"
	"nightshift/internal/service/builtin"
	"nightshift/internal/store/runstore"
	"nightshift/launchplan"
	"nightshift/mgmt"
)

// These tests drive mgmt.Teardown with fakes for everything it talks to
// (pools, sweepers, the driver), over a real run store.

// calls records, in order, what the fakes were asked to do.
type calls struct {
	mu  sync.Mutex
	log []string
}

func (c *calls) add(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = append(c.log, s)
}

func (c *calls) get() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.log)
}

// fakeDriver boots every service at once; its terminate step fails for the
// services named in stuck.
type fakeDriver struct {
	calls *calls
	stuck map[string]bool
}

func (d *fakeDriver) Acquire(ctx context.Context, run string, svc *launchplan.Service) (bootlevel.Host, error) {
	return bootlevel.Host{Hostname: "h", InstanceID: "local"}, nil
}

func (d *fakeDriver) Run(ctx context.Context, req bootlevel.StepRequest) (bootlevel.StepResult, error) {
	if req.Step == bootlevel.StepTerminate {
		d.calls.add("terminate " + req.Service.Name)
		if d.stuck[req.Service.Name] {
			return bootlevel.StepResult{ExitCode: 1, Tail: []string{"cannot stop"}}, nil
		}
	}
	return bootlevel.StepResult{}, nil
}

func (d *fakeDriver) Release(ctx context.Context, run string, svc *launchplan.Service, host bootlevel.Host) error {
	return nil
}

// fakePools stands in for the controller and the provisioner.
type fakePools struct {
	calls        *calls
	freezeErr    error
	gone         []string
	terminateErr error
}

func (p *fakePools) Freeze(ctx context.Context, run string) error {
	p.calls.add("freeze " + run)
	return p.freezeErr
}

func (p *fakePools) TerminateAll(ctx context.Context, run string, progress func(int)) ([]string, error) {
	p.calls.add("terminate_all " + run)
	progress(len(p.gone))
	progress(0)
	return p.gone, p.terminateErr
}

// fakeSweeper finds what a real sweep would find on the machine.
type fakeSweeper struct {
	calls     *calls
	name      string
	destroyed []string
	remaining []string
	err       error
}

func (s *fakeSweeper) Name() string { return s.name }

func (s *fakeSweeper) Sweep(ctx context.Context, run string, dryRun bool) ([]string, []string, error) {
	s.calls.add(fmt.Sprintf("sweep %s dry=%v", s.name, dryRun))
	if dryRun {
		return s.destroyed, nil, s.err
	}
	return s.destroyed, s.remaining, s.err
}

const teardownPlan = `name = "td"

[defaults]
driver = "local"

[[level]]
[level.service.broker]
boot = ["/bin/true"]
terminate = ["/bin/true"]

[[level]]
[level.service.app]
boot = ["/bin/true"]
terminate = ["/bin/true"]
`

// launched boots the two-level plan through a real engine with the fake
// driver and returns the engine, its store and the run's name.
func launched(t *testing.T, drv *fakeDriver) (*bootlevel.Engine, *runstore.Store, string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	planPath := filepath.Join(dir, "plan.toml")
	if err := os.WriteFile(planPath, []byte(teardownPlan), 0o600); err != nil {
		t.Fatal(err)
	}
	plan, err := launchplan.Load(planPath, launchplan.Options{Types: builtin.Names()})
	if err != nil {
		t.Fatal(err)
	}
	st, err := runstore.Open(ctx, filepath.Join(dir, "runs.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	eng := &bootlevel.Engine{Store: st, Home: dir, Drivers: map[string]bootlevel.Driver{launchplan.DriverLocal: drv}}
	run := runNameFor(t)
	if len(run) > 40 {
		run = run[:40]
	}
	if _, err := eng.Launch(ctx, plan, bootlevel.LaunchOptions{Run: run}); err != nil {
		t.Fatalf("launch: %v", err)
	}
	return eng, st, run
}

func TestTeardown(t *testing.T) {
	dead := errors.New("dial amqp: connection refused")
	cases := []struct {
		name string
		// pools: nil means the run has no pools.
		pools   *fakePools
		sweeper fakeSweeper
		stuck   map[string]bool

		wantErr       error
		wantDestroyed []string
		wantRemaining []string
		wantNotes     []string // substrings, one per note, in order
		wantCalls     []string
		wantState     bootlevel.RunState
	}{
		{
			name:          "pools, levels, then sweeps",
			pools:         &fakePools{gone: []string{"w1", "w2"}},
			wantDestroyed: []string{"worker w1", "worker w2", "service broker", "service app"},
			wantCalls:     []string{"freeze R", "terminate_all R", "terminate app", "terminate broker", "sweep process dry=false"},
			wantState:     bootlevel.RunTerminated,
		},
		{
			name:          "no pools",
			wantDestroyed: []string{"service broker", "service app"},
			wantCalls:     []string{"terminate app", "terminate broker", "sweep process dry=false"},
			wantState:     bootlevel.RunTerminated,
		},
		{
			name:          "freeze failing does not stop the teardown",
			pools:         &fakePools{freezeErr: errors.New("freeze: controller refused"), gone: []string{"w1"}},
			wantDestroyed: []string{"worker w1", "service broker", "service app"},
			wantNotes:     []string{"could not freeze controllers (freeze: controller refused); relying on the sweep"},
			wantCalls:     []string{"freeze R", "terminate_all R", "terminate app", "terminate broker", "sweep process dry=false"},
			wantState:     bootlevel.RunTerminated,
		},
		{
			name: "terminate_all timing out leaves the rest to the sweep",
			pools: &fakePools{gone: []string{"w1"},
				terminateErr: fmt.Errorf("terminate_all: 1 workers still live: %w", context.DeadlineExceeded)},
			sweeper:       fakeSweeper{destroyed: []string{"pid 77 (worker w2)"}},
			wantDestroyed: []string{"worker w1", "service broker", "service app", "process pid 77 (worker w2)"},
			wantNotes:     []string{"provisioner terminate_all failed (terminate_all: 1 workers still live: context deadline exceeded); relying on the sweep"},
			wantCalls:     []string{"freeze R", "terminate_all R", "terminate app", "terminate broker", "sweep process dry=false"},
			wantState:     bootlevel.RunTerminated,
		},
		{
			name:          "daemons already dead: the sweep finds their workers",
			pools:         &fakePools{freezeErr: dead, terminateErr: dead},
			sweeper:       fakeSweeper{destroyed: []string{"pid 80 (sitter)", "pid 81 (sleeper)"}},
			wantDestroyed: []string{"service broker", "service app", "process pid 80 (sitter)", "process pid 81 (sleeper)"},
			wantNotes:     []string{"could not freeze controllers", "provisioner terminate_all failed (dial amqp: connection refused)"},
			wantCalls:     []string{"freeze R", "terminate_all R", "terminate app", "terminate broker", "sweep process dry=false"},
			wantState:     bootlevel.RunTerminated,
		},
		{
			name:          "leftovers make it fail",
			pools:         &fakePools{},
			sweeper:       fakeSweeper{destroyed: []string{"pid 90 (a)"}, remaining: []string{"pid 91 (b)"}},
			wantErr:       mgmt.ErrRemains,
			wantDestroyed: []string{"service broker", "service app", "process pid 90 (a)"},
			wantRemaining: []string{"process pid 91 (b)"},
			wantCalls:     []string{"freeze R", "terminate_all R", "terminate app", "terminate broker", "sweep process dry=false"},
			wantState:     bootlevel.RunTerminated, // the levels are down; the error reports the sweep's leftovers
		},
		{
			name:          "a failing sweep is noted",
			sweeper:       fakeSweeper{err: errors.New("scan /proc: permission denied")},
			wantDestroyed: []string{"service broker", "service app"},
			wantNotes:     []string{"sweep process: scan /proc: permission denied"},
			wantCalls:     []string{"terminate app", "terminate broker", "sweep process dry=false"},
			wantState:     bootlevel.RunTerminated,
		},
		{
			name:          "a service that will not stop remains",
			stuck:         map[string]bool{"app": true},
			wantErr:       mgmt.ErrRemains,
			wantDestroyed: []string{"service broker"},
			wantRemaining: []string{"service app"},
			wantNotes:     []string{"level teardown:"},
			wantCalls:     []string{"terminate app", "terminate broker", "sweep process dry=false"},
			wantState:     bootlevel.RunFailed,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			log := &calls{}
			eng, st, run := launched(t, &fakeDriver{calls: log, stuck: c.stuck})
			log.log = nil
			sw := c.sweeper
			sw.calls, sw.name = log, "process"
			var out strings.Builder
			td := &mgmt.Teardown{Engine: eng, Store: st, Sweepers: []mgmt.Sweeper{&sw}, Out: &out}
			if c.pools != nil {
				c.pools.calls = log
				td.Pools = c.pools
			}
			rep, err := td.Run(context.Background(), run, false)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("Run = %v, want %v", err, c.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Run = %v", err)
			}
			if got := mgmt.ItemStrings(rep.Destroyed); !sameSet(got, c.wantDestroyed) {
				t.Errorf("destroyed = %q, want %q", got, c.wantDestroyed)
			}
			if got := mgmt.ItemStrings(rep.Remaining); !sameSet(got, c.wantRemaining) {
				t.Errorf("remaining = %q, want %q", got, c.wantRemaining)
			}
			if len(rep.Notes) != len(c.wantNotes) {
				t.Errorf("notes = %q, want %d like %q", rep.Notes, len(c.wantNotes), c.wantNotes)
			} else {
				for i, n := range c.wantNotes {
					if !strings.Contains(rep.Notes[i], n) {
						t.Errorf("note %d = %q, want it to contain %q", i, rep.Notes[i], n)
					}
				}
			}
			want := make([]string, len(c.wantCalls))
			for i, w := range c.wantCalls {
				want[i] = strings.Replace(w, " R", " "+run, 1)
			}
			if got := log.get(); !slices.Equal(got, want) {
				t.Errorf("calls = %q, want %q", got, want)
			}
			r, err := st.GetRun(context.Background(), run)
			if err != nil || r.State != c.wantState {
				t.Errorf("run state = %q, %v; want %q", r.State, err, c.wantState)
			}
			if c.pools != nil && !strings.Contains(out.String(), "freezing controllers of "+run) {
				t.Errorf("progress output lacks the freeze:\n%s", out.String())
			}
		})
	}
}

// TestTeardownIsIdempotent: a second teardown finds nothing to do and
// succeeds without asking the pools to act on a run that is gone.
func TestTeardownIsIdempotent(t *testing.T) {
	log := &calls{}
	eng, st, run := launched(t, &fakeDriver{calls: log})
	td := &mgmt.Teardown{Engine: eng, Store: st, Sweepers: []mgmt.Sweeper{&fakeSweeper{calls: log, name: "process"}}}
	if _, err := td.Run(context.Background(), run, false); err != nil {
		t.Fatalf("first teardown: %v", err)
	}
	log.log = nil
	rep, err := td.Run(context.Background(), run, false)
	if err != nil {
		t.Fatalf("second teardown: %v", err)
	}
	if len(rep.Destroyed) != 0 || len(rep.Remaining) != 0 {
		t.Errorf("second teardown report = %+v, want nothing destroyed or remaining", rep)
	}
	if got := log.get(); slices.Contains(got, "terminate app") {
		t.Errorf("second teardown ran terminate programs again: %q", got)
	}
}

// TestTeardownDryRun lists, in teardown order, what would go, and changes
// nothing: no pool is touched and sweepers only look.
func TestTeardownDryRun(t *testing.T) {
	log := &calls{}
	eng, st, run := launched(t, &fakeDriver{calls: log})
	log.log = nil
	pools := &fakePools{calls: log}
	td := &mgmt.Teardown{Engine: eng, Store: st, Pools: pools,
		Sweepers: []mgmt.Sweeper{&fakeSweeper{calls: log, name: "process", destroyed: []string{"pid 5 (x)"}}}}
	rep, err := td.Run(context.Background(), run, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []mgmt.Item{
		{Kind: "service", ID: "app", Detail: "level 2, ready"},
		{Kind: "service", ID: "broker", Detail: "level 1, ready"},
		{Kind: "process", ID: "pid 5", Detail: "x"},
	}
	if !slices.Equal(rep.Destroyed, want) || !rep.DryRun {
		t.Errorf("dry run report = %+v, want destroyed %+v", rep, want)
	}
	// A script reads fields, never text cut with "...".
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `{"kind":"service","id":"app","detail":"level 2, ready"}`) {
		t.Errorf("JSON report %s: want structured items", js)
	}
	if got := log.get(); !slices.Equal(got, []string{"sweep process dry=true"}) {
		t.Errorf("dry run calls = %q, want only a looking sweep", got)
	}
	if r, _ := st.GetRun(context.Background(), run); r.State == bootlevel.RunTerminated {
		t.Error("dry run marked the run terminated")
	}
}

func TestTeardownUnknownRun(t *testing.T) {
	eng, st, _ := launched(t, &fakeDriver{calls: &calls{}})
	td := &mgmt.Teardown{Engine: eng, Store: st}
	if _, err := td.Run(context.Background(), "no-such-run", false); err == nil || !strings.Contains(err.Error(), `teardown "no-such-run"`) {
		t.Errorf("Run(unknown) = %v, want an error naming the run", err)
	}
}

func sameSet(got, want []string) bool {
	return len(got) == len(want) && (len(got) == 0 || slices.Equal(sorted(got), sorted(want)))
}

func sorted(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return out
}

// runNameFor derives a valid run name ([a-z0-9][a-z0-9-]{0,62}) from the
// test's name, unique per subtest.
func runNameFor(t *testing.T) string {
	var b strings.Builder
	b.WriteString("td-")
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := b.String()
	if len(name) > 63 {
		name = name[:63]
	}
	return strings.TrimRight(name, "-")
}
