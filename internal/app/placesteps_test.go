package app

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/nsenv"
	"nightshift/internal/service/ec2service"
	"nightshift/launchplan"
)

// TestPlaceStepsRecordsTheSwitchInTheRun: launch with
// NIGHTSHIFT_EC2_STEPS_LOCAL=1 marks the plan the run stores; a later launch
// of the same run (a resume) without the switch keeps the mark, so its
// services are not suddenly reached over ssh; a run torn down, or never
// launched with the switch, is not marked.
func TestPlaceStepsRecordsTheSwitchInTheRun(t *testing.T) {
	ctx := context.Background()
	a, err := Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	newPlan := func() *launchplan.Plan {
		return &launchplan.Plan{Name: "p", Levels: []launchplan.Level{{Services: []launchplan.Service{
			{Name: "provisioner", Driver: launchplan.DriverEC2, EC2: map[string]any{"image": "ami-1"}}}}}}
	}
	store := func(name string, p *launchplan.Plan, state bootlevel.RunState) {
		data, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		if err := a.Store.CreateRun(ctx, bootlevel.Run{Name: name, State: state, Plan: data, Created: now, Updated: now}); err != nil {
			t.Fatal(err)
		}
	}
	marked := newPlan()
	ec2service.MarkStepsLocal(marked)
	store("local-live", marked, bootlevel.RunReady)
	store("local-gone", marked, bootlevel.RunTerminated)
	store("remote-live", newPlan(), bootlevel.RunReady)

	for _, c := range []struct {
		run, env string
		want     bool
	}{
		{"fresh", "1", true},
		{"fresh", "", false},
		{"local-live", "", true},
		{"local-gone", "", false},
		{"remote-live", "", false},
		{"remote-live", "1", true},
	} {
		t.Setenv(nsenv.EC2StepsLocal, c.env)
		p := newPlan()
		a.PlaceSteps(ctx, c.run, p)
		if got := ec2service.StepsLocal(p); got != c.want {
			t.Errorf("run %s with %s=%q: steps local %v, want %v", c.run, nsenv.EC2StepsLocal, c.env, got, c.want)
		}
	}
}
