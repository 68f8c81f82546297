package decision

import (
	"fmt"
	"time"
)

// NPreservingName is the registry name of the n-preserving engine.
const NPreservingName = "npreserving"

// DefaultDrainTimeout bounds how long a busy worker chosen for scale-in may
// keep working before it is terminated anyway.
const DefaultDrainTimeout = 5 * time.Minute

// NPreservingConfig is the n-preserving engine's configuration.
type NPreservingConfig struct {
	// N is the number of workers to keep. nil means "not configured": the
	// engine does nothing at all, as the EPU's did with preserve_n missing.
	// An explicit 0 scales the pool to zero.
	N *int
	// DrainTimeout is how long a draining busy worker is given (default 5m).
	DrainTimeout time.Duration
	// Spec is what to launch.
	Spec LaunchSpec
}

// ParseNPreservingConfig validates an n-preserving configuration map.
// Keys: n (preserve_n is accepted as the EPU's name for it), drain_timeout,
// deployable, site, allocation, vars.
func ParseNPreservingConfig(m map[string]any) (NPreservingConfig, error) {
	f := NewFields(NPreservingName, m)
	var c NPreservingConfig
	key := "n"
	if f.Has("preserve_n") {
		if f.Has("n") {
			return c, f.Errorf("preserve_n", "set either n or preserve_n, not both")
		}
		key = "preserve_n"
	}
	n, ok, err := f.Int(key)
	if err != nil {
		return c, err
	}
	if ok {
		if n < 0 {
			return c, f.Errorf(key, "%d must not be negative", n)
		}
		c.N = &n
	}
	if c.DrainTimeout, err = f.Duration("drain_timeout", DefaultDrainTimeout); err != nil {
		return c, err
	}
	if c.Spec, err = f.Spec(); err != nil {
		return c, err
	}
	return c, f.Unknown()
}

func renderNPreserving(c NPreservingConfig) map[string]any {
	m := map[string]any{"drain_timeout": c.DrainTimeout.String()}
	if c.N != nil {
		m["n"] = *c.N
	}
	SpecConfig(c.Spec, m)
	return m
}

// NPreserving keeps exactly N workers: it terminates unhealthy ones and
// replaces them, counts workers still booting and launches still in flight
// toward N (so it never overshoots), and scales in idle workers first, then
// the newest, draining busy ones instead of killing them.
type NPreserving struct {
	h *Holder[NPreservingConfig]
}

// NewNPreserving returns an unconfigured n-preserving engine, which does
// nothing until Configure or Reconfigure sets n.
func NewNPreserving() *NPreserving {
	return &NPreserving{h: NewHolder(NPreservingConfig{DrainTimeout: DefaultDrainTimeout}, ParseNPreservingConfig, renderNPreserving)}
}

func (e *NPreserving) Name() string                         { return NPreservingName }
func (e *NPreserving) Configure(cfg map[string]any) error   { return e.h.Configure(cfg) }
func (e *NPreserving) Reconfigure(cfg map[string]any) error { return e.h.Reconfigure(cfg) }
func (e *NPreserving) Config() map[string]any               { return e.h.Config() }
func (e *NPreserving) Decide(s Snapshot) Decision           { return DecideNPreserving(e.h.Current(), s) }

// DecideNPreserving is the n-preserving policy as a pure function.
func DecideNPreserving(c NPreservingConfig, s Snapshot) Decision {
	d := Decision{Engine: NPreservingName}
	if c.N == nil {
		d.Reason = "n not configured: no action until configured"
		return d
	}
	n := *c.N
	p := classify(s)
	acts, notes := steer(s, p, n, c.Spec, c.DrainTimeout)
	have := p.size()
	var reason string
	switch {
	case have < n:
		reason = fmt.Sprintf("n=%d, have %d%s: +%d (%d -> %d)", n, have, pendingNote(p), n-have, have, n)
	case have > n:
		reason = fmt.Sprintf("n=%d, have %d%s: -%d (%d -> %d)", n, have, pendingNote(p), have-n, have, n)
	default:
		reason = fmt.Sprintf("n=%d, have %d%s: hold", n, have, pendingNote(p))
	}
	d.Actions = acts
	d.Reason = withNotes(reason, notes)
	d.Target = n
	d.Stable = stable(p, n, acts)
	return d
}

func pendingNote(p pool) string {
	if k := p.pending(); k > 0 {
		return fmt.Sprintf(" (%d pending)", k)
	}
	return ""
}
