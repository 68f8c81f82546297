package metrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"nightshift"
	"nightshift/provisioner"
)

// Launch results of nightshift_launches_total.
const (
	LaunchRunning  = "running"  // the instance reached running
	LaunchFailed   = "failed"   // it failed before running
	LaunchRejected = "rejected" // the provisioner refused it (disabled)
)

// Provisioner is the provisioner's metrics; it implements
// provisioner.Observer.
type Provisioner struct {
	run      string
	launches *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
	dnsOK    *prometheus.GaugeVec
}

var (
	_ provisioner.Observer    = (*Provisioner)(nil)
	_ provisioner.DNSObserver = (*Provisioner)(nil)
)

// NewProvisioner registers the provisioner's metrics of run in reg.
func NewProvisioner(reg prometheus.Registerer, run string) *Provisioner {
	p := &Provisioner{
		run: run,
		launches: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "launches_total",
			Help: "Instances launched, by result: running, failed (before running) or rejected."}, []string{"run", "job", "result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "launch_seconds",
			Help: "From a launch request recorded to its instance running.", Buckets: durationBuckets}, []string{"run", "job"}),
		// A vector, so a run without DNS shows no series rather than a
		// failing one.
		dnsOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "dns_records_ok",
			Help: "1 while the run's DNS records are kept (the last sync of every zone worked), 0 while not (a zone not resolved, Route 53 errors)."}, []string{"run"}),
	}
	reg.MustRegister(p.launches, p.seconds, p.dnsOK)
	return p
}

// DNSSynced implements provisioner.DNSObserver.
func (p *Provisioner) DNSSynced(err error) {
	v := 1.0
	if err != nil {
		v = 0
	}
	p.dnsOK.WithLabelValues(p.run).Set(v)
}

// InstanceChanged implements provisioner.Observer.
func (p *Provisioner) InstanceChanged(inst provisioner.Instance, from nightshift.InstanceState) {
	switch {
	case inst.State == nightshift.StateRunning:
		p.launches.WithLabelValues(p.run, inst.Job, LaunchRunning).Inc()
		// An instance adopted after a restart has been running a while:
		// its launch was timed, or lost, by the provisioner before.
		if !strings.HasPrefix(inst.Reason, "adopted") {
			p.seconds.WithLabelValues(p.run, inst.Job).Observe(inst.Updated.Sub(inst.Created).Seconds())
		}
	case inst.State == nightshift.StateFailed && from.Rank() < nightshift.StateRunning.Rank():
		p.launches.WithLabelValues(p.run, inst.Job, LaunchFailed).Inc()
	case inst.State == nightshift.StateRejected:
		p.launches.WithLabelValues(p.run, inst.Job, LaunchRejected).Inc()
	}
}
