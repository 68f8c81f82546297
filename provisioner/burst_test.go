package provisioner_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"nightshift"
	"nightshift/provisioner"
)

// killableStore is a ledger whose process can be "killed": from then on
// every call fails, as nothing more reaches the disk of a dead process.
// It counts write transactions.
type killableStore struct {
	provisioner.Store
	dead atomic.Bool
	txs  atomic.Int64
}

var errDead = errors.New("process killed")

func (k *killableStore) UpdateInstance(ctx context.Context, in provisioner.Instance, prev nightshift.InstanceState) error {
	if k.dead.Load() {
		return errDead
	}
	k.txs.Add(1)
	return k.Store.UpdateInstance(ctx, in, prev)
}

func (k *killableStore) UpdateInstances(ctx context.Context, ups []provisioner.Update) ([]error, error) {
	if k.dead.Load() {
		return nil, errDead
	}
	k.txs.Add(1)
	return k.Store.UpdateInstances(ctx, ups)
}

func (k *killableStore) Instances(ctx context.Context, f provisioner.Filter) ([]provisioner.Instance, error) {
	if k.dead.Load() {
		return nil, errDead
	}
	return k.Store.Instances(ctx, f)
}

func (k *killableStore) Instance(ctx context.Context, id string) (provisioner.Instance, error) {
	if k.dead.Load() {
		return provisioner.Instance{}, errDead
	}
	return k.Store.Instance(ctx, id)
}

func (k *killableStore) Launch(ctx context.Context, id string) (provisioner.Launch, error) {
	if k.dead.Load() {
		return provisioner.Launch{}, errDead
	}
	return k.Store.Launch(ctx, id)
}

func countStates(t *testing.T, h *harness, launchID string) map[nightshift.InstanceState]int {
	t.Helper()
	recs, err := h.store.Instances(context.Background(), provisioner.Filter{LaunchID: launchID})
	if err != nil {
		t.Fatal(err)
	}
	out := map[nightshift.InstanceState]int{}
	for _, r := range recs {
		out[r.State]++
	}
	return out
}

// TestBurstIsRecordedBeforeItIsDrivenAndSurvivesAKill: a launch of many
// instances is recorded pending in one commit before the driver is called
// for any of them (write-ahead, for the whole burst), and a kill of the
// process part-way through the driver calls leaves, after a restart,
// every instance running exactly once: none launched twice, none orphaned,
// none lost.
func TestBurstIsRecordedBeforeItIsDrivenAndSurvivesAKill(t *testing.T) {
	const n, survive = 300, 120
	ks := &killableStore{}
	h := newHarness(t, func(c *provisioner.Config) {
		ks.Store = c.Store
		c.Store = ks
		c.MaxLaunches = 4
	})
	var mu sync.Mutex
	calls := 0
	var atFirst map[nightshift.InstanceState]int
	var txsBefore int64
	h.drv.BeforeLaunch = func(context.Context, provisioner.InstanceSpec) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			atFirst = countStates(t, h, "burst")
			txsBefore = ks.txs.Load()
		}
		if calls > survive {
			// The process dies here: this call and every later one never
			// reach the driver, and nothing more is recorded.
			ks.dead.Store(true)
			return errDead
		}
		return nil
	}
	// Recorded before the provisioner runs, so that it finds the whole
	// burst queued when it starts, as after a controller's launch of n.
	h.launch("burst", "web", n)
	h.start()
	h.idle()
	if atFirst[nightshift.StatePending] != n {
		t.Errorf("at the first driver call the records were %v, want all %d pending", atFirst, n)
	}
	if txsBefore != 1 {
		t.Errorf("recording %d instances pending took %d transactions, want 1", n, txsBefore)
	}
	if got := len(h.drv.Live()); got != survive {
		t.Fatalf("%d instances started before the kill, want %d", got, survive)
	}

	// Restart on the same ledger and driver.
	h.drv.BeforeLaunch = nil
	h.stop()
	h.cfg.Store = h.store
	h.p = h.fresh()
	h.start()
	h.idle()
	recs, err := h.store.Instances(context.Background(), provisioner.Filter{LaunchID: "burst"})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, r := range recs {
		want = append(want, r.ID)
		if r.State != nightshift.StateRunning {
			t.Errorf("%s: %s %q after the restart, want running", r.ID, r.State, r.Reason)
		}
		if k := h.drv.Launches(r.ID); k != 1 {
			t.Errorf("%s reached the driver %d times, want exactly 1", r.ID, k)
		}
	}
	slices.Sort(want)
	if live := h.drv.Live(); len(recs) != n || !slices.Equal(live, want) {
		t.Errorf("%d records, %d live instances: want the same %d (no duplicates, no orphans)", len(recs), len(live), n)
	}
}

// TestTerminateAllOfManyIsBatched: terminate_all of a pool larger than one
// transaction's batch records every instance terminating in a few commits
// (not one each), then terminates every instance and records each end.
func TestTerminateAllOfManyIsBatched(t *testing.T) {
	const n = 1100
	ks := &killableStore{}
	h := newHarness(t, func(c *provisioner.Config) {
		ks.Store = c.Store
		c.Store = ks
	})
	h.start()
	h.launch("big", "web", n)
	h.idle()
	before := ks.txs.Load()
	live, err := h.p.TerminateAll(context.Background())
	if err != nil || live != n {
		t.Fatalf("terminate_all = %d, %v; want %d live", live, err, n)
	}
	h.idle()
	// The call's own commits, plus the driver's ends (group-committed as
	// they come in): far fewer than two per instance.
	if txs := ks.txs.Load() - before; txs > n/10 {
		t.Errorf("terminate_all of %d took %d transactions, want at most %d", n, txs, n/10)
	}
	recs, err := h.store.Instances(context.Background(), provisioner.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if got := states(r); got != "requested,pending,running,terminating,terminated" || r.Reason != "terminate_all" {
			t.Errorf("%s: history %s reason %q", r.ID, got, r.Reason)
		}
		if k := h.drv.Terminations(r.ID); k != 1 {
			t.Errorf("%s terminated %d times in the driver, want 1", r.ID, k)
		}
	}
	if len(recs) != n || len(h.drv.Live()) != 0 {
		t.Errorf("%d records, %d still live in the driver", len(recs), len(h.drv.Live()))
	}
	if live, err := h.p.TerminateAll(context.Background()); live != 0 || err != nil {
		t.Errorf("polling terminate_all: %d live, %v", live, err)
	}
}

// orderedEvents checks, as each event arrives, that the ledger already
// holds what it announces, and keeps each instance's events in order.
type orderedEvents struct {
	store provisioner.Store
	mu    sync.Mutex
	seq   map[string][]string
	early []string
}

func (o *orderedEvents) InstanceChanged(ctx context.Context, inst provisioner.Instance) error {
	rec, err := o.store.Instance(ctx, inst.ID)
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil || rec.State.Rank() < inst.State.Rank() {
		o.early = append(o.early, fmt.Sprintf("%s %s (ledger: %s, %v)", inst.ID, inst.State, rec.State, err))
	}
	o.seq[inst.ID] = append(o.seq[inst.ID], string(inst.State))
	return nil
}

// TestEventsFollowTheLedgerInOrder: events are published off the launch
// path, yet each only after its change is recorded, an instance's in the
// order they were recorded, and all of them before the provisioner is
// idle.
func TestEventsFollowTheLedgerInOrder(t *testing.T) {
	const n = 400
	ev := &orderedEvents{seq: map[string][]string{}}
	h := newHarness(t, func(c *provisioner.Config) { c.Events = ev })
	ev.store = h.store
	h.start()
	insts := h.launch("L1", "web", n)
	h.idle()
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.early) > 0 {
		t.Errorf("%d events published before their change was recorded, e.g. %s", len(ev.early), ev.early[0])
	}
	for _, in := range insts {
		if got := strings.Join(ev.seq[in.ID], ","); got != "requested,pending,running" {
			t.Errorf("%s: events %s, want requested,pending,running", in.ID, got)
		}
	}
}

// TestTerminatedWhileWaitingForADriverSlotNeverStarts: an instance of a
// burst whose termination is recorded while its launch waits for a driver
// slot is never started.
func TestTerminatedWhileWaitingForADriverSlotNeverStarts(t *testing.T) {
	h := newHarness(t, func(c *provisioner.Config) { c.MaxLaunches = 1 })
	first := make(chan string, 1)
	release := make(chan struct{})
	h.drv.BeforeLaunch = func(_ context.Context, spec provisioner.InstanceSpec) error {
		select {
		case first <- spec.ID:
			<-release
		default:
		}
		return nil
	}
	insts := h.launch("L1", "web", 3)
	h.start()
	running := <-first
	var others []string
	for _, in := range insts {
		if in.ID != running {
			others = append(others, in.ID)
		}
	}
	if _, err := h.p.Terminate(context.Background(), others); err != nil {
		t.Fatal(err)
	}
	close(release)
	h.idle()
	for _, id := range others {
		if k := h.drv.Launches(id); k != 0 {
			t.Errorf("%s, terminated while waiting, reached the driver %d times", id, k)
		}
		if got := h.get(id); got.State != nightshift.StateTerminated {
			t.Errorf("%s: %s, want terminated", id, got.State)
		}
	}
	if got := h.get(running); got.State != nightshift.StateRunning {
		t.Errorf("%s: %s, want running", running, got.State)
	}
}

// pollStore counts what polls of terminate_all cost the ledger: writes of
// the disabled flag, and reads of each instance by id (the reads a
// termination makes: recording it, handing it out, recording its end).
type pollStore struct {
	provisioner.Store
	disables atomic.Int64
	mu       sync.Mutex
	reads    map[string]int
}

func (s *pollStore) SetDisabled(ctx context.Context, disabled bool) error {
	s.disables.Add(1)
	return s.Store.SetDisabled(ctx, disabled)
}

func (s *pollStore) Instances(ctx context.Context, f provisioner.Filter) ([]provisioner.Instance, error) {
	s.mu.Lock()
	for _, id := range f.IDs {
		s.reads[id]++
	}
	s.mu.Unlock()
	return s.Store.Instances(ctx, f)
}

// TestPolledTerminateAllRedoesNothing: mgmt polls terminate_all until
// nothing is live. A poll while the terminations are under way writes
// nothing (the flag is set already) and hands no termination out again:
// at 10,000 workers each of those was work the terminations themselves
// waited behind.
func TestPolledTerminateAllRedoesNothing(t *testing.T) {
	const n = 40
	ps := &pollStore{reads: map[string]int{}}
	h := newHarness(t, func(c *provisioner.Config) {
		ps.Store = c.Store
		c.Store = ps
	})
	h.start()
	h.launch("big", "web", n)
	h.idle()
	ps.mu.Lock()
	clear(ps.reads) // the launch's
	ps.mu.Unlock()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	h.drv.TerminateErr = func(string) error {
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		return nil
	}
	ctx := context.Background()
	if live, err := h.p.TerminateAll(ctx); err != nil || live != n {
		t.Fatalf("terminate_all = %d, %v; want %d live", live, err, n)
	}
	<-started // the terminations are handed out and under way
	disables := ps.disables.Load()
	for range 3 {
		if live, err := h.p.TerminateAll(ctx); err != nil || live != n {
			t.Fatalf("polled terminate_all = %d, %v; want %d live", live, err, n)
		}
	}
	if d := ps.disables.Load() - disables; d != 0 {
		t.Errorf("3 polls wrote the disabled flag %d times, want 0: it is set", d)
	}
	close(release)
	h.idle()
	if live, err := h.p.TerminateAll(ctx); err != nil || live != 0 {
		t.Fatalf("terminate_all after the end = %d, %v; want 0 live", live, err)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, id := range h.drv.Live() {
		t.Errorf("%s still live in the driver", id)
	}
	for id, k := range ps.reads {
		// Recorded terminating, handed out, recorded terminated: one
		// read each. A fourth is the termination handed out again.
		if k > 3 {
			t.Errorf("%s read %d times by id, want at most 3: a poll queued its termination again", id, k)
		}
	}
}
