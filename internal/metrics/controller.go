package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"nightshift"
	"nightshift/controller"
)

// Heartbeat-age and duration buckets, in seconds.
var (
	heartbeatBuckets = []float64{0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120}
	durationBuckets  = []float64{0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600}
)

// workerStates are the pool_workers states always reported (0 when none),
// so a state that empties reads 0 rather than its last value.
var workerStates = []string{
	string(nightshift.StateRequested), string(nightshift.StatePending), string(nightshift.StateStarted),
	string(nightshift.StateRunning), string(nightshift.StateTerminating), string(nightshift.StateTerminated),
	string(nightshift.StateFailed), string(nightshift.StateRejected), "pending_launch", "draining",
}

// Controller is the controller's metrics; it implements controller.Observer,
// so it learns everything from the controller's samples (every second) and
// stored decisions.
type Controller struct {
	run         string
	desired     *prometheus.GaugeVec
	workers     *prometheus.GaugeVec
	healthy     *prometheus.GaugeVec
	depth       *prometheus.GaugeVec
	decisions   *prometheus.CounterVec
	hbAge       *prometheus.HistogramVec
	replacement *prometheus.HistogramVec

	mu   sync.Mutex
	jobs map[string]*replacements
}

var _ controller.Observer = (*Controller)(nil)

// NewController registers the controller's metrics of run in reg.
func NewController(reg prometheus.Registerer, run string) *Controller {
	job := []string{"run", "job"}
	c := &Controller{
		run: run,
		desired: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "pool_desired",
			Help: "The pool size the job's engine last decided on."}, job),
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "pool_workers",
			Help: "Workers of the pool by instance state (gone ones for 10 minutes), plus pending_launch (launches not yet answered) and draining."},
			append(job, "state")),
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "pool_healthy",
			Help: "Workers of the pool whose health is ok."}, job),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "queue_depth",
			Help: "Messages in the job's work queue as last read; absent while it cannot be read."}, job),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "decisions_total",
			Help: "Decisions stored, by action (launch, terminate, drain; none for a decision without action); a decision with several actions counts once for each."},
			append(job, "action")),
		hbAge: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "heartbeat_age_seconds",
			Help: "Age of each live worker's last heartbeat, observed every second.", Buckets: heartbeatBuckets}, job),
		replacement: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "replacement_seconds",
			Help: "From a worker's death noticed (unhealthy, or gone unasked) to the next new worker of its pool running.", Buckets: durationBuckets}, job),
		jobs: map[string]*replacements{},
	}
	reg.MustRegister(c.desired, c.workers, c.healthy, c.depth, c.decisions, c.hbAge, c.replacement)
	return c
}

// Sampled implements controller.Observer.
func (c *Controller) Sampled(js controller.JobStatus, s controller.Sample) {
	l := prometheus.Labels{"run": c.run, "job": js.Name}
	c.desired.With(l).Set(float64(s.Desired))
	c.healthy.With(l).Set(float64(s.Healthy))
	if s.QueueDepth != nil {
		c.depth.With(l).Set(float64(*s.QueueDepth))
	} else {
		c.depth.Delete(l)
	}
	for _, st := range workerStates {
		c.workers.WithLabelValues(c.run, js.Name, st).Set(float64(js.Counts[st]))
	}
	hb := c.hbAge.With(l)
	for _, w := range js.Workers {
		if w.HeartbeatAgeS != nil {
			hb.Observe(*w.HeartbeatAgeS)
		}
	}
	c.mu.Lock()
	r := c.jobs[js.Name]
	if r == nil {
		r = newReplacements()
		c.jobs[js.Name] = r
	}
	done := r.update(js, s.Time)
	c.mu.Unlock()
	for _, d := range done {
		c.replacement.With(l).Observe(d.Seconds())
	}
}

// Decided implements controller.Observer.
func (c *Controller) Decided(job string, actions []string) {
	for _, a := range actions {
		c.decisions.WithLabelValues(c.run, job, a).Inc()
	}
}

// replacements follows one pool from sample to sample to time its
// replacements: a death is noticed when a live worker turns unhealthy
// (missing, zombie, process_error) or leaves the view unasked (not
// terminating or draining before); it is replaced when a worker not seen
// running before is seen running. Deaths are matched to new workers oldest
// first; deaths left when the pool is whole again without a new worker
// (the engine shrank it) are forgotten.
type replacements struct {
	prev    map[string]controller.WorkerStatus
	running map[string]bool // workers ever seen running
	dead    map[string]bool // deaths already noticed, by worker
	pending []time.Time     // deaths not yet replaced, oldest first
}

func newReplacements() *replacements {
	return &replacements{prev: map[string]controller.WorkerStatus{}, running: map[string]bool{}, dead: map[string]bool{}}
}

func (r *replacements) update(js controller.JobStatus, now time.Time) []time.Duration {
	cur := make(map[string]controller.WorkerStatus, len(js.Workers))
	var fresh int
	healthyRunning := 0
	for _, w := range js.Workers {
		cur[w.ID] = w
		if nightshift.Health(w.Health).Unhealthy() && !r.dead[w.ID] {
			r.dead[w.ID] = true
			r.pending = append(r.pending, now)
		}
		if w.State == string(nightshift.StateRunning) {
			if !r.running[w.ID] {
				r.running[w.ID] = true
				if len(r.prev) > 0 || len(r.pending) > 0 {
					fresh++
				}
			}
			if !nightshift.Health(w.Health).Unhealthy() {
				healthyRunning++
			}
		}
	}
	for id, w := range r.prev {
		if _, ok := cur[id]; ok {
			continue
		}
		asked := w.State == string(nightshift.StateTerminating) || w.DrainingSince != nil
		if !asked && !r.dead[id] && r.running[id] {
			r.pending = append(r.pending, now)
		}
		delete(r.dead, id)
		delete(r.running, id)
	}
	r.prev = cur
	var done []time.Duration
	for ; fresh > 0 && len(r.pending) > 0; fresh-- {
		done = append(done, now.Sub(r.pending[0]))
		r.pending = r.pending[1:]
	}
	if len(r.pending) > 0 && healthyRunning >= js.Desired && js.Desired > 0 {
		r.pending = nil
	}
	return done
}
