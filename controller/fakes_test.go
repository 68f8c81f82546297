package controller_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift"
	"nightshift/controller"
	"nightshift/controller/ctlbus"
	"nightshift/decision"
	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/internal/store/ctlstore"
	"nightshift/provisioner"
	"nightshift/sitter"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// fakeProv is an in-memory provisioner that dedupes by launch id, like the
// real one.
type fakeProv struct {
	mu       sync.Mutex
	clock    clockwork.Clock
	records  map[string]provisioner.Instance
	byLaunch map[string][]string
	calls    []provisioner.LaunchRequest
	terms    [][]string
	// failLaunch makes the next launches fail as a transport error would;
	// lostReply records the launch first (the reply was lost), otherwise
	// the request never arrived.
	failLaunch int
	lostReply  bool
	refuse     bool
	revised    []provisioner.ReviseBody
	failDesc   bool
	dnsProblem string // what Describe says of DNS records
	// health are the health bodies accepted; failHealth refuses them as
	// a transport error would.
	health     []provisioner.HealthBody
	failHealth bool
	// onHealth, when set, gets each health body after it passed the
	// provisioner's decoding, and may refuse it.
	onHealth func(provisioner.HealthBody) error
	// onLaunch, when set, runs as a launch arrives (before it is recorded).
	onLaunch func(provisioner.LaunchRequest)
	// sent is every launch and revise in order ("launch ID", "revise
	// DIGEST").
	sent []string
	// ledger holds the digests of the revisions handed over; with
	// planDigest set, a launch naming neither it nor one of them is
	// refused, as the real provisioner refuses an unknown revision.
	ledger     map[string]bool
	planDigest string
	// describes counts Describe calls; afterDescribe, when set, runs after
	// each one has taken its snapshot of the records.
	describes     int
	afterDescribe func()
}

func newFakeProv(clock clockwork.Clock) *fakeProv {
	return &fakeProv{clock: clock, records: map[string]provisioner.Instance{}, byLaunch: map[string][]string{}}
}

var errTransport = errors.New("connection lost before reply")

func (f *fakeProv) Launch(_ context.Context, req provisioner.LaunchRequest) ([]provisioner.Instance, error) {
	if f.onLaunch != nil {
		f.onLaunch(req)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, req)
	f.sent = append(f.sent, "launch "+req.LaunchID)
	if req.Count < 1 || req.Count > provisioner.MaxCount {
		// The real provisioner refuses it at its message's validation.
		return nil, fmt.Errorf("launch: %w: count %d: want 1..%d", controller.ErrRefused, req.Count, provisioner.MaxCount)
	}
	if f.refuse {
		return nil, fmt.Errorf("launch: %w: launches disabled", controller.ErrRefused)
	}
	if f.planDigest != "" && req.SpecDigest != f.planDigest && !f.ledger[req.SpecDigest] {
		return nil, fmt.Errorf("launch %s: %w: spec digest %s is not the provisioner's nor a revision handed to it", req.LaunchID, controller.ErrRefused, req.SpecDigest)
	}
	if f.failLaunch > 0 && !f.lostReply {
		f.failLaunch--
		return nil, errTransport
	}
	ids, ok := f.byLaunch[req.LaunchID]
	if !ok {
		now := f.clock.Now()
		for i := range req.Count {
			id := provisioner.InstanceID(req.Job, req.LaunchID, i)
			f.records[id] = provisioner.Instance{ID: id, Job: req.Job, LaunchID: req.LaunchID, Index: i,
				State: nightshift.StateRequested, Created: now, Updated: now}
			ids = append(ids, id)
		}
		f.byLaunch[req.LaunchID] = ids
	}
	if f.failLaunch > 0 {
		f.failLaunch--
		return nil, errTransport
	}
	out := make([]provisioner.Instance, 0, len(ids))
	for _, id := range ids {
		out = append(out, f.records[id])
	}
	return out, nil
}

func (f *fakeProv) Terminate(_ context.Context, ids []string) ([]provisioner.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.terms = append(f.terms, slices.Clone(ids))
	if err := (&provisioner.TerminateBody{InstanceIDs: ids}).Validate(); err != nil {
		return nil, fmt.Errorf("terminate: %w: %w", controller.ErrRefused, err)
	}
	var out []provisioner.Instance
	for _, id := range ids {
		r, ok := f.records[id]
		if !ok {
			continue
		}
		r.State, r.Updated = nightshift.StateTerminated, f.clock.Now()
		f.records[id] = r
		out = append(out, r)
	}
	return out, nil
}

func (f *fakeProv) Revise(_ context.Context, b provisioner.ReviseBody) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revised = append(f.revised, b)
	f.sent = append(f.sent, "revise "+b.Digest)
	if f.ledger == nil {
		f.ledger = map[string]bool{}
	}
	f.ledger[b.Digest] = true
	return nil
}

// loseLedger is a provisioner restarted on a fresh store: it remembers no
// revision handed to it, and refuses launches naming one other than
// planDigest.
func (f *fakeProv) loseLedger(planDigest string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ledger, f.planDigest = nil, planDigest
}

// sentLog returns every launch and revise sent, in order.
func (f *fakeProv) sentLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sent)
}

// describeCount returns the number of Describe calls.
func (f *fakeProv) describeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.describes
}

func (f *fakeProv) Health(_ context.Context, b provisioner.HealthBody) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failHealth {
		return errTransport
	}
	// What the provisioner's bus would refuse (too many ids, too big) is
	// refused here too.
	env, err := envelope.NewEnvelope(provisioner.TypeHealth, 1, "r1", "controller", b, f.clock.Now())
	if err != nil {
		return err
	}
	data, err := json.Marshal(env)
	if err != nil {
		return err
	}
	if _, _, err := provisioner.Messages().Decode(data, amqpbus.MaxMessageSize); err != nil {
		return fmt.Errorf("health: %w: %w", controller.ErrRefused, err)
	}
	if f.onHealth != nil {
		if err := f.onHealth(b); err != nil {
			return err
		}
	}
	f.health = append(f.health, b)
	return nil
}

func (f *fakeProv) Describe(_ context.Context, job string) (provisioner.Status, error) {
	f.mu.Lock()
	f.describes++
	if f.failDesc {
		f.mu.Unlock()
		return provisioner.Status{}, errTransport
	}
	st := provisioner.Status{DNSProblem: f.dnsProblem}
	for _, r := range f.records {
		if r.Job == job {
			st.Instances = append(st.Instances, r)
		}
	}
	after := f.afterDescribe
	f.mu.Unlock()
	if after != nil {
		after()
	}
	return st, nil
}

// setState moves an instance and returns the record, as an event would
// carry it.
func (f *fakeProv) setState(id string, s nightshift.InstanceState) provisioner.Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.records[id]
	r.State, r.Updated = s, f.clock.Now()
	f.records[id] = r
	return r
}

func (f *fakeProv) seed(job string, n int, state nightshift.InstanceState, created time.Time) []string {
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("%s-seed-%d", job, i))
	}
	f.seedIDs(job, ids, state, created)
	return ids
}

// seedIDs is seed with the ids given.
func (f *fakeProv) seedIDs(job string, ids []string, state nightshift.InstanceState, created time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, id := range ids {
		f.records[id] = provisioner.Instance{ID: id, Job: job, LaunchID: "seed", Index: i, State: state,
			Created: created.Add(time.Duration(i) * time.Second), Updated: created}
	}
}

// launched returns the number of instances created and launch calls made.
func (f *fakeProv) launched() (instances int, calls []provisioner.LaunchRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ids := range f.byLaunch {
		instances += len(ids)
	}
	return instances, slices.Clone(f.calls)
}

func (f *fakeProv) terminated() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.terms)
}

func (f *fakeProv) ids(job string, live bool) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id, r := range f.records {
		if r.Job == job && (!live || r.State.Live()) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

type fakeDrainer struct {
	mu     sync.Mutex
	drains []string
	err    error
}

func (d *fakeDrainer) Drain(_ context.Context, job, id, reason string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return d.err
	}
	d.drains = append(d.drains, id)
	return nil
}

func (d *fakeDrainer) got() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.drains)
}

type fakeMeter struct {
	mu    sync.Mutex
	depth int
	err   error
}

func (m *fakeMeter) QueueDepth(context.Context, string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.depth, m.err
}

// fakeLink is the controller's bus connection, up unless cut.
type fakeLink struct{ down atomic.Bool }

func (l *fakeLink) Connected() bool { return !l.down.Load() }

// rig is one controller with fakes around it.
type rig struct {
	t       testing.TB
	clock   *clockwork.FakeClock
	prov    *fakeProv
	drainer *fakeDrainer
	meter   *fakeMeter
	link    *fakeLink
	path    string
	store   *ctlstore.Store
	// revReads counts the controller's reads of the stored revisions.
	revReads atomic.Int64
	jobs     []controller.Job
	obs      *recObserver
	c        *controller.Controller
}

// recObserver records what a controller tells its Observer.
type recObserver struct {
	mu       sync.Mutex
	samples  []controller.Sample
	statuses []controller.JobStatus
	decided  [][]string
}

func (o *recObserver) Sampled(js controller.JobStatus, s controller.Sample) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.samples, o.statuses = append(o.samples, s), append(o.statuses, js)
}

func (o *recObserver) Decided(job string, actions []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.decided = append(o.decided, append([]string{job}, actions...))
}

func mustJob(t testing.TB, name string, table map[string]any) controller.Job {
	t.Helper()
	j, err := controller.ParseJob(name, table, decision.NewRegistry())
	if err != nil {
		t.Fatalf("parse job %s: %v", name, err)
	}
	return j
}

func newRig(t testing.TB, jobs ...controller.Job) *rig {
	t.Helper()
	clock := clockwork.NewFakeClockAt(t0)
	r := &rig{t: t, clock: clock, prov: newFakeProv(clock), drainer: &fakeDrainer{}, meter: &fakeMeter{},
		link: &fakeLink{}, path: filepath.Join(t.TempDir(), "controller.db"), jobs: jobs, obs: &recObserver{}}
	r.start()
	return r
}

// start opens the store and a new controller on it, as a (re)started
// daemon would, and recovers.
func (r *rig) start() {
	r.t.Helper()
	ctx := context.Background()
	st, err := ctlstore.Open(ctx, r.path)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { st.Close() })
	r.store = st
	c, err := controller.New(ctx, controller.Config{
		Jobs: r.jobs, Registry: decision.NewRegistry(), Store: countingStore{st, &r.revReads}, Provisioner: r.prov,
		Drainer: r.drainer, Meter: r.meter, MgmtAPI: ctlbus.MgmtAPI{}, Clock: r.clock, Link: r.link, Observer: r.obs,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := c.Recover(ctx); err != nil {
		r.t.Fatal(err)
	}
	r.c = c
}

// restartAwaitingBind restarts as the daemon starts with its bus adapter
// (AwaitBind): r.c is a new controller on the same store, neither
// recovered nor running; its Run recovers only after Bound.
func (r *rig) restartAwaitingBind() {
	r.t.Helper()
	r.store.Close()
	ctx := context.Background()
	st, err := ctlstore.Open(ctx, r.path)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { st.Close() })
	r.store = st
	c, err := controller.New(ctx, controller.Config{
		Jobs: r.jobs, Registry: decision.NewRegistry(), Store: st, Provisioner: r.prov,
		Drainer: r.drainer, Meter: r.meter, MgmtAPI: ctlbus.MgmtAPI{}, Clock: r.clock, Link: r.link, Observer: r.obs,
		AwaitBind: true,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.c = c
}

// run runs r.c until the test ends.
func (r *rig) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.c.Run(ctx) }()
	r.t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			r.t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
}

// countingStore counts reads of the stored revisions.
type countingStore struct {
	*ctlstore.Store
	revReads *atomic.Int64
}

func (s countingStore) Revisions(ctx context.Context, job string) ([]controller.Revision, error) {
	s.revReads.Add(1)
	return s.Store.Revisions(ctx, job)
}

// restart simulates a crash: the old controller is dropped without any
// shutdown step and a new one opens the same store.
func (r *rig) restart() {
	r.t.Helper()
	r.store.Close()
	r.start()
}

func (r *rig) tick() { r.c.Tick(context.Background()) }

func (r *rig) heartbeat(job, id string, busy bool) {
	w := sitter.WorkIdle
	if busy {
		w = sitter.WorkBusy
	}
	r.c.IngestHeartbeat(sitter.Heartbeat{InstanceID: id, Job: job, Host: "h-" + id, Time: r.clock.Now(),
		Tasks: []sitter.TaskStatus{{Name: "work", State: sitter.StateRunning, Work: w}}})
}

// runAll moves every live instance of job to running and has it heartbeat.
func (r *rig) runAll(job string, busy bool) []string {
	ids := r.prov.ids(job, true)
	for _, id := range ids {
		r.c.HandleInstance(r.prov.setState(id, nightshift.StateRunning))
		r.heartbeat(job, id, busy)
	}
	return ids
}

func mustOpen(t *testing.T, path string) *ctlstore.Store {
	t.Helper()
	st, err := ctlstore.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// healthSent returns the health bodies the provisioner accepted.
func (f *fakeProv) healthSent() []provisioner.HealthBody {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.health)
}
