// Package busid owns who is who on a run's bus: the broker user names of
// the provisioner, controllers, mgmt and each worker instance, the
// RabbitMQ permissions each role gets, the management-API calls that
// create and delete those users, and the origin checks consumers apply to
// the broker-validated AMQP user_id of every message they act on.
//
// # Names
//
//	ns.<run>.provisioner.<service>   the provisioner daemon (administrator: it creates worker users)
//	ns.<run>.controller.<service>    a controller daemon
//	ns.<run>.mgmt                    the operator's tool
//	ns.<run>.worker.<instance id>    one worker instance's sitter (and its task)
//	ns.<run>.sim                     the worker simulator (simworker): heartbeats of simulated jobs only
//
// A name says its role, so a consumer needs no configuration to know whom
// to trust: a heartbeat about instance X is accepted only from
// ns.<run>.worker.X, an instance event only from a provisioner, a command
// to the provisioner or to a sitter only from a controller or mgmt.
//
// # Shared identity
//
// A run whose components all connect as one user (an external broker
// without a management API, daemons booted without management_url, or
// the tests' guest) cannot tell those senders apart. A consumer whose own
// user is not a Nightshift name is in that mode: besides the users whose
// names carry an allowed role (mgmt's own user, say, which the private
// broker creates whatever the daemons do), it accepts messages whose
// user_id is its own user. Messages without user_id are refused in both
// modes.
package busid
