package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"nightshift"
	"nightshift/controller"
	"nightshift/provisioner"
)

var m0 = time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)

func age(s float64) *float64 { return &s }

func TestControllerGauges(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := NewController(reg, "local")
	seven := 7
	js := controller.JobStatus{Name: "sleeper", Desired: 3, QueueDepth: &seven,
		Counts: map[string]int{"running": 2, "pending": 1, "pending_launch": 1},
		Workers: []controller.WorkerStatus{
			{ID: "a", State: "running", Health: "ok", HeartbeatAgeS: age(0.4)},
			{ID: "b", State: "running", Health: "ok", HeartbeatAgeS: age(1.5)},
			{ID: "c", State: "pending", Health: "unknown"},
		}}
	c.Sampled(js, controller.SampleOf(js, m0))
	c.Decided("sleeper", []string{"launch"})
	c.Decided("sleeper", []string{"terminate", "launch"})
	c.Decided("sleeper", []string{"none"})
	want := `
# HELP nightshift_pool_desired The pool size the job's engine last decided on.
# TYPE nightshift_pool_desired gauge
nightshift_pool_desired{job="sleeper",run="local"} 3
# HELP nightshift_pool_healthy Workers of the pool whose health is ok.
# TYPE nightshift_pool_healthy gauge
nightshift_pool_healthy{job="sleeper",run="local"} 2
# HELP nightshift_queue_depth Messages in the job's work queue as last read; absent while it cannot be read.
# TYPE nightshift_queue_depth gauge
nightshift_queue_depth{job="sleeper",run="local"} 7
# HELP nightshift_decisions_total Decisions stored, by action (launch, terminate, drain; none for a decision without action); a decision with several actions counts once for each.
# TYPE nightshift_decisions_total counter
nightshift_decisions_total{action="launch",job="sleeper",run="local"} 2
nightshift_decisions_total{action="none",job="sleeper",run="local"} 1
nightshift_decisions_total{action="terminate",job="sleeper",run="local"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"nightshift_pool_desired", "nightshift_pool_healthy", "nightshift_queue_depth", "nightshift_decisions_total"); err != nil {
		t.Error(err)
	}
	for state, n := range map[string]float64{"running": 2, "pending": 1, "pending_launch": 1, "failed": 0, "draining": 0} {
		if got := testutil.ToFloat64(c.workers.WithLabelValues("local", "sleeper", state)); got != n {
			t.Errorf("pool_workers{state=%q} = %v, want %v", state, got, n)
		}
	}
	if n := testutil.CollectAndCount(c.hbAge); n != 1 {
		t.Errorf("%d heartbeat histograms, want 1", n)
	}

	// The depth cannot be read any more: the series goes rather than
	// keeping a stale value.
	js.QueueDepth = nil
	c.Sampled(js, controller.SampleOf(js, m0.Add(time.Second)))
	if n := testutil.CollectAndCount(c.depth); n != 0 {
		t.Errorf("queue_depth has %d series with the depth unknown, want 0", n)
	}
}

func TestReplacementSeconds(t *testing.T) {
	w := func(id, state, health string) controller.WorkerStatus {
		return controller.WorkerStatus{ID: id, State: state, Health: health}
	}
	drained := func(ws controller.WorkerStatus) controller.WorkerStatus { ws.DrainingSince = &m0; return ws }
	for _, tc := range []struct {
		name  string
		steps [][]controller.WorkerStatus // one a second
		want  []time.Duration
	}{
		{"missing worker replaced", [][]controller.WorkerStatus{
			{w("a", "running", "ok"), w("b", "running", "ok")},
			{w("a", "running", "ok"), w("b", "running", "missing")},
			{w("a", "running", "ok"), w("b", "terminating", "missing"), w("c", "pending", "unknown")},
			{w("a", "running", "ok"), w("c", "started", "unknown")},
			{w("a", "running", "ok"), w("c", "running", "booting")},
		}, []time.Duration{3 * time.Second}},
		{"failed worker vanishes and is replaced", [][]controller.WorkerStatus{
			{w("a", "running", "ok"), w("b", "running", "ok")},
			{w("a", "running", "ok")},
			{w("a", "running", "ok"), w("c", "running", "booting")},
		}, []time.Duration{time.Second}},
		{"scale-in is no death", [][]controller.WorkerStatus{
			{w("a", "running", "ok"), drained(w("b", "running", "ok")), w("x", "running", "ok")},
			{w("a", "running", "ok"), w("x", "terminating", "ok")},
			{w("a", "running", "ok")},
			{w("a", "running", "ok"), w("c", "running", "booting")},
		}, nil},
		{"scale-out is no replacement", [][]controller.WorkerStatus{
			{w("a", "running", "ok")},
			{w("a", "running", "ok"), w("b", "running", "booting")},
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReplacements()
			var got []time.Duration
			for i, ws := range tc.steps {
				got = append(got, r.update(controller.JobStatus{Name: "j", Desired: 2, Workers: ws}, m0.Add(time.Duration(i)*time.Second))...)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("replacements %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("replacements %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestProvisionerLaunches(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := NewProvisioner(reg, "local")
	inst := func(id, state, reason string, after time.Duration) provisioner.Instance {
		return provisioner.Instance{ID: id, Job: "sleeper", State: nightshift.InstanceState(state), Reason: reason, Created: m0, Updated: m0.Add(after)}
	}
	p.InstanceChanged(inst("a", "requested", "", 0), "")
	p.InstanceChanged(inst("a", "started", "", time.Second), "pending")
	p.InstanceChanged(inst("a", "running", "", 3*time.Second), "started")
	p.InstanceChanged(inst("b", "failed", "exited", 2*time.Second), "started")
	p.InstanceChanged(inst("a", "failed", "exited", time.Minute), "running") // a death, not a failed launch
	p.InstanceChanged(inst("c", "rejected", "disabled", 0), "")
	p.InstanceChanged(inst("d", "running", "adopted: instance found live after restart", time.Hour), "started")
	want := `
# HELP nightshift_launches_total Instances launched, by result: running, failed (before running) or rejected.
# TYPE nightshift_launches_total counter
nightshift_launches_total{job="sleeper",result="failed",run="local"} 1
nightshift_launches_total{job="sleeper",result="rejected",run="local"} 1
nightshift_launches_total{job="sleeper",result="running",run="local"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "nightshift_launches_total"); err != nil {
		t.Error(err)
	}
	// One launch timed (3s); the adopted one is not.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP nightshift_launch_seconds From a launch request recorded to its instance running.
# TYPE nightshift_launch_seconds histogram
nightshift_launch_seconds_bucket{job="sleeper",run="local",le="0.5"} 0
nightshift_launch_seconds_bucket{job="sleeper",run="local",le="1"} 0
nightshift_launch_seconds_bucket{job="sleeper",run="local",le="2"} 0
nightshift_launch_seconds_bucket{job="sleeper",run="local",le="5"} 1
nightshift_launch_seconds_bucket{job="sleeper",run="local",le="10"} 1
nightshift_launch_seconds_bucket{job="sleeper",run="local",le="20"} 1
nightshift_launch_seconds_bucket{job="sleeper",run="local",le="30"} 1
nightshift_launch_seconds_bucket{job="sleeper",run="local",le="60"} 1
nightshift_launch_seconds_bucket{job="sleeper",run="local",le="120"} 1
nightshift_launch_seconds_bucket{job="sleeper",run="local",le="300"} 1
nightshift_launch_seconds_bucket{job="sleeper",run="local",le="600"} 1
nightshift_launch_seconds_bucket{job="sleeper",run="local",le="+Inf"} 1
nightshift_launch_seconds_sum{job="sleeper",run="local"} 3
nightshift_launch_seconds_count{job="sleeper",run="local"} 1
`), "nightshift_launch_seconds"); err != nil {
		t.Error(err)
	}
}

// nightshift_dns_records_ok shows only for a run whose provisioner keeps
// DNS records, and follows each sync.
func TestProvisionerDNSRecordsOK(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := NewProvisioner(reg, "prod")
	if n, err := testutil.GatherAndCount(reg, "nightshift_dns_records_ok"); err != nil || n != 0 {
		t.Fatalf("%d series before any sync (%v), want none", n, err)
	}
	head := `
# HELP nightshift_dns_records_ok 1 while the run's DNS records are kept (the last sync of every zone worked), 0 while not (a zone not resolved, Route 53 errors).
# TYPE nightshift_dns_records_ok gauge
`
	for _, tc := range []struct {
		err  error
		want string
	}{
		{errors.New("route53: no hosted zone example.internal"), "0"},
		{nil, "1"},
	} {
		p.DNSSynced(tc.err)
		if err := testutil.GatherAndCompare(reg, strings.NewReader(head+`nightshift_dns_records_ok{run="prod"} `+tc.want+"\n"), "nightshift_dns_records_ok"); err != nil {
			t.Errorf("after a sync with error %v: %v", tc.err, err)
		}
	}
}
