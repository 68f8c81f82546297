package controller_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"nightshift/controller"
	"nightshift/internal/testsupport"
)

func TestSampleOf(t *testing.T) {
	five := 5
	for _, tc := range []struct {
		name string
		js   controller.JobStatus
		want controller.Sample
	}{
		{"empty", controller.JobStatus{Name: "a"}, controller.Sample{Job: "a"}},
		{"mixed", controller.JobStatus{Name: "a", Desired: 4, QueueDepth: &five, Workers: []controller.WorkerStatus{
			{State: "running", Health: "ok"}, {State: "running", Health: "missing"},
			{State: "pending", Health: "unknown"}, {State: "terminating", Health: "ok"},
		}}, controller.Sample{Job: "a", Desired: 4, Running: 2, Healthy: 2, QueueDepth: &five}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := controller.SampleOf(tc.js, t0)
			tc.want.Time = t0
			if got.Time != tc.want.Time || got.Job != tc.want.Job || got.Desired != tc.want.Desired || got.Running != tc.want.Running ||
				got.Healthy != tc.want.Healthy || (got.QueueDepth == nil) != (tc.want.QueueDepth == nil) ||
				(got.QueueDepth != nil && *got.QueueDepth != *tc.want.QueueDepth) {
				t.Errorf("SampleOf = %+v, want %+v", got, tc.want)
			}
			if tc.js.QueueDepth != nil && got.QueueDepth == tc.js.QueueDepth {
				t.Error("the sample shares the status's depth pointer")
			}
		})
	}
}

// TestRunSamplesHistory: a running controller stores a sample of each pool
// every SampleEvery and tells its observer of samples and decisions.
func TestRunSamplesHistory(t *testing.T) {
	r := newRig(t, npJob(t, 2))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.c.Run(ctx) }()
	testsupport.Eventually(t, 10*time.Second, func() error {
		if n, _ := r.prov.launched(); n != 2 {
			return fmt.Errorf("%d launched, want 2", n)
		}
		return nil
	})
	ids := r.runAll("web", false)
	testsupport.Eventually(t, 10*time.Second, func() error {
		r.clock.Advance(time.Second)
		for _, id := range ids {
			r.heartbeat("web", id, false)
		}
		ss, err := r.store.Samples(ctx, "web", time.Time{})
		if err != nil {
			return err
		}
		if len(ss) == 0 {
			return fmt.Errorf("no samples stored")
		}
		if l := ss[len(ss)-1]; l.Desired != 2 || l.Running != 2 || l.Healthy != 2 {
			return fmt.Errorf("last sample %+v, want desired, running and healthy 2", l)
		}
		return nil
	})
	cancel()
	<-done
	r.obs.mu.Lock()
	defer r.obs.mu.Unlock()
	if len(r.obs.samples) == 0 || r.obs.statuses[0].Name != "web" {
		t.Errorf("observer saw %d samples, want some of web", len(r.obs.samples))
	}
	if !slices.ContainsFunc(r.obs.decided, func(d []string) bool { return slices.Equal(d, []string{"web", "launch"}) }) {
		t.Errorf("observer was told of decisions %v, want [web launch]", r.obs.decided)
	}
}
