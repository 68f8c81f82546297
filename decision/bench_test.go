package decision

import (
	"fmt"
	"testing"
	"time"

	"nightshift"
)

// benchSnapshot builds n instances: mostly running and OK, some busy, a few
// dead, booting and draining, so every branch of the engines is exercised.
func benchSnapshot(n int) Snapshot {
	s := Snapshot{Now: t0, Depth: depth(5 * n), Source: SourceMgmtAPI}
	for i := range n {
		in := Instance{ID: fmt.Sprintf("i-%06d", i), State: nightshift.StateRunning, Health: nightshift.HealthOK,
			Busy: i%3 == 0, LaunchedAt: t0.Add(-time.Duration(i) * time.Second)}
		switch i % 50 {
		case 7:
			in.Health = nightshift.HealthMissing
		case 11:
			in.State = nightshift.StatePending
			in.Health = nightshift.HealthUnknown
		case 13:
			in.DrainingSince = t0.Add(-time.Minute)
		}
		s.Instances = append(s.Instances, in)
	}
	return s
}

var benchSizes = []int{10, 100, 1000, 10000}

func BenchmarkNPreserving(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			s := benchSnapshot(n)
			cfg := NPreservingConfig{N: new(n / 2), DrainTimeout: DefaultDrainTimeout}
			for b.Loop() {
				DecideNPreserving(cfg, s)
			}
		})
	}
}

func BenchmarkQueueLen(b *testing.B) {
	for _, mode := range []string{ModeStep, ModeProportional} {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/instances=%d", mode, n), func(b *testing.B) {
				s := benchSnapshot(n)
				cfg := QueueLenConfig{HighWater: 100, LowWater: 10, Mode: mode, PerWorker: 10, Max: n / 2, DrainTimeout: DefaultDrainTimeout}
				for b.Loop() {
					DecideQueueLen(cfg, s)
				}
			})
		}
	}
}

func BenchmarkAssess(b *testing.B) {
	views := []InstanceView{
		{State: nightshift.StateRunning, StateSince: t0.Add(-time.Hour), LastHeartbeat: t0.Add(-time.Second)},
		{State: nightshift.StateRunning, StateSince: t0.Add(-time.Second)},
		{State: nightshift.StateTerminating, StateSince: t0.Add(-time.Minute), LastHeartbeat: t0},
		{State: nightshift.StateRunning, StateSince: t0.Add(-time.Hour), LastHeartbeat: t0, FailedTasks: []string{"x"}},
	}
	hc := HealthConfig{}
	i := 0
	for b.Loop() {
		Assess(views[i%len(views)], t0, hc)
		i++
	}
}
