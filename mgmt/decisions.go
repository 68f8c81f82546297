package mgmt

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"nightshift/controller"
)

// DecisionAction is one action of a stored decision, as the controller
// records it: what was done (launch, terminate, drain), to which workers,
// and why. The why of a scale-in says how its victims were chosen: idle
// ones first (terminated), busy ones drained, a drained worker terminated
// once idle, or past its drain_timeout while still busy.
type DecisionAction struct {
	Type     string   `json:"type"`
	Count    int      `json:"count,omitempty"`
	LaunchID string   `json:"launch_id,omitempty"`
	IDs      []string `json:"ids,omitempty"`
	Reason   string   `json:"reason,omitempty"`
}

// WriteDecisions renders a pool's decisions for a person, newest first as
// given: the time and reason of each, then one indented line per action
// naming the workers it chose and why. Every value is redacted by the
// caller and escaped here, one line per row.
func WriteDecisions(w io.Writer, ds []controller.DecisionRecord, line func(string) string) error {
	for _, d := range ds {
		fmt.Fprintf(w, "%s  %s\n", d.Time.Local().Format("15:04:05.000"), line(d.Reason))
		if d.Error != "" {
			fmt.Fprintf(w, "    error: %s\n", line(d.Error))
		}
		var acts []DecisionAction
		if len(d.Actions) > 0 {
			if err := json.Unmarshal(d.Actions, &acts); err != nil {
				return fmt.Errorf("decision %d: actions: %w", d.Seq, err)
			}
		}
		for _, a := range acts {
			what := a.Type
			switch {
			case len(a.IDs) > 0:
				what += " " + strings.Join(a.IDs, ", ")
			case a.Count > 0:
				what += fmt.Sprintf(" %d", a.Count)
			}
			if a.LaunchID != "" {
				what += " (" + a.LaunchID + ")"
			}
			if a.Reason != "" {
				what += ": " + a.Reason
			}
			fmt.Fprintf(w, "    %s\n", line(what))
		}
	}
	return nil
}
