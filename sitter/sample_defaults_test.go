package sitter

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestExplicitZeroDuration: "0s" in a tasks file is a value, not a missing
// key. backoff_initial = "0s" restarts at once (the restart-latency target
// is for zero back-off); an absent key still gets the 1 s default.
func TestExplicitZeroDuration(t *testing.T) {
	cases := []struct {
		name, toml  string
		wantInitial time.Duration
		wantMax     time.Duration
		wantDelay   time.Duration // first restart after a crash
	}{
		{"unset", ``, DefaultBackoffInitial, DefaultBackoffMax, DefaultBackoffInitial},
		{"zero", `backoff_initial = "0s"`, 0, DefaultBackoffMax, 0},
		{"zero without unit", `backoff_initial = "0"`, 0, DefaultBackoffMax, 0},
		{"zero initial and max", "backoff_initial = \"0s\"\nbackoff_max = \"0s\"", 0, 0, 0},
		{"zero max clamps to initial", "backoff_initial = \"2s\"\nbackoff_max = \"0s\"", 2 * time.Second, 2 * time.Second, 2 * time.Second},
		{"set", `backoff_initial = "250ms"`, 250 * time.Millisecond, DefaultBackoffMax, 250 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := "[[task]]\nname = \"w\"\ncommand = [\"true\"]\nrestart = \"always\"\n" + c.toml + "\n"
			f, err := ParseFile("tasks.toml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			task := f.Tasks[0].WithDefaults()
			if task.BackoffInitial.D() != c.wantInitial || task.BackoffMax.D() != c.wantMax {
				t.Fatalf("backoff_initial %s, backoff_max %s; want %s, %s", task.BackoffInitial.D(), task.BackoffMax.D(), c.wantInitial, c.wantMax)
			}
			// Defaults are applied more than once on some paths (AddTask
			// and callers); the explicit zero must survive that.
			if again := task.WithDefaults(); again.BackoffInitial != task.BackoffInitial || again.BackoffMax != task.BackoffMax {
				t.Errorf("WithDefaults is not idempotent: %v/%v then %v/%v", task.BackoffInitial, task.BackoffMax, again.BackoffInitial, again.BackoffMax)
			}
			if err := task.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			t0 := time.Unix(0, 0)
			dec, _ := Decide(task, History{}, RunEnd{Started: t0, Ended: t0.Add(time.Millisecond), ExitCode: 1})
			if dec.Outcome != OutcomeRestart || dec.Delay != c.wantDelay {
				t.Errorf("decision = %+v, want restart after %s", dec, c.wantDelay)
			}
			// JSON (the control socket, heartbeats) keeps the difference.
			b, err := json.Marshal(task)
			if err != nil {
				t.Fatal(err)
			}
			var back Task
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if back.BackoffInitial != task.BackoffInitial {
				t.Errorf("JSON round trip: %v became %v (%s)", task.BackoffInitial, back.BackoffInitial, b)
			}
		})
	}
}

func TestZeroDurationValue(t *testing.T) {
	if ZeroDuration.D() != 0 || !ZeroDuration.IsSet() || Duration(0).IsSet() {
		t.Errorf("ZeroDuration.D() = %s, IsSet %v; Duration(0).IsSet %v", ZeroDuration.D(), ZeroDuration.IsSet(), Duration(0).IsSet())
	}
	if b, _ := ZeroDuration.MarshalText(); string(b) != "0s" {
		t.Errorf("ZeroDuration marshals as %q, want 0s", b)
	}
	base := Task{Name: "w", Command: []string{"true"}}
	neg := base
	neg.StopGrace = Duration(-time.Second)
	if err := neg.Validate(); err == nil || !strings.Contains(err.Error(), "stop_grace: must not be negative") {
		t.Errorf("negative stop_grace: %v", err)
	}
	hc := base
	hc.HealthCommand, hc.HealthInterval = []string{"true"}, ZeroDuration
	if err := hc.Validate(); err == nil || !strings.Contains(err.Error(), "health_interval: must be > 0") {
		t.Errorf("zero health_interval with a health_command: %v", err)
	}
	_, err := ParseFile("tasks.toml", []byte("sample_interval = \"0s\"\n[[task]]\nname = \"w\"\ncommand = [\"true\"]\n"))
	if err != nil {
		t.Errorf("sample_interval = 0s (use the default): %v", err)
	}
}
