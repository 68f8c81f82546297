package sitter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Probe is a task's application health check (the `health` table of a
// task): an HTTP GET that must answer 2xx, or a command that must exit 0.
// Unlike health_command, which restarts the task it judges, a probe only
// reports: its result rides on the heartbeat, and the task's pool decides
// (a worker whose probe fails is replaced like a silent one, and a rollout
// waits for new workers' probes to pass).
type Probe struct {
	// HTTP is the URL to GET; "${port}" in it is the port the sitter
	// picked for the run and handed to the task as NIGHTSHIFT_PORT.
	HTTP string `toml:"http" json:"http,omitempty"`
	// Command is an argv run with the task's user, environment and workdir.
	Command []string `toml:"command" json:"command,omitempty"`
	// Interval is the time between two checks (default 10s).
	Interval Duration `toml:"interval" json:"interval,omitempty"`
	// Timeout bounds one check (default 1s, at most interval).
	Timeout Duration `toml:"timeout" json:"timeout,omitempty"`
	// FailureThreshold is how many failed checks in a row make the task
	// unhealthy (default 3).
	FailureThreshold int `toml:"failure_threshold" json:"failure_threshold,omitempty"`
	// InitialDelay is the wait after a run starts before its first check
	// (default 0: at once).
	InitialDelay Duration `toml:"initial_delay" json:"initial_delay,omitempty"`
}

// Probe defaults, Kubernetes' where it has one, but a 10 s interval.
const (
	DefaultProbeInterval         = 10 * time.Second
	DefaultProbeTimeout          = time.Second
	DefaultProbeFailureThreshold = 3
	// MaxProbeOutput bounds the output kept of one check: it is shown in
	// status and rides on every heartbeat.
	MaxProbeOutput = 200
	// PortPlaceholder in a probe's URL is replaced by the run's port.
	PortPlaceholder = "${port}"
)

// WithDefaults fills unset fields.
func (p Probe) WithDefaults() Probe {
	if p.Interval == 0 {
		p.Interval = Duration(DefaultProbeInterval)
	}
	if p.Timeout == 0 {
		p.Timeout = Duration(min(DefaultProbeTimeout, p.Interval.D()))
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = DefaultProbeFailureThreshold
	}
	return p
}

// Validate reports the first problem, naming the key under health.
func (p Probe) Validate() (key string, err error) {
	switch {
	case p.HTTP == "" && len(p.Command) == 0:
		return "http", fmt.Errorf("one of http (a URL) or command (an argv) is required")
	case p.HTTP != "" && len(p.Command) > 0:
		return "command", fmt.Errorf("set either http or command, not both")
	case len(p.Command) > 0 && p.Command[0] == "":
		return "command", fmt.Errorf("argv[0] is empty")
	}
	if p.HTTP != "" {
		u, err := url.Parse(strings.ReplaceAll(p.HTTP, PortPlaceholder, "1"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "http", fmt.Errorf("%q: want an http(s) URL with a host, such as http://127.0.0.1:${port}/healthz", p.HTTP)
		}
	}
	for k, d := range map[string]Duration{"interval": p.Interval, "timeout": p.Timeout, "initial_delay": p.InitialDelay} {
		if d.D() < 0 {
			return k, fmt.Errorf("must not be negative, got %s", d.D())
		}
	}
	if p.Interval == ZeroDuration {
		return "interval", fmt.Errorf("must be > 0")
	}
	if p.Timeout == ZeroDuration {
		return "timeout", fmt.Errorf("must be > 0")
	}
	d := p.WithDefaults()
	// A check still running when the next is due would pile up.
	if d.Timeout.D() > d.Interval.D() {
		return "timeout", fmt.Errorf("%s must not exceed interval %s", d.Timeout.D(), d.Interval.D())
	}
	if p.FailureThreshold < 0 || p.FailureThreshold > 100 {
		return "failure_threshold", fmt.Errorf("want 1 to 100, got %d", p.FailureThreshold)
	}
	return "", nil
}

// URL is the probe's URL for a run given port.
func (p Probe) URL(port int) string {
	return strings.ReplaceAll(p.HTTP, PortPlaceholder, fmt.Sprint(port))
}

// WantsPort reports whether the probe's URL needs a port picked per run.
func (p Probe) WantsPort() bool { return strings.Contains(p.HTTP, PortPlaceholder) }

// ProbeState is a task's health as its probe judges it.
type ProbeState string

const (
	// ProbeStarting: the run has not passed a check yet, nor failed
	// failure_threshold in a row.
	ProbeStarting ProbeState = "starting"
	// ProbeHealthy: the last check passed, or fewer than failure_threshold
	// failed since one did.
	ProbeHealthy ProbeState = "healthy"
	// ProbeUnhealthy: failure_threshold checks in a row failed.
	ProbeUnhealthy ProbeState = "unhealthy"
)

// ProbeStatus is a run's probe as heartbeats carry it.
type ProbeStatus struct {
	State ProbeState `json:"state"`
	// Failures counts failed checks in a row.
	Failures int `json:"failures,omitempty"`
	// Output is the last check's result for a person ("HTTP 503: not
	// ready", "exit 1: ...", "timed out after 1s"), at most MaxProbeOutput.
	Output string    `json:"output,omitempty"`
	At     time.Time `json:"at,omitzero"`
	// HealthySince is when the current healthy stretch began (zero unless
	// healthy): how long a new worker has been ready.
	HealthySince time.Time `json:"healthy_since,omitzero"`
}

// ProbeResult is one check's outcome.
type ProbeResult struct {
	OK     bool
	Output string
	At     time.Time
}

// Observe is the probe's pure decision: the status after result r, given
// the status before. A run begins with ProbeStatus{State: ProbeStarting}.
func (p Probe) Observe(prev ProbeStatus, r ProbeResult) ProbeStatus {
	p = p.WithDefaults()
	out := r.Output
	if len(out) > MaxProbeOutput {
		out = out[:MaxProbeOutput]
	}
	next := ProbeStatus{State: prev.State, Failures: prev.Failures, Output: out, At: r.At, HealthySince: prev.HealthySince}
	if next.State == "" {
		next.State = ProbeStarting
	}
	if r.OK {
		next.Failures = 0
		if prev.State != ProbeHealthy {
			next.State, next.HealthySince = ProbeHealthy, r.At
		}
		return next
	}
	next.Failures++
	if next.Failures >= p.FailureThreshold {
		next.State, next.HealthySince = ProbeUnhealthy, time.Time{}
	}
	return next
}

// FirstCheck is when a run started at started is first checked.
func (p Probe) FirstCheck(started time.Time) time.Time {
	return started.Add(p.InitialDelay.D())
}

// ProbeFromTable reads a task's health table as a decoded plan or jobs
// document holds it (TOML or JSON values), with every key known and the
// probe valid. Errors name the key after prefix: with prefix "worker.",
// "key worker.health.timeout: ...".
func ProbeFromTable(prefix string, v any) (Probe, error) {
	var p Probe
	m, ok := v.(map[string]any)
	if !ok {
		return p, fmt.Errorf("key %shealth: want a table, such as { http = \"http://127.0.0.1:${port}/healthz\" }", prefix)
	}
	// encoding/json names no field for a text value it cannot take.
	for _, k := range []string{"interval", "timeout", "initial_delay"} {
		if str, ok := m[k].(string); ok {
			if _, err := time.ParseDuration(str); err != nil {
				return p, fmt.Errorf("key %shealth.%s: %q: use Go syntax like 500ms, 10s, 2m", prefix, k, str)
			}
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return p, fmt.Errorf("key %shealth: %w", prefix, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typ):
			return p, fmt.Errorf("key %shealth.%s: want %s, got JSON %s", prefix, typ.Field, typ.Type, typ.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			k := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return p, fmt.Errorf("key %shealth.%s: unknown key (a probe has http or command, interval, timeout, failure_threshold, initial_delay)", prefix, k)
		}
		return p, fmt.Errorf("key %shealth: %w", prefix, err)
	}
	if key, err := p.Validate(); err != nil {
		return p, fmt.Errorf("key %shealth.%s: %w", prefix, key, err)
	}
	return p, nil
}
