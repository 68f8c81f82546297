// Package simworker is the provisioner Driver whose instances are
// simulated: nothing is started, but each instance's simulated sitter sends
// real heartbeats over the run's real broker, so the controller, the
// provisioner's ledger, the broker and mgmt carry the load of a pool of any
// size while the machine runs no workers. It is a capacity-planning tool
// (docs/jobs.md) and what nsbench's scale scenario and tests use.
//
// An instance is "running" as soon as Launch returns, and its sitter sends
// its first heartbeat after the boot delay, as a real instance's sitter
// does once it has booted and connected. It dies (stops heartbeating,
// leaves List, and is reported on Exits, as a local process that exits
// is) when terminated, when Kill names it, and at random at FailRate. The
// heartbeats of many instances share the few sinks (AMQP connections) the
// caller hands in; the simulator speaks on the bus with one identity of
// its own (busid.SimulatorUser), which the controller accepts only for
// jobs it holds with driver "sim".
package simworker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"math/rand/v2"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift/provisioner"
	"nightshift/sitter"
)

// Name is the driver's name, as a job's `driver` spells it.
const Name = "sim"

// Host is the host every simulated instance reports.
const Host = "sim"

// Defaults of Config and of a job's instance table.
const (
	DefaultBootDelay         = time.Second
	DefaultHeartbeatInterval = time.Second
)

var pathSafe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

// Config configures a Driver.
type Config struct {
	Run string // required
	// Sinks carry the heartbeats; an instance always uses the same one
	// (by a hash of its id). Typically one sitterbus.Sink per AMQP
	// connection, all connected as the simulator's user. Required.
	Sinks []sitter.HeartbeatSink
	// BootDelay, HeartbeatInterval and FailRate are the defaults a job's
	// instance table (boot_delay, heartbeat_interval, fail_rate) overrides.
	BootDelay         time.Duration
	HeartbeatInterval time.Duration
	// FailRate is the probability per second that a running instance
	// dies on its own; 0 never.
	FailRate float64
	Log      *slog.Logger
	Clock    clockwork.Clock
	// Rand draws boot phases and failures; nil seeds one at random.
	Rand *rand.Rand
}

// Params is what a job's `[jobs.NAME.instance]` table may say to the sim
// driver; every field is optional.
type Params struct {
	BootDelay         string  `json:"boot_delay,omitempty"`
	HeartbeatInterval string  `json:"heartbeat_interval,omitempty"`
	FailRate          float64 `json:"fail_rate,omitempty"`
	// Task is the name of the one task each simulated sitter reports
	// (default: the worker spec's name, else the job's).
	Task string `json:"task,omitempty"`
}

type params struct {
	boot, every time.Duration
	failRate    float64
	task        string
}

// Driver implements provisioner.Driver with simulated instances.
type Driver struct {
	cfg   Config
	exits chan provisioner.Exit

	// running counts live goroutines, including those of terminated
	// instances still finishing a send: Close waits for them all.
	running sync.WaitGroup

	mu    sync.Mutex
	insts map[string]*instance
	rnd   *rand.Rand
	sent  uint64 // heartbeats published
	errs  uint64 // heartbeats the sink refused
	// launched and terminated count Launch and Terminate calls that
	// started or ended an instance: in a steady pool, launches are churn.
	launched, terminated uint64
	// late counts beats that left more than one interval after they
	// were due, the simulator's own share of a beat's lateness.
	late uint64
}

type instance struct {
	owned provisioner.Owned
	stop  context.CancelFunc
	done  chan struct{}

	// mu guards dead and sending: once dead no beat starts, and a beat
	// already being written (sending) is not waited for, as a killed
	// process's last packet may still be on the wire.
	mu            sync.Mutex
	dead, sending bool
}

// kill marks in dead and reports whether a beat is being sent now.
func (in *instance) kill() (sending bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.dead = true
	return in.sending
}

// startSend reports whether in may send a beat, and if so marks it sending.
func (in *instance) startSend() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.dead {
		return false
	}
	in.sending = true
	return true
}

func (in *instance) endSend() {
	in.mu.Lock()
	in.sending = false
	in.mu.Unlock()
}

var (
	_ provisioner.Driver      = (*Driver)(nil)
	_ provisioner.ExitWatcher = (*Driver)(nil)
)

// New validates cfg.
func New(cfg Config) (*Driver, error) {
	if !pathSafe.MatchString(cfg.Run) {
		return nil, fmt.Errorf("sim worker driver: run %q: want [a-zA-Z0-9_.-]", cfg.Run)
	}
	if len(cfg.Sinks) == 0 {
		return nil, errors.New("sim worker driver: at least one heartbeat sink is required")
	}
	if cfg.FailRate < 0 || cfg.FailRate > 1 {
		return nil, fmt.Errorf("sim worker driver: fail rate %v: want 0..1 per second", cfg.FailRate)
	}
	if cfg.BootDelay < 0 {
		return nil, fmt.Errorf("sim worker driver: boot delay %s is negative", cfg.BootDelay)
	}
	if cfg.BootDelay == 0 {
		cfg.BootDelay = DefaultBootDelay
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	rnd := cfg.Rand
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	// Deaths are reported without blocking the instance; the buffer holds
	// a whole pool's worth of kills between two reads by the provisioner.
	return &Driver{cfg: cfg, exits: make(chan provisioner.Exit, 16384), insts: map[string]*instance{}, rnd: rnd}, nil
}

// Name implements provisioner.Driver.
func (d *Driver) Name() string { return Name }

// Exits implements provisioner.ExitWatcher: instances that died on their
// own (Kill, FailRate), never those terminated.
func (d *Driver) Exits() <-chan provisioner.Exit { return d.exits }

// launchSpec is the part of the provisioner's launch spec the driver reads.
type launchSpec struct {
	Driver   string          `json:"driver"`
	Instance json.RawMessage `json:"instance"`
	Worker   struct {
		Name string `json:"name"`
	} `json:"worker"`
}

func (d *Driver) params(spec provisioner.InstanceSpec) (params, error) {
	p := params{boot: d.cfg.BootDelay, every: d.cfg.HeartbeatInterval, failRate: d.cfg.FailRate, task: spec.Job}
	if len(spec.Spec) == 0 {
		return p, nil
	}
	var ls launchSpec
	if err := json.Unmarshal(spec.Spec, &ls); err != nil {
		return p, fmt.Errorf("spec: %w", err)
	}
	if ls.Driver != "" && ls.Driver != Name {
		return p, fmt.Errorf("spec: driver %q is not %q", ls.Driver, Name)
	}
	if ls.Worker.Name != "" {
		p.task = ls.Worker.Name
	}
	if len(ls.Instance) == 0 || string(ls.Instance) == "null" {
		return p, nil
	}
	pr, err := ParseParams(ls.Instance)
	if err != nil {
		return p, err
	}
	if pr.BootDelay != "" {
		p.boot, _ = time.ParseDuration(pr.BootDelay)
	}
	if pr.HeartbeatInterval != "" {
		p.every, _ = time.ParseDuration(pr.HeartbeatInterval)
	}
	if pr.FailRate != 0 {
		p.failRate = pr.FailRate
	}
	if pr.Task != "" {
		p.task = pr.Task
	}
	return p, nil
}

// ParseParams decodes and checks a job's instance table for the sim
// driver, naming the key at fault.
func ParseParams(raw json.RawMessage) (Params, error) {
	var pr Params
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pr); err != nil {
		return pr, fmt.Errorf("instance: %w (keys: boot_delay, heartbeat_interval, fail_rate, task)", err)
	}
	if pr.BootDelay != "" {
		if v, err := time.ParseDuration(pr.BootDelay); err != nil || v < 0 {
			return pr, fmt.Errorf("instance: boot_delay: %q: want a duration >= 0 such as \"2s\"", pr.BootDelay)
		}
	}
	if pr.HeartbeatInterval != "" {
		if v, err := time.ParseDuration(pr.HeartbeatInterval); err != nil || v <= 0 {
			return pr, fmt.Errorf("instance: heartbeat_interval: %q: want a positive duration such as \"1s\"", pr.HeartbeatInterval)
		}
	}
	if pr.FailRate < 0 || pr.FailRate > 1 {
		return pr, fmt.Errorf("instance: fail_rate: %v: want 0..1 per second", pr.FailRate)
	}
	return pr, nil
}

// Launch implements provisioner.Driver: the instance exists at once and
// heartbeats after its boot delay. Launching a live id returns it.
func (d *Driver) Launch(ctx context.Context, spec provisioner.InstanceSpec) (provisioner.LaunchResult, error) {
	if !pathSafe.MatchString(spec.ID) {
		return provisioner.LaunchResult{}, fmt.Errorf("launch: instance id %q: want [a-zA-Z0-9_.-]", spec.ID)
	}
	if spec.Run != "" && spec.Run != d.cfg.Run {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: run %q is not this driver's run %q", spec.ID, spec.Run, d.cfg.Run)
	}
	if spec.Job == "" {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: job is required", spec.ID)
	}
	p, err := d.params(spec)
	if err != nil {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
	}
	if err := ctx.Err(); err != nil {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.insts[spec.ID]; ok {
		return provisioner.LaunchResult{Host: Host}, nil
	}
	// The instance outlives the Launch call, as a process does: its
	// context is the driver's, ended by Terminate, Kill or Close.
	ictx, cancel := context.WithCancel(context.Background())
	in := &instance{
		owned: provisioner.Owned{Run: d.cfg.Run, Job: spec.Job, InstanceID: spec.ID, LaunchID: spec.LaunchID, Host: Host},
		stop:  cancel, done: make(chan struct{}),
	}
	d.insts[spec.ID] = in
	d.launched++
	// A random phase within one interval spreads a pool launched at once
	// over the interval, as real boots are spread.
	phase := time.Duration(d.rnd.Int64N(int64(p.every)))
	seed := d.rnd.Uint64()
	d.running.Add(1)
	go func() {
		defer d.running.Done()
		d.live(ictx, in, p, phase, seed)
	}()
	return provisioner.LaunchResult{Host: Host}, nil
}

// live is one simulated sitter: wait out the boot, then heartbeat every
// interval until the instance ends.
func (d *Driver) live(ctx context.Context, in *instance, p params, phase time.Duration, seed uint64) {
	defer close(in.done)
	sink := d.cfg.Sinks[d.sinkFor(in.owned.InstanceID)]
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	// Probability of dying within one interval, for FailRate per second.
	pDie := 1 - pow1m(p.failRate, p.every.Seconds())
	// Beats are due on a fixed schedule, as a sitter's ticker fires:
	// a slow send delays that beat, not every beat after it.
	due := d.cfg.Clock.Now().Add(p.boot + phase)
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.cfg.Clock.After(due.Sub(d.cfg.Clock.Now())):
		}
		now := d.cfg.Clock.Now()
		lateBeat := now.Sub(due) > p.every
		due = due.Add(p.every)
		if due.Before(now) {
			// Far behind: skip the beats already missed, as a ticker
			// drops ticks, instead of sending a burst.
			due = now.Add(p.every - now.Sub(due)%p.every)
		}
		if pDie > 0 && rnd.Float64() < pDie {
			d.die(in.owned.InstanceID, fmt.Sprintf("simulated failure (fail_rate %v/s)", p.failRate))
			return
		}
		hb := sitter.Heartbeat{
			InstanceID: in.owned.InstanceID, Job: in.owned.Job, Host: Host, Time: d.cfg.Clock.Now().UTC(),
			LimitMode: "none",
			Tasks:     []sitter.TaskStatus{{Name: p.task, State: sitter.StateRunning, Work: sitter.WorkIdle}},
		}
		if !in.startSend() {
			return
		}
		err := sink.SendHeartbeat(ctx, hb)
		in.endSend()
		d.mu.Lock()
		if err != nil {
			d.errs++
		} else {
			d.sent++
		}
		if lateBeat {
			d.late++
		}
		d.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			d.cfg.Log.Debug("simulated heartbeat dropped", "instance", in.owned.InstanceID, "err", err)
		}
	}
}

// pow1m is (1-r)^t, the chance of surviving t seconds at rate r per second.
func pow1m(r, t float64) float64 {
	if r <= 0 {
		return 1
	}
	if r >= 1 {
		return 0
	}
	return math.Pow(1-r, t)
}

func (d *Driver) sinkFor(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(len(d.cfg.Sinks)))
}

// remove ends an instance and reports whether it was live, and whether
// it was writing a beat as it ended.
func (d *Driver) remove(id string) (in *instance, ok, sending bool) {
	d.mu.Lock()
	in, ok = d.insts[id]
	if ok {
		delete(d.insts, id)
	}
	d.mu.Unlock()
	if ok {
		sending = in.kill()
		in.stop()
	}
	return in, ok, sending
}

// die ends an instance on its own and reports it on Exits.
func (d *Driver) die(id, reason string) bool {
	if _, ok, _ := d.remove(id); !ok {
		return false
	}
	select {
	case d.exits <- provisioner.Exit{ID: id, Reason: reason}:
	default:
		// The provisioner is far behind; its next reconcile finds the
		// instance gone from List instead.
		d.cfg.Log.Warn("exit report dropped; reconcile will find it", "instance", id)
	}
	return true
}

// Terminate implements provisioner.Driver: no heartbeat starts after
// Terminate returns; one being written as it is called may still arrive,
// and is not waited for. Waiting for it made each termination wait for a
// publish stuck behind the broker's flow control, and with the
// provisioner's few termination slots a 10% kill at 10,000 workers took
// minutes to finish. An unknown or dead id is not an error.
func (d *Driver) Terminate(ctx context.Context, id string) error {
	in, ok, sending := d.remove(id)
	if !ok {
		return nil
	}
	d.mu.Lock()
	d.terminated++
	d.mu.Unlock()
	if sending {
		return nil
	}
	select {
	case <-in.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("terminate %s: %w", id, ctx.Err())
	}
}

// List implements provisioner.Driver.
func (d *Driver) List(ctx context.Context) ([]provisioner.Owned, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	d.mu.Lock()
	out := make([]provisioner.Owned, 0, len(d.insts))
	for _, in := range d.insts {
		out = append(out, in.owned)
	}
	d.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].InstanceID < out[j].InstanceID })
	return out, nil
}

// Kill makes the named instances die on their own, as a crash would, and
// returns the ids that were live.
func (d *Driver) Kill(ids []string, reason string) []string {
	var killed []string
	for _, id := range ids {
		if d.die(id, reason) {
			killed = append(killed, id)
		}
	}
	return killed
}

// KillRandom kills n live instances of job (all jobs when job is ""),
// chosen at random, and returns their ids.
func (d *Driver) KillRandom(job string, n int, reason string) []string {
	d.mu.Lock()
	var ids []string
	for id, in := range d.insts {
		if job == "" || in.owned.Job == job {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	d.rnd.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	d.mu.Unlock()
	if n < len(ids) {
		ids = ids[:max(n, 0)]
	}
	return d.Kill(ids, reason)
}

// Stats is what the simulator has done so far.
type Stats struct {
	Live       int    `json:"live"`
	Heartbeats uint64 `json:"heartbeats"`
	Dropped    uint64 `json:"dropped"`
	Late       uint64 `json:"late"`
	Launched   uint64 `json:"launched"`
	Terminated uint64 `json:"terminated"`
}

// Stats reports live instances, heartbeats sent, dropped and late, and
// instances launched and terminated.
func (d *Driver) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Stats{Live: len(d.insts), Heartbeats: d.sent, Dropped: d.errs, Late: d.late, Launched: d.launched, Terminated: d.terminated}
}

// Close ends every instance without reporting exits, as when the
// simulator's host goes away with the provisioner.
func (d *Driver) Close() {
	d.mu.Lock()
	all := d.insts
	d.insts = map[string]*instance{}
	d.mu.Unlock()
	for _, in := range all {
		in.kill()
		in.stop()
	}
	// Also those Terminate let go while they were sending.
	d.running.Wait()
}
