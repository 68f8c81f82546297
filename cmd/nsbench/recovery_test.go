package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"nightshift/internal/bench"
)

func readStatus(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/recovery/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The pool predicates decide when a kill counts as recovered; they read
// the real shape of `mgmt status --json`.
func TestStatusPredicates(t *testing.T) {
	st, err := decodeStatus(readStatus(t, "status-after-kill.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		job    string
		before []string
		want   string
	}{
		{"replacement running though not yet heartbeating", "sleeper", []string{"sleeper-44e918f0-0", "sleeper-44e918f0-1", "sleeper-44e918f0-2"}, "sleeper-87a90a7e-0"},
		{"no new worker", "sleeper", []string{"sleeper-44e918f0-1", "sleeper-44e918f0-2", "sleeper-87a90a7e-0"}, ""},
		{"a pending worker is not running", "work", []string{"work-52872c9b-0"}, ""},
		{"unknown job", "nope", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]bool{}
			for _, id := range tc.before {
				before[id] = true
			}
			if got := newRunning(st, tc.job, before); got != tc.want {
				t.Errorf("newRunning = %q, want %q", got, tc.want)
			}
		})
	}
	if atPolicy("sleeper")(st) {
		t.Error("sleeper is at policy although its replacement has not heartbeated")
	}
	if atPolicy("work")(st) {
		t.Error("work is at policy although one of its 2 workers is pending")
	}
	j, _ := findJob(st, "sleeper")
	if healthyRunning(j) != 2 {
		t.Errorf("healthy running sleepers = %d, want 2", healthyRunning(j))
	}
	if w, ok := findWorker(st, "sleeper", "sleeper-87a90a7e-0"); !ok || w.Health != "booting" {
		t.Errorf("findWorker = %+v, %v", w, ok)
	}
	// Once it heartbeats, the pool is back at policy.
	j.Workers[2].Health = "ok"
	st.Jobs[0] = j
	if !atPolicy("sleeper")(st) {
		t.Error("sleeper not at policy with 3 of 3 workers heartbeating")
	}
	if s := poolSummary(st); !strings.Contains(s, "sleeper desired 3 [") || !strings.Contains(s, "work-e918cf4e-0=pending/booting") {
		t.Errorf("poolSummary = %q", s)
	}
}

func TestDecodeStatusErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"truncated", `{"run": "R1", "jobs": [`, "mgmt status --json: unexpected end"},
		{"wrong type", `{"run": "R1", "jobs": [{"desired": "three"}]}`, "mgmt status --json: json: cannot unmarshal string"},
		{"no run", `{}`, "mgmt status --json: field run is empty"},
		{"not json", `run R1 is ready`, "mgmt status --json: invalid character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeStatus([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFirstLaunch(t *testing.T) {
	ds, err := decodeDecisions(readStatus(t, "decisions.json"))
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name    string
		since   string
		wantSeq int64
		found   bool
	}{
		{"earliest launch after the publish, not the newest", "2026-11-21T22:31:40Z", 8, true},
		{"a terminate or a hold is not a launch", "2026-11-21T22:30:45Z", 8, true},
		{"the boot launch counts from before", "2026-11-21T22:30:00Z", 2, true},
		{"at exactly the decision time", "2026-11-21T22:31:44.691811533Z", 8, true},
		{"nothing after", "2026-11-21T22:32:00Z", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok, err := firstLaunch(ds, at(tc.since))
			if err != nil || ok != tc.found || (ok && d.Seq != tc.wantSeq) {
				t.Errorf("firstLaunch = seq %d, %v, %v; want seq %d, %v", d.Seq, ok, err, tc.wantSeq, tc.found)
			}
		})
	}

	bad, err := decodeDecisions([]byte(`[{"seq": 7, "time": "2026-11-21T22:31:44Z", "actions": {"type": "launch"}}]`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := firstLaunch(bad, at("2026-11-21T22:00:00Z")); err == nil || !strings.Contains(err.Error(), "decision seq 7: field actions") {
		t.Errorf("malformed actions: err = %v", err)
	}
	if _, err := decodeDecisions([]byte(`{"seq": 1}`)); err == nil || !strings.Contains(err.Error(), "mgmt decisions --json") {
		t.Errorf("not a list: err = %v", err)
	}
}

// runEnv must not pass a developer's own NIGHTSHIFT_* on to a run, or the
// daemons would write into the wrong home.
func TestRunEnv(t *testing.T) {
	t.Setenv("NIGHTSHIFT_HOME", "/home/someone/.nightshift")
	t.Setenv("NIGHTSHIFT_RUN", "local")
	env := runEnv("/w/home")
	var ns []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "NIGHTSHIFT_") {
			ns = append(ns, kv)
		}
	}
	if len(ns) != 1 || ns[0] != "NIGHTSHIFT_HOME=/w/home" {
		t.Errorf("NIGHTSHIFT_* passed on: %v", ns)
	}
}

// TestRecoveryScenario boots plans/local.toml for real in quick mode: two
// kills, a backlog, a teardown of 10 workers. It asserts that every figure
// is there with its command and that the run leaves nothing behind, never
// how fast recovery is.
func TestRecoveryScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("boots plans/local.toml with a private RabbitMQ node (about 45 s)")
	}
	if _, err := exec.LookPath("rabbitmq-server"); err != nil {
		skipOrFail(t, "rabbitmq-server not installed (apt-get install rabbitmq-server): plans/local.toml boots a private broker")
	}
	e := testEnv(t)
	o := bench.Execute(context.Background(), e.clock, bench.Scenario{Name: "recovery", Run: e.recoveryScenario})
	if o.Status != bench.StatusMeasured {
		t.Fatalf("recovery: %s: %s", o.Status, o.Reason)
	}
	want := map[string]bool{
		"SIGKILL of a sleeper's sitter to a new worker running, median of 2":        false,
		"backlog of 50 items published to the first launch decision of pool work":   false,
		"processes of the run left after that teardown":                             false,
		"`mgmt teardown` of a run with":                                             false,
		"SIGKILL of a sleeper's sitter to the new worker's first heartbeat, median": false,
	}
	for _, f := range o.Figures {
		if f.Command == "" {
			t.Errorf("figure %q has no command", f.Name)
		}
		for prefix := range want {
			if strings.HasPrefix(f.Name, prefix) {
				want[prefix] = true
			}
		}
		if strings.HasPrefix(f.Name, "processes of the run left") && f.Value != 0 {
			t.Errorf("%s: %v processes left", f.Name, f.Value)
		}
		if strings.HasPrefix(f.Name, "SIGKILL") && (f.Value <= 0 || f.Value > 60) {
			t.Errorf("%s = %v s: not a latency", f.Name, f.Value)
		}
		if f.Peer != nil && !strings.Contains(f.Peer.Name, "quoted default, not measured") {
			t.Errorf("peer %q is not labelled as quoted", f.Peer.Name)
		}
	}
	for prefix, seen := range want {
		if !seen {
			t.Errorf("no figure starting %q", prefix)
		}
	}
}
