package metrics

import "github.com/prometheus/client_golang/prometheus"

// KeeperService is one of a run's own processes as its keeper accounts for
// it (keeper.View, without the keeper's types, which import this package).
type KeeperService struct {
	Service  string
	Up       bool
	Restarts int
	// GaveUp: the keeper stopped restarting it (a restart loop).
	GaveUp bool
}

// keeperCollector reads the active keeper's account at each scrape, so the
// series are exactly what `mgmt status` shows, never a stale copy.
type keeperCollector struct {
	run                      string
	views                    func() []KeeperService
	up, restarts, gaveUp, on *prometheus.Desc
}

// NewKeeper registers the keeper's metrics of run in reg; views returns the
// keeper's current account and must be safe to call from the scrape's
// goroutine.
func NewKeeper(reg prometheus.Registerer, run string, views func() []KeeperService) {
	name := func(n string) string { return prometheus.BuildFQName(Namespace, "keeper", n) }
	reg.MustRegister(&keeperCollector{
		run: run, views: views,
		up: prometheus.NewDesc(name("service_up"),
			"1 while the service's process (broker node, daemon) runs on this host, else 0.", []string{"run", "service"}, nil),
		restarts: prometheus.NewDesc(name("restarts_total"),
			"Restarts of the service by the run's keepers since the active keeper took over.", []string{"run", "service"}, nil),
		gaveUp: prometheus.NewDesc(name("gave_up"),
			"1 when the keeper stopped restarting the service (a restart loop; the daemon_restart_loop alert), else 0.", []string{"run", "service"}, nil),
		on: prometheus.NewDesc(name("active"),
			"1 from the keeper that holds the run's active role (only that one serves metrics).", []string{"run"}, nil),
	})
}

func (c *keeperCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.restarts
	ch <- c.gaveUp
	ch <- c.on
}

func (c *keeperCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.on, prometheus.GaugeValue, 1, c.run)
	for _, v := range c.views() {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, b2f(v.Up), c.run, v.Service)
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(v.Restarts), c.run, v.Service)
		ch <- prometheus.MustNewConstMetric(c.gaveUp, prometheus.GaugeValue, b2f(v.GaveUp), c.run, v.Service)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
