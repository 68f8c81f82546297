// Package provisioner owns the lifecycle of worker instances: it records
// launch requests write-ahead, moves every Instance forward along the
// nightshift.InstanceState ladder, drives an IaaS-like Driver (local
// processes, EC2, ...) with bounded concurrency, and reconciles its records
// against what the Driver really owns after a crash.
//
// The entry type is Provisioner. Its seams are Driver (what runs instances;
// internal/worker/localworker runs processes), Store (where records live;
// internal/store/provstore is the SQLite one) and Events (where state changes are
// announced). Apply and PlanReconcile are the pure cores; everything else is
// the executor around them. Messages and Handle define the bus protocol;
// provbus serves it over AMQP and client calls it. provisionertest holds an
// in-memory Driver for tests and benchmarks.
//
// Ordering rule: every transition is persisted before it is acted on (a
// launch is recorded, then marked pending, then the driver is called), and
// only then published, so a crash at any point leaves records that
// Reconcile can finish from.
//
// Concurrency: all Provisioner methods are safe for concurrent use. Launches
// and terminations run on worker goroutines started by Run; a request only
// records intent and wakes them, so a Provisioner that is not running loses
// nothing: the next Run picks the work up from the Store.
package provisioner
