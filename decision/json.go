package decision

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// wireDecision is the JSON form of a Decision (documented in
// docs/engines.md); it is what exec engines print and what a controller may
// store.
type wireDecision struct {
	Engine  string       `json:"engine,omitempty"`
	Reason  string       `json:"reason"`
	Actions []wireAction `json:"actions"`
	Target  *int         `json:"target,omitempty"`
	Scaled  bool         `json:"scaled,omitempty"`
	Stable  bool         `json:"stable,omitempty"`
	Error   string       `json:"error,omitempty"`
}

type wireAction struct {
	Type   string      `json:"type"`
	Count  int         `json:"count,omitempty"`
	Spec   *LaunchSpec `json:"spec,omitempty"`
	IDs    []string    `json:"ids,omitempty"`
	Reason string      `json:"reason,omitempty"`
}

// Action type names on the wire.
const (
	ActionLaunch    = "launch"
	ActionTerminate = "terminate"
	ActionDrain     = "drain"
)

// MarshalJSON encodes the decision with tagged actions
// ({"type":"launch","count":1,...}).
func (d Decision) MarshalJSON() ([]byte, error) {
	w := wireDecision{Engine: d.Engine, Reason: d.Reason, Target: &d.Target,
		Scaled: d.Scaled, Stable: d.Stable, Error: d.Error, Actions: []wireAction{}}
	for _, a := range d.Actions {
		switch a := a.(type) {
		case Launch:
			spec := a.Spec
			w.Actions = append(w.Actions, wireAction{Type: ActionLaunch, Count: a.Count, Spec: &spec, Reason: a.Reason})
		case Terminate:
			w.Actions = append(w.Actions, wireAction{Type: ActionTerminate, IDs: a.IDs, Reason: a.Reason})
		case Drain:
			w.Actions = append(w.Actions, wireAction{Type: ActionDrain, IDs: a.IDs, Reason: a.Reason})
		default:
			return nil, fmt.Errorf("encode decision: action %T is not launch, terminate or drain", a)
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Reasons are full of "->" and ">"; keep them readable in files and logs.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(w); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON decodes strictly: unknown fields, unknown action types and
// malformed actions are errors naming the action and field.
func (d *Decision) UnmarshalJSON(data []byte) error {
	dec, _, err := DecodeDecision(data)
	if err != nil {
		return err
	}
	*d = dec
	return nil
}

// DecodeDecision decodes one JSON decision strictly. specGiven[i] reports
// whether action i (a Launch) carried its own "spec"; callers that fill a
// default spec use it. Errors read "decision: actions[1] (terminate): ids:
// required".
func DecodeDecision(data []byte) (d Decision, specGiven []bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w wireDecision
	if err := dec.Decode(&w); err != nil {
		return Decision{}, nil, fmt.Errorf("decision: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Decision{}, nil, fmt.Errorf("decision: trailing data after the JSON object")
	}
	d = Decision{Engine: w.Engine, Reason: w.Reason, Scaled: w.Scaled, Stable: w.Stable, Error: w.Error}
	if w.Target != nil {
		if *w.Target < 0 {
			return Decision{}, nil, fmt.Errorf("decision: target: %d must not be negative", *w.Target)
		}
		d.Target = *w.Target
	}
	for i, a := range w.Actions {
		where := fmt.Sprintf("decision: actions[%d] (%s)", i, a.Type)
		switch a.Type {
		case ActionLaunch:
			if a.Count < 1 {
				return Decision{}, nil, fmt.Errorf("%s: count: must be at least 1, got %d", where, a.Count)
			}
			if len(a.IDs) > 0 {
				return Decision{}, nil, fmt.Errorf("%s: ids: not allowed on a launch", where)
			}
			l := Launch{Count: a.Count, Reason: a.Reason}
			if a.Spec != nil {
				l.Spec = *a.Spec
			}
			d.Actions = append(d.Actions, l)
			specGiven = append(specGiven, a.Spec != nil)
		case ActionTerminate, ActionDrain:
			if len(a.IDs) == 0 {
				return Decision{}, nil, fmt.Errorf("%s: ids: required", where)
			}
			for j, id := range a.IDs {
				if id == "" {
					return Decision{}, nil, fmt.Errorf("%s: ids[%d]: empty", where, j)
				}
			}
			if a.Count != 0 || a.Spec != nil {
				return Decision{}, nil, fmt.Errorf("%s: count and spec are only allowed on a launch", where)
			}
			if a.Type == ActionTerminate {
				d.Actions = append(d.Actions, Terminate{IDs: a.IDs, Reason: a.Reason})
			} else {
				d.Actions = append(d.Actions, Drain{IDs: a.IDs, Reason: a.Reason})
			}
			specGiven = append(specGiven, false)
		case "":
			return Decision{}, nil, fmt.Errorf("decision: actions[%d]: type: required (launch, terminate or drain)", i)
		default:
			return Decision{}, nil, fmt.Errorf("%s: type: unknown (want launch, terminate or drain)", where)
		}
	}
	return d, specGiven, nil
}
