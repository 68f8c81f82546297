package sitter

import (
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func intp(n int) *int    { return &n }
func boolp(b bool) *bool { return &b }

func TestBackoffGrowsCapsAndResets(t *testing.T) {
	task := Task{Name: "w", Command: []string{"x"}, Restart: RestartAlways, MaxRestarts: intp(-1),
		BackoffInitial: Duration(time.Second), BackoffMax: Duration(8 * time.Second),
		BackoffResetAfter: Duration(time.Minute)}.WithDefaults()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC))
	var h History
	// run lasts 1s, crashes, waits the back-off, runs again...
	crash := func() Decision {
		start := clock.Now()
		clock.Advance(time.Second)
		var d Decision
		d, h = Decide(task, h, RunEnd{Started: start, Ended: clock.Now(), ExitCode: 1})
		clock.Advance(d.Delay)
		return d
	}
	var got []time.Duration
	for range 6 {
		d := crash()
		if d.Outcome != OutcomeRestart || d.State != StateBackoff {
			t.Fatalf("decision %+v, want restart in backoff", d)
		}
		got = append(got, d.Delay)
	}
	want := []time.Duration{1, 2, 4, 8, 8, 8}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("delays = %v, want %v seconds", got, want)
		}
	}
	// A healthy run (>= backoff_reset_after) resets the back-off.
	start := clock.Now()
	clock.Advance(2 * time.Minute)
	d, _ := Decide(task, h, RunEnd{Started: start, Ended: clock.Now(), ExitCode: 1})
	if d.Delay != time.Second {
		t.Errorf("after a healthy run delay = %s, want reset to 1s", d.Delay)
	}
}

func TestDecideTable(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	short := RunEnd{Started: t0, Ended: t0.Add(time.Second)}
	fail := short
	fail.ExitCode = 3
	viol := short
	viol.ExitCode, viol.Signal = -1, "SIGKILL"
	viol.Violation = &Violation{Kind: ViolationMem, Measured: 80, Limit: 64}
	cases := []struct {
		name    string
		task    Task
		end     RunEnd
		outcome Outcome
		state   TaskState
		reason  string
	}{
		{"on-failure clean exit is final", Task{Restart: RestartOnFailure}, short, OutcomeExited, StateExited, "exit status 0"},
		{"on-failure failure restarts", Task{Restart: RestartOnFailure}, fail, OutcomeRestart, StateBackoff, "exit status 3"},
		{"always restarts a clean exit", Task{Restart: RestartAlways}, short, OutcomeRestart, StateBackoff, "exit status 0"},
		{"always with allow-exit keeps exit 0 final", Task{Restart: RestartAlways, EnsureAlive: boolp(false)}, short, OutcomeExited, StateExited, ""},
		{"on-failure with ensure_alive restarts exit 0", Task{Restart: RestartOnFailure, EnsureAlive: boolp(true)}, short, OutcomeRestart, StateBackoff, ""},
		{"never fails on violation", Task{Restart: RestartNever}, viol, OutcomeFailed, StateFailed, "mem 80.0 MB > limit 64.0"},
		{"never exits clean", Task{Restart: RestartNever, EnsureAlive: boolp(true)}, short, OutcomeExited, StateExited, ""},
		{"max_restarts 0 gives up at once", Task{Restart: RestartAlways, MaxRestarts: intp(0)}, fail, OutcomeFailed, StateFailed, "gave up"},
		{"violation restarts with reason", Task{Restart: RestartOnFailure}, viol, OutcomeRestart, StateBackoff, "mem 80.0 MB"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.task.Name, c.task.Command = "w", []string{"x"}
			d, _ := Decide(c.task.WithDefaults(), History{}, c.end)
			if d.Outcome != c.outcome || d.State != c.state || !strings.Contains(d.Reason, c.reason) {
				t.Errorf("Decide = %+v; want outcome %v state %s reason containing %q", d, c.outcome, c.state, c.reason)
			}
		})
	}
}

func TestMaxRestartsWithinWindow(t *testing.T) {
	task := Task{Name: "w", Command: []string{"x"}, MaxRestarts: intp(3), RestartWindow: Duration(time.Minute),
		BackoffInitial: Duration(time.Second)}.WithDefaults()
	clock := clockwork.NewFakeClock()
	var h History
	var d Decision
	for i := range 4 {
		start := clock.Now()
		clock.Advance(time.Second)
		d, h = Decide(task, h, RunEnd{Started: start, Ended: clock.Now(), ExitCode: 1})
		if i < 3 && d.Outcome != OutcomeRestart {
			t.Fatalf("restart %d: %+v, want restart", i+1, d)
		}
		clock.Advance(d.Delay)
	}
	if d.Outcome != OutcomeFailed || !strings.Contains(d.Reason, "gave up: 3 restarts within 1m0s (max_restarts 3)") {
		t.Fatalf("4th failure: %+v, want failed with a give-up reason", d)
	}
	if h.Total != 3 {
		t.Errorf("Total = %d, want 3", h.Total)
	}
	// Outside the window the old restarts no longer count.
	clock.Advance(2 * time.Minute)
	start := clock.Now()
	clock.Advance(time.Second)
	d, _ = Decide(task, h, RunEnd{Started: start, Ended: clock.Now(), ExitCode: 1})
	if d.Outcome != OutcomeRestart {
		t.Errorf("after the window passed: %+v, want restart", d)
	}
}
