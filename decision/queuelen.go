package decision

import (
	"fmt"
	"time"
)

// QueueLenName is the registry name of the queue-length engine.
const QueueLenName = "queuelen"

// Queue-length scaling modes.
const (
	// ModeStep is the EPU QueueLengthBoundedEngine: one worker up or down
	// per decision, on strict crossings of the water marks.
	ModeStep = "step"
	// ModeProportional is KEDA-like: ceil(depth / per_worker) workers.
	ModeProportional = "proportional"
)

// QueueLenConfig is the queue-length engine's configuration.
type QueueLenConfig struct {
	HighWater int // depth strictly above this grows the pool (step)
	LowWater  int // depth strictly below this shrinks it (step); < HighWater
	Min       int // never fewer workers (default 0)
	// Max caps the pool; 0 means no cap (step mode only; proportional mode
	// requires a cap).
	Max          int
	Cooldown     time.Duration // minimum time between size changes (default 0)
	Mode         string        // ModeStep or ModeProportional; "" means unconfigured (no action)
	PerWorker    int           // messages per worker (proportional)
	DrainTimeout time.Duration // default 5m
	Spec         LaunchSpec
}

// ParseQueueLenConfig validates a queue-length configuration map. Keys:
// high_water, low_water (both required), min_instances, max_instances,
// cooldown, mode, per_worker, drain_timeout, deployable, site, allocation,
// vars.
func ParseQueueLenConfig(m map[string]any) (QueueLenConfig, error) {
	f := NewFields(QueueLenName, m)
	var c QueueLenConfig
	var ok bool
	var err error
	if c.HighWater, ok, err = f.Int("high_water"); err != nil {
		return c, err
	} else if !ok {
		return c, f.Errorf("high_water", "required")
	}
	if c.LowWater, ok, err = f.Int("low_water"); err != nil {
		return c, err
	} else if !ok {
		return c, f.Errorf("low_water", "required")
	}
	if c.LowWater < 0 {
		return c, f.Errorf("low_water", "%d must not be negative", c.LowWater)
	}
	if c.LowWater >= c.HighWater {
		return c, f.Errorf("low_water", "%d must be below high_water %d", c.LowWater, c.HighWater)
	}
	if c.Min, err = f.IntMin("min_instances", 0, 0); err != nil {
		return c, err
	}
	if c.Max, err = f.IntMin("max_instances", 0, 1); err != nil {
		return c, err
	}
	if c.Max > 0 && c.Max < c.Min {
		return c, f.Errorf("max_instances", "%d must not be below min_instances %d", c.Max, c.Min)
	}
	if c.Cooldown, err = f.Duration("cooldown", 0); err != nil {
		return c, err
	}
	if c.Mode, err = f.String("mode", ModeStep); err != nil {
		return c, err
	}
	if c.Mode != ModeStep && c.Mode != ModeProportional {
		return c, f.Errorf("mode", "%q is not %q or %q", c.Mode, ModeStep, ModeProportional)
	}
	if c.PerWorker, err = f.IntMin("per_worker", 0, 1); err != nil {
		return c, err
	}
	if c.Mode == ModeProportional {
		if c.PerWorker == 0 {
			return c, f.Errorf("per_worker", "required when mode is proportional")
		}
		if c.Max == 0 {
			return c, f.Errorf("max_instances", "required when mode is proportional")
		}
	}
	if c.DrainTimeout, err = f.Duration("drain_timeout", DefaultDrainTimeout); err != nil {
		return c, err
	}
	if c.Spec, err = f.Spec(); err != nil {
		return c, err
	}
	return c, f.Unknown()
}

func renderQueueLen(c QueueLenConfig) map[string]any {
	if c.HighWater == 0 && c.LowWater == 0 && c.Mode == "" {
		return map[string]any{} // unconfigured
	}
	m := map[string]any{
		"high_water":    c.HighWater,
		"low_water":     c.LowWater,
		"min_instances": c.Min,
		"cooldown":      c.Cooldown.String(),
		"mode":          c.Mode,
		"drain_timeout": c.DrainTimeout.String(),
	}
	if c.Max > 0 {
		m["max_instances"] = c.Max
	}
	if c.PerWorker > 0 {
		m["per_worker"] = c.PerWorker
	}
	SpecConfig(c.Spec, m)
	return m
}

// QueueLen sizes the pool from the depth of the work queue, in step mode
// (the EPU's bounded engine) or proportional mode (KEDA's). It replaces
// unhealthy workers in every mode, and holds the size while the depth is
// unavailable.
type QueueLen struct {
	h *Holder[QueueLenConfig]
}

// NewQueueLen returns an unconfigured queue-length engine; it decides
// nothing until Configure succeeds (high_water and low_water are required).
func NewQueueLen() *QueueLen {
	return &QueueLen{h: NewHolder(QueueLenConfig{}, ParseQueueLenConfig, renderQueueLen)}
}

func (e *QueueLen) Name() string                         { return QueueLenName }
func (e *QueueLen) Configure(cfg map[string]any) error   { return e.h.Configure(cfg) }
func (e *QueueLen) Reconfigure(cfg map[string]any) error { return e.h.Reconfigure(cfg) }
func (e *QueueLen) Config() map[string]any               { return e.h.Config() }
func (e *QueueLen) Decide(s Snapshot) Decision           { return DecideQueueLen(e.h.Current(), s) }

// DecideQueueLen is the queue-length policy as a pure function.
func DecideQueueLen(c QueueLenConfig, s Snapshot) Decision {
	d := Decision{Engine: QueueLenName}
	if c.Mode == "" {
		d.Reason = "not configured: no action until configured"
		return d
	}
	p := classify(s)
	// cur is the size the pool had before any deaths: dead members are
	// replaced whatever the metric says.
	cur := p.size() + p.deadMembers
	target, reason := queueTarget(c, s, p, cur)

	// The bounds hold even while scaling is blocked (the EPU launched up
	// to min_instances before looking at pending launches).
	if target < c.Min {
		reason += fmt.Sprintf("; raise to min_instances %d", c.Min)
		target = c.Min
	}
	if c.Max > 0 && target > c.Max {
		reason += fmt.Sprintf("; lower to max_instances %d", c.Max)
		target = c.Max
	}
	acts, notes := steer(s, p, target, c.Spec, c.DrainTimeout)
	d.Actions = acts
	d.Reason = withNotes(reason, notes)
	d.Target = target
	d.Scaled = target != cur
	d.Stable = stable(p, target, acts)
	return d
}

// queueTarget applies the mode's rule and says why, before min/max bounds.
func queueTarget(c QueueLenConfig, s Snapshot, p pool, cur int) (int, string) {
	depth, what, ok := reading(s)
	if !ok {
		return cur, fmt.Sprintf("queue depth %s: hold at %d", what, cur)
	}
	desc := fmt.Sprintf("queue depth %d (%s)", depth, what)
	// Activation from zero never waits for a cooldown: a backlog with no
	// worker at all is the one case that cannot wait (KEDA applies its
	// cooldown only to scaling to zero, for the same reason).
	activate := cur == 0 && depth > 0
	if !activate {
		if left := cooldownLeft(c, s); left > 0 {
			// Whole seconds, rounded up: a person reads "1s left", not
			// "131.778987ms left", and the reason changes at most once a
			// second, so the same-reason skip keeps holds from flooding
			// the decisions.
			left = (left + time.Second - 1).Truncate(time.Second)
			return cur, fmt.Sprintf("%s: cooldown %s, %s left: hold at %d", desc, c.Cooldown, left, cur)
		}
	}
	if c.Mode == ModeProportional {
		return proportional(c, depth, desc, cur)
	}
	if k := p.pending(); k > 0 && !activate {
		return cur, fmt.Sprintf("%s: %d launches pending, no scaling: hold at %d", desc, k, cur)
	}
	switch {
	case cur == 0 && depth == 0:
		return 0, desc + ": empty pool, empty queue: hold at 0"
	case activate:
		return 1, fmt.Sprintf("%s with no workers: +1 (0 -> 1%s)", desc, maxNote(c))
	case depth > c.HighWater:
		if c.Max > 0 && cur >= c.Max {
			return cur, fmt.Sprintf("%s > high_water %d but at max_instances %d: hold at %d", desc, c.HighWater, c.Max, cur)
		}
		return cur + 1, fmt.Sprintf("%s > high_water %d: +1 (%d -> %d%s)", desc, c.HighWater, cur, cur+1, maxNote(c))
	case depth < c.LowWater:
		if cur <= c.Min {
			return cur, fmt.Sprintf("%s < low_water %d but at min_instances %d: hold at %d", desc, c.LowWater, c.Min, cur)
		}
		if cur == 1 && depth > 0 {
			return cur, fmt.Sprintf("%s < low_water %d but messages remain: keep the last worker", desc, c.LowWater)
		}
		return cur - 1, fmt.Sprintf("%s < low_water %d: -1 (%d -> %d, min %d)", desc, c.LowWater, cur, cur-1, c.Min)
	default:
		return cur, fmt.Sprintf("%s within [low_water %d, high_water %d]: hold at %d", desc, c.LowWater, c.HighWater, cur)
	}
}

func proportional(c QueueLenConfig, depth int, desc string, cur int) (int, string) {
	want := depth / c.PerWorker
	if depth%c.PerWorker != 0 {
		want++
	}
	calc := fmt.Sprintf("%s / per_worker %d = %d", desc, c.PerWorker, want)
	if want > c.Max {
		calc += fmt.Sprintf(", capped at max_instances %d", c.Max)
		want = c.Max
	}
	if want < c.Min {
		calc += fmt.Sprintf(", raised to min_instances %d", c.Min)
		want = c.Min
	}
	switch {
	case want > cur:
		return want, fmt.Sprintf("%s: +%d (%d -> %d, max %d)", calc, want-cur, cur, want, c.Max)
	case want < cur:
		return want, fmt.Sprintf("%s: -%d (%d -> %d, min %d)", calc, cur-want, cur, want, c.Min)
	default:
		return cur, fmt.Sprintf("%s: hold at %d", calc, cur)
	}
}

// reading interprets the depth sensor: the value, what it counts, and
// whether it is usable.
func reading(s Snapshot) (int, string, bool) {
	switch {
	case s.Source == SourceNone || s.Depth == nil:
		return 0, "unavailable", false
	case *s.Depth < 0:
		return 0, fmt.Sprintf("invalid (%d from %s)", *s.Depth, s.Source), false
	case s.Source == SourceMgmtAPI:
		return *s.Depth, "ready+unacked, mgmt api", true
	case s.Source == SourcePassiveDeclare:
		return *s.Depth, "ready only, passive declare", true
	default:
		return 0, fmt.Sprintf("from unknown source %q", string(s.Source)), false
	}
}

func cooldownLeft(c QueueLenConfig, s Snapshot) time.Duration {
	if c.Cooldown <= 0 || s.LastScaleAt.IsZero() {
		return 0
	}
	return c.Cooldown - s.Now.Sub(s.LastScaleAt)
}

func maxNote(c QueueLenConfig) string {
	if c.Max > 0 {
		return fmt.Sprintf(", max %d", c.Max)
	}
	return ""
}
