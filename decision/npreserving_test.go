package decision

import (
	"slices"
	"strings"
	"testing"
)

func TestNPreservingDecide(t *testing.T) {
	cases := []struct {
		name      string
		n         *int // nil: unconfigured
		instances []string
		pending   int // Snapshot.PendingLaunches
		want      string
		reason    []string
		stable    bool
	}{
		{name: "unconfigured does nothing even with dead workers", n: nil,
			instances: []string{"a running missing", "b running ok"},
			want:      "none", reason: []string{"not configured"}},
		{name: "explicit zero scales to zero", n: new(0),
			instances: []string{"a running ok", "b running ok age=1m"},
			want:      "drain[b a]", reason: []string{"n=0, have 2: -2 (2 -> 0)"}},
		{name: "empty pool launches n", n: new(3),
			want: "launch 3", reason: []string{"n=3, have 0: +3 (0 -> 3)"}},
		{name: "pending instances and launches count, never overshoot", n: new(3),
			instances: []string{"a running ok", "b pending unknown"}, pending: 1,
			want: "none", reason: []string{"have 3 (2 pending): hold"}},
		{name: "requested and started count", n: new(2),
			instances: []string{"a requested unknown", "b started unknown"},
			want:      "none"},
		{name: "missing worker is terminated and replaced", n: new(3),
			instances: []string{"a running ok", "b running ok", "c running missing"},
			want:      "terminate[c] launch 1", reason: []string{"+1 (2 -> 3)", "replace 1 unhealthy"}},
		{name: "process_error worker is terminated and replaced", n: new(1),
			instances: []string{"a running process_error"},
			want:      "terminate[a] launch 1"},
		{name: "zombie in terminating is terminated again without replacement", n: new(1),
			instances: []string{"a running ok", "z terminating zombie"},
			want:      "terminate[z]", reason: []string{"re-terminate 1 zombie"}, stable: false},
		{name: "terminating and terminated do not count", n: new(2),
			instances: []string{"a running ok", "b terminating unknown", "c terminated unknown", "d failed unknown"},
			want:      "launch 1"},
		{name: "scale in picks idle newest first and spares busy", n: new(1),
			instances: []string{"old running ok age=3h", "busy running ok busy age=1m", "new running ok age=2h"},
			want:      "drain[new old]", reason: []string{"-2 (3 -> 1)"}},
		{name: "scale in drains busy when no idle left", n: new(1),
			instances: []string{"a running ok busy age=3h", "b running ok busy age=1h", "c running ok age=2h"},
			want:      "drain[c] drain[b]"},
		{name: "scale in terminates workers not running yet, drains running idle ones", n: new(1),
			instances: []string{"a running ok age=3h", "b running ok age=2h", "c pending unknown age=1s"},
			want:      "terminate[c] drain[b]"},
		{name: "pending instances go first on scale in", n: new(1),
			instances: []string{"a running ok", "b requested unknown age=1s"},
			want:      "terminate[b]"},
		{name: "draining busy worker within timeout is left alone and not counted", n: new(1),
			instances: []string{"a running ok", "b running ok busy drain=1m"},
			want:      "none", reason: []string{"1 draining"}},
		{name: "draining worker that went idle is terminated", n: new(1),
			instances: []string{"a running ok", "b running ok drain=1m"},
			want:      "terminate[b]", reason: []string{"drained"}},
		{name: "draining worker past drain_timeout is terminated", n: new(1),
			instances: []string{"a running ok", "b running ok busy drain=5m"},
			want:      "terminate[b]"},
		{name: "draining worker that exited needs nothing", n: new(1),
			instances: []string{"a running ok", "b terminated unknown drain=1m"},
			want:      "none", stable: true},
		{name: "at n and all ok is stable", n: new(2),
			instances: []string{"a running ok", "b running ok"},
			want:      "none", stable: true},
		{name: "booting worker is not stable yet", n: new(1),
			instances: []string{"a running booting"},
			want:      "none", stable: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := NPreservingConfig{N: tc.n, DrainTimeout: DefaultDrainTimeout}
			s := Snapshot{Now: t0, Instances: insts(t, tc.instances...), PendingLaunches: tc.pending}
			d := DecideNPreserving(cfg, s)
			if got := summary(d.Actions); got != tc.want {
				t.Errorf("actions = %s, want %s (reason %q)", got, tc.want, d.Reason)
			}
			checkReason(t, d.Reason, tc.reason...)
			if d.Stable != tc.stable {
				t.Errorf("stable = %v, want %v", d.Stable, tc.stable)
			}
			if d.Engine != NPreservingName {
				t.Errorf("engine = %q", d.Engine)
			}
		})
	}
}

func TestNPreservingNeverOvershoots(t *testing.T) {
	// Every mix of in-flight states and pending launches below or at n
	// launches exactly the shortfall.
	states := []string{"requested", "pending", "started", "running"}
	for n := 0; n <= 4; n++ {
		for k := 0; k <= n; k++ {
			for pl := 0; k+pl <= n; pl++ {
				var descs []string
				for i := range k {
					descs = append(descs, string(rune('a'+i))+" "+states[i%len(states)]+" ok")
				}
				d := DecideNPreserving(NPreservingConfig{N: new(n), DrainTimeout: DefaultDrainTimeout},
					Snapshot{Now: t0, Instances: insts(t, descs...), PendingLaunches: pl})
				if got, want := launched(d.Actions), n-k-pl; got != want {
					t.Errorf("n=%d instances=%d pending=%d: launched %d, want %d", n, k, pl, got, want)
				}
			}
		}
	}
}

func TestNPreservingReconfigure(t *testing.T) {
	e := NewNPreserving()
	s := Snapshot{Now: t0, Instances: insts(t, "a running ok")}
	if d := e.Decide(s); len(d.Actions) != 0 {
		t.Fatalf("unconfigured engine acted: %s", summary(d.Actions))
	}
	if err := e.Configure(map[string]any{"n": 3, "deployable": "worker"}); err != nil {
		t.Fatal(err)
	}
	if got := summary(e.Decide(s).Actions); got != "launch 2" {
		t.Fatalf("n=3: %s", got)
	}
	if err := e.Reconfigure(map[string]any{"n": "1"}); err != nil {
		t.Fatal(err)
	}
	d := e.Decide(s)
	if got := summary(d.Actions); got != "none" {
		t.Fatalf("after reconfigure n=1: %s", got)
	}
	// A bad value is rejected and leaves n=1 and the untouched keys.
	err := e.Reconfigure(map[string]any{"n": -2})
	if err == nil || !strings.Contains(err.Error(), "npreserving: n: -2 must not be negative") {
		t.Fatalf("bad reconfigure: err = %v", err)
	}
	if got := e.Config(); got["n"] != 1 || got["deployable"] != "worker" {
		t.Fatalf("config after bad reconfigure = %v", got)
	}
	// Setting a key to nil reverts it to its default: n unset does nothing.
	if err := e.Reconfigure(map[string]any{"n": nil}); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.Config()["n"]; ok {
		t.Fatalf("n still set: %v", e.Config())
	}
	if d := e.Decide(Snapshot{Now: t0}); len(d.Actions) != 0 {
		t.Fatalf("n unset acted: %s", summary(d.Actions))
	}
}

func TestNPreservingLaunchCarriesSpec(t *testing.T) {
	e := NewNPreserving()
	err := e.Configure(map[string]any{"preserve_n": "1", "deployable": "w", "site": "ec2-east",
		"allocation": "small", "vars": map[string]any{"queue": "work", "replicas": int64(2)}})
	if err != nil {
		t.Fatal(err)
	}
	d := e.Decide(Snapshot{Now: t0})
	if len(d.Actions) != 1 {
		t.Fatalf("actions %s", summary(d.Actions))
	}
	l := d.Actions[0].(Launch)
	if l.Spec.Deployable != "w" || l.Spec.Site != "ec2-east" || l.Spec.Allocation != "small" ||
		l.Spec.Vars["queue"] != "work" || l.Spec.Vars["replicas"] != "2" {
		t.Fatalf("spec = %+v", l.Spec)
	}
	// The launch owns its vars: changing them must not leak into the engine.
	l.Spec.Vars["queue"] = "changed"
	if got := e.Decide(Snapshot{Now: t0}).Actions[0].(Launch).Spec.Vars["queue"]; got != "work" {
		t.Fatalf("engine vars changed through a decision: %q", got)
	}
}

func TestScaleInOrderIsDeterministic(t *testing.T) {
	// Same LaunchedAt everywhere: the ID breaks ties, so input order
	// does not matter.
	a := insts(t, "x running ok age=1h", "y running ok age=1h", "z running ok age=1h")
	b := slices.Clone(a)
	slices.Reverse(b)
	cfg := NPreservingConfig{N: new(1), DrainTimeout: DefaultDrainTimeout}
	da := DecideNPreserving(cfg, Snapshot{Now: t0, Instances: a})
	db := DecideNPreserving(cfg, Snapshot{Now: t0, Instances: b})
	if summary(da.Actions) != summary(db.Actions) || summary(da.Actions) != "drain[z y]" {
		t.Fatalf("order-dependent: %s vs %s", summary(da.Actions), summary(db.Actions))
	}
}
