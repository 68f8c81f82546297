package busid

import (
	"fmt"
	"slices"
	"strings"

	"nightshift/internal/amqpbus"
)

// Origin is one consumer's view of who may send what: its run and its own
// broker user, which says whether the run has per-component identities.
type Origin struct {
	Run  string
	Self string
}

// For returns the Origin of a consumer on bus.
func For(bus *amqpbus.Bus) Origin { return Origin{Run: bus.Run(), Self: bus.User()} }

// Shared reports whether the consumer connects with a shared identity (see
// package doc): it then also accepts messages from its own user, which
// every component sharing it publishes with.
func (o Origin) Shared() bool { return !Issued(o.Run, o.Self) }

// From accepts a message of type typ published by userID when userID has
// one of roles. The error wraps amqpbus.ErrReject, so a handler returns it
// to dead-letter the message, and names the type and the field.
func (o Origin) From(typ, userID string, roles ...string) error {
	if userID != "" && (slices.Contains(roles, RoleOf(o.Run, userID)) || (o.Shared() && userID == o.Self)) {
		return nil
	}
	return o.refuse(typ, userID, strings.Join(roles, " or ")+" of run "+o.Run)
}

// Heartbeat accepts a heartbeat (or any message speaking for one worker
// instance) about instanceID only from that instance's own user.
func (o Origin) Heartbeat(typ, userID, instanceID string) error {
	if userID != "" && (userID == WorkerUser(o.Run, instanceID) || (o.Shared() && userID == o.Self)) {
		return nil
	}
	return o.refuse(typ, userID, "worker "+instanceID)
}

// SimHeartbeat accepts a heartbeat of job, published with routingKey,
// from the run's worker simulator, which the consumer must only ask about
// jobs it holds with driver "sim": the simulator speaks for every
// instance of those jobs and no other. The routing key must be the
// heartbeat's own (what the broker checked against the simulator's topic
// permission), so the body cannot name another job.
func (o Origin) SimHeartbeat(typ, userID, routingKey, job, instanceID string) error {
	if userID != SimulatorUser(o.Run) {
		return o.refuse(typ, userID, "worker "+instanceID+" or the run's simulator")
	}
	if routingKey != "heartbeat."+job+"."+instanceID {
		return fmt.Errorf("%w: message %q: field job: %q does not match routing key %q", amqpbus.ErrReject, typ, job, routingKey)
	}
	return nil
}

func (o Origin) refuse(typ, userID, want string) error {
	if userID == "" {
		userID = "(none)"
	}
	return fmt.Errorf("%w: message %q: field user_id: sender %q is not the %s", amqpbus.ErrReject, typ, userID, want)
}
