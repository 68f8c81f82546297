// Package controller owns the controller daemon's core: it keeps every job
// (worker pool) of one run at its decision engine's policy. It builds each
// job's view of its instances from provisioner records and events and sitter
// heartbeats, judges health with decision.Assess, reads the job's queue depth,
// runs the engine every tick and promptly after relevant events, persists each
// decision with its reason and launch ids BEFORE acting, and then launches,
// terminates and drains through the provisioner and the sitters. It also
// serves live reconfiguration, freeze/unfreeze, status and decision history
// (the commands in messages.go).
//
// Pool is the pure core, one per job: its view and the rules that move it
// (the instance ladder, heartbeats, the launch-failure window and back-off
// hold, health timers clamped to the controller's start, the same-reason
// skip, what a decision stores and sends, status). Its methods take now and
// return what to do; it does no I/O, takes no lock and reads no clock.
// Controller is the executor around the pools: one per run, hosting every
// job, each in its own decision loop, so a hung provisioner call for one
// job holds up no other.
//
// The seams are Store (internal/store/ctlstore is the SQLite one), Provisioner
// (provisioner/client), Drainer, QueueMeter and QueueStats; controller/ctlbus
// binds the controller to the bus and holds the AMQP and management-API
// adapters. Ordering rule: a decision and its launch ids are stored before
// any action is taken, so a controller killed at any point resends the
// same launch ids, which the provisioner dedupes.
package controller
