package e2e

import (
	"context"
	"fmt"
	"nightshift/internal/app"
	"strings"
	"testing"
	"time"

	"nightshift/internal/metrics/metricstest"
	"nightshift/internal/testsupport"
	"nightshift/mgmt"
)

// metricsURL is a service's metrics_url attribute in st.
func metricsURL(st *mgmt.RunStatus, service string) string {
	for _, l := range st.Levels {
		for _, s := range l.Services {
			if s.Name == service {
				return s.Attributes["metrics_url"]
			}
		}
	}
	return ""
}

// checkMetrics scrapes the controller's and the provisioner's metrics_url
// of a run of plans/local.toml at rest and checks them against `mgmt status
// --json`, then the controller's history against the same pools.
func checkMetrics(t *testing.T, r *Run, ctx context.Context) {
	t.Helper()
	st, err := r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ctlURL, provURL := metricsURL(st, "controller"), metricsURL(st, "provisioner")
	for svc, u := range map[string]string{"controller": ctlURL, "provisioner": provURL} {
		if !strings.HasPrefix(u, "http://127.0.0.1:") || !strings.HasSuffix(u, "/metrics") {
			t.Fatalf("%s metrics_url %q, want http://127.0.0.1:PORT/metrics", svc, u)
		}
	}
	sleeper := map[string]string{"run": r.Name, "job": "sleeper"}
	// The gauges are the controller's sample of the last second and
	// status is read a moment apart: they agree once the pool holds still.
	testsupport.Eventually(t, 20*time.Second, func() error {
		st, err := r.Status(ctx)
		if err != nil {
			return err
		}
		fams, err := metricstest.Scrape(ctx, ctlURL)
		if err != nil {
			return err
		}
		for _, name := range []string{"sleeper", "work"} {
			j := Job(st, name)
			if j == nil {
				return fmt.Errorf("status has no job %s", name)
			}
			labels := map[string]string{"run": r.Name, "job": name}
			healthy, running := 0, 0
			for _, w := range j.Workers {
				if w.Health == "ok" {
					healthy++
				}
				if w.State == "running" {
					running++
				}
			}
			checks := []struct {
				metric string
				labels map[string]string
				want   float64
			}{
				{"nightshift_pool_desired", labels, float64(j.Desired)},
				{"nightshift_pool_healthy", labels, float64(healthy)},
				{"nightshift_pool_workers", map[string]string{"run": r.Name, "job": name, "state": "running"}, float64(running)},
			}
			if j.QueueDepth != nil {
				checks = append(checks, struct {
					metric string
					labels map[string]string
					want   float64
				}{"nightshift_queue_depth", labels, float64(*j.QueueDepth)})
			}
			for _, c := range checks {
				m, ok := metricstest.Find(fams, c.metric, c.labels)
				if !ok {
					return fmt.Errorf("no %s%v in the controller's metrics", c.metric, c.labels)
				}
				if got := m.GetGauge().GetValue(); got != c.want {
					return fmt.Errorf("%s%v = %v, status says %v", c.metric, c.labels, got, c.want)
				}
			}
		}
		return nil
	})
	fams, err := metricstest.Scrape(ctx, ctlURL)
	if err != nil {
		t.Fatal(err)
	}
	// The issue's own check: n-preserving with n = 3.
	if m, ok := metricstest.Find(fams, "nightshift_pool_desired", sleeper); !ok || m.GetGauge().GetValue() != 3 {
		t.Errorf(`nightshift_pool_desired{job="sleeper",run=%q} = %v, want 3`, r.Name, m)
	}
	if m, ok := metricstest.Find(fams, "nightshift_decisions_total", map[string]string{"run": r.Name, "job": "sleeper", "action": "launch"}); !ok || m.GetCounter().GetValue() < 1 {
		t.Errorf("nightshift_decisions_total{action=launch} of sleeper = %v, want at least the first launch", m)
	}
	if m, ok := metricstest.Find(fams, "nightshift_heartbeat_age_seconds", sleeper); !ok || m.GetHistogram().GetSampleCount() == 0 {
		t.Errorf("nightshift_heartbeat_age_seconds of sleeper = %v, want observations", m)
	}
	pfams, err := metricstest.Scrape(ctx, provURL)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := metricstest.Find(pfams, "nightshift_launches_total", map[string]string{"run": r.Name, "job": "sleeper", "result": "running"}); !ok || m.GetCounter().GetValue() < 3 {
		t.Errorf("provisioner's launches_total{sleeper,running} = %v, want at least 3", m)
	}
	if m, ok := metricstest.Find(pfams, "nightshift_launch_seconds", sleeper); !ok || m.GetHistogram().GetSampleCount() < 3 {
		t.Errorf("provisioner's launch_seconds of sleeper = %v, want at least 3 launches timed", m)
	}

	// The keeper's, found through status as the scrape config finds it:
	// every process it watches is up.
	st, err = r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.KeeperMetricsURL == "" {
		t.Error("mgmt status --json gives no keeper_metrics_url for a live run with a keeper")
	} else {
		kfams, err := metricstest.Scrape(ctx, st.KeeperMetricsURL)
		if err != nil {
			t.Fatal(err)
		}
		for _, svc := range []string{"broker", "provisioner", "controller"} {
			if v, ok := metricstest.Value(kfams, "nightshift_keeper_service_up", map[string]string{"run": r.Name, "service": svc}); !ok || v != 1 {
				t.Errorf("keeper's service_up{%s} = %v (present %v), want 1", svc, v, ok)
			}
		}
	}

	// The history the controller keeps, read from its store as mgmt does.
	h, err := mgmt.History(ctx, app.OpenHistory, r.Home, r.Name, "sleeper", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Samples) == 0 || h.Samples[len(h.Samples)-1].Desired != 3 {
		t.Errorf("sleeper history: %d samples, last %+v; want some, the last with desired 3", len(h.Samples), h.Samples)
	}
	if len(h.Decisions) == 0 || h.Decisions[0].Action != "launch" {
		t.Errorf("sleeper history decisions %+v, want the first launch first", h.Decisions)
	}
}
