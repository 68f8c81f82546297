package controller_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"nightshift/controller"
	"nightshift/mgmt"
)

// The status RPC must decode into mgmt.JobStatus without loss.
func TestStatusShapeMatchesMgmt(t *testing.T) {
	depth, age := 7, 1.5
	js := controller.JobStatus{Name: "web", Engine: "npreserving", Policy: map[string]any{"n": 2.0}, Desired: 2,
		Counts: map[string]int{"running": 2}, QueueDepth: &depth, QueueSource: "mgmt_api",
		LastDecision: &controller.LastDecision{Time: t0, Reason: "n=2, have 2: hold"},
		Workers:      []controller.WorkerStatus{{ID: "w1", State: "running", Health: "ok", Host: "h", HeartbeatAgeS: &age, Restarts: 1}}}
	b, err := json.Marshal(js)
	if err != nil {
		t.Fatal(err)
	}
	var m mgmt.JobStatus
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	back, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var a, z map[string]any
	json.Unmarshal(b, &a)
	json.Unmarshal(back, &z)
	delete(a, "frozen")
	if !reflect.DeepEqual(a, z) {
		t.Fatalf("controller status %s\n != mgmt status %s", b, back)
	}
}

func TestRolloutBodyValidate(t *testing.T) {
	cases := []struct {
		name  string
		body  controller.RolloutBody
		field string // empty: valid
	}{
		{"start", controller.RolloutBody{Job: "w", Action: controller.RolloutStart, Request: controller.RolloutRequest{Set: map[string]string{"env.V": "2"}}}, ""},
		{"undo", controller.RolloutBody{Job: "w", Action: controller.RolloutUndo}, ""},
		{"no job", controller.RolloutBody{Action: controller.RolloutUndo}, "job"},
		{"bad action", controller.RolloutBody{Job: "w", Action: "go"}, "action"},
		{"start without changes", controller.RolloutBody{Job: "w", Action: controller.RolloutStart}, "request"},
		{"negative surge", controller.RolloutBody{Job: "w", Action: controller.RolloutStart, Request: controller.RolloutRequest{
			Set: map[string]string{"env.V": "2"}, Config: controller.RolloutConfig{MaxSurge: -1}}}, "request.config.max_surge"},
	}
	for _, tc := range cases {
		err := tc.body.Validate()
		if (tc.field == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want field %q", tc.name, err, tc.field)
		}
	}
}
