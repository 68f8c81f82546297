package sitterbus

import (
	"fmt"

	"nightshift/internal/envelope"
	"nightshift/internal/ping"
	"nightshift/sitter"
)

// Message types defined by the sitter, all version 1. The controller
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

// HeartbeatBody is sitter.Heartbeat on the wire.
type HeartbeatBody sitter.Heartbeat

// Validate implements envelope.Validator.
func (h *HeartbeatBody) Validate() error {
	return envelope.FirstError(
		envelope.Require("instance_id", h.InstanceID != ""),
		envelope.Require("job", h.Job != ""),
		envelope.Require("time", !h.Time.IsZero()))
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
	r.Register(TypeHeartbeat, 1, func() envelope.Validator { return &HeartbeatBody{} }, false)
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
