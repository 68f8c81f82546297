package launchplan

import (
	"nightshift/alert"
)

var (
	alertsKeys = []string{"pool_below_policy_for", "broker_unreachable_for", "flapping_replacements", "flapping_window",
		"restart_loop_restarts", "restart_loop_window", "rate_limit", "sink"}
	sinkKeys = []string{"type", "url", "format", "command", "timeout", "retries", "disabled"}
)

// alerts reads the [alerts] table: thresholds, and one [alerts.sink.NAME]
// table per sink (docs/alerts.md).
func (b *builder) alerts(n node) *alert.Config {
	kids, ok := b.table(n, alertsKeys)
	if !ok {
		return nil
	}
	cfg := &alert.Config{}
	for _, c := range kids {
		switch c.path[len(c.path)-1] {
		case "pool_below_policy_for":
			cfg.PoolBelowPolicyFor, _ = b.duration(c, true)
		case "broker_unreachable_for":
			cfg.BrokerUnreachableFor, _ = b.duration(c, true)
		case "flapping_window":
			cfg.FlappingWindow, _ = b.duration(c, true)
		case "restart_loop_window":
			cfg.RestartLoopWindow, _ = b.duration(c, true)
		case "flapping_replacements":
			cfg.FlappingReplacements = b.count(c)
		case "restart_loop_restarts":
			cfg.RestartLoopRestarts = b.count(c)
		case "rate_limit":
			cfg.RateLimit = b.count(c)
		case "sink":
			sinks, ok := b.table(c, nil)
			if !ok {
				continue
			}
			sortNodes(sinks)
			for _, s := range sinks {
				if sink, ok := b.sink(s); ok {
					cfg.Sinks = append(cfg.Sinks, sink)
				}
			}
		}
	}
	return cfg
}

// count reads a whole number from 1 to a million.
func (b *builder) count(n node) int {
	v, ok := b.integer(n)
	if !ok {
		return 0
	}
	if v < 1 || v > 1_000_000 {
		b.errf(n, "want a number from 1 to 1000000, got %d", v)
		return 0
	}
	return int(v)
}

func (b *builder) sink(n node) (alert.Sink, bool) {
	s := alert.Sink{Name: n.path[len(n.path)-1]}
	kids, ok := b.table(n, sinkKeys)
	if !ok {
		return s, false
	}
	byKey := map[string]node{}
	bad := false
	for _, c := range kids {
		k := c.path[len(c.path)-1]
		byKey[k] = c
		var ok bool
		switch k {
		case "type":
			s.Type, ok = b.str(c)
		case "url":
			s.URL, ok = b.str(c)
		case "format":
			s.Format, ok = b.str(c)
		case "timeout":
			s.Timeout, ok = b.duration(c, true)
		case "retries":
			var v int64
			if v, ok = b.integer(c); ok && (v < 0 || v > 100) {
				b.errf(c, "want a number from 0 to 100, got %d", v)
				ok = false
			}
			s.Retries = int(v)
			if ok && v == 0 {
				s.Retries = -1 // asked for none; 0 would mean the default
			}
		case "disabled":
			s.Disabled, ok = b.boolean(c)
		case "command":
			var elems []node
			if elems, ok = b.array(c); ok {
				for _, e := range elems {
					v, sok := b.str(e)
					ok = ok && sok
					s.Command = append(s.Command, v)
				}
			}
		}
		bad = bad || !ok
	}
	if bad {
		return s, false
	}
	if _, ok := byKey["type"]; !ok {
		b.errf(n, "missing key type: want %s", oneOf(alert.SinkTypes))
		return s, false
	}
	if key, err := alert.CheckSink(s); err != nil {
		at, ok := byKey[key]
		if !ok {
			at = n
		}
		b.errf(at, "%v", err)
		return s, false
	}
	return s, true
}
