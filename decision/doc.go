// Package decision owns the pool policies ("decision engines") that say what
// an elastic pool of workers should do next, and the heartbeat-based health
// judgement they rely on.
//
// The entry type is Engine. Its Decide step is pure: it reads one Snapshot
// (instances with state and health, the queue-depth reading and its source,
// the time, launches still in flight) plus the engine's own configuration, and
// returns a Decision: a list of Launch, Terminate and Drain actions with a
// one-line Reason. Engines never perform I/O, never read the wall clock and
// never use randomness, so the same configuration and Snapshot always give the
// same Decision, and every policy is tested as a plain function.
//
// The seams for the controller that drives the engines are:
//
//   - Registry: engine factories by name, built explicitly (no globals).
//   - Engine.Configure / Reconfigure / Config: configuration from the
//     map[string]any a TOML or JSON file decodes into, validated atomically.
//   - Run: calls DecideContext for engines that block (decision/execengine),
//     Decide otherwise.
//   - Assess: turns heartbeat bookkeeping into a nightshift.Health that the
//     controller puts into Snapshot.Instances.
//   - Decision.Scaled: tells the controller to record Snapshot.LastScaleAt,
//     which is how cooldowns stay a function of the Snapshot.
//
// Engines are safe for concurrent use; a controller still normally serialises
// Decide and Reconfigure per pool.
package decision
