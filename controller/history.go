package controller

import (
	"context"
	"time"

	"nightshift"
	"nightshift/internal/redact"
)

// History defaults: a sample a second, thinned to one a minute once an hour
// old, kept a week. A week of one job is about ten thousand rows.
const (
	DefaultSampleEvery = time.Second
	DefaultThinAfter   = time.Hour
	DefaultThinEvery   = time.Minute
	DefaultKeep        = 7 * 24 * time.Hour
	// compactEvery is how often old samples are thinned and dropped.
	compactEvery = time.Minute
)

// Observer is told what the controller sees and does, for metrics (package
// internal/metrics). Its methods are called from the controller's
// loops and must not block. Config.Observer nil observes nothing.
type Observer interface {
	// Sampled is called every SampleEvery for every job with the job's
	// status and the sample stored from it.
	Sampled(js JobStatus, s Sample)
	// Decided is called once a decision is stored, with the type of each
	// of its actions (launch, terminate, drain), none for a decision
	// without action.
	Decided(job string, actions []string)
}

// SampleOf is the history point of a job's status taken at now.
func SampleOf(js JobStatus, now time.Time) Sample {
	s := Sample{Time: now, Job: js.Name, Desired: js.Desired}
	if js.QueueDepth != nil {
		d := *js.QueueDepth
		s.QueueDepth = &d
	}
	for _, w := range js.Workers {
		if w.State == string(nightshift.StateRunning) {
			s.Running++
		}
		if w.Health == string(nightshift.HealthOK) {
			s.Healthy++
		}
	}
	return s
}

// sampleLoop stores a sample of every job every SampleEvery, whether the
// controller acts or is frozen (the history shows a frozen pool too), and
// keeps the history bounded.
func (c *Controller) sampleLoop(ctx context.Context) {
	t := c.cfg.Clock.NewTicker(c.cfg.SampleEvery)
	defer t.Stop()
	var lastCompact time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
		c.sample(ctx)
		if now := c.cfg.Clock.Now(); now.Sub(lastCompact) >= compactEvery {
			lastCompact = now
			c.compact(ctx, now)
		}
	}
}

func (c *Controller) sample(ctx context.Context) {
	all, err := c.Status("")
	if err != nil {
		return
	}
	now := c.cfg.Clock.Now()
	for _, js := range all {
		s := SampleOf(js, now)
		if err := c.cfg.Store.RecordSample(ctx, s); err != nil && ctx.Err() == nil {
			c.cfg.Log.Warn("history sample not stored", "job", js.Name, "err", redact.String(err.Error()))
		}
		if c.cfg.Observer != nil {
			c.cfg.Observer.Sampled(js, s)
		}
	}
}

func (c *Controller) compact(ctx context.Context, now time.Time) {
	for _, name := range c.names {
		if err := c.cfg.Store.CompactSamples(ctx, name, now.Add(-c.cfg.ThinAfter), c.cfg.ThinEvery, now.Add(-c.cfg.Keep)); err != nil && ctx.Err() == nil {
			c.cfg.Log.Warn("history not compacted", "job", name, "err", redact.String(err.Error()))
		}
	}
}

// observeDecision tells the observer about a stored decision.
func (c *Controller) observeDecision(job string, acts []actionRecord) {
	if c.cfg.Observer == nil {
		return
	}
	types := make([]string, 0, len(acts))
	for _, a := range acts {
		types = append(types, a.Type)
	}
	if len(types) == 0 {
		types = append(types, "none")
	}
	c.cfg.Observer.Decided(job, types)
}
