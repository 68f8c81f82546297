// Package launchplan owns the launch plan: the TOML format an operator writes,
// its validation (every error carries file:line and key), and the reference
// language (${service.attr}, ${.attr}, ${global.name}, ${env.NAME}) that wires
// what earlier levels export into later ones. It does no I/O beyond reading
// plan files, and it never runs anything.
package launchplan

import (
	"fmt"
	"nightshift/alert"
	"nightshift/internal/nsenv"
	"time"
)

// Pos is a place in a plan file.
type Pos struct {
	File string `json:"file"`
	Line int    `json:"line"`
}

func (p Pos) String() string {
	if p.Line <= 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// Plan is a validated launch plan. It is JSON-serialisable so that a run can
// keep the exact plan it booted, and be torn down even after the file changed.
type Plan struct {
	Name string `json:"name"`
	// Path is the absolute path of the top plan file; Dir is its directory.
	Path string `json:"path"`
	Dir  string `json:"dir"`
	// Hash is the hex sha256 over the content of every file the plan read.
	Hash string `json:"hash"`
	// Globals are the merged globals: [globals], then -G files, then -g pairs.
	Globals map[string]string `json:"globals"`
	Levels  []Level           `json:"levels"`
	// Jobs are worker pools (filled by the controller issue); kept raw here.
	Jobs []Job `json:"jobs,omitempty"`
	// Alerts is the [alerts] table: thresholds and sinks (docs/alerts.md);
	// nil when the plan has none (defaults, no sinks).
	Alerts *alert.Config `json:"alerts,omitempty"`
	// Placeholders are values still holding PlaceholderMark (sorted by
	// place): `launch` refuses a plan with any.
	Placeholders []Placeholder `json:"placeholders,omitempty"`
}

// Level is one bootlevel. Index is 1-based.
type Level struct {
	Index    int       `json:"index"`
	Pos      Pos       `json:"pos"`
	Services []Service `json:"services"`
	// Parallelism bounds how many services of this level boot at once; 0 is unbounded.
	Parallelism int `json:"parallelism,omitempty"`
}

// Driver names where a service runs.
const (
	DriverLocal = "local"
	DriverSSH   = "ssh"
	DriverEC2   = "ec2"
)

// Service is one service after defaults were applied and replicas expanded.
// String fields marked "template" may hold ${...} references; they are
// expanded late, at boot, by Expand.
type Service struct {
	Name  string `json:"name"`
	Level int    `json:"level"`
	Pos   Pos    `json:"pos"`
	// Driver is DriverLocal, DriverSSH or DriverEC2.
	Driver string `json:"driver"`
	// Type names a built-in service type (broker, provisioner, controller)
	// implemented in Go instead of programs; "" means programs only.
	Type string `json:"type,omitempty"`
	// TypeConfig is the raw [service.config] table for a built-in type.
	TypeConfig map[string]any `json:"type_config,omitempty"`

	Boot      *Program `json:"boot,omitempty"`
	Ready     *Program `json:"ready,omitempty"`
	Terminate *Program `json:"terminate,omitempty"`

	Env     map[string]string `json:"env,omitempty"` // values are templates
	WorkDir string            `json:"workdir,omitempty"`

	BootTimeout      time.Duration `json:"boot_timeout"`
	ReadyTimeout     time.Duration `json:"ready_timeout"`
	TerminateTimeout time.Duration `json:"terminate_timeout"`
	// ReadyInterval is the pause between ready attempts; ReadyStartPeriod is
	// a grace period after boot during which failed ready attempts do not
	// count as failures (as Docker's start_period).
	ReadyInterval    time.Duration `json:"ready_interval"`
	ReadyStartPeriod time.Duration `json:"ready_start_period"`

	// Replica is the index of this copy when replica_count > 1, else -1.
	// ReplicaOf is the name before expansion.
	Replica   int    `json:"replica"`
	ReplicaOf string `json:"replica_of,omitempty"`

	// Attributes are declared attributes (values are templates), available
	// to later levels as ${name.key} and to the service itself as ${.key}.
	Attributes map[string]string `json:"attributes,omitempty"`
	// Exports lists attribute names the boot program promises to write to
	// its output file, so that later references to them validate.
	Exports []string `json:"exports,omitempty"`

	SSH *SSH           `json:"ssh,omitempty"`
	EC2 map[string]any `json:"ec2,omitempty"` // seam for the EC2 issue
}

// Program is a program to run with argv (never a shell string).
// Path is absolute after validation (resolved relative to the plan file that
// declared it) unless Remote is set, in which case it names a program that
// already exists on the target host. Args are templates.
type Program struct {
	Path   string   `json:"path"`
	Args   []string `json:"args,omitempty"`
	Remote bool     `json:"remote,omitempty"`
	Pos    Pos      `json:"pos"`
}

// SSH says how to reach an existing host.
type SSH struct {
	Host           string `json:"host"` // template
	Port           int    `json:"port"`
	User           string `json:"user"`
	KeyFile        string `json:"key_file"`
	KnownHostsFile string `json:"known_hosts_file,omitempty"` // "" means accept and pin on first use
	StageDir       string `json:"stage_dir"`
}

// Job is a worker pool declared in a plan (used by the controller issue).
type Job struct {
	Name   string         `json:"name"`
	Pos    Pos            `json:"pos"`
	Config map[string]any `json:"config"`
}

// Built-in attributes every service has.
const (
	AttrHostname   = "hostname"
	AttrInstanceID = "instance_id"
	AttrRun        = "run"
	AttrLevel      = "level"
	// AttrComponent is exported by a service that runs a Nightshift
	// daemon, naming it (ComponentProvisioner, ComponentController):
	// mgmt finds a run's pools by what its services recorded, wherever
	// and however they run, never by a type name in the plan.
	AttrComponent = "component"
)

// The components a service may export as AttrComponent.
const (
	ComponentProvisioner = "provisioner"
	ComponentController  = "controller"
)

// GlobalPlanDir is the built-in global holding the absolute directory of
// the top plan file.
const GlobalPlanDir = "plan_dir"

// OutputEnv is the environment variable through which a boot program learns
// the path of the JSON file it may write to export attributes.
const OutputEnv = nsenv.Output
