package ctlbus

import (
	"fmt"

	"nightshift/controller"
	"nightshift/internal/envelope"
	"nightshift/provisioner"
	"nightshift/sitter"
	"nightshift/sitter/sitterbus"
)

// TypeHeartbeat and TypeDrain are the sitter's (package sitterbus owns the
// sitter's side of the wire); the controller consumes the one and sends
// the other.
const (
	TypeHeartbeat = sitterbus.TypeHeartbeat
	TypeDrain     = sitterbus.TypeDrain
)

// HeartbeatKey is the routing key a sitter publishes its heartbeats with on
// the run's events exchange.
func HeartbeatKey(job, instanceID string) string { return sitterbus.HeartbeatKey(job, instanceID) }

// SitterComponent is the bus component of the sitter on one instance; drain
// commands go to its command queue.
func SitterComponent(instanceID string) string { return sitterbus.Component(instanceID) }

// HeartbeatBody is sitter.Heartbeat on the wire.
type HeartbeatBody = sitterbus.HeartbeatBody

// DrainBody asks the sitter of an instance to drain its tasks.
type DrainBody = sitterbus.DrainBody

// Messages returns a registry of every message the controller sends or
// receives (its own, heartbeats, drains and the provisioner's events).
func Messages() *envelope.Registry {
	r := &envelope.Registry{}
	controller.RegisterMessages(r)
	sitterbus.RegisterHeartbeat(r)
	r.Register(TypeDrain, 1, func() envelope.Validator { return &DrainBody{} }, true)
	r.Register(provisioner.TypeInstance, 1, func() envelope.Validator { return &provisioner.InstanceEvent{} }, false)
	return r
}

// DecodeHeartbeat decodes one heartbeat message, returning an error naming
// the type and field when it is malformed.
func DecodeHeartbeat(reg *envelope.Registry, data []byte) (sitter.Heartbeat, error) {
	env, body, err := reg.Decode(data, 1<<20)
	if err != nil {
		return sitter.Heartbeat{}, fmt.Errorf("decode heartbeat: %w", err)
	}
	hb, ok := sitterbus.HeartbeatOf(body)
	if !ok {
		return sitter.Heartbeat{}, fmt.Errorf("decode heartbeat: message %q is not %q", env.Type, TypeHeartbeat)
	}
	return hb, nil
}
