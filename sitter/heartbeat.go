package sitter

import (
	"context"
	"time"
)

// Heartbeat is what a sitter reports about its host every
// HeartbeatInterval. It is plain data; the lead wires a HeartbeatSink that
// publishes it on the bus.
type Heartbeat struct {
	InstanceID string       `json:"instance_id"`
	Job        string       `json:"job,omitempty"`
	Host       string       `json:"host"`
	Time       time.Time    `json:"time"`
	LimitMode  string       `json:"limit_mode"`
	Tasks      []TaskStatus `json:"tasks"`
	Vitals     HostVitals   `json:"vitals"`
}

// HeartbeatSink receives heartbeats. A failing sink does not stop
// supervision: the error is logged and the next tick tries again.
type HeartbeatSink interface {
	SendHeartbeat(ctx context.Context, hb Heartbeat) error
}
