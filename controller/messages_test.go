package controller_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"nightshift/controller"
	"nightshift/internal/envelope"
	"nightshift/mgmt"
	"nightshift/sitter"
)

func heartbeatMessage(t testing.TB, hb sitter.Heartbeat) []byte {
	env, err := envelope.NewEnvelope(controller.TypeHeartbeat, 1, "r1", "sitter@h", controller.HeartbeatBody(hb), t0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeHeartbeat(t *testing.T) {
	reg := controller.Messages()
	hb := sitter.Heartbeat{InstanceID: "web-1", Job: "web", Host: "h1", Time: t0,
		Tasks: []sitter.TaskStatus{{Name: "work", State: sitter.StateRunning, Work: sitter.WorkBusy, Restarts: 2}}}
	got, err := controller.DecodeHeartbeat(reg, heartbeatMessage(t, hb))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, hb) {
		t.Fatalf("round trip: got %+v, want %+v", got, hb)
	}
	cases := []struct {
		name, body string
		want       []string
	}{
		{"no instance id", `{"job":"web","host":"h","time":"2026-11-21T12:00:00Z","limit_mode":"","tasks":[],"vitals":{}}`, []string{`"sitter.heartbeat"`, `field "instance_id"`, "missing"}},
		{"no job", `{"instance_id":"i","host":"h","time":"2026-11-21T12:00:00Z","limit_mode":"","tasks":[],"vitals":{}}`, []string{`field "job"`}},
		{"wrong type", `{"instance_id":7}`, []string{`field "instance_id"`, "want string"}},
		{"unknown field", `{"instance_id":"i","job":"w","time":"2026-11-21T12:00:00Z","busy":true}`, []string{`field "busy"`, "unknown field"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := `{"type":"sitter.heartbeat","version":1,"id":"x","run":"r1","time":"2026-11-21T12:00:00Z","sender":"s","body":` + tc.body + `}`
			_, err := controller.DecodeHeartbeat(reg, []byte(msg))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func FuzzDecodeHeartbeat(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/heartbeat-*.json")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	reg := controller.Messages()
	f.Fuzz(func(t *testing.T, data []byte) {
		hb, err := controller.DecodeHeartbeat(reg, data)
		if err != nil {
			return
		}
		if hb.InstanceID == "" || hb.Job == "" || hb.Time.IsZero() {
			t.Fatalf("accepted heartbeat without required fields: %+v", hb)
		}
	})
}

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
	_ = time.Second
}
