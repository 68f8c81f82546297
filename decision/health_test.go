package decision

import (
	"testing"
	"time"

	"nightshift"
)

func TestAssess(t *testing.T) {
	hc := HealthConfig{} // defaults: 1s interval, 3s missing, 60s boot, 3s zombie grace
	ago := func(d time.Duration) time.Time { return t0.Add(-d) }
	cases := []struct {
		name string
		view InstanceView
		want nightshift.Health
	}{
		{"requested is unknown", InstanceView{State: nightshift.StateRequested, StateSince: ago(time.Hour)}, nightshift.HealthUnknown},
		{"started is unknown", InstanceView{State: nightshift.StateStarted, StateSince: ago(time.Hour)}, nightshift.HealthUnknown},
		{"running, first heartbeat not due", InstanceView{State: nightshift.StateRunning, StateSince: ago(59 * time.Second)}, nightshift.HealthBooting},
		{"running, boot timeout exactly reached is still booting", InstanceView{State: nightshift.StateRunning, StateSince: ago(60 * time.Second)}, nightshift.HealthBooting},
		{"running, never heard past boot timeout: never_heard, not missing", InstanceView{State: nightshift.StateRunning, StateSince: ago(61 * time.Second)}, nightshift.HealthNeverHeard},
		{"running, recent heartbeat", InstanceView{State: nightshift.StateRunning, StateSince: ago(time.Hour), LastHeartbeat: ago(time.Second)}, nightshift.HealthOK},
		{"running, silent exactly missing timeout", InstanceView{State: nightshift.StateRunning, StateSince: ago(time.Hour), LastHeartbeat: ago(3 * time.Second)}, nightshift.HealthOK},
		{"running, silent past missing timeout", InstanceView{State: nightshift.StateRunning, StateSince: ago(time.Hour), LastHeartbeat: ago(3*time.Second + time.Millisecond)}, nightshift.HealthMissing},
		{"failed task", InstanceView{State: nightshift.StateRunning, StateSince: ago(time.Hour), LastHeartbeat: ago(time.Second), FailedTasks: []string{"consumer"}}, nightshift.HealthProcessError},
		{"heartbeat error", InstanceView{State: nightshift.StateRunning, StateSince: ago(time.Hour), LastHeartbeat: ago(time.Second), HeartbeatError: "supervisor unreachable"}, nightshift.HealthProcessError},
		{"silence wins over an old error", InstanceView{State: nightshift.StateRunning, StateSince: ago(time.Hour), LastHeartbeat: ago(time.Minute), FailedTasks: []string{"x"}}, nightshift.HealthMissing},
		{"terminating, heartbeat within grace", InstanceView{State: nightshift.StateTerminating, StateSince: ago(10 * time.Second), LastHeartbeat: ago(8 * time.Second)}, nightshift.HealthUnknown},
		{"terminating, heartbeat after grace is a zombie", InstanceView{State: nightshift.StateTerminating, StateSince: ago(10 * time.Second), LastHeartbeat: ago(time.Second)}, nightshift.HealthZombie},
		{"terminated, heartbeat after grace is a zombie", InstanceView{State: nightshift.StateTerminated, StateSince: ago(time.Minute), LastHeartbeat: ago(time.Second)}, nightshift.HealthZombie},
		{"failed, heartbeat after grace is a zombie", InstanceView{State: nightshift.StateFailed, StateSince: ago(time.Minute), LastHeartbeat: t0}, nightshift.HealthZombie},
		{"terminated, a late heartbeat but silent since: no longer a zombie", InstanceView{State: nightshift.StateTerminated, StateSince: ago(time.Minute), LastHeartbeat: ago(4 * time.Second)}, nightshift.HealthUnknown},
		{"terminating, a late heartbeat, silent exactly missing timeout: still a zombie", InstanceView{State: nightshift.StateTerminating, StateSince: ago(time.Minute), LastHeartbeat: ago(3 * time.Second)}, nightshift.HealthZombie},
		{"terminated and quiet", InstanceView{State: nightshift.StateTerminated, StateSince: ago(time.Minute), LastHeartbeat: ago(2 * time.Minute)}, nightshift.HealthUnknown},
		{"unknown state", InstanceView{State: "exploded", StateSince: ago(time.Minute), LastHeartbeat: t0}, nightshift.HealthUnknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Assess(tc.view, t0, hc); got != tc.want {
				t.Errorf("Assess = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestAssessCustomTimings(t *testing.T) {
	hc := HealthConfig{HeartbeatInterval: 10 * time.Second, BootTimeout: 5 * time.Minute}
	v := InstanceView{State: nightshift.StateRunning, StateSince: t0.Add(-time.Hour), LastHeartbeat: t0.Add(-25 * time.Second)}
	if got := Assess(v, t0, hc); got != nightshift.HealthOK {
		t.Fatalf("25s silence with 30s missing timeout: %s", got)
	}
	if got := Assess(v, t0.Add(6*time.Second), hc); got != nightshift.HealthMissing {
		t.Fatalf("31s silence: %s", got)
	}
}
