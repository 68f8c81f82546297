package decision

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fields reads one engine's configuration map, remembering which keys were
// used so that unknown (misspelt) keys are reported. Every error names the
// engine and the key: "queuelen: high_water: required". It is exported so
// that engines outside this package (decision/execengine, your own) parse
// their configuration the same way.
type Fields struct {
	engine string
	m      map[string]any
	used   map[string]bool
}

// NewFields wraps cfg for engine; a nil cfg reads as empty.
func NewFields(engine string, cfg map[string]any) *Fields {
	return &Fields{engine: engine, m: cfg, used: map[string]bool{}}
}

// Errorf returns an error naming the engine and key.
func (f *Fields) Errorf(key, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %s", f.engine, key, fmt.Sprintf(format, args...))
}

// lookup returns the value of key; a nil value counts as absent, which is
// how a partial update reverts a key to its default.
func (f *Fields) lookup(key string) (any, bool) {
	f.used[key] = true
	v, ok := f.m[key]
	if !ok || v == nil {
		return nil, false
	}
	return v, true
}

// Has reports whether key is present with a non-nil value.
func (f *Fields) Has(key string) bool {
	_, ok := f.lookup(key)
	return ok
}

// Unknown reports the first key (in sorted order) that no getter asked for.
func (f *Fields) Unknown() error {
	for _, k := range slices.Sorted(maps.Keys(f.m)) {
		if !f.used[k] {
			return fmt.Errorf("%s: %s: unknown key", f.engine, k)
		}
	}
	return nil
}

// Int reads an integer key. Accepted forms: any Go integer type, an integral
// float (JSON numbers), json.Number, and a decimal string ("3", as EPU
// reconfigure messages send). present is false when the key is absent.
func (f *Fields) Int(key string) (v int, present bool, err error) {
	raw, ok := f.lookup(key)
	if !ok {
		return 0, false, nil
	}
	n, err := toInt(raw)
	if err != nil {
		return 0, true, f.Errorf(key, "%v", err)
	}
	return n, true, nil
}

// IntMin is Int with a default and a lower bound.
func (f *Fields) IntMin(key string, def, lowest int) (int, error) {
	n, ok, err := f.Int(key)
	if err != nil {
		return 0, err
	}
	if !ok {
		return def, nil
	}
	if n < lowest {
		return 0, f.Errorf(key, "%d must be at least %d", n, lowest)
	}
	return n, nil
}

// Duration reads a duration key: a Go duration string ("90s", "5m"), a
// time.Duration, or a number of seconds. Negative durations are rejected.
func (f *Fields) Duration(key string, def time.Duration) (time.Duration, error) {
	raw, ok := f.lookup(key)
	if !ok {
		return def, nil
	}
	var d time.Duration
	switch x := raw.(type) {
	case time.Duration:
		d = x
	case string:
		p, err := time.ParseDuration(strings.TrimSpace(x))
		if err != nil {
			return 0, f.Errorf(key, "%q is not a duration like \"30s\" or \"5m\"", x)
		}
		d = p
	default:
		secs, err := toFloat(raw)
		if err != nil {
			return 0, f.Errorf(key, "%v (want a duration like \"30s\" or a number of seconds)", err)
		}
		if secs > math.MaxInt64/float64(time.Second) || secs < -math.MaxInt64/float64(time.Second) {
			return 0, f.Errorf(key, "%v seconds is out of range", secs)
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < 0 {
		return 0, f.Errorf(key, "%s must not be negative", d)
	}
	return d, nil
}

// String reads a string key.
func (f *Fields) String(key, def string) (string, error) {
	raw, ok := f.lookup(key)
	if !ok {
		return def, nil
	}
	s, ok := raw.(string)
	if !ok {
		return "", f.Errorf(key, "want a string, got %T", raw)
	}
	return s, nil
}

// StringMap reads a table of strings; numbers and booleans are formatted.
func (f *Fields) StringMap(key string) (map[string]string, error) {
	raw, ok := f.lookup(key)
	if !ok {
		return nil, nil
	}
	out := map[string]string{}
	switch x := raw.(type) {
	case map[string]string:
		maps.Copy(out, x)
	case map[string]any:
		for k, v := range x {
			switch s := v.(type) {
			case string:
				out[k] = s
			case bool, int, int64, float64, json.Number:
				out[k] = fmt.Sprint(s)
			default:
				return nil, f.Errorf(key+"."+k, "want a string, got %T", v)
			}
		}
	default:
		return nil, f.Errorf(key, "want a table of strings, got %T", raw)
	}
	return out, nil
}

// StringList reads a list of strings; a single string is a one-item list.
func (f *Fields) StringList(key string) ([]string, error) {
	raw, ok := f.lookup(key)
	if !ok {
		return nil, nil
	}
	switch x := raw.(type) {
	case string:
		return []string{x}, nil
	case []string:
		return slices.Clone(x), nil
	case []any:
		out := make([]string, 0, len(x))
		for i, v := range x {
			s, ok := v.(string)
			if !ok {
				return nil, f.Errorf(fmt.Sprintf("%s[%d]", key, i), "want a string, got %T", v)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, f.Errorf(key, "want a list of strings, got %T", raw)
	}
}

// Spec reads the launch keys shared by every engine: deployable, site,
// allocation and vars.
func (f *Fields) Spec() (LaunchSpec, error) {
	var s LaunchSpec
	var err error
	if s.Deployable, err = f.String("deployable", ""); err != nil {
		return s, err
	}
	if s.Site, err = f.String("site", ""); err != nil {
		return s, err
	}
	if s.Allocation, err = f.String("allocation", ""); err != nil {
		return s, err
	}
	if s.Vars, err = f.StringMap("vars"); err != nil {
		return s, err
	}
	return s, nil
}

// SpecConfig renders s back into config keys (the inverse of Fields.Spec).
func SpecConfig(s LaunchSpec, into map[string]any) {
	if s.Deployable != "" {
		into["deployable"] = s.Deployable
	}
	if s.Site != "" {
		into["site"] = s.Site
	}
	if s.Allocation != "" {
		into["allocation"] = s.Allocation
	}
	if len(s.Vars) > 0 {
		v := make(map[string]any, len(s.Vars))
		for k, s := range s.Vars {
			v[k] = s
		}
		into["vars"] = v
	}
}

func toInt(raw any) (int, error) {
	switch x := raw.(type) {
	case int:
		return x, nil
	case int8:
		return int(x), nil
	case int16:
		return int(x), nil
	case int32:
		return int(x), nil
	case int64:
		if x > math.MaxInt || x < math.MinInt {
			return 0, fmt.Errorf("%d is out of range", x)
		}
		return int(x), nil
	case uint8:
		return int(x), nil
	case uint16:
		return int(x), nil
	case uint32:
		return int(x), nil
	case uint:
		if uint64(x) > math.MaxInt {
			return 0, fmt.Errorf("%d is out of range", x)
		}
		return int(x), nil
	case uint64:
		if x > math.MaxInt {
			return 0, fmt.Errorf("%d is out of range", x)
		}
		return int(x), nil
	case float32:
		return floatToInt(float64(x))
	case float64:
		return floatToInt(x)
	case json.Number:
		return stringToInt(string(x))
	case string:
		return stringToInt(x)
	default:
		return 0, fmt.Errorf("want an integer, got %T", raw)
	}
}

func stringToInt(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	return n, nil
}

func floatToInt(x float64) (int, error) {
	if x != math.Trunc(x) || math.IsInf(x, 0) || math.IsNaN(x) {
		return 0, fmt.Errorf("%v is not an integer", x)
	}
	// float64(MaxInt64) rounds up to 2^63, so the bound is exclusive.
	if x >= math.MaxInt64 || x < math.MinInt64 {
		return 0, fmt.Errorf("%v is out of range", x)
	}
	return int(x), nil
}

func toFloat(raw any) (float64, error) {
	switch x := raw.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0, fmt.Errorf("%v is not a number", x)
		}
		return x, nil
	case float32:
		return toFloat(float64(x))
	case json.Number:
		return toFloat(string(x))
	case string:
		v, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", x)
		}
		return toFloat(v)
	default:
		n, err := toInt(raw)
		if err != nil {
			return 0, fmt.Errorf("want a number, got %T", raw)
		}
		return float64(n), nil
	}
}

// Holder keeps an engine's parsed configuration together with its canonical
// map form, and implements Configure, Reconfigure and Config atomically on
// top of a parse function. It is exported for engines outside this package.
type Holder[C any] struct {
	mu     sync.RWMutex
	parse  func(map[string]any) (C, error)
	render func(C) map[string]any
	cfg    C
	raw    map[string]any
}

// NewHolder returns a Holder whose configuration starts as initial (usually
// the zero, unconfigured value).
func NewHolder[C any](initial C, parse func(map[string]any) (C, error), render func(C) map[string]any) *Holder[C] {
	return &Holder[C]{parse: parse, render: render, cfg: initial, raw: render(initial)}
}

// Configure replaces the whole configuration if cfg is valid.
func (h *Holder[C]) Configure(cfg map[string]any) error {
	c, err := h.parse(cfg)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cfg, h.raw = c, h.render(c)
	return nil
}

// Reconfigure merges update over the current configuration, keyed at the
// top level, and applies the result if it is valid as a whole.
func (h *Holder[C]) Reconfigure(update map[string]any) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	merged := maps.Clone(h.raw)
	if merged == nil {
		merged = map[string]any{}
	}
	for k, v := range update {
		if v == nil {
			delete(merged, k)
			continue
		}
		merged[k] = v
	}
	c, err := h.parse(merged)
	if err != nil {
		return err
	}
	h.cfg, h.raw = c, h.render(c)
	return nil
}

// Config returns a fresh copy of the canonical configuration map.
func (h *Holder[C]) Config() map[string]any {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.render(h.cfg)
}

// Current returns the parsed configuration in force.
func (h *Holder[C]) Current() C {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.cfg
}
