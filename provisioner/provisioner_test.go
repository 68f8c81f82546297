package provisioner_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift"
	"nightshift/internal/jobspec"
	"nightshift/internal/store/provstore"
	"nightshift/internal/testsupport"
	"nightshift/provisioner"
	"nightshift/provisioner/provisionertest"
)

type recorder struct {
	mu   sync.Mutex
	keys []string
}

func (r *recorder) InstanceChanged(_ context.Context, inst provisioner.Instance) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, provisioner.EventKey(inst))
	return nil
}

func (r *recorder) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.keys, key)
}

type harness struct {
	t      *testing.T
	store  *provstore.Store
	drv    *provisionertest.Driver
	clock  *clockwork.FakeClock
	events *recorder
	p      *provisioner.Provisioner
	stop   func()
	cfg    provisioner.Config
}

func newHarness(t *testing.T, tweak func(*provisioner.Config)) *harness {
	t.Helper()
	ctx := context.Background()
	st, err := provstore.Open(ctx, filepath.Join(t.TempDir(), "prov.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := &harness{t: t, store: st, drv: provisionertest.NewDriver("r1"), clock: clockwork.NewFakeClock(), events: &recorder{}}
	h.cfg = provisioner.Config{
		Run: "r1", Driver: h.drv, Store: st, Events: h.events, Clock: h.clock,
		Jobs:           provisionertest.Jobs("web", "db"),
		Log:            slog.New(slog.DiscardHandler),
		ReconcileEvery: -1, RetryDelay: time.Second, CallTimeout: 10 * time.Second,
	}
	if tweak != nil {
		tweak(&h.cfg)
	}
	h.p = h.fresh()
	return h
}

// fresh builds a new Provisioner on the same store and driver, as a
// restarted process would.
func (h *harness) fresh() *provisioner.Provisioner {
	h.t.Helper()
	p, err := provisioner.New(h.cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	p := h.p
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.Ready():
	case err := <-done:
		h.t.Fatalf("run ended before it was ready: %v", err)
	}
	h.stop = func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("run: %v", err)
		}
		h.stop = nil
	}
	h.t.Cleanup(func() {
		if h.stop != nil {
			h.stop()
		}
	})
}

// restart stops the running Provisioner (if any) and starts a fresh one.
func (h *harness) restart() {
	if h.stop != nil {
		h.stop()
	}
	h.p = h.fresh()
	h.start()
}

func (h *harness) idle() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.p.WaitIdle(ctx); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) launch(id, job string, n int) []provisioner.Instance {
	h.t.Helper()
	insts, err := h.p.Launch(context.Background(), provisionertest.Launch(h.cfg.Jobs, id, job, n))
	if err != nil {
		h.t.Fatal(err)
	}
	return insts
}

func (h *harness) get(id string) provisioner.Instance {
	h.t.Helper()
	inst, err := h.store.Instance(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return inst
}

func states(inst provisioner.Instance) string {
	var s []string
	for _, c := range inst.History {
		s = append(s, string(c.State))
	}
	return strings.Join(s, ",")
}

func ids(insts []provisioner.Instance) []string {
	var out []string
	for _, i := range insts {
		out = append(out, i.ID)
	}
	slices.Sort(out)
	return out
}

func TestLaunchRunsInstancesAndPublishes(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	insts := h.launch("L1", "web", 3)
	if len(insts) != 3 || insts[0].State != nightshift.StateRequested {
		t.Fatalf("launch reply = %+v, want 3 requested", insts)
	}
	h.idle()
	for _, in := range insts {
		got := h.get(in.ID)
		if got.State != nightshift.StateRunning || got.Host != "fake-host" || got.PID == 0 {
			t.Errorf("%s = %s host %q pid %d, want running on fake-host", in.ID, got.State, got.Host, got.PID)
		}
		if states(got) != "requested,pending,running" {
			t.Errorf("%s history = %s", in.ID, states(got))
		}
	}
	if got := h.drv.Live(); !slices.Equal(got, ids(insts)) {
		t.Errorf("driver live = %v, want %v", got, ids(insts))
	}
	for _, key := range []string{"instance.web.requested", "instance.web.pending", "instance.web.running"} {
		if !h.events.has(key) {
			t.Errorf("no event %s", key)
		}
	}
}

func TestLaunchIDIsIdempotent(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	first := h.launch("same", "web", 2)
	h.idle()
	second := h.launch("same", "web", 2)
	h.idle()
	if !slices.Equal(ids(first), ids(second)) {
		t.Fatalf("second launch ids %v, want %v", ids(second), ids(first))
	}
	for _, id := range ids(first) {
		if n := h.drv.Launches(id); n != 1 {
			t.Errorf("%s launched %d times, want 1", id, n)
		}
	}
	if st, _ := h.p.Describe(context.Background(), ""); len(st.Instances) != 2 {
		t.Errorf("describe has %d instances, want 2", len(st.Instances))
	}
	_, err := h.p.Launch(context.Background(), provisionertest.Launch(h.cfg.Jobs, "same", "web", 3))
	if err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("reusing launch_id with another count: err = %v, want refusal", err)
	}
}

func TestLaunchRequestValidation(t *testing.T) {
	h := newHarness(t, nil)
	ok := func(f func(*provisioner.LaunchRequest)) provisioner.LaunchRequest {
		r := provisionertest.Launch(h.cfg.Jobs, "a", "web", 1)
		f(&r)
		return r
	}
	other := provisionertest.Digest(jobspec.Spec{Worker: map[string]any{"command": []any{"/bin/sh", "-c", "id > /tmp/pwned"}}})
	cases := []struct {
		name string
		req  provisioner.LaunchRequest
		want string
	}{
		{"no launch id", ok(func(r *provisioner.LaunchRequest) { r.LaunchID = "" }), "launch_id"},
		{"bad job", ok(func(r *provisioner.LaunchRequest) { r.Job = "../etc" }), "job"},
		{"zero count", ok(func(r *provisioner.LaunchRequest) { r.Count = 0 }), "count"},
		{"huge count", ok(func(r *provisioner.LaunchRequest) { r.Count = provisioner.MaxCount + 1 }), "count"},
		{"no digest", ok(func(r *provisioner.LaunchRequest) { r.SpecDigest = "" }), "spec_digest"},
		{"unknown job", ok(func(r *provisioner.LaunchRequest) { r.Job = "evil" }), `unknown job "evil": the run's jobs are db, web`},
		{"another spec", ok(func(r *provisioner.LaunchRequest) { r.SpecDigest = other }), "spec digest " + other + " is not the provisioner's"},
		{"huge engine var", ok(func(r *provisioner.LaunchRequest) {
			r.Engine = &provisioner.EngineSpec{Vars: map[string]string{"x": strings.Repeat("v", 2000)}}
		}), "engine.vars"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := h.p.Launch(context.Background(), c.req)
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, provisioner.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, c.want)
			}
		})
	}
	if st, _ := h.p.Describe(context.Background(), ""); len(st.Instances) != 0 {
		t.Errorf("invalid requests recorded %d instances", len(st.Instances))
	}
}

func TestTerminate(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	insts := h.launch("L1", "web", 2)
	h.idle()
	_, err := h.p.Terminate(context.Background(), []string{insts[0].ID, "nope"})
	if !errors.Is(err, provisioner.ErrNotFound) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("terminate with unknown id: err = %v, want ErrNotFound naming it", err)
	}
	h.idle()
	if got := h.get(insts[0].ID); states(got) != "requested,pending,running,terminating,terminated" {
		t.Errorf("terminated history = %s", states(got))
	}
	if got := h.drv.Live(); !slices.Equal(got, []string{insts[1].ID}) {
		t.Errorf("driver live = %v, want only %s", got, insts[1].ID)
	}
	if !h.events.has("instance.web.terminated") {
		t.Error("no terminated event")
	}
}

func TestTerminateAllDisablesUntilEnable(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	ctx := context.Background()
	h.launch("L1", "web", 3)
	h.launch("L2", "db", 1)
	h.idle()
	if _, err := h.p.TerminateAll(ctx); err != nil {
		t.Fatal(err)
	}
	h.idle()
	st, err := h.p.Describe(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Live != 0 || !st.Disabled {
		t.Fatalf("after terminate_all: live=%d disabled=%v", st.Live, st.Disabled)
	}
	if live, _ := h.p.TerminateAll(ctx); live != 0 {
		t.Errorf("polling terminate_all reports %d live", live)
	}
	if got := h.drv.Live(); len(got) != 0 {
		t.Errorf("driver still has %v", got)
	}
	rej := h.launch("L3", "web", 2)
	h.idle()
	for _, in := range rej {
		got := h.get(in.ID)
		if got.State != nightshift.StateRejected || !strings.Contains(got.Reason, "terminate_all") {
			t.Errorf("launch while disabled: %s %s %q, want rejected with reason", in.ID, got.State, got.Reason)
		}
		if h.drv.Launches(in.ID) != 0 {
			t.Errorf("rejected instance %s reached the driver", in.ID)
		}
	}
	if err := h.p.Enable(ctx); err != nil {
		t.Fatal(err)
	}
	ok := h.launch("L4", "web", 1)
	h.idle()
	if got := h.get(ok[0].ID); got.State != nightshift.StateRunning {
		t.Errorf("launch after enable = %s, want running", got.State)
	}
}

func TestStaleUpdatesAreIgnored(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	in := h.launch("L1", "web", 1)[0]
	h.idle()
	for _, st := range []nightshift.InstanceState{nightshift.StateRequested, nightshift.StatePending, nightshift.StateRunning, "bogus"} {
		got, changed, err := h.p.Transition(context.Background(), in.ID, st, "late report")
		if err != nil {
			t.Fatal(err)
		}
		if changed || got.State != nightshift.StateRunning {
			t.Errorf("update to %s: changed=%v state=%s, want ignored", st, changed, got.State)
		}
	}
	if got := h.get(in.ID); states(got) != "requested,pending,running" {
		t.Errorf("history after stale updates = %s", states(got))
	}
	if _, _, err := h.p.Transition(context.Background(), "missing", nightshift.StateRunning, "x"); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("update of unknown instance: err = %v", err)
	}
}

func TestLaunchFailureIsRecordedAndCleanedUp(t *testing.T) {
	h := newHarness(t, nil)
	h.drv.LaunchErr = func(provisioner.InstanceSpec) error {
		return errors.New("quota exceeded for amqp://u:hunter2@host/")
	}
	h.start()
	in := h.launch("L1", "web", 1)[0]
	h.idle()
	got := h.get(in.ID)
	if got.State != nightshift.StateFailed || !strings.Contains(got.Reason, "quota exceeded") {
		t.Fatalf("state %s reason %q, want failed with driver error", got.State, got.Reason)
	}
	if strings.Contains(got.Reason, "hunter2") {
		t.Errorf("reason leaks a password: %q", got.Reason)
	}
	if h.drv.Terminations(in.ID) != 1 {
		t.Errorf("failed launch not cleaned up in the driver")
	}
}

func TestLaunchTimeout(t *testing.T) {
	h := newHarness(t, func(c *provisioner.Config) { c.CallTimeout = 50 * time.Millisecond })
	h.drv.BeforeLaunch = func(ctx context.Context, _ provisioner.InstanceSpec) error {
		<-ctx.Done()
		return ctx.Err()
	}
	h.start()
	in := h.launch("L1", "web", 1)[0]
	h.idle()
	if got := h.get(in.ID); got.State != nightshift.StateFailed || !strings.Contains(got.Reason, "timed out") {
		t.Fatalf("state %s reason %q, want failed: timed out", got.State, got.Reason)
	}
}

func TestTerminateWhileLaunchInFlight(t *testing.T) {
	h := newHarness(t, nil)
	entered, release := make(chan struct{}), make(chan struct{})
	h.drv.BeforeLaunch = func(ctx context.Context, _ provisioner.InstanceSpec) error {
		close(entered)
		<-release
		return nil
	}
	h.start()
	in := h.launch("L1", "web", 1)[0]
	<-entered
	if _, err := h.p.Terminate(context.Background(), []string{in.ID}); err != nil {
		t.Fatal(err)
	}
	// Let the termination finish first, so the driver creates the instance
	// only after its record has ended: the worst order.
	testsupport.Eventually(t, 10*time.Second, func() error {
		if st := h.get(in.ID).State; st != nightshift.StateTerminated {
			return fmt.Errorf("termination never recorded: %s", st)
		}
		return nil
	})
	close(release)
	h.idle()
	if got := h.get(in.ID); got.State != nightshift.StateTerminated {
		t.Errorf("state %s, want terminated", got.State)
	}
	if live := h.drv.Live(); len(live) != 0 {
		t.Errorf("instance launched after termination survived: %v", live)
	}
}

func TestTerminateRetriesAfterDriverError(t *testing.T) {
	h := newHarness(t, nil)
	var mu sync.Mutex
	fails := 1
	h.drv.TerminateErr = func(string) error {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			return errors.New("api unavailable")
		}
		return nil
	}
	h.start()
	in := h.launch("L1", "web", 1)[0]
	h.idle()
	if _, err := h.p.Terminate(context.Background(), []string{in.ID}); err != nil {
		t.Fatal(err)
	}
	h.idle()
	if got := h.get(in.ID); got.State != nightshift.StateTerminating {
		t.Fatalf("after a failed terminate: %s, want still terminating", got.State)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Second)
	for h.get(in.ID).State != nightshift.StateTerminated {
		if err := h.p.WaitIdle(ctx); err != nil {
			t.Fatalf("retry never terminated: %v", err)
		}
		if ctx.Err() != nil {
			t.Fatal("retry never terminated")
		}
		time.Sleep(time.Millisecond) // let the retry callback enqueue
	}
}

func TestRecovery(t *testing.T) {
	cases := []struct {
		name string
		// before runs against a Provisioner that is not running (the
		// crashed process) and returns the instance id to check.
		before     func(h *harness) string
		wantState  nightshift.InstanceState
		wantReason string
		wantLive   bool
		// wantLaunches is how many driver launches the recovered run made.
		wantLaunches int
	}{
		{
			name: "crash after recording, before the driver call",
			before: func(h *harness) string {
				return h.launch("L1", "web", 1)[0].ID
			},
			wantState: nightshift.StateRunning, wantLive: true, wantLaunches: 1,
		},
		{
			name: "crash after recording pending, before the driver call",
			before: func(h *harness) string {
				id := h.launch("L1", "web", 1)[0].ID
				h.p.Transition(context.Background(), id, nightshift.StatePending, "launching")
				return id
			},
			wantState: nightshift.StateRunning, wantLive: true, wantLaunches: 1,
		},
		{
			name: "crash just after the driver call",
			before: func(h *harness) string {
				in := h.launch("L1", "web", 1)[0]
				h.p.Transition(context.Background(), in.ID, nightshift.StatePending, "launching")
				h.drv.Plant(provisioner.Owned{Job: "web", InstanceID: in.ID, LaunchID: "L1", Host: "h", PID: 42})
				return in.ID
			},
			wantState: nightshift.StateRunning, wantReason: "adopted", wantLive: true, wantLaunches: 0,
		},
		{
			name: "orphan instance with no record",
			before: func(h *harness) string {
				h.drv.Plant(provisioner.Owned{Job: "web", InstanceID: "web-deadbeef-0", LaunchID: "ghost"})
				return "web-deadbeef-0"
			},
			wantLive: false,
		},
		{
			name: "instance vanished while the provisioner was down",
			before: func(h *harness) string {
				h.start()
				id := h.launch("L1", "web", 1)[0].ID
				h.idle()
				h.stop()
				h.drv.Vanish(id)
				return id
			},
			wantState: nightshift.StateFailed, wantReason: "disappeared", wantLive: false,
		},
		{
			name: "crash in the middle of a termination",
			before: func(h *harness) string {
				h.start()
				id := h.launch("L1", "web", 1)[0].ID
				h.idle()
				h.stop()
				h.p = h.fresh()
				h.p.Terminate(context.Background(), []string{id})
				return id
			},
			wantState: nightshift.StateTerminated, wantLive: false,
		},
		{
			name: "instance alive although its record is terminal",
			before: func(h *harness) string {
				h.start()
				id := h.launch("L1", "web", 1)[0].ID
				h.idle()
				h.stop()
				h.p = h.fresh()
				h.p.Transition(context.Background(), id, nightshift.StateFailed, "operator says so")
				return id
			},
			wantState: nightshift.StateFailed, wantLive: false,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, nil)
			id := c.before(h)
			before := h.drv.Launches(id)
			h.restart()
			h.idle()
			if c.wantState != "" {
				got := h.get(id)
				if got.State != c.wantState || !strings.Contains(got.Reason, c.wantReason) {
					t.Errorf("record = %s %q, want %s containing %q", got.State, got.Reason, c.wantState, c.wantReason)
				}
			}
			if live := slices.Contains(h.drv.Live(), id); live != c.wantLive {
				t.Errorf("instance live in driver = %v, want %v (%v)", live, c.wantLive, h.drv)
			}
			if n := h.drv.Launches(id) - before; n != c.wantLaunches {
				t.Errorf("recovered run launched %d times, want %d", n, c.wantLaunches)
			}
		})
	}
}

func TestConcurrentLaunchesStayBounded(t *testing.T) {
	const limit = 3
	h := newHarness(t, func(c *provisioner.Config) { c.MaxLaunches = limit })
	var mu sync.Mutex
	cur, peak := 0, 0
	h.drv.BeforeLaunch = func(context.Context, provisioner.InstanceSpec) error {
		mu.Lock()
		cur++
		peak = max(peak, cur)
		mu.Unlock()
		time.Sleep(2 * time.Millisecond) // widen the window so overlap is observable
		mu.Lock()
		cur--
		mu.Unlock()
		return nil
	}
	h.start()
	for i := range 5 {
		h.launch(fmt.Sprintf("L%d", i), "web", 6)
	}
	h.idle()
	if peak > limit || peak == 0 {
		t.Errorf("peak concurrent launches = %d, want 1..%d", peak, limit)
	}
	if n := len(h.drv.Live()); n != 30 {
		t.Errorf("%d live, want 30", n)
	}
}

// TestLaunchSpecComesFromTheJobDefinition: the driver gets the job's spec
// as the provisioner holds it, with the engine's labels, whatever the
// request.
func TestLaunchSpecComesFromTheJobDefinition(t *testing.T) {
	var mu sync.Mutex
	var got []string
	h := newHarness(t, func(c *provisioner.Config) {
		c.Jobs = map[string]jobspec.Spec{"web": {Worker: map[string]any{"command": []any{"/bin/worker", "--fast"}, "mem": int64(64)}}}
	})
	h.drv.BeforeLaunch = func(_ context.Context, spec provisioner.InstanceSpec) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, string(spec.Spec))
		return nil
	}
	h.start()
	req := provisionertest.Launch(h.cfg.Jobs, "L1", "web", 1)
	req.Engine = &provisioner.EngineSpec{Deployable: "crunch"}
	if _, err := h.p.Launch(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	h.idle()
	mu.Lock()
	defer mu.Unlock()
	want := `{"driver":"local","engine":{"deployable":"crunch"},"worker":{"command":["/bin/worker","--fast"],"mem":64}}`
	if len(got) != 1 || got[0] != want {
		t.Errorf("driver got %q, want [%s]", got, want)
	}
}

// A revision handed over by Revise may be launched by its digest, and only
// then; it cannot change the job's driver, and its digest must be its own.
func TestReviseLetsLaunchesNameARevision(t *testing.T) {
	var mu sync.Mutex
	var got []string
	h := newHarness(t, func(c *provisioner.Config) {
		c.Jobs = map[string]jobspec.Spec{"web": {Driver: "local", Worker: map[string]any{"command": []any{"/bin/worker"}}}}
	})
	h.drv.BeforeLaunch = func(_ context.Context, spec provisioner.InstanceSpec) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, string(spec.Spec))
		return nil
	}
	h.start()
	ctx := context.Background()
	v2 := jobspec.Spec{Driver: "local", Worker: map[string]any{"command": []any{"/bin/worker"}, "env": map[string]any{"VERSION": "2"}}}
	d2 := provisionertest.Digest(v2)
	launch2 := provisioner.LaunchRequest{LaunchID: "L2", Job: "web", Count: 1, SpecDigest: d2}
	if _, err := h.p.Launch(ctx, launch2); err == nil || !strings.Contains(err.Error(), "nor a revision handed to it") {
		t.Fatalf("launch of an unknown revision: %v, want refused", err)
	}
	bad := []struct {
		name string
		body provisioner.ReviseBody
		want string
	}{
		{"unknown job", provisioner.ReviseBody{Job: "db", Digest: d2, Spec: v2}, `field "job": unknown job "db"`},
		{"another driver", provisioner.ReviseBody{Job: "web", Digest: provisionertest.Digest(jobspec.Spec{Driver: "ec2", Worker: v2.Worker}),
			Spec: jobspec.Spec{Driver: "ec2", Worker: v2.Worker}}, `field "spec.driver"`},
		{"a digest that is not the spec's", provisioner.ReviseBody{Job: "web", Digest: provisionertest.Digest(h.cfg.Jobs["web"]), Spec: v2}, `field "digest"`},
		{"a bad worker user", provisioner.ReviseBody{Job: "web", Digest: provisionertest.Digest(jobspec.Spec{Driver: "local", Worker: map[string]any{"command": []any{"w"}, "user": "Root Admin"}}),
			Spec: jobspec.Spec{Driver: "local", Worker: map[string]any{"command": []any{"w"}, "user": "Root Admin"}}}, "worker.user"},
	}
	for _, c := range bad {
		if err := h.p.Revise(ctx, c.body); err == nil || !errors.Is(err, provisioner.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an invalid-request error naming %s", c.name, err, c.want)
		}
	}
	if err := h.p.Revise(ctx, provisioner.ReviseBody{Job: "web", Digest: d2, Spec: v2}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.p.Launch(ctx, launch2); err != nil {
		t.Fatal(err)
	}
	// The plan's spec stays launchable beside it (a rollback needs it).
	if _, err := h.p.Launch(ctx, provisionertest.Launch(h.cfg.Jobs, "L1", "web", 1)); err != nil {
		t.Fatal(err)
	}
	h.idle()
	mu.Lock()
	defer mu.Unlock()
	want := []string{`{"driver":"local","worker":{"command":["/bin/worker"],"env":{"VERSION":"2"}}}`, `{"driver":"local","worker":{"command":["/bin/worker"]}}`}
	if len(got) != 2 || !slices.Contains(got, want[0]) || !slices.Contains(got, want[1]) {
		t.Errorf("driver got %q, want %q", got, want)
	}
}

// A revision handed over before a restart is still launched after it,
// without being handed over again: the ledger keeps it. A controller
// resends a pending launch of the revision it came from without handing
// that one over first, so memory alone would refuse it.
func TestRevisionSurvivesRestart(t *testing.T) {
	var mu sync.Mutex
	var got []string
	h := newHarness(t, func(c *provisioner.Config) {
		c.Jobs = map[string]jobspec.Spec{"web": {Driver: "local", Worker: map[string]any{"command": []any{"/bin/worker"}}}}
	})
	h.drv.BeforeLaunch = func(_ context.Context, spec provisioner.InstanceSpec) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, string(spec.Spec))
		return nil
	}
	h.start()
	ctx := context.Background()
	v2 := jobspec.Spec{Driver: "local", Worker: map[string]any{"command": []any{"/bin/worker"}, "env": map[string]any{"VERSION": "2"}}}
	d2 := provisionertest.Digest(v2)
	if err := h.p.Revise(ctx, provisioner.ReviseBody{Job: "web", Digest: d2, Spec: v2}); err != nil {
		t.Fatal(err)
	}
	h.restart()
	if _, err := h.p.Launch(ctx, provisioner.LaunchRequest{LaunchID: "L2", Job: "web", Count: 1, SpecDigest: d2}); err != nil {
		t.Fatalf("launch of a revision handed over before the restart: %v", err)
	}
	h.idle()
	mu.Lock()
	defer mu.Unlock()
	want := `{"driver":"local","worker":{"command":["/bin/worker"],"env":{"VERSION":"2"}}}`
	if len(got) != 1 || got[0] != want {
		t.Errorf("driver got %q, want [%s]", got, want)
	}
}
