package bootlevel

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"nightshift/launchplan"
)

// memStore is an in-memory Store that copies everything in and out, so the
// engine cannot get away with mutating what it stored.
type memStore struct {
	mu     sync.Mutex
	runs   map[string]Run
	svcs   map[string]map[string]ServiceRecord
	events map[string][]Event
	seq    int64
	// failPut, when set, makes PutService fail for that service name.
	failPut string
}

func newMemStore() *memStore {
	return &memStore{runs: map[string]Run{}, svcs: map[string]map[string]ServiceRecord{}, events: map[string][]Event{}}
}

func cloneRec(s ServiceRecord) ServiceRecord {
	s.Attributes = maps.Clone(s.Attributes)
	s.Host.Attrs = maps.Clone(s.Host.Attrs)
	return s
}

func (m *memStore) CreateRun(_ context.Context, r Run) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.runs[r.Name]; ok {
		return fmt.Errorf("run %s: %w", r.Name, ErrExists)
	}
	r.Plan = slices.Clone(r.Plan)
	m.runs[r.Name] = r
	return nil
}

func (m *memStore) GetRun(_ context.Context, name string) (Run, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.runs[name]
	if !ok {
		return Run{}, fmt.Errorf("run %s: %w", name, ErrNotFound)
	}
	r.Plan = slices.Clone(r.Plan)
	return r, nil
}

func (m *memStore) ListRuns(context.Context) ([]Run, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Run
	for _, r := range m.runs {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (m *memStore) UpdateRun(_ context.Context, r Run) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.runs[r.Name]; !ok {
		return fmt.Errorf("run %s: %w", r.Name, ErrNotFound)
	}
	r.Plan = slices.Clone(r.Plan)
	m.runs[r.Name] = r
	return nil
}

func (m *memStore) PutService(_ context.Context, s ServiceRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.Name == m.failPut {
		return fmt.Errorf("disk full")
	}
	if _, ok := m.runs[s.Run]; !ok {
		return fmt.Errorf("run %s: %w", s.Run, ErrNotFound)
	}
	if m.svcs[s.Run] == nil {
		m.svcs[s.Run] = map[string]ServiceRecord{}
	}
	m.svcs[s.Run][s.Name] = cloneRec(s)
	return nil
}

func (m *memStore) Services(_ context.Context, run string) ([]ServiceRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ServiceRecord
	for _, s := range m.svcs[run] {
		out = append(out, cloneRec(s))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Level != out[j].Level {
			return out[i].Level < out[j].Level
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

func (m *memStore) AppendEvent(_ context.Context, e Event) (Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	e.Seq = m.seq
	m.events[e.Run] = append(m.events[e.Run], e)
	return e, nil
}

func (m *memStore) Events(_ context.Context, run string, after int64) ([]Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Event
	for _, e := range m.events[run] {
		if e.Seq > after {
			out = append(out, e)
		}
	}
	return out, nil
}

func (m *memStore) DeleteRun(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.runs, name)
	delete(m.svcs, name)
	delete(m.events, name)
	return nil
}

func (m *memStore) service(t *testing.T, run, name string) ServiceRecord {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.svcs[run][name]
	if !ok {
		t.Fatalf("no record of service %s in run %s", name, run)
	}
	return cloneRec(s)
}

func (m *memStore) eventsOf(run string) []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events[run])
}

// call is one thing the fake driver was asked to do.
type call struct {
	Service string
	Step    Step
	Start   time.Time
	End     time.Time
	Req     StepRequest
}

// fakeDriver records every call and delegates behaviour to a script. With
// no script every step succeeds at once.
type fakeDriver struct {
	mu      sync.Mutex
	calls   []call
	script  func(ctx context.Context, req StepRequest) (StepResult, error)
	acquire func(ctx context.Context, svc *launchplan.Service) (Host, error)
	release func(svc *launchplan.Service) error
	nowFn   func() time.Time
}

func (d *fakeDriver) now() time.Time {
	if d.nowFn != nil {
		return d.nowFn()
	}
	return time.Now()
}

func (d *fakeDriver) record(c call) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, c)
}

func (d *fakeDriver) Acquire(ctx context.Context, run string, svc *launchplan.Service) (Host, error) {
	start := d.now()
	h := Host{Hostname: svc.Name + ".example", InstanceID: "i-" + svc.Name}
	var err error
	if d.acquire != nil {
		h, err = d.acquire(ctx, svc)
	}
	d.record(call{Service: svc.Name, Step: StepAcquire, Start: start, End: d.now()})
	return h, err
}

func (d *fakeDriver) Run(ctx context.Context, req StepRequest) (StepResult, error) {
	start := d.now()
	res := StepResult{}
	var err error
	if d.script != nil {
		res, err = d.script(ctx, req)
	}
	d.record(call{Service: req.Service.Name, Step: req.Step, Start: start, End: d.now(), Req: req})
	return res, err
}

func (d *fakeDriver) Release(_ context.Context, _ string, svc *launchplan.Service, _ Host) error {
	start := d.now()
	var err error
	if d.release != nil {
		err = d.release(svc)
	}
	d.record(call{Service: svc.Name, Step: StepRelease, Start: start, End: d.now()})
	return err
}

func (d *fakeDriver) all() []call {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// steps lists "service:step" for every call, in call order.
func (d *fakeDriver) steps() []string {
	var out []string
	for _, c := range d.all() {
		out = append(out, c.Service+":"+string(c.Step))
	}
	return out
}

// count counts the calls of one step of one service.
func (d *fakeDriver) count(svc string, step Step) int {
	n := 0
	for _, c := range d.all() {
		if c.Service == svc && c.Step == step {
			n++
		}
	}
	return n
}

// sleep waits d (fake time under synctest) or until ctx ends, as a real
// driver's program would.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func prog(path string, args ...string) *launchplan.Program {
	return &launchplan.Program{Path: path, Args: args}
}

// service is a local service with a boot and a ready program and
// generous timeouts.
func service(name string) launchplan.Service {
	return launchplan.Service{
		Name:             name,
		Driver:           launchplan.DriverLocal,
		Pos:              launchplan.Pos{File: "/plans/test.toml", Line: 1},
		Boot:             prog("/bin/boot-" + name),
		Ready:            prog("/bin/ready-" + name),
		Terminate:        prog("/bin/term-" + name),
		BootTimeout:      time.Minute,
		ReadyTimeout:     time.Minute,
		TerminateTimeout: time.Minute,
		ReadyInterval:    time.Second,
		Replica:          -1,
	}
}

// plan builds a plan; each argument is one level.
func plan(levels ...[]launchplan.Service) *launchplan.Plan {
	p := &launchplan.Plan{Name: "test", Path: "/plans/test.toml", Dir: "/plans", Hash: "hash-1", Globals: map[string]string{"region": "eu"}}
	for i, svcs := range levels {
		for j := range svcs {
			svcs[j].Level = i + 1
		}
		p.Levels = append(p.Levels, launchplan.Level{Index: i + 1, Services: svcs})
	}
	return p
}

func names(prefix string, n int) []launchplan.Service {
	out := make([]launchplan.Service, n)
	for i := range out {
		out[i] = service(fmt.Sprintf("%s%02d", prefix, i))
	}
	return out
}

// newEngine returns an engine over a fresh memStore and one fake local driver.
func newEngine(t testing.TB, drv *fakeDriver) (*Engine, *memStore) {
	st := newMemStore()
	return &Engine{
		Store:   st,
		Drivers: map[string]Driver{launchplan.DriverLocal: drv},
		Home:    t.TempDir(),
		Getenv:  func(k string) (string, bool) { v, ok := map[string]string{"HOME_REGION": "north"}[k]; return v, ok },
	}, st
}

func states(rep *Report) map[string]ServiceState {
	out := map[string]ServiceState{}
	for _, s := range rep.Services {
		out[s.Name] = s.State
	}
	return out
}

func hasPrefix(list []string, p string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
