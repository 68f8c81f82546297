package ctlbus_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"nightshift/controller/ctlbus"
	"nightshift/internal/envelope"
	"nightshift/sitter"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func heartbeatMessage(t testing.TB, hb sitter.Heartbeat) []byte {
	env, err := envelope.NewEnvelope(ctlbus.TypeHeartbeat, 1, "r1", "sitter@h", ctlbus.HeartbeatBody(hb), t0)
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
	reg := ctlbus.Messages()
	hb := sitter.Heartbeat{InstanceID: "web-1", Job: "web", Host: "h1", Time: t0,
		Tasks: []sitter.TaskStatus{{Name: "work", State: sitter.StateRunning, Work: sitter.WorkBusy, Restarts: 2}}}
	got, err := ctlbus.DecodeHeartbeat(reg, heartbeatMessage(t, hb))
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
			_, err := ctlbus.DecodeHeartbeat(reg, []byte(msg))
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
	reg := ctlbus.Messages()
	f.Fuzz(func(t *testing.T, data []byte) {
		hb, err := ctlbus.DecodeHeartbeat(reg, data)
		if err != nil {
			return
		}
		if hb.InstanceID == "" || hb.Job == "" || hb.Time.IsZero() {
			t.Fatalf("accepted heartbeat without required fields: %+v", hb)
		}
	})
}
