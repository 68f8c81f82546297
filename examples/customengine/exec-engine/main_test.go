package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"nightshift"
	"nightshift/decision"
	"nightshift/decision/execengine"
)

// The test binary doubles as the engine program: when the exec engine runs
// it with this variable set, it behaves exactly like the real main.
const childEnv = "NIGHTSHIFT_EXAMPLE_EXEC_ENGINE_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestThroughExecEngine(t *testing.T) {
	t.Setenv(childEnv, "1")
	e := execengine.New(nil)
	if err := e.Configure(map[string]any{"command": os.Args[0], "params": map[string]any{"per_worker": 10, "max": 4}, "timeout": "20s"}); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	inst := func(id string, h nightshift.Health, busy bool, age time.Duration) decision.Instance {
		return decision.Instance{ID: id, State: nightshift.StateRunning, Health: h, Busy: busy, LaunchedAt: now.Add(-age)}
	}
	cases := []struct {
		name  string
		depth *int
		inst  []decision.Instance
		want  string
	}{
		{"backlog grows to depth/10", new(25), []decision.Instance{inst("a", nightshift.HealthOK, true, time.Hour)}, "launch 2"},
		{"capped at 4", new(1000), nil, "launch 4"},
		{"scale in idle newest, drain busy", new(5), []decision.Instance{
			inst("a", nightshift.HealthOK, true, 3*time.Hour), inst("b", nightshift.HealthOK, false, 2*time.Hour),
			inst("c", nightshift.HealthOK, true, time.Hour)}, "terminate[b] drain[c]"},
		{"unavailable holds and replaces dead", nil, []decision.Instance{
			inst("a", nightshift.HealthOK, false, time.Hour), inst("b", nightshift.HealthMissing, false, time.Hour)}, "terminate[b] launch 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := decision.Snapshot{Now: now, Instances: tc.inst, Depth: tc.depth}
			if tc.depth != nil {
				s.Source = decision.SourceMgmtAPI
			}
			d := decision.Run(context.Background(), e, s)
			if d.Error != "" {
				t.Fatalf("exec failed: %s", d.Error)
			}
			var parts []string
			for _, a := range d.Actions {
				switch a := a.(type) {
				case decision.Launch:
					parts = append(parts, "launch "+strconv.Itoa(a.Count))
				case decision.Terminate:
					parts = append(parts, "terminate["+strings.Join(a.IDs, " ")+"]")
				case decision.Drain:
					parts = append(parts, "drain["+strings.Join(a.IDs, " ")+"]")
				}
			}
			if got := strings.Join(parts, " "); got != tc.want {
				t.Errorf("actions %q, want %q (reason %q)", got, tc.want, d.Reason)
			}
		})
	}
}

func TestRejectsWrongVersion(t *testing.T) {
	var out strings.Builder
	err := run(strings.NewReader(`{"version":2}`), &out)
	if err == nil || !strings.Contains(err.Error(), "protocol version 2") {
		t.Fatalf("err = %v", err)
	}
}
