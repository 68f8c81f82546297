package decision

import (
	"strings"
	"testing"
	"time"
)

// epuConfig is the EPU test's bounded-engine setup: high 50, low 10.
func epuConfig() QueueLenConfig {
	return QueueLenConfig{HighWater: 50, LowWater: 10, Mode: ModeStep, DrainTimeout: DefaultDrainTimeout}
}

func TestQueueLenStep(t *testing.T) {
	running := func(ids ...string) []string {
		out := make([]string, len(ids))
		for i, id := range ids {
			out[i] = id + " running ok"
		}
		return out
	}
	cases := []struct {
		name      string
		cfg       func(*QueueLenConfig)
		instances []string
		pending   int
		depth     *int
		source    DepthSource
		lastScale time.Duration // ago; 0 = never
		want      string
		scaled    bool
		reason    []string
	}{
		{name: "exactly high_water does not move", instances: running("a", "b"), depth: depth(50),
			want: "none", reason: []string{"within [low_water 10, high_water 50]: hold at 2"}},
		{name: "one above high_water grows by one", instances: running("a", "b"), depth: depth(51),
			want: "launch 1", scaled: true, reason: []string{"queue depth 51 (ready+unacked, mgmt api) > high_water 50: +1 (2 -> 3)"}},
		{name: "far above high_water still grows by one", instances: running("a", "b"), depth: depth(5000),
			want: "launch 1", scaled: true},
		{name: "exactly low_water does not move", instances: running("a", "b"), depth: depth(10),
			want: "none"},
		{name: "below low_water shrinks by one", instances: running("a", "b", "c"), depth: depth(9),
			want: "drain[c]", scaled: true, reason: []string{"< low_water 10: -1 (3 -> 2, min 0)"}},
		{name: "min_instances is respected", cfg: func(c *QueueLenConfig) { c.Min = 3 },
			instances: running("a", "b", "c"), depth: depth(0),
			want: "none", reason: []string{"at min_instances 3: hold at 3"}},
		{name: "min_instances is filled even with nothing queued", cfg: func(c *QueueLenConfig) { c.Min = 2 },
			depth: depth(0), want: "launch 2", scaled: true, reason: []string{"raise to min_instances 2"}},
		{name: "never to zero while messages remain", instances: running("a"), depth: depth(3),
			want: "none", reason: []string{"messages remain"}},
		{name: "to zero once the queue is empty", instances: running("a"), depth: depth(0),
			want: "drain[a]", scaled: true},
		{name: "empty pool and empty queue holds", depth: depth(0), want: "none"},
		{name: "backlog below low_water with no workers starts one", depth: depth(3),
			want: "launch 1", scaled: true, reason: []string{"with no workers: +1 (0 -> 1)"}},
		{name: "pending instance blocks scaling", instances: append(running("a"), "b pending unknown"), depth: depth(500),
			want: "none", reason: []string{"1 launches pending, no scaling"}},
		{name: "pending launch blocks scaling down too", instances: running("a", "b", "c"), pending: 1, depth: depth(0),
			want: "none"},
		{name: "min is filled while launches are pending", cfg: func(c *QueueLenConfig) { c.Min = 3 },
			instances: append(running("a"), "b started unknown"), depth: depth(100),
			want: "launch 1", scaled: true},
		{name: "max_instances caps growth", cfg: func(c *QueueLenConfig) { c.Max = 2 },
			instances: running("a", "b"), depth: depth(100),
			want: "none", reason: []string{"at max_instances 2"}},
		{name: "lowered max trims the pool", cfg: func(c *QueueLenConfig) { c.Max = 1 },
			instances: running("a", "b"), depth: depth(30),
			want: "drain[b]", scaled: true, reason: []string{"lower to max_instances 1"}},
		{name: "unhealthy worker is replaced, not counted as a scale", instances: []string{"a running ok", "b running missing"}, depth: depth(30),
			want: "terminate[b] launch 1", scaled: false, reason: []string{"hold at 2", "replace 1 unhealthy"}},
		{name: "replacement and growth combine", instances: []string{"a running ok", "b running zombie"}, depth: depth(60),
			want: "terminate[b] launch 2", scaled: true},
		{name: "metric unavailable holds the size", instances: running("a", "b"), depth: nil, source: SourceNone,
			want: "none", reason: []string{"queue depth unavailable: hold at 2"}},
		{name: "metric unavailable still replaces dead workers", instances: []string{"a running ok", "b running process_error"}, depth: nil, source: SourceNone,
			want: "terminate[b] launch 1", reason: []string{"unavailable"}},
		{name: "depth without a source is unavailable", instances: running("a"), depth: depth(0), source: SourceNone,
			want: "none"},
		{name: "unknown source is not trusted", instances: running("a", "b"), depth: depth(0), source: "guess",
			want: "none", reason: []string{`unknown source "guess"`}},
		{name: "negative depth is not trusted", instances: running("a", "b"), depth: depth(-1),
			want: "none", reason: []string{"invalid"}},
		{name: "passive declare counts ready only", instances: running("a"), depth: depth(60), source: SourcePassiveDeclare,
			want: "launch 1", scaled: true, reason: []string{"(ready only, passive declare)"}},
		{name: "cooldown holds", cfg: func(c *QueueLenConfig) { c.Cooldown = 5 * time.Minute },
			instances: running("a"), depth: depth(100), lastScale: time.Minute,
			want: "none", reason: []string{"cooldown 5m0s, 4m0s left"}},
		{name: "cooldown left is shown in whole seconds, rounded up", cfg: func(c *QueueLenConfig) { c.Cooldown = 2 * time.Second },
			instances: running("a"), depth: depth(100), lastScale: 1868 * time.Millisecond,
			want: "none", reason: []string{"cooldown 2s, 1s left"}},
		{name: "cooldown over", cfg: func(c *QueueLenConfig) { c.Cooldown = 5 * time.Minute },
			instances: running("a"), depth: depth(100), lastScale: 5 * time.Minute,
			want: "launch 1", scaled: true},
		{name: "cooldown never delays the first worker for a backlog", cfg: func(c *QueueLenConfig) { c.Cooldown = 5 * time.Minute },
			depth: depth(1), lastScale: time.Second, want: "launch 1", scaled: true},
		{name: "scale in drains busy and picks idle newest", instances: []string{"a running ok busy age=3h", "b running ok busy age=1h"}, depth: depth(0),
			want: "drain[b]", scaled: true},
		{name: "draining workers do not count", instances: []string{"a running ok", "b running ok busy drain=1m"}, depth: depth(30),
			want: "none", reason: []string{"hold at 1", "1 draining"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := epuConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			src := tc.source
			if src == "" && tc.depth != nil && tc.name != "depth without a source is unavailable" {
				src = SourceMgmtAPI
			}
			s := Snapshot{Now: t0, Instances: insts(t, tc.instances...), PendingLaunches: tc.pending, Depth: tc.depth, Source: src}
			if tc.lastScale > 0 {
				s.LastScaleAt = t0.Add(-tc.lastScale)
			}
			d := DecideQueueLen(cfg, s)
			if got := summary(d.Actions); got != tc.want {
				t.Errorf("actions = %s, want %s (reason %q)", got, tc.want, d.Reason)
			}
			if d.Scaled != tc.scaled {
				t.Errorf("scaled = %v, want %v (reason %q)", d.Scaled, tc.scaled, d.Reason)
			}
			checkReason(t, d.Reason, tc.reason...)
		})
	}
}

func TestQueueLenReasonFormat(t *testing.T) {
	cfg := QueueLenConfig{HighWater: 100, LowWater: 10, Max: 6, Mode: ModeStep, DrainTimeout: DefaultDrainTimeout}
	s := Snapshot{Now: t0, Instances: insts(t, "a running ok", "b running ok", "c running ok"), Depth: depth(240), Source: SourceMgmtAPI}
	d := DecideQueueLen(cfg, s)
	if want := "queue depth 240 (ready+unacked, mgmt api) > high_water 100: +1 (3 -> 4, max 6)"; d.Reason != want {
		t.Fatalf("reason = %q\nwant     %q", d.Reason, want)
	}
	if d.Target != 4 {
		t.Fatalf("target = %d", d.Target)
	}
}

func TestQueueLenProportional(t *testing.T) {
	base := QueueLenConfig{HighWater: 100, LowWater: 10, Mode: ModeProportional, PerWorker: 50, Max: 6, DrainTimeout: DefaultDrainTimeout}
	three := []string{"a running ok", "b running ok age=2h", "c running ok age=3h"}
	cases := []struct {
		name      string
		min       int
		instances []string
		depth     int
		want      string
		target    int
	}{
		{name: "ceil of depth over per_worker", instances: three, depth: 240, want: "launch 2", target: 5},
		{name: "exact multiple", instances: three, depth: 150, want: "none", target: 3},
		{name: "clamped to max", instances: three, depth: 100000, want: "launch 3", target: 6},
		{name: "one message keeps one worker", instances: three, depth: 1, want: "drain[a b]", target: 1},
		{name: "empty queue scales to zero when min is 0", instances: three, depth: 0, want: "drain[a b c]", target: 0},
		{name: "clamped to min", min: 2, instances: three, depth: 0, want: "drain[a]", target: 2},
		{name: "backlog with no workers", depth: 1, want: "launch 1", target: 1},
		{name: "pending counts toward desired", instances: []string{"a running ok", "b requested unknown"}, depth: 100, want: "none", target: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.Min = tc.min
			d := DecideQueueLen(cfg, Snapshot{Now: t0, Instances: insts(t, tc.instances...), Depth: depth(tc.depth), Source: SourceMgmtAPI})
			if got := summary(d.Actions); got != tc.want || d.Target != tc.target {
				t.Errorf("actions = %s target %d, want %s target %d (reason %q)", got, d.Target, tc.want, tc.target, d.Reason)
			}
			if !strings.Contains(d.Reason, "per_worker 50") {
				t.Errorf("reason %q does not show the calculation", d.Reason)
			}
		})
	}
}

func TestQueueLenUnconfigured(t *testing.T) {
	e := NewQueueLen()
	d := e.Decide(Snapshot{Now: t0, Instances: insts(t, "a running missing"), Depth: depth(1000), Source: SourceMgmtAPI})
	if len(d.Actions) != 0 || !strings.Contains(d.Reason, "not configured") {
		t.Fatalf("unconfigured queuelen decided %s (%q)", summary(d.Actions), d.Reason)
	}
	if len(e.Config()) != 0 {
		t.Fatalf("unconfigured config = %v", e.Config())
	}
}

func TestQueueLenReconfigureAtomic(t *testing.T) {
	e := NewQueueLen()
	if err := e.Configure(map[string]any{"high_water": 100, "low_water": 10, "max_instances": 4}); err != nil {
		t.Fatal(err)
	}
	before := e.Config()
	// low_water 200 alone would be fine against a later high_water, but
	// merged with the current high_water 100 it is invalid: nothing applies.
	err := e.Reconfigure(map[string]any{"low_water": 200, "max_instances": 8})
	if err == nil || err.Error() != "queuelen: low_water: 200 must be below high_water 100" {
		t.Fatalf("err = %v", err)
	}
	if after := e.Config(); after["max_instances"] != before["max_instances"] || after["low_water"] != 10 {
		t.Fatalf("bad reconfigure leaked: %v", after)
	}
	// Both marks moved together is valid.
	if err := e.Reconfigure(map[string]any{"low_water": 200, "high_water": 400}); err != nil {
		t.Fatal(err)
	}
	d := e.Decide(Snapshot{Now: t0, Instances: insts(t, "a running ok"), Depth: depth(300), Source: SourceMgmtAPI})
	if summary(d.Actions) != "none" {
		t.Fatalf("new marks not in force on next decide: %s (%q)", summary(d.Actions), d.Reason)
	}
}
