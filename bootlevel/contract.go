// Package bootlevel owns the boot engine: it boots a validated plan level by
// level (services of one level in parallel, the next level only when every
// service of this one passed its ready check), and resumes, repairs and tears
// down runs. It talks to the world only through Driver (where programs run),
// Store (the run record) and Clock, so the engine itself is deterministic.
package bootlevel

import (
	"context"
	"errors"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift/internal/redact"
	"nightshift/launchplan"
)

// Clock is injected so that tests control time.
type Clock = clockwork.Clock

// ServiceState is the persisted state of one service, lowercase in JSON.
type ServiceState string

const (
	ServicePending     ServiceState = "pending"
	ServiceBooting     ServiceState = "booting"
	ServiceReady       ServiceState = "ready"
	ServiceFailed      ServiceState = "failed"
	ServiceTerminating ServiceState = "terminating"
	ServiceTerminated  ServiceState = "terminated"
)

// RunState is the persisted state of a whole run.
type RunState string

const (
	RunBooting RunState = "booting"
	RunReady   RunState = "ready"
	RunFailed  RunState = "failed"
	// RunInterrupted: the launch was stopped by its caller (SIGINT, SIGTERM,
	// SIGHUP) before it finished; launching again resumes it.
	RunInterrupted RunState = "interrupted"
	RunTerminating RunState = "terminating"
	RunTerminated  RunState = "terminated"
)

// Step names a program step of a service.
type Step string

const (
	StepAcquire   Step = "acquire" // the driver obtains a host (ec2: launch an instance)
	StepBoot      Step = "boot"
	StepReady     Step = "ready"
	StepTerminate Step = "terminate"
	StepRelease   Step = "release" // the driver gives the host back (ec2: terminate)
)

// Host is where a service runs, as its driver found or made it.
type Host struct {
	Hostname   string            `json:"hostname"`
	InstanceID string            `json:"instance_id"`
	Attrs      map[string]string `json:"attrs,omitempty"` // driver-specific extra attributes
}

// StepRequest asks a driver to run one program to completion.
type StepRequest struct {
	Run     string
	Level   int
	Service *launchplan.Service
	Step    Step
	// Program has its Args already expanded; Env is expanded too and carries
	// the built-in NIGHTSHIFT_* variables.
	Program launchplan.Program
	Env     map[string]string
	// WorkDir is the service's working directory on the launching machine
	// (local driver) and the basis of the stage dir on remote hosts.
	WorkDir string
	// LogPath is a file on the launching machine to which the step's stdout
	// and stderr are appended.
	LogPath string
	Host    Host
	// Redactor knows the run's secrets by value; a driver passes what it
	// writes itself (log headers, error messages) through Scrub. Programs'
	// own output goes to LogPath as written: the file is 0600 and mgmt
	// redacts it when it shows it.
	Redactor *redact.Redactor
	// Plan is the run's plan, and Expand resolves a template in this
	// service's scope (globals, earlier levels' attributes, ${.attr}), so
	// a built-in type can read what other services declare: the
	// provisioner takes the run's job definitions from the controller's
	// config. Either may be nil for drivers that run programs.
	Plan   *launchplan.Plan
	Expand func(template string) (string, error)
	// Reboot is set on the terminate step that
	// a restart or repair runs before booting the same service again: a
	// type keeps what must outlive its process (a broker's users, vhosts
	// and durable queues), which a teardown removes.
	Reboot bool
}

// Scrub removes the run's known secrets from s (with a nil Redactor, only
// URL passwords and key ids).
func (r StepRequest) Scrub(s string) string { return r.Redactor.String(s) }

// StepResult is what a finished program left behind.
type StepResult struct {
	ExitCode int
	// Outputs are the attributes the boot program exported through the file
	// named by launchplan.OutputEnv (nil for other steps or when absent).
	Outputs map[string]string
	// Tail holds the last lines of combined output, for error reports.
	Tail []string
	// Gone says a failed ready check cannot pass by waiting: the service's
	// process is dead. The engine then stops retrying at once, so repair
	// restarts a dead daemon now rather than after its ready timeout.
	Gone bool
}

// Driver runs a service's programs somewhere. Implementations live in their
// own packages (internal/service/localservice, sshservice, ec2service).
type Driver interface {
	// Acquire obtains the host a service runs on. local and ssh return the
	// host at once; ec2 launches (idempotently) and waits for it.
	Acquire(ctx context.Context, run string, svc *launchplan.Service) (Host, error)
	// Run runs one program to completion. A non-zero exit is reported in
	// StepResult.ExitCode with a nil error; err is for failures to run at all
	// (and ctx expiry, which must kill the program and everything it started).
	Run(ctx context.Context, req StepRequest) (StepResult, error)
	// Release gives the host back (ec2 terminates the instance). It must be
	// idempotent.
	Release(ctx context.Context, run string, svc *launchplan.Service, host Host) error
}

// Run is the persisted record of one run.
type Run struct {
	Name     string   `json:"name"`
	PlanPath string   `json:"plan_path"`
	PlanHash string   `json:"plan_hash"`
	State    RunState `json:"state"`
	// Plan is the JSON of the launchplan.Plan this run booted, so teardown
	// works even if the file changed or vanished.
	Plan    []byte    `json:"-"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// ServiceRecord is the persisted record of one service of a run.
type ServiceRecord struct {
	Run        string            `json:"run"`
	Name       string            `json:"name"`
	Level      int               `json:"level"`
	State      ServiceState      `json:"state"`
	Attributes map[string]string `json:"attributes"`
	Host       Host              `json:"host"`
	Error      string            `json:"error,omitempty"`
	LogPath    string            `json:"log_path,omitempty"`
	Restarts   int               `json:"restarts"`
	Started    time.Time         `json:"started,omitzero"`
	ReadyAt    time.Time         `json:"ready_at,omitzero"`
	Ended      time.Time         `json:"ended,omitzero"`
	Updated    time.Time         `json:"updated"`
}

// Event is one entry of a run's append-only history.
type Event struct {
	Seq     int64     `json:"seq"` // assigned by the store
	Run     string    `json:"run"`
	Time    time.Time `json:"time"`
	Level   int       `json:"level,omitempty"`
	Service string    `json:"service,omitempty"`
	Step    Step      `json:"step,omitempty"`
	Kind    string    `json:"kind"` // e.g. "level.start", "service.state", "step.failed"
	State   string    `json:"state,omitempty"`
	Message string    `json:"message,omitempty"`
	// Transient marks an event handed to OnEvent but never stored: the
	// repeats of an identical ready failure, which a terminal shows as
	// one updating line while history keeps only the first and the last.
	Transient bool `json:"transient,omitempty"`
}

// ErrNotFound is returned by a Store for an unknown run.
var ErrNotFound = errors.New("not found")

// ErrExists is returned by CreateRun when the run already exists.
var ErrExists = errors.New("already exists")

// Store persists runs. The engine writes a record before it acts on it.
// Implementations: internal/store/runstore (SQLite).
type Store interface {
	CreateRun(ctx context.Context, r Run) error
	GetRun(ctx context.Context, name string) (Run, error)
	ListRuns(ctx context.Context) ([]Run, error)
	// UpdateRun replaces the mutable fields (State, Plan, PlanHash, PlanPath, Updated).
	UpdateRun(ctx context.Context, r Run) error
	// PutService inserts or replaces a service record (keyed by run and name).
	PutService(ctx context.Context, s ServiceRecord) error
	Services(ctx context.Context, run string) ([]ServiceRecord, error)
	// AppendEvent appends to the history and returns the event with Seq set.
	AppendEvent(ctx context.Context, e Event) (Event, error)
	Events(ctx context.Context, run string, afterSeq int64) ([]Event, error)
	// DeleteRun removes a run and everything under it.
	DeleteRun(ctx context.Context, name string) error
}

// StepHeaderWriter is a Driver that starts each step's log with its own
// header line (time, step, command line). For the steps it says so of, the
// engine writes none, so that a step has one header in the log, not two.
type StepHeaderWriter interface {
	WritesStepHeader(req StepRequest) bool
}
