// Package runlayout owns where things live on disk under a Nightshift home:
// the home's own files (the run database, mgmt's log) and every path under
// <home>/runs/<run>/ (the run's secret and lock, step logs, services' work
// directories, worker instances, the run's PKI, the redaction registry, the
// keepers' files).
// Every component builds these paths here, so the layout is written down
// once; it is a leaf with no I/O, so cores may import it.
package runlayout

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
)

// Names of files and directories a component hands to another by name.
const (
	// URLFile is the 0600 file, in a service's work directory or a worker
	// instance's directory, that holds the broker URL with its password.
	URLFile = "amqp-url"
	// SpecFile is a worker instance's launch spec, in its directory.
	SpecFile = "spec.json"
	// SitterDir is a worker instance's sitter state, in its directory.
	SitterDir = "sitter"
)

// DB is the home's run database.
func DB(home string) string { return filepath.Join(home, "nightshift.db") }

// MgmtLog is mgmt's own log.
func MgmtLog(home string) string { return filepath.Join(home, "mgmt.log") }

// Runs is the directory holding every run of home.
func Runs(home string) string { return filepath.Join(home, "runs") }

// Run is one run's directory tree: <Home>/runs/<Name>/. Name must have
// passed launchplan.CheckRunName, which keeps it one path element.
type Run struct{ Home, Name string }

// Of is the layout of run under home.
func Of(home, run string) Run { return Run{Home: home, Name: run} }

// Dir is the run's directory, 0700.
func (r Run) Dir() string { return filepath.Join(Runs(r.Home), r.Name) }

// Secret is the run's HMAC secret, 0600; every component of the run that
// signs or verifies commands reads it from here.
func (r Run) Secret() string { return r.join("secret") }

// Lock is the flock that launch, repair and teardown hold.
func (r Run) Lock() string { return r.join("run.lock") }

// LaunchLog is launch's own log for the run.
func (r Run) LaunchLog() string { return r.join("launch.log") }

// Logs is the directory of the run's step logs, 0700.
func (r Run) Logs() string { return r.join("logs") }

// StepLog is the log of one step (name as the boot engine spells it).
func (r Run) StepLog(name string) string { return filepath.Join(r.Logs(), name+".log") }

// Work is a plan service's work directory.
func (r Run) Work(service string) string { return r.join("work", service) }

// Instances is the directory of the run's local worker instances.
func (r Run) Instances() string { return r.join("instances") }

// Instance is one local worker instance's directory.
func (r Run) Instance(id string) string { return filepath.Join(r.Instances(), id) }

// WorkerDir is one isolated local worker instance's own directory, the
// only one its user may write: under root (a directory outside the home,
// so the worker needs no way into the run's 0700 directory), in a
// directory per run whose name carries a digest of the home, so two homes'
// runs of one name never share it.
func (r Run) WorkerDir(root, id string) string {
	return filepath.Join(r.WorkerRunDir(root), id)
}

// WorkerRunDir is the run's directory of isolated worker directories
// under root (see WorkerDir), 0711: workers reach their own directory
// through it but cannot list it.
func (r Run) WorkerRunDir(root string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(r.Home)))
	return filepath.Join(root, r.Name+"-"+hex.EncodeToString(sum[:6]))
}

// WorkersIdentity records who the run's local workers run as (their own
// user, or the provisioner's), for mgmt status.
func (r Run) WorkersIdentity() string { return r.join("workers-identity.json") }

// PKI is the run's CA and certificates, 0700 (keys 0600).
func (r Run) PKI() string { return r.join("pki") }

// RedactValues is the registry of secrets minted at run time (0600, one
// hex-encoded value per line).
func (r Run) RedactValues() string { return r.join("redact-values") }

// Keeper is the directory of the run's keepers: their lock, state and log.
func (r Run) Keeper() string { return r.join("keeper") }

// Sim is the sim worker driver's control directory: kill requests in,
// their results and the simulator's counters out (package simworker).
func (r Run) Sim() string { return r.join("sim") }

// ProvisionerDB is the provisioner's ledger when --db does not say.
func (r Run) ProvisionerDB() string { return r.join("provisioner.db") }

// Alerts is the run's alert journal (0600, one JSON record a line): every
// alert event and every delivery of one, from whichever process raised it.
func (r Run) Alerts() string { return r.join("alerts.jsonl") }

func (r Run) join(elem ...string) string {
	return filepath.Join(append([]string{r.Dir()}, elem...)...)
}
