package mgmt

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"nightshift/alert/journal"
	"nightshift/bootlevel"
	"nightshift/controller"
	"nightshift/internal/termtext"
)

// StreamEvent is one line of `mgmt events`: an event of the run's history
// (Source "run"), a decision of a pool's engine (Source "controller"), or
// an alert raised or resolved, or its delivery to a sink (Source "alert").
type StreamEvent struct {
	Time    time.Time `json:"time"`
	Source  string    `json:"source"`
	Type    string    `json:"type"` // the history's kind (service.state, step.failed, ...), "decision", or alert.firing, alert.resolved, alert.delivery
	Level   int       `json:"level,omitempty"`
	Service string    `json:"service,omitempty"`
	Job     string    `json:"job,omitempty"`
	Step    string    `json:"step,omitempty"`
	State   string    `json:"state,omitempty"`
	Message string    `json:"message,omitempty"`
	// Seq orders a run's events that share a time; a decision's own seq.
	Seq int64 `json:"seq"`
}

// EventFilter keeps the events that match every set field.
type EventFilter struct {
	Service, Job, Type string
	Since              time.Time
}

func (f EventFilter) keep(e StreamEvent) bool {
	return (f.Service == "" || e.Service == f.Service) &&
		(f.Job == "" || e.Job == f.Job) &&
		(f.Type == "" || e.Type == f.Type || strings.HasPrefix(e.Type, f.Type+".")) &&
		(f.Since.IsZero() || !e.Time.Before(f.Since))
}

// FromHistory turns a history event into a stream event.
func FromHistory(e bootlevel.Event) StreamEvent {
	return StreamEvent{Time: e.Time, Source: "run", Type: e.Kind, Level: e.Level, Service: e.Service,
		Step: string(e.Step), State: e.State, Message: e.Message, Seq: e.Seq}
}

// FromDecision turns a pool's decision into a stream event.
func FromDecision(d controller.Decision) StreamEvent {
	msg := fmt.Sprintf("target %d: %s", d.Target, d.Reason)
	if d.Error != "" {
		msg += " (error: " + d.Error + ")"
	}
	return StreamEvent{Time: d.Time, Source: "controller", Type: "decision", Job: d.Job, Message: msg, Seq: d.Seq}
}

// FromAlert turns a record of the run's alert journal into a stream
// event: an alert firing or resolved, or what became of its delivery.
func FromAlert(r journal.Record, seq int64) StreamEvent {
	se := StreamEvent{Time: r.Time, Source: "alert", Seq: seq}
	switch {
	case r.Event != nil:
		e := r.Event
		se.Type = "alert." + string(e.Status)
		se.Job = e.Job
		se.Message = fmt.Sprintf("%s (%s): %s", e.Kind, e.Severity, e.Summary)
	case r.Delivery != nil:
		d := r.Delivery
		se.Type = "alert.delivery"
		se.Message = fmt.Sprintf("%s %s to %s: %s", d.Key, d.Status, d.Sink, d.Result)
		if d.Attempts > 1 {
			se.Message += fmt.Sprintf(" after %d attempts", d.Attempts)
		}
		if d.Error != "" {
			se.Message += " (" + d.Error + ")"
		}
	}
	return se
}

// sourceRank orders the sources of events at the same instant: the run's
// history, then the decisions it led to, then the alerts they raised.
var sourceRank = map[string]int{"run": 0, "controller": 1, "alert": 2}

// Merge is the run's history, its pools' decisions and its alert journal
// in one stream, in time order (history, then decisions, then alerts at
// the same instant, each in its own order), keeping what f keeps. Alert
// records are numbered from firstAlert, their place in the journal.
func Merge(history []bootlevel.Event, decisions []controller.Decision, alerts []journal.Record, firstAlert int64, f EventFilter) []StreamEvent {
	out := make([]StreamEvent, 0, len(history)+len(decisions)+len(alerts))
	for _, e := range history {
		if se := FromHistory(e); f.keep(se) {
			out = append(out, se)
		}
	}
	for _, d := range decisions {
		if se := FromDecision(d); f.keep(se) {
			out = append(out, se)
		}
	}
	for i, r := range alerts {
		if r.Event == nil && r.Delivery == nil {
			continue
		}
		if se := FromAlert(r, firstAlert+int64(i)); f.keep(se) {
			out = append(out, se)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		if a.Source != b.Source {
			return sourceRank[a.Source] < sourceRank[b.Source]
		}
		return a.Seq < b.Seq
	})
	return out
}

// EventLine shows one stream event on one line for a person, kubectl
// events style: time, source, type, object, message; every value escaped.
func EventLine(e StreamEvent) string {
	object := "run"
	switch {
	case e.Service != "":
		object = "service/" + e.Service
	case e.Job != "":
		object = "job/" + e.Job
	case e.Source == "alert":
		object = "alert"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-10s  %-16s  %-22s", e.Time.Local().Format("2006-01-02 15:04:05.000"), e.Source, e.Type, object)
	if e.Step != "" {
		b.WriteString("  step=" + e.Step)
	}
	if e.State != "" {
		b.WriteString("  state=" + e.State)
	}
	if e.Message != "" {
		b.WriteString("  " + e.Message)
	}
	return termtext.Line(b.String())
}
