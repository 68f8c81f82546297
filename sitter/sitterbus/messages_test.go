package sitterbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"nightshift/controller/ctlbus"
	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/internal/ping"
	"nightshift/sitter"
	"nightshift/sitter/sitterbus"
)

// The drain and heartbeat contract is the controller's; the sitter's
// registry must agree with it on names and on what needs a signature.
func TestRegistryMatchesController(t *testing.T) {
	ours, theirs := sitterbus.Messages(), ctlbus.Messages()
	for _, typ := range []string{ctlbus.TypeDrain, ctlbus.TypeHeartbeat} {
		if ours.Destructive(typ) != theirs.Destructive(typ) {
			t.Errorf("%s: destructive %v here, %v in controller", typ, ours.Destructive(typ), theirs.Destructive(typ))
		}
	}
	if !ours.Destructive(sitterbus.TypeControl) || ours.Destructive(sitterbus.TypeTail) || ours.Destructive(sitterbus.TypeStatus) || ours.Destructive(ping.Type) {
		t.Error("only drain and control may require a signature")
	}
	if sitterbus.Component("i-1") != ctlbus.SitterComponent("i-1") {
		t.Error("component name differs from the controller's")
	}
}

func envelopeJSON(t testing.TB, typ string, body any) []byte {
	t.Helper()
	env, err := envelope.NewEnvelope(typ, 1, "r", "test", body, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeCommands(t *testing.T) {
	raw := func(s string) []byte { return []byte(s) }
	cases := []struct {
		name string
		data []byte
		want string // "" = accepted
	}{
		{"control", envelopeJSON(t, sitterbus.TypeControl, sitterbus.ControlBody{Action: "restart", Task: "w"}), ""},
		{"control bad action", envelopeJSON(t, sitterbus.TypeControl, sitterbus.ControlBody{Action: "explode", Task: "w"}), `"sitter.control" v1: field "action": "explode" is not one of`},
		{"control no task", envelopeJSON(t, sitterbus.TypeControl, sitterbus.ControlBody{Action: "stop"}), `field "task": missing`},
		{"tail", envelopeJSON(t, sitterbus.TypeTail, sitterbus.TailBody{Task: "w", Lines: 5}), ""},
		{"tail too many lines", envelopeJSON(t, sitterbus.TypeTail, sitterbus.TailBody{Task: "w", Lines: 1 << 20}), `field "lines": want 0..10000`},
		{"tail negative", envelopeJSON(t, sitterbus.TypeTail, map[string]any{"task": "w", "lines": -1}), `field "lines"`},
		{"tail unknown field", envelopeJSON(t, sitterbus.TypeTail, map[string]any{"task": "w", "n": 3}), `field "n": unknown field`},
		{"status", envelopeJSON(t, sitterbus.TypeStatus, sitterbus.StatusBody{}), ""},
		{"drain", envelopeJSON(t, ctlbus.TypeDrain, ctlbus.DrainBody{InstanceID: "i", Job: "j"}), ""},
		{"drain no instance", envelopeJSON(t, ctlbus.TypeDrain, ctlbus.DrainBody{Job: "j"}), `"sitter.drain" v1: field "instance_id": missing`},
		{"ping", envelopeJSON(t, ping.Type, ping.Request{}), ""},
		{"unknown type", envelopeJSON(t, "sitter.explode", map[string]any{}), `"sitter.explode": unknown type`},
		{"not json", raw("drain now"), "bad JSON"},
		{"wrong body type", raw(`{"type":"sitter.tail","version":1,"id":"x","run":"r","time":"2026-01-01T00:00:00Z","sender":"s","body":{"task":7}}`), `field "task": want string`},
	}
	reg := sitterbus.Messages()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := reg.Decode(c.data, amqpbus.MaxMessageSize)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// FuzzDecodeCommand: no bytes on the command queue may panic the decoder,
// and anything accepted is one of the registered types.
func FuzzDecodeCommand(f *testing.F) {
	f.Add(envelopeJSON(f, sitterbus.TypeControl, sitterbus.ControlBody{Action: "stop", Task: "w"}))
	f.Add(envelopeJSON(f, sitterbus.TypeTail, sitterbus.TailBody{Task: "w"}))
	f.Add(envelopeJSON(f, ctlbus.TypeDrain, ctlbus.DrainBody{InstanceID: "i", Job: "j"}))
	f.Add([]byte(`{"type":"sitter.status","version":1}`))
	reg := sitterbus.Messages()
	f.Fuzz(func(t *testing.T, data []byte) {
		env, body, err := reg.Decode(data, amqpbus.MaxMessageSize)
		if err != nil {
			var de *envelope.DecodeError
			if !errors.As(err, &de) {
				t.Errorf("error is not a DecodeError: %v", err)
			}
			return
		}
		if body == nil || env.Type == "" {
			t.Errorf("accepted %q with nil body", env.Type)
		}
	})
}

func TestDecodeReply(t *testing.T) {
	reg := sitterbus.Messages()
	r, err := sitterbus.DecodeReply(reg, envelopeJSON(t, sitterbus.TypeReply, sitterbus.Reply{Error: "no such task"}))
	if err != nil || r.Error != "no such task" {
		t.Errorf("reply %+v, %v", r, err)
	}
	if _, err := sitterbus.DecodeReply(reg, envelopeJSON(t, sitterbus.TypeStatus, sitterbus.StatusBody{})); err == nil || !strings.Contains(err.Error(), `is not "sitter.reply"`) {
		t.Errorf("status decoded as reply: %v", err)
	}
}

// fakeSitter answers control requests from a table of task states.
type fakeSitter struct {
	mu     sync.Mutex
	states map[string]sitter.TaskState
	order  []string
	calls  []string
	// drainFails makes drain of these tasks fail, and moves them to the
	// given state first (a run that ended just before the drain).
	drainFails map[string]sitter.TaskState
}

func newFake(tasks ...any) *fakeSitter {
	f := &fakeSitter{states: map[string]sitter.TaskState{}, drainFails: map[string]sitter.TaskState{}}
	for i := 0; i+1 < len(tasks); i += 2 {
		name := tasks[i].(string)
		f.states[name] = tasks[i+1].(sitter.TaskState)
		f.order = append(f.order, name)
	}
	return f
}

func (f *fakeSitter) Handle(_ context.Context, req sitter.ControlRequest) sitter.ControlResponse {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.Op != "status" {
		f.calls = append(f.calls, req.Op+" "+req.Task)
	}
	switch req.Op {
	case "status":
		st := sitter.Status{LimitMode: "polling"}
		for _, n := range f.order {
			st.Tasks = append(st.Tasks, sitter.TaskStatus{Name: n, State: f.states[n]})
		}
		return sitter.ControlResponse{OK: true, Status: &st}
	case "tail":
		return sitter.ControlResponse{OK: true, Tail: &sitter.LogTail{Stdout: []string{"line"}}}
	}
	if _, ok := f.states[req.Task]; !ok {
		return sitter.ControlResponse{Error: req.Op + " task " + req.Task + ": no such task"}
	}
	switch req.Op {
	case "drain":
		if s, ok := f.drainFails[req.Task]; ok {
			f.states[req.Task] = s
			return sitter.ControlResponse{Error: "drain task " + req.Task + ": not running"}
		}
		f.states[req.Task] = sitter.StateExited
	case "stop":
		f.states[req.Task] = sitter.StateStopped
	}
	return sitter.ControlResponse{OK: true}
}

func TestDrain(t *testing.T) {
	cases := []struct {
		name        string
		fake        *fakeSitter
		wantCalls   []string
		wantDrained []string
		wantStopped []string
		wantErr     string
	}{
		{name: "running task is drained",
			fake: newFake("w", sitter.StateRunning), wantCalls: []string{"drain w"}, wantDrained: []string{"w"}},
		{name: "back-off task is stopped so it cannot start again",
			fake: newFake("w", sitter.StateBackoff), wantCalls: []string{"stop w"}, wantStopped: []string{"w"}},
		{name: "finished tasks are left alone",
			fake: newFake("a", sitter.StateExited, "b", sitter.StateFailed, "c", sitter.StateStopped)},
		{name: "run ended just before the drain: stopped instead",
			fake: func() *fakeSitter {
				f := newFake("w", sitter.StateRunning)
				f.drainFails["w"] = sitter.StateBackoff
				return f
			}(), wantCalls: []string{"drain w", "stop w"}, wantStopped: []string{"w"}},
		{name: "drain failing on a running task is reported",
			fake: func() *fakeSitter {
				f := newFake("w", sitter.StateRunning, "x", sitter.StateRunning)
				f.drainFails["w"] = sitter.StateRunning
				return f
			}(), wantCalls: []string{"drain w", "drain x"}, wantDrained: []string{"x"}, wantErr: "drain w: drain task w: not running"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := sitterbus.Drain(context.Background(), c.fake)
			if !slices.Equal(c.fake.calls, c.wantCalls) {
				t.Errorf("calls %q, want %q", c.fake.calls, c.wantCalls)
			}
			if !slices.Equal(r.Drained, c.wantDrained) || !slices.Equal(r.Stopped, c.wantStopped) {
				t.Errorf("drained %q stopped %q, want %q and %q", r.Drained, r.Stopped, c.wantDrained, c.wantStopped)
			}
			if (c.wantErr == "") != (r.Error == "") || !strings.Contains(r.Error, c.wantErr) {
				t.Errorf("error %q, want %q", r.Error, c.wantErr)
			}
		})
	}
}

func TestHandle(t *testing.T) {
	srv := &sitterbus.Server{InstanceID: "i-1", Job: "crunch", Sitter: newFake("w", sitter.StateRunning)}
	env := envelope.Envelope{Type: "x"}
	cases := []struct {
		name       string
		body       any
		wantReject bool
		check      func(sitterbus.Reply) bool
	}{
		{"drain for this instance", &ctlbus.DrainBody{InstanceID: "i-1", Job: "crunch"}, false,
			func(r sitterbus.Reply) bool { return slices.Equal(r.Drained, []string{"w"}) }},
		{"drain for another instance", &ctlbus.DrainBody{InstanceID: "i-2", Job: "crunch"}, true, nil},
		{"drain for another job", &ctlbus.DrainBody{InstanceID: "i-1", Job: "web"}, true, nil},
		{"control unknown task", &sitterbus.ControlBody{Action: "stop", Task: "nope"}, false,
			func(r sitterbus.Reply) bool { return strings.Contains(r.Error, "no such task") }},
		{"tail", &sitterbus.TailBody{Task: "w"}, false,
			func(r sitterbus.Reply) bool { return r.Tail != nil && r.Tail.Stdout[0] == "line" }},
		{"status", &sitterbus.StatusBody{}, false,
			func(r sitterbus.Reply) bool { return r.Status != nil && len(r.Status.Tasks) == 1 }},
		{"heartbeat is not a command", &ctlbus.HeartbeatBody{}, true, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := srv.Handle(context.Background(), env, c.body)
			if c.wantReject {
				if !errors.Is(err, amqpbus.ErrReject) {
					t.Fatalf("err %v, want ErrReject", err)
				}
				return
			}
			if err != nil || !c.check(r) {
				t.Errorf("reply %+v, err %v", r, err)
			}
		})
	}
}

// fakeBus records publishes; connected and block control its behaviour.
type fakeBus struct {
	mu        sync.Mutex
	connected bool
	block     bool
	keys      []string
	envs      []envelope.Envelope
}

func (b *fakeBus) Run() string { return "r" }
func (b *fakeBus) Connected() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.connected
}
func (b *fakeBus) Publish(ctx context.Context, key string, env envelope.Envelope) error {
	b.mu.Lock()
	block := b.block
	b.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.keys, b.envs = append(b.keys, key), append(b.envs, env)
	return nil
}

func TestSink(t *testing.T) {
	hb := sitter.Heartbeat{InstanceID: "i-1", Job: "crunch", Host: "h", Time: time.Now(),
		Tasks: []sitter.TaskStatus{{Name: "w", State: sitter.StateRunning}}}
	ctx := context.Background()

	bus := &fakeBus{connected: true}
	sink := &sitterbus.Sink{Bus: bus, Sender: "sitter.i-1"}
	if err := sink.SendHeartbeat(ctx, hb); err != nil {
		t.Fatal(err)
	}
	if bus.keys[0] != ctlbus.HeartbeatKey("crunch", "i-1") || bus.envs[0].Type != ctlbus.TypeHeartbeat {
		t.Errorf("published %q as %q", bus.envs[0].Type, bus.keys[0])
	}
	// What the controller decodes is what was sent.
	raw, _ := json.Marshal(bus.envs[0])
	got, err := ctlbus.DecodeHeartbeat(ctlbus.Messages(), raw)
	if err != nil || got.InstanceID != "i-1" || got.Tasks[0].State != sitter.StateRunning {
		t.Errorf("controller decoded %+v, %v", got, err)
	}

	// Disconnected: dropped at once, not queued.
	bus.connected = false
	if err := sink.SendHeartbeat(ctx, hb); !errors.Is(err, sitterbus.ErrDisconnected) {
		t.Errorf("disconnected: %v, want ErrDisconnected", err)
	}
	if len(bus.envs) != 1 {
		t.Errorf("%d publishes, want the dropped beat not sent", len(bus.envs))
	}

	// Connected but the broker never confirms: the sink gives up after
	// its timeout instead of holding the heartbeat loop.
	bus.connected, bus.block = true, true
	sink.Timeout = 50 * time.Millisecond
	if err := sink.SendHeartbeat(ctx, hb); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stalled broker: %v, want DeadlineExceeded", err)
	}

	if err := sink.SendHeartbeat(ctx, sitter.Heartbeat{InstanceID: "i-1"}); err == nil || !strings.Contains(err.Error(), "job") {
		t.Errorf("heartbeat without job: %v", err)
	}
}

// transientBus is a fakeBus that can also publish without confirms.
type transientBus struct {
	fakeBus
	transient int
}

func (b *transientBus) PublishTransient(ctx context.Context, key string, env envelope.Envelope) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.transient++
	b.keys, b.envs = append(b.keys, key), append(b.envs, env)
	return nil
}

// The simulator's sink publishes without waiting for confirms: a broker
// slow to confirm (here: never) does not cost it the beat, which goes out
// as the same message under the same routing key. A sink not asking for
// that keeps waiting, as a real sitter's does.
func TestSinkUnconfirmed(t *testing.T) {
	hb := sitter.Heartbeat{InstanceID: "i-1", Job: "crunch", Host: "h", Time: time.Now(),
		Tasks: []sitter.TaskStatus{{Name: "w", State: sitter.StateRunning}}}
	ctx := context.Background()
	bus := &transientBus{fakeBus: fakeBus{connected: true, block: true}}
	sink := &sitterbus.Sink{Bus: bus, Sender: "sim", Timeout: 50 * time.Millisecond, Unconfirmed: true}
	for range 3 {
		if err := sink.SendHeartbeat(ctx, hb); err != nil {
			t.Fatalf("unconfirmed heartbeat with a broker that never confirms: %v", err)
		}
	}
	if bus.transient != 3 || bus.keys[0] != ctlbus.HeartbeatKey("crunch", "i-1") {
		t.Fatalf("%d transient publishes as %q, want 3 as %q", bus.transient, bus.keys, ctlbus.HeartbeatKey("crunch", "i-1"))
	}
	raw, _ := json.Marshal(bus.envs[0])
	if got, err := ctlbus.DecodeHeartbeat(ctlbus.Messages(), raw); err != nil || got.InstanceID != "i-1" {
		t.Errorf("controller decoded %+v, %v", got, err)
	}
	bus.connected = false
	if err := sink.SendHeartbeat(ctx, hb); !errors.Is(err, sitterbus.ErrDisconnected) {
		t.Errorf("disconnected: %v, want ErrDisconnected", err)
	}

	bus.connected = true
	sink.Unconfirmed = false
	if err := sink.SendHeartbeat(ctx, hb); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("confirmed sink on a stalled broker: %v, want DeadlineExceeded", err)
	}
}

// The fuzz seed corpus lives in testdata/fuzz; make sure it is there so
// `go test` replays it.
func TestFuzzCorpusPresent(t *testing.T) {
	for _, fz := range []string{"FuzzDecodeCommand", "FuzzParseSpec"} {
		ents, err := os.ReadDir(filepath.Join("testdata", "fuzz", fz))
		if err != nil || len(ents) == 0 {
			t.Errorf("no seed corpus for %s: %v", fz, err)
		}
	}
}
