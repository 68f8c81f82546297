// Package controller owns the controller daemon's core: it keeps every job
// (worker pool) of one run at its decision engine's policy. It builds each
// job's view of its instances from provisioner records and events and sitter
// heartbeats, judges health with decision.Assess, reads the job's queue depth,
// runs the engine every tick and promptly after relevant events, persists each
// decision with its reason and launch ids (internal/ctlstore) BEFORE acting,
// and then launches, terminates and drains through the provisioner and the
// sitters. It also serves live reconfiguration, freeze/unfreeze, status and
// decision history over the bus (see Serve and Client).
//
// One Controller hosts all jobs of a run: one bus connection, one store, one
// tick loop; jobs are isolated by per-job state and per-job error handling.
package controller
