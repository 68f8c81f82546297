package e2e

import (
	"context"
	"fmt"
	"net/http"
	"nightshift/internal/app"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"nightshift/internal/testsupport"
	"nightshift/mgmt"
)

// scrape fetches and parses a Prometheus text endpoint, as a Prometheus
// server would.
func scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// value finds the series of family name whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (*dto.Metric, bool) {
	f := fams[name]
	if f == nil {
		return nil, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m, true
	}
	return nil, false
}

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
		fams, err := scrape(ctx, ctlURL)
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
				m, ok := value(fams, c.metric, c.labels)
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
	fams, err := scrape(ctx, ctlURL)
	if err != nil {
		t.Fatal(err)
	}
	// The issue's own check: n-preserving with n = 3.
	if m, ok := value(fams, "nightshift_pool_desired", sleeper); !ok || m.GetGauge().GetValue() != 3 {
		t.Errorf(`nightshift_pool_desired{job="sleeper",run=%q} = %v, want 3`, r.Name, m)
	}
	if m, ok := value(fams, "nightshift_decisions_total", map[string]string{"run": r.Name, "job": "sleeper", "action": "launch"}); !ok || m.GetCounter().GetValue() < 1 {
		t.Errorf("nightshift_decisions_total{action=launch} of sleeper = %v, want at least the first launch", m)
	}
	if m, ok := value(fams, "nightshift_heartbeat_age_seconds", sleeper); !ok || m.GetHistogram().GetSampleCount() == 0 {
		t.Errorf("nightshift_heartbeat_age_seconds of sleeper = %v, want observations", m)
	}
	pfams, err := scrape(ctx, provURL)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := value(pfams, "nightshift_launches_total", map[string]string{"run": r.Name, "job": "sleeper", "result": "running"}); !ok || m.GetCounter().GetValue() < 3 {
		t.Errorf("provisioner's launches_total{sleeper,running} = %v, want at least 3", m)
	}
	if m, ok := value(pfams, "nightshift_launch_seconds", sleeper); !ok || m.GetHistogram().GetSampleCount() < 3 {
		t.Errorf("provisioner's launch_seconds of sleeper = %v, want at least 3 launches timed", m)
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
