package decision

import (
	"encoding/json"
	"maps"
	"reflect"
	"testing"
	"time"
)

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		engine Engine
		cfg    map[string]any
		want   string
	}{
		{NewQueueLen(), map[string]any{}, "queuelen: high_water: required"},
		{NewQueueLen(), map[string]any{"high_water": 10}, "queuelen: low_water: required"},
		{NewQueueLen(), map[string]any{"high_water": 10, "low_water": 50}, "queuelen: low_water: 50 must be below high_water 10"},
		{NewQueueLen(), map[string]any{"high_water": 10, "low_water": 10}, "queuelen: low_water: 10 must be below high_water 10"},
		{NewQueueLen(), map[string]any{"high_water": "many", "low_water": 1}, `queuelen: high_water: "many" is not an integer`},
		{NewQueueLen(), map[string]any{"high_water": 10.5, "low_water": 1}, "queuelen: high_water: 10.5 is not an integer"},
		{NewQueueLen(), map[string]any{"high_water": true, "low_water": 1}, "queuelen: high_water: want an integer, got bool"},
		{NewQueueLen(), map[string]any{"high_water": 10, "low_water": -1}, "queuelen: low_water: -1 must not be negative"},
		{NewQueueLen(), map[string]any{"high_water": 10, "low_water": 1, "min_instances": -1}, "queuelen: min_instances: -1 must be at least 0"},
		{NewQueueLen(), map[string]any{"high_water": 10, "low_water": 1, "max_instances": 0}, "queuelen: max_instances: 0 must be at least 1"},
		{NewQueueLen(), map[string]any{"high_water": 10, "low_water": 1, "min_instances": 3, "max_instances": 2}, "queuelen: max_instances: 2 must not be below min_instances 3"},
		{NewQueueLen(), map[string]any{"high_water": 10, "low_water": 1, "cooldown": "soon"}, `queuelen: cooldown: "soon" is not a duration like "30s" or "5m"`},
		{NewQueueLen(), map[string]any{"high_water": 10, "low_water": 1, "cooldown": "-1s"}, "queuelen: cooldown: -1s must not be negative"},
		{NewQueueLen(), map[string]any{"high_water": 10, "low_water": 1, "mode": "fast"}, `queuelen: mode: "fast" is not "step" or "proportional"`},
		{NewQueueLen(), map[string]any{"high_water": 10, "low_water": 1, "mode": "proportional", "max_instances": 3}, "queuelen: per_worker: required when mode is proportional"},
		{NewQueueLen(), map[string]any{"high_water": 10, "low_water": 1, "mode": "proportional", "per_worker": 5}, "queuelen: max_instances: required when mode is proportional"},
		{NewQueueLen(), map[string]any{"high_water": 10, "low_water": 1, "hihg_water": 3}, "queuelen: hihg_water: unknown key"},
		{NewQueueLen(), map[string]any{"high_water": 10, "low_water": 1, "vars": map[string]any{"x": []any{}}}, "queuelen: vars.x: want a string, got []interface {}"},
		{NewNPreserving(), map[string]any{"n": 2.5}, "npreserving: n: 2.5 is not an integer"},
		{NewNPreserving(), map[string]any{"n": -1}, "npreserving: n: -1 must not be negative"},
		{NewNPreserving(), map[string]any{"n": 1, "preserve_n": 1}, "npreserving: preserve_n: set either n or preserve_n, not both"},
		{NewNPreserving(), map[string]any{"n": 1, "drain_timeout": []any{}}, `npreserving: drain_timeout: want a number, got []interface {} (want a duration like "30s" or a number of seconds)`},
		{NewNPreserving(), map[string]any{"n": 1, "site": 3}, "npreserving: site: want a string, got int"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			before := tc.engine.Config()
			err := tc.engine.Configure(tc.cfg)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Configure(%v) error = %v, want %q", tc.cfg, err, tc.want)
			}
			if after := tc.engine.Config(); !reflect.DeepEqual(before, after) {
				t.Fatalf("failed Configure changed config: %v -> %v", before, after)
			}
		})
	}
}

func TestConfigValueForms(t *testing.T) {
	// TOML gives int64, JSON float64 or json.Number, EPU messages strings.
	for _, v := range []any{int64(7), 7.0, json.Number("7"), "7", int32(7), uint(7)} {
		c, err := ParseNPreservingConfig(map[string]any{"n": v, "drain_timeout": 90})
		if err != nil || *c.N != 7 || c.DrainTimeout != 90*time.Second {
			t.Errorf("n=%#v: cfg %+v err %v", v, c, err)
		}
	}
	for in, want := range map[any]time.Duration{"90s": 90 * time.Second, 1.5: 1500 * time.Millisecond, 2 * time.Minute: 2 * time.Minute, json.Number("3"): 3 * time.Second} {
		c, err := ParseNPreservingConfig(map[string]any{"drain_timeout": in})
		if err != nil || c.DrainTimeout != want {
			t.Errorf("drain_timeout=%#v: got %v err %v", in, c.DrainTimeout, err)
		}
	}
}

func TestConfigRoundTrip(t *testing.T) {
	cases := []struct {
		e   Engine
		cfg map[string]any
	}{
		{NewNPreserving(), map[string]any{"n": 4, "drain_timeout": "2m", "deployable": "w", "vars": map[string]any{"a": "b"}}},
		{NewQueueLen(), map[string]any{"high_water": 100, "low_water": 10, "min_instances": 1, "max_instances": 6, "cooldown": 30, "mode": "proportional", "per_worker": 20, "site": "x"}},
	}
	for _, tc := range cases {
		if err := tc.e.Configure(tc.cfg); err != nil {
			t.Fatal(err)
		}
		first := tc.e.Config()
		if err := tc.e.Configure(first); err != nil {
			t.Fatalf("%s: Configure(Config()) = %v", tc.e.Name(), err)
		}
		if second := tc.e.Config(); !reflect.DeepEqual(first, second) {
			t.Fatalf("%s: round trip changed config: %v -> %v", tc.e.Name(), first, second)
		}
		// Config hands out a copy.
		first["injected"] = 1
		if _, ok := tc.e.Config()["injected"]; ok {
			t.Fatalf("%s: Config returned the engine's own map", tc.e.Name())
		}
	}
}

func TestHealthConfig(t *testing.T) {
	hc, err := ParseHealthConfig(map[string]any{"heartbeat_interval": "2s"})
	if err != nil {
		t.Fatal(err)
	}
	want := HealthConfig{HeartbeatInterval: 2 * time.Second, MissingTimeout: 6 * time.Second, BootTimeout: time.Minute, ZombieGrace: 6 * time.Second, MassSilencePercent: DefaultMassSilence}
	if hc != want {
		t.Fatalf("got %+v want %+v", hc, want)
	}
	if _, err := ParseHealthConfig(map[string]any{"heartbeat_interval": "2s", "missing_timeout": "1s"}); err == nil ||
		err.Error() != "health: missing_timeout: 1s must not be below heartbeat_interval 2s" {
		t.Fatalf("err = %v", err)
	}
	if _, err := ParseHealthConfig(map[string]any{"boot": "1s"}); err == nil || err.Error() != "health: boot: unknown key" {
		t.Fatalf("err = %v", err)
	}
}

// FuzzConfigure feeds arbitrary JSON objects to every built-in engine's
// Configure and Reconfigure. They must never panic; accepted configurations
// must round-trip and produce sane decisions.
func FuzzConfigure(f *testing.F) {
	for _, seed := range []string{
		`{"n":3}`, `{"preserve_n":"2","drain_timeout":"1m"}`, `{"n":-1}`,
		`{"high_water":50,"low_water":10}`, `{"high_water":50,"low_water":60}`,
		`{"high_water":1e300,"low_water":-1e300}`, `{"high_water":100,"low_water":1,"mode":"proportional","per_worker":3,"max_instances":5}`,
		`{"high_water":"9223372036854775807","low_water":0,"cooldown":1e30}`, `{"vars":{"a":1,"b":[1]}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			return
		}
		s := Snapshot{Now: t0, Instances: insts(t, "a running ok", "b running missing", "c pending unknown", "d running ok busy drain=1m"),
			Depth: depth(77), Source: SourceMgmtAPI, PendingLaunches: 1}
		for _, e := range []Engine{NewNPreserving(), NewQueueLen()} {
			before := e.Config()
			if err := e.Configure(maps.Clone(m)); err != nil {
				if after := e.Config(); !reflect.DeepEqual(before, after) {
					t.Fatalf("%s: failed Configure changed config", e.Name())
				}
			} else {
				c := e.Config()
				if err := e.Configure(c); err != nil {
					t.Fatalf("%s: Config() %v does not reconfigure: %v", e.Name(), c, err)
				}
			}
			_ = e.Reconfigure(maps.Clone(m))
			d := e.Decide(s)
			if d.Target < 0 {
				t.Fatalf("%s: negative target %d", e.Name(), d.Target)
			}
			for _, a := range d.Actions {
				if l, ok := a.(Launch); ok && l.Count < 1 {
					t.Fatalf("%s: launch of %d", e.Name(), l.Count)
				}
			}
		}
	})
}

// TestConcurrentDecideAndReconfigure is for the race detector: a controller
// may reconfigure from its message loop while a decision runs.
func TestConcurrentDecideAndReconfigure(t *testing.T) {
	e := NewQueueLen()
	if err := e.Configure(map[string]any{"high_water": 100, "low_water": 10}); err != nil {
		t.Fatal(err)
	}
	s := Snapshot{Now: t0, Instances: insts(t, "a running ok"), Depth: depth(500), Source: SourceMgmtAPI}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			_ = e.Reconfigure(map[string]any{"max_instances": 1 + i%5})
		}
	}()
	for range 200 {
		if d := e.Decide(s); d.Target < 1 || d.Target > 5 {
			t.Fatalf("target %d outside every configured max", d.Target)
		}
	}
	<-done
}
