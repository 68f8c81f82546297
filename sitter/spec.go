package sitter

import (
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
)

// Task is what to run and how to keep it in bounds. The same struct is used
// in a standalone tasks.toml ([[task]] tables) and inside a plan's job
// definition, so its TOML tags are the public config format.
type Task struct {
	Name string `toml:"name" json:"name"`
	// Command is the argv; no shell is involved unless Shell is set, so
	// arguments never need quoting.
	Command []string `toml:"command" json:"command,omitempty"`
	// Shell is a script for /bin/sh -c. It must be chosen explicitly so a
	// plain command is never word-split by accident.
	Shell   string            `toml:"shell" json:"shell,omitempty"`
	Env     map[string]string `toml:"env" json:"env,omitempty"`
	Workdir string            `toml:"workdir" json:"workdir,omitempty"`
	User    string            `toml:"user" json:"user,omitempty"`
	Group   string            `toml:"group" json:"group,omitempty"`
	// Autostart defaults to true: a task in a tasks file is meant to run.
	Autostart *bool `toml:"autostart" json:"autostart,omitempty"`

	// CPU is a limit in cores (0.5 = half a core); 0 means no limit.
	CPU float64 `toml:"cpu" json:"cpu,omitempty"`
	// Mem is a limit in MB (2^20 bytes) of resident memory of the whole tree.
	Mem float64 `toml:"mem" json:"mem,omitempty"`
	// TimeLimit is the longest one run may last; 0 means unlimited.
	TimeLimit Duration `toml:"time_limit" json:"time_limit,omitempty"`

	Restart RestartPolicy `toml:"restart" json:"restart,omitempty"`
	// MaxRestarts within RestartWindow before giving up (state failed).
	// nil means DefaultMaxRestarts; a negative value means unlimited.
	MaxRestarts *int `toml:"max_restarts" json:"max_restarts,omitempty"`
	// RestartWindow is the sliding window for MaxRestarts; 0 means the
	// task's whole life.
	RestartWindow     Duration `toml:"restart_window" json:"restart_window,omitempty"`
	BackoffInitial    Duration `toml:"backoff_initial" json:"backoff_initial,omitempty"`
	BackoffMax        Duration `toml:"backoff_max" json:"backoff_max,omitempty"`
	BackoffResetAfter Duration `toml:"backoff_reset_after" json:"backoff_reset_after,omitempty"`
	// EnsureAlive restarts a task that exited 0. nil means "true for
	// restart=always, false otherwise" (allow-exit: exit 0 is final).
	EnsureAlive *bool `toml:"ensure_alive" json:"ensure_alive,omitempty"`

	StopSignal Signal   `toml:"stop_signal" json:"stop_signal,omitempty"`
	StopGrace  Duration `toml:"stop_grace" json:"stop_grace,omitempty"`

	LogMaxMB   int `toml:"log_max_mb" json:"log_max_mb,omitempty"`
	LogBackups int `toml:"log_backups" json:"log_backups,omitempty"`

	HealthCommand  []string `toml:"health_command" json:"health_command,omitempty"`
	HealthInterval Duration `toml:"health_interval" json:"health_interval,omitempty"`

	// Health is the task's probe (see Probe): reported on the heartbeat
	// for the pool to judge, never a reason for the sitter to restart.
	Health *Probe `toml:"health" json:"health,omitempty"`

	// Follows names the task this one is linked to (its leader, added
	// before it), as Cerebro's linked jobs followed theirs: it starts with
	// the leader, is restarted whenever the leader starts a new run, and is
	// stopped when the leader stops for good (exited, failed or stopped).
	// Its own exits follow its own restart policy and never touch the
	// leader. "" for none.
	Follows string `toml:"follows" json:"follows,omitempty"`
}

// Worker is a job's worker table as a launch spec carries it: the worker's
// own task and, under linked, the tasks that run beside it on the same
// sitter (a sidecar), by name. They are one unit: each linked task
// follows the worker's (Task.Follows), and a rollout, which replaces the
// whole worker, restarts them all on the new revision.
type Worker struct {
	Task
	Linked map[string]Task `toml:"linked" json:"linked,omitempty"`
}

// Tasks returns the worker's tasks: its own first (named job when the
// table names none), then the linked ones in name order, each named by
// its key and following the worker's task. Every one is validated; a
// FieldError's key is the worker table's (linked.NAME.KEY).
func (w Worker) Tasks(job string) ([]Task, error) {
	main := w.Task
	if main.Name == "" {
		main.Name = job
	}
	if main.Follows != "" {
		return nil, &FieldError{Task: main.Name, Key: "follows", Msg: "the worker's own task follows none (its linked tasks follow it)"}
	}
	if err := main.Validate(); err != nil {
		return nil, err
	}
	out := []Task{main}
	names := make([]string, 0, len(w.Linked))
	for n := range w.Linked {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		t := w.Linked[n]
		bad := func(key, format string, args ...any) error {
			return &FieldError{Task: n, Key: "linked." + n + "." + key, Msg: fmt.Sprintf(format, args...)}
		}
		if t.Name != "" && t.Name != n {
			return nil, bad("name", "%q: a linked task is named by its key", t.Name)
		}
		if t.Follows != "" && t.Follows != main.Name {
			return nil, bad("follows", "%q: a linked task follows the worker's task %q", t.Follows, main.Name)
		}
		if n == main.Name {
			return nil, bad("name", "the worker's own task is named %q too", n)
		}
		t.Name, t.Follows = n, main.Name
		if err := t.Validate(); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				return nil, bad(fe.Key, "%s", fe.Msg)
			}
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// Defaults applied by WithDefaults. They follow the complaints collected in
// docs/sitter.md: supervisord's give-up is too fast and systemd's 100ms
// restart loop too tight, so we back off from 1s to 1m and give up after 5
// restarts in 5 minutes.
const (
	DefaultMaxRestarts       = 5
	DefaultRestartWindow     = 5 * time.Minute
	DefaultBackoffInitial    = time.Second
	DefaultBackoffMax        = time.Minute
	DefaultBackoffResetAfter = time.Minute
	DefaultStopGrace         = 10 * time.Second
	DefaultLogMaxMB          = 50
	DefaultLogBackups        = 5
	DefaultHealthInterval    = 10 * time.Second
)

// WithDefaults returns a copy of t with every unset field filled in. A
// duration set to ZeroDuration ("0s" in a file) is set, and stays zero.
func (t Task) WithDefaults() Task {
	if t.Restart == "" {
		t.Restart = RestartOnFailure
	}
	if t.MaxRestarts == nil {
		n := DefaultMaxRestarts
		t.MaxRestarts = &n
	}
	if t.RestartWindow == 0 {
		t.RestartWindow = Duration(DefaultRestartWindow)
	}
	if t.BackoffInitial == 0 {
		t.BackoffInitial = Duration(DefaultBackoffInitial)
	}
	if t.BackoffMax == 0 {
		t.BackoffMax = Duration(DefaultBackoffMax)
	}
	if t.BackoffMax < t.BackoffInitial {
		t.BackoffMax = t.BackoffInitial
	}
	if t.BackoffResetAfter == 0 {
		t.BackoffResetAfter = Duration(DefaultBackoffResetAfter)
	}
	if t.EnsureAlive == nil {
		b := t.Restart == RestartAlways
		t.EnsureAlive = &b
	}
	if t.Autostart == nil {
		b := true
		t.Autostart = &b
	}
	if t.StopSignal == 0 {
		t.StopSignal = Signal(syscall.SIGTERM)
	}
	if t.StopGrace == 0 {
		t.StopGrace = Duration(DefaultStopGrace)
	}
	if t.LogMaxMB == 0 {
		t.LogMaxMB = DefaultLogMaxMB
	}
	if t.LogBackups == 0 {
		t.LogBackups = DefaultLogBackups
	}
	if len(t.HealthCommand) > 0 && t.HealthInterval == 0 {
		t.HealthInterval = Duration(DefaultHealthInterval)
	}
	if t.Health != nil {
		p := t.Health.WithDefaults()
		t.Health = &p
	}
	return t
}

// Argv is the command line that is executed.
func (t Task) Argv() []string {
	if t.Shell != "" {
		return []string{"/bin/sh", "-c", t.Shell}
	}
	return t.Command
}

var taskName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// FieldError names the key of a Task that is wrong.
type FieldError struct {
	Task, Key, Msg string
}

func (e *FieldError) Error() string {
	if e.Task == "" {
		return fmt.Sprintf("task: %s: %s", e.Key, e.Msg)
	}
	return fmt.Sprintf("task %s: %s: %s", e.Task, e.Key, e.Msg)
}

// Validate reports the first problem with t, naming the key.
func (t Task) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &FieldError{Task: t.Name, Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	// Task names become file and cgroup names, so they must be path-safe.
	if !taskName.MatchString(t.Name) {
		return bad("name", "%q must be 1-64 of [A-Za-z0-9_.-] starting with a letter or digit", t.Name)
	}
	if t.Follows == t.Name {
		return bad("follows", "a task cannot follow itself")
	}
	switch {
	case len(t.Command) == 0 && t.Shell == "":
		return bad("command", "one of command (argv) or shell is required")
	case len(t.Command) > 0 && t.Shell != "":
		return bad("shell", "set either command or shell, not both")
	case len(t.Command) > 0 && t.Command[0] == "":
		return bad("command", "argv[0] is empty")
	}
	if t.CPU < 0 {
		return bad("cpu", "must be >= 0 cores, got %g", t.CPU)
	}
	if t.Mem < 0 {
		return bad("mem", "must be >= 0 MB, got %g", t.Mem)
	}
	for key, d := range map[string]Duration{
		"time_limit": t.TimeLimit, "restart_window": t.RestartWindow, "backoff_initial": t.BackoffInitial,
		"backoff_max": t.BackoffMax, "backoff_reset_after": t.BackoffResetAfter, "stop_grace": t.StopGrace,
		"health_interval": t.HealthInterval,
	} {
		if d.D() < 0 {
			return bad(key, "must not be negative, got %s", d.D())
		}
	}
	// An explicit zero interval would run the check back to back, each
	// one timing out at once.
	if len(t.HealthCommand) > 0 && t.HealthInterval == ZeroDuration {
		return bad("health_interval", "must be > 0 when health_command is set")
	}
	if t.Health != nil {
		if key, err := t.Health.Validate(); err != nil {
			return bad("health."+key, "%s", err)
		}
	}
	switch t.Restart {
	case "", RestartAlways, RestartOnFailure, RestartNever:
	default:
		return bad("restart", "%q is not one of always, on-failure, never", string(t.Restart))
	}
	if t.LogMaxMB < 0 || t.LogBackups < 0 {
		return bad("log_max_mb", "log_max_mb and log_backups must be >= 0")
	}
	if t.Group != "" && t.User == "" {
		return bad("group", "group %q needs user to be set too", t.Group)
	}
	for k := range t.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return bad("env", "invalid variable name %q", k)
		}
	}
	return nil
}

// RestartPolicy says which ends of a run lead to another run.
type RestartPolicy string

// Restart policies. A clean exit (status 0, no violation) is restarted only
// when ensure_alive is in force.
const (
	RestartAlways    RestartPolicy = "always"
	RestartOnFailure RestartPolicy = "on-failure"
	RestartNever     RestartPolicy = "never"
)

// UnmarshalText rejects unknown policies while decoding, so the TOML
// decoder can report the line.
func (p *RestartPolicy) UnmarshalText(b []byte) error {
	switch v := RestartPolicy(b); v {
	case RestartAlways, RestartOnFailure, RestartNever:
		*p = v
		return nil
	}
	return fmt.Errorf("restart %q is not one of always, on-failure, never", string(b))
}

// Duration is a time.Duration written as "1m30s" in TOML and JSON. The
// zero value means unset (WithDefaults fills in the default); ZeroDuration
// is an explicit zero, which is what "0s" in a file decodes to.
type Duration time.Duration

// ZeroDuration is a duration set to zero on purpose, so that defaults are
// not applied: backoff_initial = "0s" means restart at once, not after the
// 1 s default. D() returns 0 for it and it is written as "0s". The value
// is an otherwise unusable one (the most negative duration), so that a
// Duration stays a plain integer that existing code converts freely.
const ZeroDuration Duration = math.MinInt64

// UnmarshalText parses Go duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: use Go syntax like 500ms, 10s, 2m", string(b))
	}
	*d = Duration(v)
	if v == 0 {
		*d = ZeroDuration
	}
	return nil
}

// MarshalText writes Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.D().String()), nil }

// D is the value as a time.Duration (0 for ZeroDuration).
func (d Duration) D() time.Duration {
	if d == ZeroDuration {
		return 0
	}
	return time.Duration(d)
}

// IsSet reports whether d was given, even as zero.
func (d Duration) IsSet() bool { return d != 0 }

// Signal is a signal written by name ("TERM", "SIGINT") in config.
type Signal syscall.Signal

var signalNames = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "KILL": syscall.SIGKILL,
	"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "TERM": syscall.SIGTERM,
}

// UnmarshalText accepts TERM or SIGTERM (any case).
func (s *Signal) UnmarshalText(b []byte) error {
	name := strings.TrimPrefix(strings.ToUpper(string(b)), "SIG")
	v, ok := signalNames[name]
	if !ok {
		return fmt.Errorf("stop_signal %q is not one of HUP, INT, QUIT, KILL, USR1, USR2, TERM", string(b))
	}
	*s = Signal(v)
	return nil
}

// MarshalText writes the short name.
func (s Signal) MarshalText() ([]byte, error) {
	for n, v := range signalNames {
		if v == syscall.Signal(s) {
			return []byte(n), nil
		}
	}
	return []byte(fmt.Sprintf("%d", int(s))), nil
}

// File is a standalone tasks.toml: host-level settings plus [[task]] tables.
type File struct {
	SampleInterval    Duration `toml:"sample_interval"`
	HeartbeatInterval Duration `toml:"heartbeat_interval"`
	Tasks             []Task   `toml:"task"`
}

// LoadFile reads and validates a tasks file.
func LoadFile(path string) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("load tasks: %w", err)
	}
	return ParseFile(path, b)
}

// ParseFile decodes a tasks file; name is used in errors, which carry
// name:line and the key at fault.
func ParseFile(name string, src []byte) (File, error) {
	var f File
	md, err := toml.Decode(string(src), &f)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			key := ""
			if pe.LastKey != "" {
				key = " key " + pe.LastKey
			}
			return File{}, fmt.Errorf("%s:%d:%s: %s", name, pe.Position.Line, key, pe.Message)
		}
		return File{}, fmt.Errorf("%s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		idx, key := -1, k.String()
		if len(k) >= 2 && k[0] == "task" {
			// The TOML library does not expose array indexes, so an unknown
			// key points at the first table that spells it.
			idx, key = -2, k[len(k)-1]
		}
		return File{}, fmt.Errorf("%s:%d: unknown key %s", name, lineOf(src, idx, key), k.String())
	}
	if f.SampleInterval.D() < 0 || f.HeartbeatInterval.D() < 0 {
		return File{}, fmt.Errorf("%s:%d: sample_interval and heartbeat_interval must not be negative", name, lineOf(src, -1, "sample_interval"))
	}
	seen := map[string]int{}
	for i, t := range f.Tasks {
		if err := t.Validate(); err != nil {
			var fe *FieldError
			key := "name"
			if errors.As(err, &fe) {
				key = fe.Key
			}
			// A key of an inline table (health.interval) is on the line of
			// its table's key.
			top, _, _ := strings.Cut(key, ".")
			return File{}, fmt.Errorf("%s:%d: %w", name, lineOf(src, i, top), err)
		}
		if j, dup := seen[t.Name]; dup {
			return File{}, fmt.Errorf("%s:%d: task %s: name: duplicate of task #%d", name, lineOf(src, i, "name"), t.Name, j+1)
		}
		seen[t.Name] = i
	}
	return f, nil
}

// lineOf finds the 1-based line of key inside the idx-th [[task]] table
// (idx -1: top level; -2: any table). It falls back to the table header,
// then to line 1, so an error always carries a line.
func lineOf(src []byte, idx int, key string) int {
	lines := strings.Split(string(src), "\n")
	table, header := -1, 1
	for n, l := range lines {
		s := strings.TrimSpace(l)
		if strings.HasPrefix(s, "[[task]]") {
			table++
			if table == idx {
				header = n + 1
			}
			continue
		}
		if strings.HasPrefix(s, "[") && !strings.HasPrefix(s, "[[task]]") {
			continue
		}
		if idx != -2 && table != idx {
			continue
		}
		if rest, ok := strings.CutPrefix(s, key); ok {
			if r := strings.TrimSpace(rest); strings.HasPrefix(r, "=") {
				return n + 1
			}
		}
	}
	return header
}
