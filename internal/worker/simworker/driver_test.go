package simworker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift/controller/ctlbus"
	"nightshift/internal/amqpbus"
	"nightshift/internal/testsupport"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/internal/worker/simworker"
	"nightshift/provisioner"
	"nightshift/sitter"
	"nightshift/sitter/sitterbus"
)

// rig is a sim driver on a fake clock whose heartbeats go through the
// real broker over two connections to a subscriber that records them.
type rig struct {
	run   string
	clock *clockwork.FakeClock
	drv   *simworker.Driver

	mu  sync.Mutex
	hbs []sitter.Heartbeat
}

func newRig(t *testing.T, cfg simworker.Config) *rig {
	t.Helper()
	amqptest.NeedBroker(t)
	run := amqptest.UniqueName(t, "simtest-")
	amqptest.DeleteAtEnd(t, amqptest.Topology{Queues: []string{amqpbus.DeadQueue(run)},
		Exchanges: []string{amqpbus.DeadLetterExchange(run), amqpbus.EventsExchange(run)}})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	dial := func(name string, onConsume func(string)) *amqpbus.Bus {
		b, err := amqpbus.Dial(ctx, amqpbus.Config{URL: amqptest.URL(), Name: name, Run: run, Log: slog.New(slog.DiscardHandler), OnConsume: onConsume})
		if err != nil {
			t.Fatalf("dial %s: %v", name, err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	r := &rig{run: run, clock: clockwork.NewFakeClock()}
	consuming := make(chan string, 1)
	sub := dial("controller", func(q string) { consuming <- q })
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		reg := ctlbus.Messages()
		_ = sub.Subscribe(sctx, []string{sitterbus.HeartbeatKey("*", "*")}, func(_ context.Context, d amqpbus.Delivery) error {
			hb, err := ctlbus.DecodeHeartbeat(reg, d.Body)
			if err != nil {
				return fmt.Errorf("%w: %w", amqpbus.ErrReject, err)
			}
			if d.RoutingKey != sitterbus.HeartbeatKey(hb.Job, hb.InstanceID) {
				t.Errorf("heartbeat of %s/%s under routing key %q", hb.Job, hb.InstanceID, d.RoutingKey)
			}
			r.mu.Lock()
			r.hbs = append(r.hbs, hb)
			r.mu.Unlock()
			return nil
		})
	}()
	t.Cleanup(func() { stop(); <-done })
	select {
	case <-consuming:
	case <-ctx.Done():
		t.Fatal("subscriber never consumed")
	}
	cfg.Run = run
	cfg.Clock = r.clock
	cfg.Rand = rand.New(rand.NewPCG(1, 2))
	for i := range 2 {
		cfg.Sinks = append(cfg.Sinks, &sitterbus.Sink{Bus: dial(fmt.Sprintf("sim-%d", i), nil), Sender: "sim", Timeout: 5 * time.Second})
	}
	drv, err := simworker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drv.Close)
	r.drv = drv
	return r
}

// beats counts the heartbeats received about id.
func (r *rig) beats(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, hb := range r.hbs {
		if hb.InstanceID == id {
			n++
		}
	}
	return n
}

func (r *rig) launch(t *testing.T, id, job string, instance map[string]any) {
	t.Helper()
	spec, _ := json.Marshal(map[string]any{"driver": "sim", "instance": instance, "worker": map[string]any{"name": "crunch"}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := r.drv.Launch(ctx, provisioner.InstanceSpec{ID: id, Job: job, LaunchID: "L1", Run: r.run, Spec: spec})
	if err != nil || res.Host != simworker.Host || res.State != "" {
		t.Fatalf("launch %s: %+v, %v; want running on host %q", id, res, err, simworker.Host)
	}
}

// waiters waits until n simulated sitters sleep on the fake clock, so an
// Advance reaches all of them.
func (r *rig) waiters(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.clock.BlockUntilContext(ctx, n); err != nil {
		t.Fatalf("%d simulated sitters never waited: %v", n, err)
	}
}

func listed(t *testing.T, d *simworker.Driver) []string {
	t.Helper()
	owned, err := d.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, o := range owned {
		ids = append(ids, o.InstanceID)
	}
	return ids
}

func TestBootDelayThenHeartbeatsOverTheBroker(t *testing.T) {
	r := newRig(t, simworker.Config{BootDelay: time.Minute, HeartbeatInterval: time.Second})
	r.launch(t, "w-1", "crunch", map[string]any{"boot_delay": "10s"})
	r.waiters(t, 1)
	// Just short of the boot delay: still booting (the phase only adds).
	r.clock.Advance(9 * time.Second)
	r.waiters(t, 1)
	if n := r.beats("w-1"); n != 0 {
		t.Fatalf("%d heartbeats before the job's 10s boot delay", n)
	}
	// Past boot delay plus any phase: the first beat, then one a second.
	r.clock.Advance(2 * time.Second)
	testsupport.Eventually(t, 10*time.Second, func() error {
		if n := r.beats("w-1"); n != 1 {
			return fmt.Errorf("%d heartbeats after the boot delay, want 1", n)
		}
		return nil
	})
	r.waiters(t, 1)
	r.clock.Advance(time.Second)
	testsupport.Eventually(t, 10*time.Second, func() error {
		if n := r.beats("w-1"); n != 2 {
			return fmt.Errorf("%d heartbeats one interval later, want 2", n)
		}
		return nil
	})
	r.mu.Lock()
	hb := r.hbs[0]
	r.mu.Unlock()
	if hb.Job != "crunch" || hb.Host != simworker.Host || len(hb.Tasks) != 1 || hb.Tasks[0].Name != "crunch" ||
		hb.Tasks[0].State != sitter.StateRunning || hb.Tasks[0].Work != sitter.WorkIdle {
		t.Fatalf("heartbeat %+v: want one idle running task of job crunch on host sim", hb)
	}
	if st := r.drv.Stats(); st.Live != 1 || st.Heartbeats != 2 {
		t.Fatalf("stats %+v, want 1 live and 2 heartbeats", st)
	}
	// Launch is idempotent per id: no second instance, no second sitter.
	r.launch(t, "w-1", "crunch", nil)
	if ids := listed(t, r.drv); !slices.Equal(ids, []string{"w-1"}) {
		t.Fatalf("List = %v after relaunching w-1", ids)
	}
}

func TestTerminateStopsTheSitter(t *testing.T) {
	r := newRig(t, simworker.Config{BootDelay: time.Second, HeartbeatInterval: time.Second})
	r.launch(t, "w-1", "crunch", nil)
	r.launch(t, "w-2", "crunch", nil)
	r.waiters(t, 2)
	r.clock.Advance(2 * time.Second)
	testsupport.Eventually(t, 10*time.Second, func() error {
		if r.beats("w-1") == 0 || r.beats("w-2") == 0 {
			return fmt.Errorf("waiting for both instances to heartbeat")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.drv.Terminate(ctx, "w-1"); err != nil {
		t.Fatal(err)
	}
	// Idempotent, and an unknown id is not an error.
	if err := r.drv.Terminate(ctx, "w-1"); err != nil {
		t.Fatal(err)
	}
	if err := r.drv.Terminate(ctx, "never-launched"); err != nil {
		t.Fatal(err)
	}
	if ids := listed(t, r.drv); !slices.Equal(ids, []string{"w-2"}) {
		t.Fatalf("List = %v after terminating w-1", ids)
	}
	before := r.beats("w-1")
	// Time passes: w-2 keeps beating, w-1 is silent.
	for range 3 {
		r.waiters(t, 1)
		r.clock.Advance(time.Second)
	}
	testsupport.Eventually(t, 10*time.Second, func() error {
		if r.beats("w-2") < 3 {
			return fmt.Errorf("w-2 sent %d heartbeats, want >= 3", r.beats("w-2"))
		}
		return nil
	})
	if after := r.beats("w-1"); after != before {
		t.Fatalf("w-1 sent %d heartbeats after it was terminated", after-before)
	}
	select {
	case e := <-r.drv.Exits():
		t.Fatalf("terminated instance reported as exited: %+v", e)
	default:
	}
}

func TestFailOnCommandAndAtARate(t *testing.T) {
	r := newRig(t, simworker.Config{BootDelay: time.Second, HeartbeatInterval: time.Second})
	for i := range 4 {
		r.launch(t, fmt.Sprintf("a-%d", i), "a", nil)
	}
	r.launch(t, "b-0", "b", nil)
	r.launch(t, "doomed", "c", map[string]any{"fail_rate": 1.0})
	r.waiters(t, 6)

	// Kill by id: gone from List at once, and reported as an exit.
	if got := r.drv.Kill([]string{"a-0", "nope"}, "test kill"); !slices.Equal(got, []string{"a-0"}) {
		t.Fatalf("Kill = %v, want [a-0]", got)
	}
	if e := <-r.drv.Exits(); e.ID != "a-0" || e.Reason != "test kill" {
		t.Fatalf("exit %+v", e)
	}
	// Kill through the control directory: a fraction of one job's.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k1"+simworker.KillSuffix), []byte(`{"job":"a","fraction":0.5}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "k2"+simworker.KillSuffix), []byte(`{"job":"a","count":-1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.drv.ServeOnce(dir); err != nil {
		t.Fatal(err)
	}
	var res, bad simworker.KillResult
	readJSON(t, filepath.Join(dir, "k1"+simworker.DoneSuffix), &res)
	readJSON(t, filepath.Join(dir, "k2"+simworker.DoneSuffix), &bad)
	if len(res.Killed) != 2 || res.Error != "" || !strings.HasPrefix(res.Killed[0], "a-") || !strings.HasPrefix(res.Killed[1], "a-") {
		t.Fatalf("fraction 0.5 of job a's 3 live instances: %+v, want 2 of job a killed", res)
	}
	if bad.Error == "" || len(bad.Killed) != 0 {
		t.Fatalf("a negative count: %+v, want an error and nothing killed", bad)
	}
	if _, err := os.Stat(filepath.Join(dir, "k1"+simworker.KillSuffix)); !os.IsNotExist(err) {
		t.Fatalf("kill request left in place: %v", err)
	}
	var st simworker.StatsSnapshot
	readJSON(t, filepath.Join(dir, simworker.StatsFile), &st)
	if st.Live != 3 {
		t.Fatalf("stats file says %d live, want 3 (a's last, b-0, doomed)", st.Live)
	}
	for range 2 {
		e := <-r.drv.Exits()
		if !slices.Contains(res.Killed, e.ID) {
			t.Fatalf("exit of %s, want one of %v", e.ID, res.Killed)
		}
	}

	// fail_rate 1 per second: the doomed instance dies at its first beat
	// and never heartbeats; the others carry on.
	r.waiters(t, 3)
	r.clock.Advance(2 * time.Second)
	select {
	case e := <-r.drv.Exits():
		if e.ID != "doomed" || !strings.Contains(e.Reason, "fail_rate") {
			t.Fatalf("exit %+v, want doomed by fail_rate", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the instance with fail_rate 1 never died")
	}
	testsupport.Eventually(t, 10*time.Second, func() error {
		if r.beats("b-0") == 0 {
			return fmt.Errorf("b-0 has not heartbeated")
		}
		return nil
	})
	if n := r.beats("doomed"); n != 0 {
		t.Fatalf("doomed sent %d heartbeats", n)
	}
	if ids := listed(t, r.drv); len(ids) != 2 || !slices.Contains(ids, "b-0") {
		t.Fatalf("List = %v, want b-0 and the last of job a", ids)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestLaunchRefusesBadSpecs(t *testing.T) {
	sink := &sitterbus.Sink{}
	d, err := simworker.New(simworker.Config{Run: "r1", Sinks: []sitter.HeartbeatSink{sink}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, c := range []struct {
		name string
		spec provisioner.InstanceSpec
		want string
	}{
		{"bad id", provisioner.InstanceSpec{ID: "../x", Job: "j"}, "instance id"},
		{"other run", provisioner.InstanceSpec{ID: "i", Job: "j", Run: "r2"}, "run \"r2\""},
		{"no job", provisioner.InstanceSpec{ID: "i"}, "job is required"},
		{"another driver's spec", provisioner.InstanceSpec{ID: "i", Job: "j", Spec: []byte(`{"driver":"local"}`)}, "driver \"local\""},
		{"unknown instance key", provisioner.InstanceSpec{ID: "i", Job: "j", Spec: []byte(`{"driver":"sim","instance":{"boot":"1s"}}`)}, "unknown field \"boot\""},
		{"bad boot delay", provisioner.InstanceSpec{ID: "i", Job: "j", Spec: []byte(`{"driver":"sim","instance":{"boot_delay":"soon"}}`)}, "boot_delay"},
		{"bad fail rate", provisioner.InstanceSpec{ID: "i", Job: "j", Spec: []byte(`{"driver":"sim","instance":{"fail_rate":2}}`)}, "fail_rate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := d.Launch(context.Background(), c.spec)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
	if ids := listed(t, d); len(ids) != 0 {
		t.Fatalf("refused launches left instances %v", ids)
	}
	for _, bad := range []simworker.Config{{Run: "r1"}, {Run: "../r", Sinks: []sitter.HeartbeatSink{sink}}, {Run: "r1", Sinks: []sitter.HeartbeatSink{sink}, FailRate: 1.5}} {
		if _, err := simworker.New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
}

func FuzzParseParams(f *testing.F) {
	for _, s := range []string{`{}`, `{"boot_delay":"2s","heartbeat_interval":"1s","fail_rate":0.01,"task":"x"}`, `{"fail_rate":-1}`, `[]`, `{"x":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := simworker.ParseParams(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "instance: ") {
				t.Fatalf("error %q does not name the table", err)
			}
			return
		}
		if p.FailRate < 0 || p.FailRate > 1 {
			t.Fatalf("accepted fail_rate %v", p.FailRate)
		}
		if p.BootDelay != "" {
			if v, err := time.ParseDuration(p.BootDelay); err != nil || v < 0 {
				t.Fatalf("accepted boot_delay %q", p.BootDelay)
			}
		}
	})
}

// stuckSink holds every heartbeat until released, as a publish stuck
// behind the broker's flow control does.
type stuckSink struct {
	started chan string
	release chan struct{}
	mu      sync.Mutex
	sent    int
}

func (s *stuckSink) SendHeartbeat(ctx context.Context, hb sitter.Heartbeat) error {
	s.started <- hb.InstanceID
	<-s.release
	s.mu.Lock()
	s.sent++
	s.mu.Unlock()
	return nil
}

// Terminating an instance whose beat is stuck in the sink returns at once,
// and no beat starts after: before, it waited for the stuck publish, and
// the provisioner's few termination slots made a kill of 10% at 10,000
// workers take minutes.
func TestTerminateDoesNotWaitForAStuckBeat(t *testing.T) {
	clock := clockwork.NewFakeClock()
	sink := &stuckSink{started: make(chan string, 4), release: make(chan struct{})}
	drv, err := simworker.New(simworker.Config{Run: "stuck", Sinks: []sitter.HeartbeatSink{sink}, Clock: clock,
		BootDelay: time.Second, HeartbeatInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := drv.Launch(ctx, provisioner.InstanceSpec{ID: "w-1", Job: "j", LaunchID: "L1", Run: "stuck"}); err != nil {
		t.Fatal(err)
	}
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second)
	select {
	case <-sink.started:
	case <-ctx.Done():
		t.Fatal("the first beat never started")
	}
	// The beat is stuck; Terminate must not wait for it.
	if err := drv.Terminate(ctx, "w-1"); err != nil {
		t.Fatalf("terminate with a beat stuck: %v", err)
	}
	// Close does wait for it: nothing of the driver outlives Close.
	closing := make(chan struct{})
	go func() {
		<-closing
		close(sink.release)
	}()
	close(closing)
	drv.Close()
	sink.mu.Lock()
	sent := sink.sent
	sink.mu.Unlock()
	if sent != 1 {
		t.Fatalf("Close returned with the stuck beat still being sent (%d sent)", sent)
	}
	clock.Advance(5 * time.Second)
	select {
	case id := <-sink.started:
		t.Fatalf("%s started a beat after it was terminated", id)
	default:
	}
	if st := drv.Stats(); st.Live != 0 || st.Terminated != 1 {
		t.Fatalf("stats %+v, want none live and 1 terminated", st)
	}
}
