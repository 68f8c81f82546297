package metrics

import "github.com/prometheus/client_golang/prometheus"

// Lease is a replica's leadership as its metrics show it: whether it holds
// its role's lease and at which epoch, so a takeover is visible as the
// epoch rising on the new active replica.
type Lease struct {
	active, epoch prometheus.Gauge
}

// NewLease registers the lease metrics of a replica of role (provisioner,
// controller) of run in reg, as a standby.
func NewLease(reg prometheus.Registerer, run, role string) *Lease {
	labels := prometheus.Labels{"run": run, "role": role}
	l := &Lease{
		active: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "lease_active", ConstLabels: labels,
			Help: "1 while this replica holds its role's lease and serves, 0 while it stands by."}),
		epoch: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "lease_epoch", ConstLabels: labels,
			Help: "The epoch of the lease this replica holds (0 while it stands by); it rises by one at every takeover."}),
	}
	reg.MustRegister(l.active, l.epoch)
	return l
}

// Active records that the replica holds the lease at epoch.
func (l *Lease) Active(epoch int64) {
	l.active.Set(1)
	l.epoch.Set(float64(epoch))
}

// Standby records that the replica does not hold the lease.
func (l *Lease) Standby() {
	l.active.Set(0)
	l.epoch.Set(0)
}
