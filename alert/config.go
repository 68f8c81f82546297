package alert

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults of Config's thresholds.
const (
	DefaultPoolBelowPolicyFor   = 5 * time.Minute
	DefaultBrokerUnreachableFor = time.Minute
	DefaultFlappingReplacements = 5
	DefaultFlappingWindow       = 10 * time.Minute
	DefaultRestartLoopRestarts  = 3
	DefaultRestartLoopWindow    = 10 * time.Minute
	DefaultRateLimit            = 30
	DefaultSinkTimeout          = 5 * time.Second
	DefaultSinkRetries          = 5
)

// Sink types and webhook body formats.
const (
	SinkWebhook = "webhook"
	SinkCommand = "command"

	FormatGeneric      = "generic"
	FormatSlack        = "slack"
	FormatAlertmanager = "alertmanager"
)

// SinkTypes and Formats are the accepted values, for validation messages.
var (
	SinkTypes = []string{SinkWebhook, SinkCommand}
	Formats   = []string{FormatGeneric, FormatSlack, FormatAlertmanager}
)

// Config is a run's [alerts] table: thresholds and sinks. A zero value
// means the default everywhere.
type Config struct {
	PoolBelowPolicyFor   time.Duration `json:"pool_below_policy_for,omitempty"`
	BrokerUnreachableFor time.Duration `json:"broker_unreachable_for,omitempty"`
	FlappingReplacements int           `json:"flapping_replacements,omitempty"`
	FlappingWindow       time.Duration `json:"flapping_window,omitempty"`
	RestartLoopRestarts  int           `json:"restart_loop_restarts,omitempty"`
	RestartLoopWindow    time.Duration `json:"restart_loop_window,omitempty"`
	// RateLimit is how many events each sink gets per minute at most;
	// the rest are dropped, counted and journaled.
	RateLimit int    `json:"rate_limit,omitempty"`
	Sinks     []Sink `json:"sinks,omitempty"`
}

// Sink is one place alerts go.
type Sink struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// URL and Format are a webhook's; Command is a command's argv (never
	// a shell string), which gets the event's JSON on stdin.
	URL     string   `json:"url,omitempty"`
	Format  string   `json:"format,omitempty"`
	Command []string `json:"command,omitempty"`
	// Timeout bounds one attempt; Retries is how many attempts follow a
	// failed one, waiting by internal/backoff (0 means the default, -1
	// none: a plan's retries = 0).
	Timeout  time.Duration `json:"timeout,omitempty"`
	Retries  int           `json:"retries,omitempty"`
	Disabled bool          `json:"disabled,omitempty"`
}

// WithDefaults fills every unset threshold and sink setting.
func (c Config) WithDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	def(&c.PoolBelowPolicyFor, DefaultPoolBelowPolicyFor)
	def(&c.BrokerUnreachableFor, DefaultBrokerUnreachableFor)
	def(&c.FlappingWindow, DefaultFlappingWindow)
	def(&c.RestartLoopWindow, DefaultRestartLoopWindow)
	defInt(&c.FlappingReplacements, DefaultFlappingReplacements)
	defInt(&c.RestartLoopRestarts, DefaultRestartLoopRestarts)
	defInt(&c.RateLimit, DefaultRateLimit)
	c.Sinks = slices.Clone(c.Sinks)
	for i := range c.Sinks {
		s := &c.Sinks[i]
		def(&s.Timeout, DefaultSinkTimeout)
		if s.Retries < 0 {
			s.Retries = 0
		} else if s.Retries == 0 {
			s.Retries = DefaultSinkRetries
		}
		if s.Type == SinkWebhook && s.Format == "" {
			s.Format = FormatGeneric
		}
	}
	return c
}

// CheckSink reports the first problem with s, naming the key at fault.
func CheckSink(s Sink) (key string, err error) {
	switch {
	case !validName(s.Name):
		return "name", fmt.Errorf("sink name %q: want letters, digits, '_' and '-'", s.Name)
	case !slices.Contains(SinkTypes, s.Type):
		return "type", fmt.Errorf("sink type %q: want one of %s", s.Type, strings.Join(SinkTypes, ", "))
	case s.Timeout < 0:
		return "timeout", errors.New("must not be negative")
	case s.Retries < -1:
		return "retries", errors.New("must not be negative")
	}
	switch s.Type {
	case SinkWebhook:
		if len(s.Command) > 0 {
			return "command", errors.New("a webhook sink has no command")
		}
		u, err := url.Parse(s.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "url", errors.New("want an http:// or https:// URL")
		}
		if s.Format != "" && !slices.Contains(Formats, s.Format) {
			return "format", fmt.Errorf("format %q: want one of %s", s.Format, strings.Join(Formats, ", "))
		}
	case SinkCommand:
		if len(s.Command) == 0 || s.Command[0] == "" {
			return "command", errors.New("want the program and its arguments as a list")
		}
		if s.URL != "" || s.Format != "" {
			return "url", errors.New("a command sink has no url or format; it gets the event's JSON on stdin")
		}
	}
	return "", nil
}

// Validate checks every setting of c.
func (c Config) Validate() error {
	for _, d := range []time.Duration{c.PoolBelowPolicyFor, c.BrokerUnreachableFor, c.FlappingWindow, c.RestartLoopWindow} {
		if d < 0 {
			return errors.New("alerts: durations must not be negative")
		}
	}
	if c.FlappingReplacements < 0 || c.RestartLoopRestarts < 0 || c.RateLimit < 0 {
		return errors.New("alerts: counts must not be negative")
	}
	seen := map[string]bool{}
	for _, s := range c.Sinks {
		if key, err := CheckSink(s); err != nil {
			return fmt.Errorf("alerts: sink %s: %s: %w", s.Name, key, err)
		}
		if seen[s.Name] {
			return fmt.Errorf("alerts: sink %s defined twice", s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// Reconfigure returns c with values applied, as `mgmt reconfigure RUN
// @alerts key=value...` sends them: a threshold by its name
// (pool_below_policy_for=2m, flapping_replacements=8, rate_limit=10), or a
// sink's setting as sink.NAME.KEY (url, format, timeout, retries,
// disabled; a new NAME with type=webhook adds a webhook). A command sink's
// argv is changed only in the plan. Nothing is applied when any value is
// bad.
func (c Config) Reconfigure(values map[string]any) (Config, error) {
	out := c
	out.Sinks = slices.Clone(c.Sinks)
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	// type= first, so that a new sink exists before its other keys.
	slices.SortFunc(keys, func(a, b string) int {
		at, bt := strings.HasSuffix(a, ".type"), strings.HasSuffix(b, ".type")
		switch {
		case at && !bt:
			return -1
		case bt && !at:
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, k := range keys {
		if err := out.set(k, values[k]); err != nil {
			return c, fmt.Errorf("alerts: %s: %w", k, err)
		}
	}
	if err := out.Validate(); err != nil {
		return c, err
	}
	return out, nil
}

func (c *Config) set(key string, v any) error {
	switch key {
	case "pool_below_policy_for":
		return setDuration(&c.PoolBelowPolicyFor, v)
	case "broker_unreachable_for":
		return setDuration(&c.BrokerUnreachableFor, v)
	case "flapping_window":
		return setDuration(&c.FlappingWindow, v)
	case "restart_loop_window":
		return setDuration(&c.RestartLoopWindow, v)
	case "flapping_replacements":
		return setInt(&c.FlappingReplacements, v)
	case "restart_loop_restarts":
		return setInt(&c.RestartLoopRestarts, v)
	case "rate_limit":
		return setInt(&c.RateLimit, v)
	}
	rest, ok := strings.CutPrefix(key, "sink.")
	name, field, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return errors.New("unknown key; want a threshold name or sink.NAME.KEY")
	}
	i := slices.IndexFunc(c.Sinks, func(s Sink) bool { return s.Name == name })
	if i < 0 {
		if field != "type" {
			return fmt.Errorf("no sink %q (add one with sink.%s.type=webhook)", name, name)
		}
		c.Sinks = append(c.Sinks, Sink{Name: name})
		i = len(c.Sinks) - 1
	}
	s := &c.Sinks[i]
	switch field {
	case "type":
		t := fmt.Sprint(v)
		if t != SinkWebhook {
			return errors.New("only a webhook sink can be added by reconfigure; a command sink is the plan's")
		}
		if s.Type != "" && s.Type != t {
			return errors.New("a sink's type cannot change")
		}
		s.Type = t
	case "url":
		s.URL = fmt.Sprint(v)
	case "format":
		s.Format = fmt.Sprint(v)
	case "timeout":
		return setDuration(&s.Timeout, v)
	case "retries":
		return setInt(&s.Retries, v)
	case "disabled":
		b, err := strconv.ParseBool(fmt.Sprint(v))
		if err != nil {
			return errors.New("want true or false")
		}
		s.Disabled = b
	default:
		return errors.New("unknown sink key; want url, format, timeout, retries, disabled or type")
	}
	return nil
}

func setDuration(d *time.Duration, v any) error {
	s, ok := v.(string)
	if !ok {
		return errors.New("want a duration such as \"90s\" or \"5m\"")
	}
	x, err := time.ParseDuration(s)
	if err != nil || x <= 0 {
		return errors.New("want a positive duration such as \"90s\" or \"5m\"")
	}
	*d = x
	return nil
}

func setInt(n *int, v any) error {
	var x int64
	switch v := v.(type) {
	case int64:
		x = v
	case int:
		x = int64(v)
	case float64:
		if v != float64(int64(v)) {
			return errors.New("want a whole number")
		}
		x = int64(v)
	default:
		return errors.New("want a whole number")
	}
	if x <= 0 || x > 1_000_000 {
		return errors.New("want a number from 1 to 1000000")
	}
	*n = int(x)
	return nil
}
