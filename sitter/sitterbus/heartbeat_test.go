package sitterbus_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nightshift/internal/envelope"
	"nightshift/sitter"
	"nightshift/sitter/sitterbus"
)

func TestHeartbeatVersions(t *testing.T) {
	v1, err := os.ReadFile("testdata/heartbeat-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := os.ReadFile("testdata/heartbeat-v2-probe.json")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		data      string
		wantErr   string // field the error names; empty: accepted
		wantProbe sitter.ProbeState
	}{
		{"v1 without probes", string(v1), "", ""},
		{"v2 with a probe", string(v2), "", sitter.ProbeUnhealthy},
		{"v1 with a probe", strings.Replace(string(v2), `"version":2`, `"version":1`, 1), "tasks[0].probe", ""},
		{"v2 bad state", strings.Replace(string(v2), `"unhealthy"`, `"sickly"`, 1), "tasks[0].probe.state", ""},
		{"v2 negative failures", strings.Replace(string(v2), `"failures":3`, `"failures":-1`, 1), "tasks[0].probe.failures", ""},
		{"v2 unknown probe key", strings.Replace(string(v2), `"failures":3`, `"failures":3,"x":1`, 1), "", "x"},
		{"v3", strings.Replace(string(v2), `"version":2`, `"version":3`, 1), "version", ""},
	}
	reg := sitterbus.Messages()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, body, err := reg.Decode([]byte(tc.data), 1<<20)
			if tc.name == "v2 unknown probe key" {
				if err == nil {
					t.Fatal("unknown key in a probe accepted")
				}
				return
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), sitterbus.TypeHeartbeat) {
					t.Fatalf("error %v, want one naming %s and field %s", err, sitterbus.TypeHeartbeat, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			hb, ok := sitterbus.HeartbeatOf(body)
			if !ok || hb.InstanceID != "web-1" {
				t.Fatalf("heartbeat %+v, %v", hb, ok)
			}
			var got sitter.ProbeState
			if p := hb.Tasks[0].Probe; p != nil {
				got = p.State
			}
			if got != tc.wantProbe {
				t.Errorf("probe state %q, want %q", got, tc.wantProbe)
			}
		})
	}
}

// A sitter without probes sends version 1, which every controller reads;
// one with a probe sends version 2, which round-trips whole.
func TestNewHeartbeatPicksVersion(t *testing.T) {
	now := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	hb := sitter.Heartbeat{InstanceID: "w-1", Job: "work", Time: now, Tasks: []sitter.TaskStatus{{Name: "w", State: sitter.StateRunning}}}
	env, err := sitterbus.NewHeartbeat("r", "s", hb, now)
	if err != nil || env.Version != sitterbus.HeartbeatV1 {
		t.Fatalf("without probes: version %d, %v; want 1", env.Version, err)
	}
	hb.Tasks[0].Probe = &sitter.ProbeStatus{State: sitter.ProbeHealthy, Output: "HTTP 200", At: now, HealthySince: now}
	env, err = sitterbus.NewHeartbeat("r", "s", hb, now)
	if err != nil || env.Version != sitterbus.HeartbeatV2 {
		t.Fatalf("with a probe: version %d, %v; want 2", env.Version, err)
	}
	data := mustJSON(t, env)
	_, body, err := sitterbus.Messages().Decode(data, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := sitterbus.HeartbeatOf(body)
	if p := got.Tasks[0].Probe; p == nil || *p != *hb.Tasks[0].Probe {
		t.Errorf("probe after the round trip %+v, want %+v", p, hb.Tasks[0].Probe)
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
	reg := sitterbus.Messages()
	f.Fuzz(func(t *testing.T, data []byte) {
		env, body, err := reg.Decode(data, 1<<20)
		if err != nil {
			return
		}
		hb, ok := sitterbus.HeartbeatOf(body)
		if env.Type != sitterbus.TypeHeartbeat {
			if ok {
				t.Fatalf("%s decoded as a heartbeat", env.Type)
			}
			return
		}
		if !ok || hb.InstanceID == "" || hb.Job == "" || hb.Time.IsZero() {
			t.Fatalf("accepted heartbeat without required fields: %+v", hb)
		}
		for _, ts := range hb.Tasks {
			if ts.Probe == nil {
				continue
			}
			if env.Version == sitterbus.HeartbeatV1 {
				t.Fatalf("version 1 accepted with a probe: %+v", ts.Probe)
			}
			switch ts.Probe.State {
			case sitter.ProbeStarting, sitter.ProbeHealthy, sitter.ProbeUnhealthy:
			default:
				t.Fatalf("probe state %q accepted", ts.Probe.State)
			}
			if len(ts.Probe.Output) > sitter.MaxProbeOutput {
				t.Fatalf("probe output of %d bytes accepted", len(ts.Probe.Output))
			}
		}
	})
}

var _ envelope.Validator = (*sitterbus.HeartbeatV1Body)(nil)

func mustJSON(t *testing.T, env envelope.Envelope) []byte {
	t.Helper()
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
