package sitterbus

import (
	"fmt"
	"time"

	"nightshift/internal/envelope"
	"nightshift/internal/ping"
	"nightshift/sitter"
)

// Message types defined by the sitter, all version 1 but for heartbeats
// (HeartbeatVersion). The controller
// speaks two of them: it consumes heartbeats and sends drains.
const (
	// TypeHeartbeat is a sitter heartbeat event, published with routing
	// key HeartbeatKey(job, instance id).
	TypeHeartbeat = "sitter.heartbeat"
	// TypeDrain is the command sent to component Component(id).
	TypeDrain   = "sitter.drain"
	TypeControl = "sitter.control"
	TypeTail    = "sitter.tail"
	TypeStatus  = "sitter.status"
	TypeReply   = "sitter.reply"
)

// Control actions.
const (
	ActionStop    = "stop"
	ActionStart   = "start"
	ActionRestart = "restart"
)

// MaxTailLines bounds a tail request, so one RPC cannot make the sitter
// read and ship a whole log.
const MaxTailLines = 10000

// HeartbeatKey is the routing key a sitter publishes its heartbeats with on
// the run's events exchange.
func HeartbeatKey(job, instanceID string) string { return "heartbeat." + job + "." + instanceID }

// Heartbeat versions. Version 2 adds each task's probe; a sitter sends
// version 1 while none of its tasks has one (HeartbeatVersionOf), so a
// controller that predates probes keeps reading every heartbeat of a pool
// without them, and a body with a probe is never read as version 1.
const (
	HeartbeatV1      = 1
	HeartbeatV2      = 2
	HeartbeatVersion = HeartbeatV2
)

// HeartbeatVersionOf is the version hb is sent as.
func HeartbeatVersionOf(hb sitter.Heartbeat) int {
	for _, t := range hb.Tasks {
		if t.Probe != nil {
			return HeartbeatV2
		}
	}
	return HeartbeatV1
}

// HeartbeatBody is sitter.Heartbeat on the wire (version 2).
type HeartbeatBody sitter.Heartbeat

// Validate implements envelope.Validator.
func (h *HeartbeatBody) Validate() error {
	errs := []error{
		envelope.Require("instance_id", h.InstanceID != ""),
		envelope.Require("job", h.Job != ""),
		envelope.Require("time", !h.Time.IsZero()),
	}
	for i, t := range h.Tasks {
		if t.Probe == nil {
			continue
		}
		f := fmt.Sprintf("tasks[%d].probe.", i)
		switch t.Probe.State {
		case sitter.ProbeStarting, sitter.ProbeHealthy, sitter.ProbeUnhealthy:
		default:
			errs = append(errs, envelope.Check(f+"state", false, fmt.Sprintf("%q is not one of starting, healthy, unhealthy", t.Probe.State)))
		}
		errs = append(errs,
			envelope.Check(f+"failures", t.Probe.Failures >= 0, "negative"),
			envelope.Check(f+"output", len(t.Probe.Output) <= sitter.MaxProbeOutput, fmt.Sprintf("longer than %d bytes", sitter.MaxProbeOutput)))
	}
	return envelope.FirstError(errs...)
}

// HeartbeatV1Body is a version 1 heartbeat: the same shape without probes.
type HeartbeatV1Body sitter.Heartbeat

// Validate implements envelope.Validator.
func (h *HeartbeatV1Body) Validate() error {
	for i, t := range h.Tasks {
		if t.Probe != nil {
			return envelope.Check(fmt.Sprintf("tasks[%d].probe", i), false, "not part of version 1")
		}
	}
	return (*HeartbeatBody)(h).Validate()
}

// RegisterHeartbeat registers every heartbeat version this build reads.
func RegisterHeartbeat(r *envelope.Registry) {
	r.Register(TypeHeartbeat, HeartbeatV1, func() envelope.Validator { return &HeartbeatV1Body{} }, false)
	r.Register(TypeHeartbeat, HeartbeatV2, func() envelope.Validator { return &HeartbeatBody{} }, false)
}

// HeartbeatOf returns the heartbeat a decoded body of any version holds.
func HeartbeatOf(body any) (sitter.Heartbeat, bool) {
	switch b := body.(type) {
	case *HeartbeatBody:
		return sitter.Heartbeat(*b), true
	case *HeartbeatV1Body:
		return sitter.Heartbeat(*b), true
	}
	return sitter.Heartbeat{}, false
}

// NewHeartbeat is hb as an envelope of the version HeartbeatVersionOf picks.
func NewHeartbeat(run, sender string, hb sitter.Heartbeat, now time.Time) (envelope.Envelope, error) {
	return envelope.NewEnvelope(TypeHeartbeat, HeartbeatVersionOf(hb), run, sender, HeartbeatBody(hb), now)
}

// DrainBody asks the sitter of InstanceID to drain its tasks: finish the
// current item, take no new one, exit.
type DrainBody struct {
	InstanceID string `json:"instance_id"`
	Job        string `json:"job"`
	Reason     string `json:"reason,omitempty"`
}

// Validate implements envelope.Validator.
func (b *DrainBody) Validate() error {
	return envelope.FirstError(
		envelope.Require("instance_id", b.InstanceID != ""),
		envelope.Require("job", b.Job != ""))
}

// ControlBody stops, starts or restarts one task. It changes what runs, so
// it must be signed with the run secret.
type ControlBody struct {
	Action string `json:"action"`
	Task   string `json:"task"`
}

// Validate implements envelope.Validator.
func (b *ControlBody) Validate() error {
	return envelope.FirstError(
		envelope.Check("action", b.Action == ActionStop || b.Action == ActionStart || b.Action == ActionRestart,
			fmt.Sprintf("%q is not one of stop, start, restart", b.Action)),
		envelope.Require("task", b.Task != ""))
}

// TailBody asks for the last Lines lines (default 20) of a task's stdout
// and stderr logs.
type TailBody struct {
	Task  string `json:"task"`
	Lines int    `json:"lines,omitempty"`
}

// Validate implements envelope.Validator.
func (b *TailBody) Validate() error {
	return envelope.FirstError(
		envelope.Require("task", b.Task != ""),
		envelope.Check("lines", b.Lines >= 0 && b.Lines <= MaxTailLines, fmt.Sprintf("want 0..%d", MaxTailLines)))
}

// StatusBody asks for the status of every task.
type StatusBody struct{}

// Validate implements envelope.Validator.
func (*StatusBody) Validate() error { return nil }

// Reply answers every sitter RPC. Error is empty on success.
type Reply struct {
	Error  string          `json:"error,omitempty"`
	Status *sitter.Status  `json:"status,omitempty"`
	Tail   *sitter.LogTail `json:"tail,omitempty"`
	// Drained lists the tasks a drain asked to finish; Stopped those it
	// stopped because they had no run to finish (waiting in back-off).
	Drained []string `json:"drained,omitempty"`
	Stopped []string `json:"stopped,omitempty"`
}

// Validate implements envelope.Validator.
func (*Reply) Validate() error { return nil }

// Messages returns the registry of every message a sitter receives or
// answers with: drain, heartbeat, control, tail, status, reply and ping.
// Each process builds its own.
func Messages() *envelope.Registry {
	r := &envelope.Registry{}
	r.Register(TypeDrain, 1, func() envelope.Validator { return &DrainBody{} }, true)
	RegisterHeartbeat(r)
	r.Register(TypeControl, 1, func() envelope.Validator { return &ControlBody{} }, true)
	r.Register(TypeTail, 1, func() envelope.Validator { return &TailBody{} }, false)
	r.Register(TypeStatus, 1, func() envelope.Validator { return &StatusBody{} }, false)
	r.Register(TypeReply, 1, func() envelope.Validator { return &Reply{} }, false)
	ping.Register(r)
	return r
}

// Component is the bus component of the sitter on instanceID: its command
// queue is where drains and control commands go.
func Component(instanceID string) string { return "sitter." + instanceID }
