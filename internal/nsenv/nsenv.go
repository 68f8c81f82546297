// Package nsenv owns the names of the NIGHTSHIFT_* environment variables:
// what the boot engine sets for a service's programs, what the worker
// drivers set for a sitter, what a sitter sets for its tasks, what the
// daemons default their flags from, and the run-scoped ${env.…} values a
// plan may reference. They are wire names (programs outside this module
// read them), so they are written here once; a leaf with no I/O, cores may
// import it.
package nsenv

// Prefix starts every name below; the boot engine reserves it in a plan's
// env, and test harnesses strip inherited ones by it.
const Prefix = "NIGHTSHIFT_"

// Set for every process of a run.
const (
	Home = "NIGHTSHIFT_HOME" // the Nightshift home (default ~/.nightshift)
	Run  = "NIGHTSHIFT_RUN"  // the run's name
)

// Read by launch and mgmt: where the home keeps its run store. Unset, it
// is the home's SQLite file; a postgres:// URL puts it in PostgreSQL
// (docs/store.md).
const Store = "NIGHTSHIFT_STORE"

// Set by the boot engine for a plan service's programs.
const (
	Service    = "NIGHTSHIFT_SERVICE"
	Level      = "NIGHTSHIFT_LEVEL"
	Hostname   = "NIGHTSHIFT_HOSTNAME"
	InstanceID = "NIGHTSHIFT_INSTANCE_ID" // also a worker's instance id, set by the worker drivers
	Output     = "NIGHTSHIFT_OUTPUT"      // the file a boot program writes its exports to
)

// Set by a worker driver for `sitter agent`, or by an operator.
const (
	Job         = "NIGHTSHIFT_JOB"
	InstanceDir = "NIGHTSHIFT_INSTANCE_DIR"
	// WorkerDir is an isolated worker's own directory (spec, broker URL,
	// sitter state), which its user owns; the instance directory is then
	// the provisioner's alone and only names the instance.
	WorkerDir   = "NIGHTSHIFT_WORKER_DIR"
	AMQPURL     = "NIGHTSHIFT_AMQP_URL"      // the broker URL itself; prefer AMQPURLFile
	AMQPURLFile = "NIGHTSHIFT_AMQP_URL_FILE" // a 0600 file holding the broker URL
	AMQPCAFile  = "NIGHTSHIFT_AMQP_CA_FILE"  // the PEM CA an amqps:// broker must chain to
	WorkQueue   = "NIGHTSHIFT_WORK_QUEUE"    // a job's work queue, in its worker env
	CommandKey  = "NIGHTSHIFT_COMMAND_KEY"   // the public half of the run's command key (hex)
	// Cgroup is the cgroup (a path under each v1 hierarchy) the driver
	// made for an isolated worker and handed to its user: its sitter
	// makes its task groups there.
	Cgroup = "NIGHTSHIFT_CGROUP"
)

// Set by a sitter for its tasks.
const (
	StatusFile = "NIGHTSHIFT_STATUS_FILE"
	DrainFile  = "NIGHTSHIFT_DRAIN_FILE"
	Task       = "NIGHTSHIFT_TASK"
	// Port is the loopback port a run serves its health probe on, when
	// the probe's URL names ${port}.
	Port = "NIGHTSHIFT_PORT"
)

// Run-scoped values a plan references as ${env.NAME}; the engine serves
// them per run and they are never in the launcher's environment.
const (
	RunSecret     = "NIGHTSHIFT_RUN_SECRET"
	RunCommandKey = "NIGHTSHIFT_RUN_COMMAND_KEY"
	TLSCA         = "NIGHTSHIFT_TLS_CA"
	TLSBrokerCert = "NIGHTSHIFT_TLS_BROKER_CERT"
	TLSBrokerKey  = "NIGHTSHIFT_TLS_BROKER_KEY"
	TLSBrokerName = "NIGHTSHIFT_TLS_BROKER_NAME"
)

// Switches for development and tests.
const (
	EC2StepsLocal = "NIGHTSHIFT_EC2_STEPS_LOCAL" // "1": ec2 services run their steps here
	MotoURL       = "NIGHTSHIFT_MOTO_URL"        // moto_server for EC2 tests
	PGURL         = "NIGHTSHIFT_PG_URL"          // PostgreSQL for the stores' tests
	TestStrict    = "NIGHTSHIFT_TEST_STRICT"     // "1": a missing test service fails rather than skips
	Artifacts     = "NIGHTSHIFT_ARTIFACTS"       // a directory tests save artifacts (screenshots) into
	// UpdateDocs "1": the browser test also writes its screenshot to docs/dashboard.png.
	UpdateDocs = "NIGHTSHIFT_UPDATE_DOCS"
	Chromium   = "NIGHTSHIFT_CHROMIUM" // the chromium the browser test drives (default: chromium on $PATH)
)

// Read by `mgmt dashboard`.
const (
	DashboardToken = "NIGHTSHIFT_DASHBOARD_TOKEN" // the bearer token to require instead of a generated one
)
