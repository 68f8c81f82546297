package controller_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"nightshift"
	"nightshift/controller"
	"nightshift/decision"
	"nightshift/internal/jobspec"
	"nightshift/internal/testsupport"
	"nightshift/provisioner"
	"nightshift/sitter"
)

func npJob(t testing.TB, n int) controller.Job {
	return mustJob(t, "web", map[string]any{
		"engine": "npreserving",
		"policy": map[string]any{"n": n, "drain_timeout": "30s", "deployable": "worker"},
		"health": map[string]any{"heartbeat_interval": "1s", "missing_timeout": "3s", "boot_timeout": "20s"},
		"worker": map[string]any{"command": []any{"/bin/worker"}},
	})
}

func TestNPreservingReplacesDeadWorker(t *testing.T) {
	r := newRig(t, npJob(t, 2))
	r.tick()
	n, calls := r.prov.launched()
	if n != 2 || len(calls) != 1 {
		t.Fatalf("first tick: %d instances in %d launch calls, want 2 in 1", n, len(calls))
	}
	// The launch names the job's spec by digest (the provisioner holds the
	// spec) and carries the engine's labels, never a command.
	want, err := jobspec.Spec{Driver: "local", Worker: map[string]any{"command": []any{"/bin/worker"}}}.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if c := calls[0]; c.SpecDigest != want || c.Engine == nil || c.Engine.Deployable != "worker" {
		t.Fatalf("launch request %+v: want spec digest %s and the engine's deployable", c, want)
	}
	ids := r.runAll("web", false)
	r.clock.Advance(time.Second)
	r.tick()
	if n, _ := r.prov.launched(); n != 2 {
		t.Fatalf("healthy pool: %d instances launched, want still 2", n)
	}
	// ids[1] falls silent; ids[0] keeps beating past missing_timeout.
	for range 5 {
		r.clock.Advance(time.Second)
		r.heartbeat("web", ids[0], false)
	}
	r.tick()
	terms := r.prov.terminated()
	if len(terms) != 1 || !slices.Equal(terms[0], []string{ids[1]}) {
		t.Fatalf("terminated %v, want [[%s]] (the missing worker)", terms, ids[1])
	}
	if n, calls := r.prov.launched(); n != 3 || len(calls) != 2 || calls[1].Count != 1 {
		t.Fatalf("after a death: %d instances in %d calls, want a replacement launch of 1", n, len(calls))
	}
	ds, err := r.c.Decisions(context.Background(), "web", 1)
	if err != nil || len(ds) != 1 || !strings.Contains(ds[0].Reason, "unhealthy") || !strings.Contains(string(ds[0].Actions), ids[1]+" missing") {
		t.Fatalf("last decision %+v (err %v): want a reason and actions naming the missing worker", ds, err)
	}
}

func TestQueueBacklogLaunches(t *testing.T) {
	ctx := context.Background()
	qlJob := func(mgmtURL string) controller.Job {
		q := map[string]any{"name": "work.q"}
		if mgmtURL != "" {
			q["management_url"] = mgmtURL
		}
		return mustJob(t, "crunch", map[string]any{
			"engine": "queuelen",
			"policy": map[string]any{"high_water": 5, "low_water": 1, "max_instances": 3},
			"queue":  q,
		})
	}
	t.Run("passive declare", func(t *testing.T) {
		r := newRig(t, qlJob(""))
		r.meter.depth = 40
		r.tick()
		if n, _ := r.prov.launched(); n != 1 {
			t.Fatalf("backlog 40 on empty pool: %d launched, want 1", n)
		}
		st, _ := r.c.Status("crunch")
		if st[0].QueueDepth == nil || *st[0].QueueDepth != 40 || st[0].QueueSource != "passive_declare" {
			t.Fatalf("status depth %v source %q, want 40 passive_declare", st[0].QueueDepth, st[0].QueueSource)
		}
	})
	t.Run("management api counts unacked", func(t *testing.T) {
		var gotPath, gotUser string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			gotPath = req.URL.EscapedPath()
			gotUser, _, _ = req.BasicAuth()
			w.Write([]byte(`{"name":"work.q","messages_ready":0,"messages_unacknowledged":9}`))
		}))
		defer srv.Close()
		u := strings.Replace(srv.URL, "http://", "http://ops:s3cret@", 1)
		r := newRig(t, qlJob(u))
		r.tick()
		if gotPath != "/api/queues/%2F/work.q" || gotUser != "ops" {
			t.Fatalf("request path %q user %q, want /api/queues/%%2F/work.q as ops", gotPath, gotUser)
		}
		if n, _ := r.prov.launched(); n != 1 {
			t.Fatalf("9 unacked, 0 ready: %d launched, want 1 (unacked work counts)", n)
		}
		st, _ := r.c.Status("crunch")
		if st[0].QueueSource != "mgmt_api" || *st[0].QueueDepth != 9 {
			t.Fatalf("status source %q depth %v, want mgmt_api 9", st[0].QueueSource, *st[0].QueueDepth)
		}
	})
	t.Run("a fresh backlog counts before the management api samples it", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			w.Write([]byte(`{"name":"work.q","messages_ready":0,"messages_unacknowledged":0}`)) // stale sample
		}))
		defer srv.Close()
		r := newRig(t, qlJob(srv.URL))
		r.meter.depth = 60 // what a passive declare sees right now
		r.tick()
		if n, _ := r.prov.launched(); n != 1 {
			t.Fatalf("live backlog 60, stale api 0: %d launched, want 1", n)
		}
		st, _ := r.c.Status("crunch")
		if *st[0].QueueDepth != 60 {
			t.Fatalf("status depth %d, want the live 60", *st[0].QueueDepth)
		}
	})
	// The API not answering (or not having sampled a new queue yet) while
	// AMQP works still gives a reading: the ready count, named as such.
	t.Run("management api down falls back to a passive declare", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			w.Write([]byte(`{"name":"work.q"}`)) // stats not collected yet
		}))
		defer srv.Close()
		r := newRig(t, qlJob(srv.URL))
		r.meter.depth = 30
		r.tick()
		if n, _ := r.prov.launched(); n != 1 {
			t.Fatalf("API unsampled, 30 ready: %d launched, want 1", n)
		}
		st, _ := r.c.Status("crunch")
		if st[0].QueueDepth == nil || *st[0].QueueDepth != 30 || st[0].QueueSource != "passive_declare" || st[0].QueueError != "" {
			t.Fatalf("status depth %v source %q error %q, want 30 from passive_declare", st[0].QueueDepth, st[0].QueueSource, st[0].QueueError)
		}
	})
	t.Run("depth unavailable holds", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}))
		defer srv.Close()
		r := newRig(t, qlJob(srv.URL))
		r.meter.err = errors.New("channel closed")
		r.tick()
		if n, _ := r.prov.launched(); n != 0 {
			t.Fatalf("no metric: %d launched, want 0 (hold)", n)
		}
		st, _ := r.c.Status("crunch")
		if st[0].QueueDepth != nil || st[0].QueueSource != "" {
			t.Fatalf("status depth %v source %q, want unavailable", st[0].QueueDepth, st[0].QueueSource)
		}
		ds, _ := r.c.Decisions(ctx, "crunch", 0)
		if len(ds) == 0 || !strings.Contains(ds[0].Reason, "unavailable") && !strings.Contains(ds[0].Reason, "no ") {
			t.Fatalf("decisions %+v: want a hold reason about the missing metric", ds)
		}
		if !strings.Contains(st[0].QueueError, "HTTP 500") {
			t.Fatalf("status queue_error %q, want the API's answer", st[0].QueueError)
		}
	})
	// A queue nobody has declared yet is not a broken broker: status names
	// it, so the operator looks at the producer or the plan's queue name,
	// and the pool holds until it appears.
	t.Run("a queue not declared yet is named in status", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			http.Error(w, `{"error":"Object Not Found","reason":"Not Found"}`, http.StatusNotFound)
		}))
		defer srv.Close()
		for _, mgmt := range []string{srv.URL, ""} {
			r := newRig(t, qlJob(mgmt))
			r.meter.err = fmt.Errorf("passive declare: %w", controller.ErrQueueMissing)
			r.tick()
			st, _ := r.c.Status("crunch")
			if st[0].QueueDepth != nil || !strings.Contains(st[0].QueueError, `"work.q" not declared yet`) {
				t.Fatalf("mgmt %q: status depth %v queue_error %q, want nil and the queue named as not declared", mgmt, st[0].QueueDepth, st[0].QueueError)
			}
			if n, _ := r.prov.launched(); n != 0 {
				t.Fatalf("mgmt %q: %d launched with no queue, want 0 (hold)", mgmt, n)
			}
			if mgmt != "" {
				continue
			}
			r.meter.mu.Lock()
			r.meter.err, r.meter.depth = nil, 7
			r.meter.mu.Unlock()
			r.clock.Advance(time.Minute)
			r.tick()
			st, _ = r.c.Status("crunch")
			if st[0].QueueDepth == nil || *st[0].QueueDepth != 7 || st[0].QueueError != "" {
				t.Fatalf("once declared: depth %v queue_error %q, want 7 and no error", st[0].QueueDepth, st[0].QueueError)
			}
		}
	})
}

func TestNoDoubleLaunchAfterRestart(t *testing.T) {
	cases := []struct {
		name      string
		lostReply bool // the provisioner recorded the launch but the reply was lost
	}{
		{"launch recorded, reply lost", true},
		{"launch never arrived", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, npJob(t, 3))
			r.prov.failLaunch, r.prov.lostReply = 1, tc.lostReply
			r.tick()
			// Crash after the decision was stored and the launch (maybe) sent.
			r.restart()
			r.tick()
			r.clock.Advance(time.Second)
			r.tick()
			n, calls := r.prov.launched()
			if n != 3 {
				t.Fatalf("%d instances exist, want exactly 3 (no double launch)", n)
			}
			idsSeen := map[string]bool{}
			for _, c := range calls {
				idsSeen[c.LaunchID] = true
			}
			if len(idsSeen) != 1 {
				t.Fatalf("launch ids %v: want one id, resent unchanged", calls)
			}
			wantCalls := 2
			if tc.lostReply {
				wantCalls = 1 // found in the provisioner's records, not resent
			}
			if len(calls) != wantCalls {
				t.Fatalf("%d launch calls, want %d", len(calls), wantCalls)
			}
		})
	}
}

func TestNoDoubleLaunchWhileProvisionerUnreachable(t *testing.T) {
	r := newRig(t, npJob(t, 2))
	r.prov.failLaunch = 3
	for range 4 {
		r.tick()
		r.clock.Advance(time.Second)
	}
	n, calls := r.prov.launched()
	if n != 2 {
		t.Fatalf("%d instances, want 2", n)
	}
	for _, c := range calls {
		if c.LaunchID != calls[0].LaunchID {
			t.Fatalf("retries used new launch ids: %v", calls)
		}
	}
}

func TestScaleInDrainsBusyTerminatesIdleFirst(t *testing.T) {
	r := newRig(t, npJob(t, 0))
	ids := r.prov.seed("web", 3, nightshift.StateRunning, t0.Add(-time.Hour))
	r.restart()
	// Under n=0 nothing would be kept; start with n=3 and shrink to 1.
	ctx := context.Background()
	if err := r.c.Reconfigure(ctx, "web", map[string]any{"n": 3}, "test"); err != nil {
		t.Fatal(err)
	}
	// ids[0] idle (oldest), ids[1] and ids[2] busy; ids[2] is the newest.
	r.heartbeat("web", ids[0], false)
	r.heartbeat("web", ids[1], true)
	r.heartbeat("web", ids[2], true)
	r.tick()
	if len(r.prov.terminated()) != 0 {
		t.Fatal("terminated workers at n=3")
	}
	if err := r.c.Reconfigure(ctx, "web", map[string]any{"n": 1}, "test"); err != nil {
		t.Fatal(err)
	}
	r.tick()
	// The idle worker goes first, then the newest busy one; both are
	// drained: "idle" is only what the last heartbeat said.
	if terms := r.prov.terminated(); len(terms) != 0 {
		t.Fatalf("terminated %v before any heartbeat after the drain", terms)
	}
	if got := r.drainer.got(); !slices.Equal(got, []string{ids[0], ids[2]}) {
		t.Fatalf("drained %v, want the idle worker %s, then the newest busy one %s", got, ids[0], ids[2])
	}
	st, _ := r.c.Status("web")
	if st[0].Counts["draining"] != 2 {
		t.Fatalf("counts %v: want 2 draining", st[0].Counts)
	}
	// A heartbeat sent before the worker could see its drain proves
	// nothing: the idle worker may have taken an item since.
	r.heartbeat("web", ids[0], false)
	r.tick()
	if terms := r.prov.terminated(); len(terms) != 0 {
		t.Fatalf("terminated %v on a heartbeat sent as the drain went out", terms)
	}
	// A heartbeat interval later, idle is idle: terminated. The busy one
	// finishes its item and reports idle: terminated too.
	r.clock.Advance(time.Second)
	r.heartbeat("web", ids[0], false)
	r.heartbeat("web", ids[1], true)
	r.heartbeat("web", ids[2], false)
	r.tick()
	terms := r.prov.terminated()
	if len(terms) != 1 || !slices.Equal(terms[0], []string{ids[0], ids[2]}) {
		t.Fatalf("terminated %v, want the drained workers %s and %s once idle", terms, ids[0], ids[2])
	}
	if n, _ := r.prov.launched(); n != 0 {
		t.Fatalf("scale-in launched %d", n)
	}
}

func TestDrainSurvivesRestartAndTimesOut(t *testing.T) {
	r := newRig(t, npJob(t, 2))
	ids := r.prov.seed("web", 2, nightshift.StateRunning, t0.Add(-time.Hour))
	r.restart()
	r.heartbeat("web", ids[0], true)
	r.heartbeat("web", ids[1], true)
	if err := r.c.Reconfigure(context.Background(), "web", map[string]any{"n": 1}, "test"); err != nil {
		t.Fatal(err)
	}
	r.tick()
	if len(r.drainer.got()) != 1 {
		t.Fatalf("drained %v, want one busy worker", r.drainer.got())
	}
	r.restart()
	for range 31 {
		r.clock.Advance(time.Second)
		r.heartbeat("web", ids[0], true)
		r.heartbeat("web", ids[1], true)
		r.tick()
	}
	if len(r.drainer.got()) != 1 {
		t.Fatalf("drained %v after restart, want the stored drain kept (no second victim)", r.drainer.got())
	}
	terms := r.prov.terminated()
	if len(terms) != 1 {
		t.Fatalf("terminated %v, want the drained worker after drain_timeout 30s", terms)
	}
}

func TestReconfigureBadValueKeepsOldConfig(t *testing.T) {
	r := newRig(t, npJob(t, 2))
	ctx := context.Background()
	err := r.c.Reconfigure(ctx, "web", map[string]any{"n": "lots"}, "ops@host")
	if err == nil || !strings.Contains(err.Error(), "npreserving: n:") {
		t.Fatalf("bad n: err %v, want the engine's error naming n", err)
	}
	st, _ := r.c.Status("web")
	if got := st[0].Policy["n"]; got != 2 {
		t.Fatalf("policy n = %v after a refused reconfigure, want 2", got)
	}
	if err := r.c.Reconfigure(ctx, "nope", map[string]any{"n": 1}, "ops"); err == nil {
		t.Fatal("reconfigure of an unknown job succeeded")
	}
	if err := r.c.Reconfigure(ctx, "web", map[string]any{"n": 4}, "ops@host"); err != nil {
		t.Fatal(err)
	}
	recs, err := r.store.Reconfigurations(ctx, "web")
	if err != nil || len(recs) != 2 || recs[0].Error == "" || recs[1].Error != "" || recs[1].Who != "ops@host" {
		t.Fatalf("reconfigurations %+v (err %v): want a refused then an accepted one, with who", recs, err)
	}
	// The accepted value survives a restart with an unchanged jobs file.
	r.restart()
	st, _ = r.c.Status("web")
	if got := st[0].Policy["n"]; got != 4 {
		t.Fatalf("policy n = %v after restart, want 4", got)
	}
}

func TestFreezeStopsAllActions(t *testing.T) {
	r := newRig(t, npJob(t, 2))
	ctx := context.Background()
	if err := r.c.Freeze(ctx, "teardown"); err != nil {
		t.Fatal(err)
	}
	r.tick()
	r.restart()
	if !r.c.Frozen() {
		t.Fatal("restart forgot the freeze")
	}
	r.tick()
	if n, calls := r.prov.launched(); n != 0 || len(calls) != 0 {
		t.Fatalf("frozen controller launched %d (%d calls)", n, len(calls))
	}
	if ds, _ := r.c.Decisions(ctx, "web", 0); len(ds) != 0 {
		t.Fatalf("frozen controller decided: %+v", ds)
	}
	if err := r.c.Unfreeze(ctx, "ops"); err != nil {
		t.Fatal(err)
	}
	r.tick()
	if n, _ := r.prov.launched(); n != 2 {
		t.Fatalf("after unfreeze %d launched, want 2", n)
	}
}

func TestDecisionsPersistedWithReason(t *testing.T) {
	r := newRig(t, npJob(t, 2))
	ctx := context.Background()
	r.tick()
	r.runAll("web", false)
	for range 3 {
		r.clock.Advance(time.Second)
		for _, id := range r.prov.ids("web", true) {
			r.heartbeat("web", id, false)
		}
		r.tick()
	}
	r.restart()
	ds, err := r.c.Decisions(ctx, "web", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) < 2 {
		t.Fatalf("decisions %+v: want the launch and the first hold", ds)
	}
	for _, d := range ds {
		if d.Reason == "" || d.Engine != "npreserving" || d.Job != "web" || d.Time.IsZero() {
			t.Errorf("decision %+v: want job, engine, time and reason", d)
		}
	}
	launch := ds[len(ds)-1]
	var acts []map[string]any
	if err := json.Unmarshal(launch.Actions, &acts); err != nil || len(acts) != 1 || acts[0]["type"] != "launch" || acts[0]["launch_id"] == "" {
		t.Fatalf("first decision actions %s (err %v): want a launch with its launch id", launch.Actions, err)
	}
	if launch.Target != 2 {
		t.Fatalf("target %d, want 2", launch.Target)
	}
	// Unchanged holds are not repeated.
	if len(ds) > 3 {
		t.Fatalf("%d decisions stored for 1 launch and identical holds", len(ds))
	}
	st, _ := r.c.Status("web")
	if st[0].LastDecision == nil || st[0].LastDecision.Reason != ds[0].Reason {
		t.Fatalf("status last decision %+v, want %q", st[0].LastDecision, ds[0].Reason)
	}
}

func TestRefusedLaunchIsNotResent(t *testing.T) {
	r := newRig(t, npJob(t, 1))
	r.prov.refuse = true
	r.tick()
	r.prov.refuse = false
	r.tick()
	_, calls := r.prov.launched()
	if len(calls) != 2 || calls[0].LaunchID == calls[1].LaunchID {
		t.Fatalf("calls %v: want the refused id dropped and a new decision with a new id", calls)
	}
}

func TestRecoverFailsWithoutProvisioner(t *testing.T) {
	r := newRig(t, npJob(t, 1))
	r.prov.failDesc = true
	r.restart2(t)
}

// restart2 restarts without recovering, checking that an unrecovered
// controller takes no decision.
func (r *rig) restart2(t *testing.T) {
	r.store.Close()
	ctx := context.Background()
	st := mustOpen(t, r.path)
	r.store = st
	c, err := controller.New(ctx, controller.Config{Jobs: r.jobs, Registry: decision.NewRegistry(), Store: st, Provisioner: r.prov, Clock: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Recover(ctx); err == nil {
		t.Fatal("recover succeeded without the provisioner")
	}
	c.Tick(ctx)
	if n, calls := r.prov.launched(); n != 0 || len(calls) != 0 {
		t.Fatalf("unrecovered controller launched %d", n)
	}
}

func TestRunDecidesPromptlyOnEvents(t *testing.T) {
	r := newRig(t, npJob(t, 1))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.c.Run(ctx) }()
	launchedN := func(want int) func() error {
		return func() error {
			if n, _ := r.prov.launched(); n != want {
				return fmt.Errorf("%d instances launched, want %d", n, want)
			}
			return nil
		}
	}
	testsupport.Eventually(t, 10*time.Second, launchedN(1))
	id := r.prov.ids("web", true)[0]
	// The worker runs, then dies; no clock advance: the event alone must
	// cause the replacement. (One that fails before running is a failed
	// launch, which backs off: TestFailedLaunchesBackOff.)
	r.c.HandleInstance(r.prov.setState(id, nightshift.StateRunning))
	r.c.HandleInstance(r.prov.setState(id, nightshift.StateFailed))
	testsupport.Eventually(t, 10*time.Second, launchedN(2))
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
}

func TestHeartbeatFromUnknownOrOtherJobIgnored(t *testing.T) {
	r := newRig(t, npJob(t, 1))
	r.heartbeat("web", "ghost", true)
	r.heartbeat("other", "ghost", true)
	st, _ := r.c.Status("")
	if len(st) != 1 || len(st[0].Workers) != 0 {
		t.Fatalf("status %+v: heartbeats must not invent workers", st)
	}
	r.c.HandleInstance(provisioner.Instance{ID: "x", Job: "other", State: nightshift.StateRunning})
	if st, _ := r.c.Status(""); len(st[0].Workers) != 0 {
		t.Fatalf("an event of another job changed job web: %+v", st)
	}
}

func TestDecisionPersistedBeforeLaunch(t *testing.T) {
	r := newRig(t, npJob(t, 2))
	checked := false
	r.prov.onLaunch = func(req provisioner.LaunchRequest) {
		ctx := context.Background()
		pend, err := r.store.PendingLaunches(ctx, "web")
		if err != nil || len(pend) != 1 || pend[0].LaunchID != req.LaunchID || pend[0].Count != req.Count {
			t.Errorf("at launch time the store holds %+v (err %v), want launch %s pending", pend, err, req.LaunchID)
		}
		ds, err := r.store.Decisions(ctx, "web", 1)
		if err != nil || len(ds) != 1 || !strings.Contains(string(ds[0].Actions), req.LaunchID) || ds[0].Reason == "" {
			t.Errorf("at launch time the last decision is %+v (err %v), want one naming %s with a reason", ds, err, req.LaunchID)
		}
		checked = true
	}
	r.tick()
	if !checked {
		t.Fatal("no launch")
	}
	if pend, _ := r.store.PendingLaunches(context.Background(), "web"); len(pend) != 0 {
		t.Fatalf("launch still pending after a successful reply: %+v", pend)
	}
}

// TestFailedLaunchesBackOff: a pool whose launches keep failing (a bad
// image, no capacity) waits longer and longer between attempts instead of
// asking every tick, and says so in its reason; one running worker resets it.
func TestFailedLaunchesBackOff(t *testing.T) {
	r := newRig(t, npJob(t, 1))
	fail := func() {
		for _, id := range r.prov.ids("web", true) {
			inst := r.prov.setState(id, nightshift.StateFailed)
			inst.Reason = "bad image (InvalidAMIID.NotFound)"
			r.c.HandleInstance(inst)
		}
	}
	r.tick()
	if n, _ := r.prov.launched(); n != 1 {
		t.Fatalf("first launch: %d instances", n)
	}
	fail() // 1 failure: back off 1 s
	r.tick()
	if n, _ := r.prov.launched(); n != 1 {
		t.Fatalf("relaunched at once after a failed launch: %d instances", n)
	}
	ds, _ := r.c.Decisions(context.Background(), "web", 1)
	if len(ds) != 1 || !strings.Contains(ds[0].Reason, "launch back-off after 1 failed launch") || !strings.Contains(ds[0].Reason, "InvalidAMIID") {
		t.Fatalf("decision %+v: want a back-off reason naming the failure", ds)
	}
	r.clock.Advance(1100 * time.Millisecond)
	r.tick()
	if n, _ := r.prov.launched(); n != 2 {
		t.Fatalf("after the 1 s back-off: %d instances launched, want 2", n)
	}
	fail() // 2 failures: back off 2 s
	r.clock.Advance(1100 * time.Millisecond)
	r.tick()
	if n, _ := r.prov.launched(); n != 2 {
		t.Fatalf("second back-off not longer than the first: %d instances", n)
	}
	r.clock.Advance(1000 * time.Millisecond)
	r.tick()
	if n, _ := r.prov.launched(); n != 3 {
		t.Fatalf("after the 2 s back-off: %d instances, want 3", n)
	}
	r.runAll("web", false) // success resets the count
	if got := controller.LaunchBackoff(0); got != 0 {
		t.Fatalf("back-off with no failures = %s", got)
	}
}

// TestHungJobDoesNotStallOthers: a provisioner call that hangs for one job
// (up to CallTimeout in real life; for good here) must not hold up another
// job's decisions. "batch" sorts first, so a controller that decided its
// jobs one after another would never reach "web".
func TestHungJobDoesNotStallOthers(t *testing.T) {
	batch := mustJob(t, "batch", map[string]any{
		"engine": "npreserving",
		"policy": map[string]any{"n": 1, "drain_timeout": "30s", "deployable": "worker"},
		"worker": map[string]any{"command": []any{"/bin/worker"}},
	})
	r := newRig(t, batch, npJob(t, 1))
	hang := make(chan struct{})
	hung := make(chan struct{}, 1)
	r.prov.onLaunch = func(req provisioner.LaunchRequest) {
		if req.Job == "batch" {
			select {
			case hung <- struct{}{}:
			default:
			}
			<-hang
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		close(hang)
		<-done
	})
	select {
	case <-hung:
	case <-time.After(10 * time.Second):
		t.Fatal("batch's launch never reached the provisioner")
	}
	testsupport.Eventually(t, 10*time.Second, func() error {
		if ids := r.prov.ids("web", true); len(ids) != 1 {
			return fmt.Errorf("web has live instances %v while batch hangs, want 1", ids)
		}
		return nil
	})
	// And web keeps being looked after while batch is still stuck.
	id := r.prov.ids("web", true)[0]
	r.c.HandleInstance(r.prov.setState(id, nightshift.StateRunning))
	r.c.HandleInstance(r.prov.setState(id, nightshift.StateFailed))
	testsupport.Eventually(t, 10*time.Second, func() error {
		if ids := r.prov.ids("web", true); len(ids) != 1 || ids[0] == id {
			return fmt.Errorf("web has live instances %v while batch hangs, want one replacing %s", ids, id)
		}
		return nil
	})

}

// TestCrashLoopingWorkerIsProcessError: a worker whose task keeps failing
// to start heartbeats on time, yet is not healthy: status says
// process_error with the task's error, and the pool replaces it. One crash
// the sitter absorbs does not count.
func TestCrashLoopingWorkerIsProcessError(t *testing.T) {
	r := newRig(t, npJob(t, 1))
	r.tick()
	ids := r.runAll("web", false)
	beat := func(failures int) {
		r.c.IngestHeartbeat(sitter.Heartbeat{InstanceID: ids[0], Job: "web", Host: "h", Time: r.clock.Now(),
			Tasks: []sitter.TaskStatus{{Name: "work", State: sitter.StateBackoff, Restarts: failures, Failures: failures,
				Reason: "restarting in 800ms after: exec: \"/x/bin/worker\": no such file or directory"}}})
	}
	health := func() controller.WorkerStatus {
		js, err := r.c.Status("web")
		if err != nil || len(js) != 1 || len(js[0].Workers) == 0 {
			t.Fatalf("jobs %+v err %v", js, err)
		}
		return js[0].Workers[0]
	}
	beat(1)
	if w := health(); w.Health != "ok" || w.Error != "" {
		t.Errorf("one failed run: worker %+v, want ok", w)
	}
	beat(controller.CrashLoopFailures)
	w := health()
	if w.Health != "process_error" || !strings.Contains(w.Error, "no such file") {
		t.Errorf("crash-looping worker %+v: want process_error with the exec error", w)
	}
	r.tick()
	if terms := r.prov.terminated(); len(terms) != 1 || !slices.Equal(terms[0], []string{ids[0]}) {
		t.Errorf("terminated %v, want the crash-looping worker replaced", terms)
	}
}

// TestBusOutageIsNotTheWorkers: while the controller has no bus it decides
// nothing, and afterwards a worker silent through the outage gets
// missing_timeout plus the outage's length to be heard again before it is
// replaced: the sitters reconnect on back-off of their own.
func TestBusOutageIsNotTheWorkers(t *testing.T) {
	r := newRig(t, npJob(t, 2)) // missing_timeout 3s, boot_timeout 20s
	r.tick()
	ids := r.runAll("web", false)
	r.tick()

	r.link.down.Store(true)
	for range 10 { // a 10 s outage: no heartbeat gets through
		r.clock.Advance(time.Second)
		r.tick()
	}
	if terms := r.prov.terminated(); len(terms) != 0 {
		t.Fatalf("terminated %v while cut off from the bus, want nothing", terms)
	}
	r.link.down.Store(false)
	r.tick() // hearing again: the grace is 3s + 10s
	for i := range 12 {
		r.clock.Advance(time.Second)
		if i == 4 {
			r.heartbeat("web", ids[0], false) // its sitter reconnected late
		}
		if i >= 4 {
			r.heartbeat("web", ids[0], false)
		}
		r.tick()
	}
	if terms := r.prov.terminated(); len(terms) != 0 {
		t.Fatalf("terminated %v within the grace after the outage, want nothing", terms)
	}
	for range 3 {
		r.clock.Advance(time.Second)
		r.heartbeat("web", ids[0], false)
		r.tick()
	}
	terms := r.prov.terminated()
	if len(terms) != 1 || !slices.Equal(terms[0], []string{ids[1]}) {
		t.Fatalf("terminated %v, want [[%s]]: the worker never heard again is missing once the grace is over", terms, ids[1])
	}
}

// TestSilentWorkersBlock: workers that reach running but never heartbeat
// (a wrong broker address, an image without the agent) are replaced until
// 3 in a row were silent; then the job stops launching but for one probe
// boot_timeout later, and a reconfigure of the job unblocks it at once, as
// Unblock (mgmt repair) does.
func TestSilentWorkersBlock(t *testing.T) {
	r := newRig(t, npJob(t, 2)) // boot_timeout 20s
	r.tick()
	silence := func() {
		for _, id := range r.prov.ids("web", true) {
			r.c.HandleInstance(r.prov.setState(id, nightshift.StateRunning))
		}
		r.clock.Advance(21 * time.Second)
		r.tick()
	}
	silence()
	if n, _ := r.prov.launched(); n != 4 {
		t.Fatalf("%d launched, want 2 replacements: 2 silent workers do not block", n)
	}
	silence() // 4 silent in a row
	if n, _ := r.prov.launched(); n != 4 {
		t.Fatalf("%d launched, want no replacement: the pool is blocked", n)
	}
	st, err := r.c.Status("web")
	if err != nil {
		t.Fatal(err)
	}
	b := st[0].Blocked
	if b == nil || b.Cause != controller.BlockedNoHeartbeat || b.FailedLaunches != 4 || !b.NextLaunch.Equal(r.clock.Now().Add(20*time.Second)) ||
		!strings.Contains(b.LastCause, "sent no heartbeat within boot_timeout 20s") {
		t.Fatalf("blocked %+v, want 4 silent workers, the cause and the first probe boot_timeout from now", b)
	}
	ds, err := r.c.Decisions(context.Background(), "web", 1)
	if err != nil || len(ds) != 1 || !strings.Contains(ds[0].Reason, "blocked: 4 workers in a row never sent a heartbeat") {
		t.Fatalf("last decision %+v (err %v): want the block and why", ds, err)
	}
	for range 19 {
		r.clock.Advance(time.Second)
		r.tick()
	}
	if n, _ := r.prov.launched(); n != 4 {
		t.Fatalf("%d launched before the probe's time, want 4", n)
	}
	r.clock.Advance(time.Second)
	r.tick()
	if n, _ := r.prov.launched(); n != 5 {
		t.Fatalf("%d launched, want one probe (5) when its time came", n)
	}
	for range 5 {
		r.clock.Advance(time.Second)
		r.tick()
	}
	if n, _ := r.prov.launched(); n != 5 {
		t.Fatalf("%d launched while the probe boots, want 5", n)
	}
	// A person reconfigures the job: its launches go at once.
	if err := r.c.Reconfigure(context.Background(), "web", map[string]any{"n": 2}, "test"); err != nil {
		t.Fatal(err)
	}
	r.tick()
	if n, _ := r.prov.launched(); n != 6 {
		t.Fatalf("%d launched after the reconfigure, want the second worker at once (6)", n)
	}
	if st, _ := r.c.Status("web"); st[0].Blocked != nil {
		t.Fatalf("blocked %+v after the reconfigure", st[0].Blocked)
	}
	silence() // 2 more silent: 2 in a row, not blocked
	silence() // 4 in a row: blocked again
	before, _ := r.prov.launched()
	if st, _ := r.c.Status("web"); st[0].Blocked == nil {
		t.Fatalf("not blocked after 4 more silent workers")
	}
	if err := r.c.Unblock("", "test"); err != nil {
		t.Fatal(err)
	}
	r.tick()
	if n, _ := r.prov.launched(); n != before+2 {
		t.Fatalf("%d launched after Unblock, want %d", n, before+2)
	}
	// The replacements heartbeat: no block.
	ids := r.runAll("web", false)
	for range 4 {
		r.clock.Advance(time.Second)
		for _, id := range ids {
			r.heartbeat("web", id, false)
		}
		r.tick()
	}
	st, err = r.c.Status("web")
	if err != nil || st[0].Blocked != nil || len(st[0].Workers) != 2 {
		t.Fatalf("status %+v (err %v): want 2 healthy workers, unblocked", st, err)
	}
}

// TestSilentBlockSurvivesARestart: the count of silent workers is stored,
// so a controller restarted (kill -9) after 2 of them does not allow 3
// more: the next silent worker blocks the pool. A controller restarted
// while the pool is blocked keeps it blocked, with the same probe time,
// and does not count again the workers it had counted.
func TestSilentBlockSurvivesARestart(t *testing.T) {
	r := newRig(t, npJob(t, 2)) // boot_timeout 20s, block after 3
	r.tick()
	silence := func() {
		for _, id := range r.prov.ids("web", true) {
			r.c.HandleInstance(r.prov.setState(id, nightshift.StateRunning))
		}
		r.clock.Advance(21 * time.Second)
		r.tick()
	}
	silence() // 2 silent: replaced
	if n, _ := r.prov.launched(); n != 4 {
		t.Fatalf("%d launched, want 2 replacements: 2 silent workers do not block", n)
	}
	r.restart()
	r.tick()
	silence() // 4 in a row, 2 of them before the restart
	if n, _ := r.prov.launched(); n != 4 {
		t.Fatalf("%d launched after the restart, want none: the 2 silent workers before it count", n)
	}
	st, err := r.c.Status("web")
	if err != nil {
		t.Fatal(err)
	}
	b := st[0].Blocked
	if b == nil || b.Cause != controller.BlockedNoHeartbeat || b.FailedLaunches != 4 {
		t.Fatalf("blocked %+v, want no_heartbeat after 4 silent workers", b)
	}
	next := b.NextLaunch

	r.restart()
	for range 5 {
		r.clock.Advance(time.Second)
		r.tick()
	}
	if n, _ := r.prov.launched(); n != 4 {
		t.Fatalf("%d launched after a second restart, want none before the probe's time", n)
	}
	st, err = r.c.Status("web")
	if err != nil {
		t.Fatal(err)
	}
	if b := st[0].Blocked; b == nil || b.FailedLaunches != 4 || !b.NextLaunch.Equal(next) {
		t.Fatalf("after a restart while blocked: %+v, want the same block (4 silent workers, next probe %s)", b, next)
	}
	// A heartbeat ends the block, and the stored count with it.
	r.clock.Advance(20 * time.Second)
	r.tick() // the probe
	ids := r.runAll("web", false)
	if len(ids) == 0 {
		t.Fatal("no probe launched")
	}
	r.tick()
	r.restart()
	r.tick()
	if st, _ := r.c.Status("web"); st[0].Blocked != nil {
		t.Fatalf("blocked %+v after a heartbeat and a restart", st[0].Blocked)
	}
}

// TestDNSProblemShowsInStatus: records the provisioner cannot keep (a
// zone that does not resolve, Route 53 refusing) reach mgmt status
// through the controller's recovery and periodic resync, and leave it
// once the provisioner syncs again.
func TestDNSProblemShowsInStatus(t *testing.T) {
	r := newRig(t, npJob(t, 1))
	r.prov.mu.Lock()
	r.prov.dnsProblem = "hosted zone example.internal not found"
	r.prov.mu.Unlock()
	r.restart()
	if st, _ := r.c.Status("web"); st[0].DNSError != "hosted zone example.internal not found" {
		t.Fatalf("after recovery: dns_error %q, want the provisioner's problem", st[0].DNSError)
	}
	r.prov.mu.Lock()
	r.prov.dnsProblem = ""
	r.prov.mu.Unlock()
	r.c.Resync(context.Background())
	if st, _ := r.c.Status("web"); st[0].DNSError != "" {
		t.Fatalf("after a resync with DNS kept: dns_error %q, want none", st[0].DNSError)
	}
}

// TestHeartbeatMaxAge: the bus drops heartbeats older than half the
// shortest missing_timeout, so a beat that arrives never makes a worker
// look fresher than half its missing window allows.
func TestHeartbeatMaxAge(t *testing.T) {
	slow := mustJob(t, "slow", map[string]any{
		"engine": "npreserving", "policy": map[string]any{"n": 1},
		"health": map[string]any{"heartbeat_interval": "5s", "missing_timeout": "20s", "boot_timeout": "60s"},
	})
	r := newRig(t, npJob(t, 1), slow)
	if got := r.c.HeartbeatMaxAge(); got != 1500*time.Millisecond {
		t.Fatalf("HeartbeatMaxAge = %v, want 1.5s (half of web's 3s missing_timeout)", got)
	}
	if got := newRig(t, slow).c.HeartbeatMaxAge(); got != 10*time.Second {
		t.Fatalf("HeartbeatMaxAge of slow alone = %v, want 10s", got)
	}
}

// TestRecordsReadOncePerBind: the provisioner's records (every instance
// of every job: at 10,000 instances, time a standby taking over waits) are
// read once at start, not once to recover and again for the instance
// subscription's first bind, and once more at each later bind (a
// reconnect), which an instance event published unbound reached nobody.
func TestRecordsReadOncePerBind(t *testing.T) {
	r := newRig(t, npJob(t, 1))
	r.restartAwaitingBind()
	base := r.prov.describeCount()
	reads := func() int { return r.prov.describeCount() - base }
	r.run()
	r.c.Bound(context.Background()) // the bus adapter's first bind
	testsupport.Eventually(t, 10*time.Second, func() error {
		if n, _ := r.prov.launched(); n != 1 {
			return fmt.Errorf("%d instances launched, want 1 once recovered", n)
		}
		return nil
	})
	if got := reads(); got != 1 {
		t.Fatalf("records read %d times at start, want once (recovery and first bind together)", got)
	}
	for want := 2; want <= 3; want++ {
		r.c.Bound(context.Background())
		if got := reads(); got != want {
			t.Fatalf("records read %d times after %d binds, want %d: once more per bind", got, want, want)
		}
	}
}

// TestBindDuringRecoveryReadsAgain: a bind of the instance subscription
// while the recovery is reading the records is not covered by that read
// (a worker may have died between the read and the bind, its event sent
// to nobody), so the recovery reads them again.
func TestBindDuringRecoveryReadsAgain(t *testing.T) {
	r := newRig(t, npJob(t, 2))
	ids := r.prov.seed("web", 2, nightshift.StateRunning, t0)
	r.restartAwaitingBind()
	c := r.c
	var bound bool
	r.prov.mu.Lock()
	r.prov.afterDescribe = func() {
		if !bound {
			bound = true
			r.prov.setState(ids[0], nightshift.StateFailed)
			c.Bound(context.Background())
		}
	}
	r.prov.mu.Unlock()
	base := r.prov.describeCount()
	if err := c.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.prov.describeCount() - base; got != 2 {
		t.Fatalf("records read %d times, want twice: again after the bind", got)
	}
	r.tick()
	if n, _ := r.prov.launched(); n != 1 {
		t.Fatalf("%d instances launched after the recovery, want 1 replacing %s, which died before the bind", n, ids[0])
	}
}
