// Package execengine owns the exec decision engine: a pool policy written as
// an external program in any language. For each decision it runs the program
// with the Snapshot as JSON on stdin and reads a Decision as JSON from
// stdout (the protocol is in docs/engines.md). It is the one engine that does
// I/O, so it lives apart from the pure engines in package decision. Any
// failure (no such program, non-zero exit, timeout, bad output) yields a
// Decision with no actions, Error set and a log line: a broken policy never
// changes the pool.
package execengine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"nightshift/decision"
	"nightshift/internal/redact"
)

// Name is the registry name of the exec engine.
const Name = "exec"

// Defaults and limits.
const (
	DefaultTimeout   = 5 * time.Second
	DefaultMaxLaunch = 100
	// MaxOutput bounds what is read from the program's stdout.
	MaxOutput = 1 << 20
	// stderrKeep is how much of stderr (from its start) is kept for the log.
	stderrKeep = 2048
	// ProtocolVersion is the "version" field of the input document.
	ProtocolVersion = 1
)

// Config is the exec engine's configuration.
type Config struct {
	// Command is the program and its arguments. It is run directly, not
	// through a shell.
	Command []string
	// Timeout bounds one run; on expiry the whole process group is killed.
	Timeout time.Duration
	// MaxLaunch rejects output that launches more than this many instances
	// in one decision (a runaway program must not empty the account).
	MaxLaunch int
	// Params is passed to the program unchanged, as the input's "config".
	Params map[string]any
	// Spec is used for launches whose output carries no "spec".
	Spec decision.LaunchSpec
}

// ParseConfig validates an exec configuration map. Keys: command (string
// or list of strings), timeout, max_launch, params (table), deployable,
// site, allocation, vars.
func ParseConfig(m map[string]any) (Config, error) {
	f := decision.NewFields(Name, m)
	var c Config
	var err error
	if c.Command, err = f.StringList("command"); err != nil {
		return c, err
	}
	if len(c.Command) == 0 || strings.TrimSpace(c.Command[0]) == "" {
		return c, f.Errorf("command", "required")
	}
	if c.Timeout, err = f.Duration("timeout", DefaultTimeout); err != nil {
		return c, err
	}
	if c.Timeout == 0 {
		return c, f.Errorf("timeout", "must be positive")
	}
	if c.MaxLaunch, err = f.IntMin("max_launch", DefaultMaxLaunch, 1); err != nil {
		return c, err
	}
	if f.Has("params") {
		p, ok := m["params"].(map[string]any)
		if !ok {
			return c, f.Errorf("params", "want a table, got %T", m["params"])
		}
		if _, err := json.Marshal(p); err != nil {
			return c, f.Errorf("params", "not representable as JSON: %v", err)
		}
		c.Params = maps.Clone(p)
	}
	if c.Spec, err = f.Spec(); err != nil {
		return c, err
	}
	return c, f.Unknown()
}

func render(c Config) map[string]any {
	if len(c.Command) == 0 {
		return map[string]any{}
	}
	m := map[string]any{
		"command":    append([]string(nil), c.Command...),
		"timeout":    c.Timeout.String(),
		"max_launch": c.MaxLaunch,
	}
	if c.Params != nil {
		m["params"] = maps.Clone(c.Params)
	}
	decision.SpecConfig(c.Spec, m)
	return m
}

// Engine runs an external policy program. It is safe for concurrent use;
// each decision runs its own process.
type Engine struct {
	log *slog.Logger
	h   *decision.Holder[Config]
}

// New returns an unconfigured exec engine that logs failures to log (nil
// means slog.Default()).
func New(log *slog.Logger) *Engine {
	if log == nil {
		log = slog.Default()
	}
	return &Engine{log: log, h: decision.NewHolder(Config{}, ParseConfig, render)}
}

// Factory returns a registry factory for exec engines sharing log:
//
//	reg.Register(execengine.Name, execengine.Factory(logger))
func Factory(log *slog.Logger) decision.Factory {
	return func() decision.Engine { return New(log) }
}

func (e *Engine) Name() string                         { return Name }
func (e *Engine) Configure(cfg map[string]any) error   { return e.h.Configure(cfg) }
func (e *Engine) Reconfigure(cfg map[string]any) error { return e.h.Reconfigure(cfg) }
func (e *Engine) Config() map[string]any               { return e.h.Config() }

// Decide runs the program without an outer context; prefer decision.Run,
// which calls DecideContext.
func (e *Engine) Decide(s decision.Snapshot) decision.Decision {
	return e.DecideContext(context.Background(), s)
}

// Input is the document written to the program's stdin: the Snapshot's
// fields plus the protocol version and the configured params.
type Input struct {
	Version int            `json:"version"`
	Config  map[string]any `json:"config"`
	decision.Snapshot
}

// DecideContext runs the program once for s. Cancelling ctx, or the
// configured timeout, kills the program's whole process group.
func (e *Engine) DecideContext(ctx context.Context, s decision.Snapshot) decision.Decision {
	c := e.h.Current()
	if len(c.Command) == 0 {
		return decision.Decision{Engine: Name, Reason: "not configured: no action until configured"}
	}
	d, stderr, err := run(ctx, c, s)
	if err != nil {
		msg := redact.String(err.Error())
		e.log.Warn("exec engine failed; no action this round",
			"pool", s.Pool, "command", redact.String(strings.Join(c.Command, " ")),
			"err", msg, "stderr", redact.String(stderr))
		return decision.Decision{Engine: Name, Error: msg, Reason: "exec engine failed, no action: " + msg}
	}
	d.Engine = Name
	return d
}

// run executes the program and parses its answer; stderr is returned for
// logging.
func run(ctx context.Context, c Config, s decision.Snapshot) (decision.Decision, string, error) {
	params := c.Params
	if params == nil {
		params = map[string]any{}
	}
	input, err := json.Marshal(Input{Version: ProtocolVersion, Config: params, Snapshot: s})
	if err != nil {
		return decision.Decision{}, "", fmt.Errorf("encode snapshot: %w", err)
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(parent, c.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Command[0], c.Command[1:]...)
	cmd.Stdin = bytes.NewReader(input)
	stdout := &capped{max: MaxOutput}
	stderr := &capped{max: stderrKeep}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Own process group, so that a timeout also kills whatever the program
	// started (a shell script's children would otherwise keep running).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild that left the group could hold stdout open forever.
	cmd.WaitDelay = time.Second

	runErr := cmd.Run()
	errOut := strings.TrimSpace(stderr.String())
	switch {
	case parent.Err() != nil:
		return decision.Decision{}, errOut, fmt.Errorf("run %s: %w (process group killed)", c.Command[0], parent.Err())
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return decision.Decision{}, errOut, fmt.Errorf("run %s: timed out after %s (process group killed)", c.Command[0], c.Timeout)
	case runErr != nil:
		var exit *exec.ExitError
		if errors.As(runErr, &exit) {
			return decision.Decision{}, errOut, fmt.Errorf("run %s: %s%s", c.Command[0], exit.ProcessState, lastLine(errOut))
		}
		return decision.Decision{}, errOut, fmt.Errorf("run %s: %w", c.Command[0], runErr)
	case stdout.overflow:
		return decision.Decision{}, errOut, fmt.Errorf("run %s: output larger than %d bytes", c.Command[0], MaxOutput)
	}
	d, err := ParseOutput(stdout.Bytes(), s, c)
	if err != nil {
		return decision.Decision{}, errOut, fmt.Errorf("output of %s: %w", c.Command[0], err)
	}
	return d, errOut, nil
}

// ParseOutput decodes and checks a program's answer against the snapshot it
// was given: actions may only name instances in the snapshot, launches are
// bounded by MaxLaunch, and launches without a spec get the configured one.
func ParseOutput(data []byte, s decision.Snapshot, c Config) (decision.Decision, error) {
	d, specGiven, err := decision.DecodeDecision(data)
	if err != nil {
		return decision.Decision{}, err
	}
	if d.Reason == "" {
		return decision.Decision{}, fmt.Errorf("decision: reason: required")
	}
	if d.Error != "" {
		return decision.Decision{}, fmt.Errorf("decision: error: the program reported %q", d.Error)
	}
	known := make(map[string]bool, len(s.Instances))
	for _, in := range s.Instances {
		known[in.ID] = true
	}
	maxLaunch := c.MaxLaunch
	if maxLaunch <= 0 {
		maxLaunch = DefaultMaxLaunch
	}
	launches := 0
	for i, a := range d.Actions {
		switch a := a.(type) {
		case decision.Launch:
			launches += a.Count
			if launches > maxLaunch {
				return decision.Decision{}, fmt.Errorf("decision: actions[%d] (launch): count: %d launches in one decision exceed max_launch %d", i, launches, maxLaunch)
			}
			if !specGiven[i] {
				a.Spec = c.Spec
				a.Spec.Vars = maps.Clone(c.Spec.Vars)
				d.Actions[i] = a
			}
		case decision.Terminate:
			if err := checkIDs(i, "terminate", a.IDs, known); err != nil {
				return decision.Decision{}, err
			}
		case decision.Drain:
			if err := checkIDs(i, "drain", a.IDs, known); err != nil {
				return decision.Decision{}, err
			}
		}
	}
	return d, nil
}

func checkIDs(i int, kind string, ids []string, known map[string]bool) error {
	for j, id := range ids {
		if !known[id] {
			return fmt.Errorf("decision: actions[%d] (%s): ids[%d]: %q is not an instance in the snapshot", i, kind, j, id)
		}
	}
	return nil
}

func lastLine(s string) string {
	if s == "" {
		return ""
	}
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return ": " + s
}

// capped is a buffer that keeps the first max bytes and drops the rest
// without failing the write, so the program is never blocked on a full pipe.
// The buffer is a field, not embedded: an embedded bytes.Buffer would lend
// capped its ReadFrom, and io.Copy would bypass Write and the cap.
type capped struct {
	buf      bytes.Buffer
	max      int
	overflow bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room < len(p) {
		c.overflow = true
		if room > 0 {
			c.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return c.buf.Write(p)
}

func (c *capped) Bytes() []byte  { return c.buf.Bytes() }
func (c *capped) String() string { return c.buf.String() }
