package main

import (
	"testing"
	"time"

	"nightshift"
	"nightshift/decision"
)

func TestSpare(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	e := newSpare()
	if err := e.Configure(map[string]any{"spare": 2, "max_instances": 3}); err != nil {
		t.Fatal(err)
	}
	s := decision.Snapshot{Now: now, Instances: []decision.Instance{
		{ID: "a", State: nightshift.StateRunning, Health: nightshift.HealthOK, Busy: true},
		{ID: "b", State: nightshift.StateRunning, Health: nightshift.HealthMissing, Busy: true},
	}}
	d := e.Decide(s)
	if len(d.Actions) != 2 || d.Actions[0].(decision.Terminate).IDs[0] != "b" || d.Actions[1].(decision.Launch).Count != 2 {
		t.Fatalf("1 busy + 2 spare, cap 3, have 1: %+v (%s)", d.Actions, d.Reason)
	}
	if err := e.Reconfigure(map[string]any{"spare": -1}); err == nil || err.Error() != "spare: spare: -1 must be at least 0" {
		t.Fatalf("err = %v", err)
	}
	if err := run(); err != nil {
		t.Fatal(err)
	}
}
