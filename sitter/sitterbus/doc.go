// Package sitterbus owns the sitter's side of the message bus: it
// publishes a sitter's heartbeats on the run's events exchange and serves
// the commands sent to one instance's sitter (drain, control, tail,
// status, ping). The supervision itself stays in package sitter; this
// package only translates between envelopes and sitter calls.
//
// # Wire contract
//
// Every message a sitter sends or receives is defined here, the two the
// controller speaks included (TypeHeartbeat with routing key HeartbeatKey,
// and TypeDrain on component Component); package controller/ctlbus uses these
// names, so the two sides cannot drift apart, and the sitter binary does
// not carry the controller (or SQLite). The commands:
//
//	sitter.control  signed    {action: stop|start|restart, task}  RPC or fire-and-forget
//	sitter.tail     unsigned  {task, lines}                        RPC
//	sitter.status   unsigned  {}                                   RPC
//	ping            unsigned  {}                                   RPC (internal/ping)
//
// RPC replies are envelopes of type sitter.reply (Reply). A command that
// cannot be decoded, that comes from a broker user other than a
// controller's or mgmt's (busid), or a drain or control without a valid,
// fresh Ed25519 signature by the run's command key (envelope.AlgEd25519),
// is dead-lettered and logged; the server keeps serving. A sitter holds
// only the key's public half, never the run's HMAC secret, so it can check
// a command but not make one; a sitter without the public key refuses
// every drain and control. A sitter connected as its worker's
// own broker user cannot publish RPC replies (busid.WorkerPermissions):
// it acts on drain and control, and callers of status, tail and ping time
// out; the sitter's local control socket serves those on its host.
//
// # Heartbeats while the broker is away
//
// Tasks must keep running while the broker is unreachable, so Sink never
// waits for a reconnect: with no live connection it drops the heartbeat at
// once, and otherwise bounds the publish by Sink.Timeout. A heartbeat is
// only worth its freshness, so a dropped one is never queued for later:
// the next tick builds a new one. The sitter's heartbeat loop logs the
// first failure of an outage and the recovery, not every beat.
package sitterbus
