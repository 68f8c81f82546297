// Command exec-engine is an exec decision engine written as a standalone
// program, the way one would be in Python or shell: it reads the snapshot
// document on stdin and prints a decision document on stdout, with no
// nightshift packages involved (see docs/engines.md for the protocol).
// Its policy: one worker per 10 queued messages, at most 4, replacing
// unhealthy workers; scale-in terminates idle workers (newest first) and
// drains busy ones.
//
// Use it from a pool's engine table:
//
//	engine = "exec"
//	command = ["/usr/local/bin/exec-engine"]
//	params = { per_worker = 10, max = 4 }
package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// input is the part of the snapshot document this policy reads.
type input struct {
	Version int `json:"version"`
	Config  struct {
		PerWorker int `json:"per_worker"`
		Max       int `json:"max"`
	} `json:"config"`
	Instances []struct {
		ID            string    `json:"id"`
		State         string    `json:"state"`
		Health        string    `json:"health"`
		Busy          bool      `json:"busy"`
		LaunchedAt    time.Time `json:"launched_at"`
		DrainingSince time.Time `json:"draining_since"`
	} `json:"instances"`
	PendingLaunches int    `json:"pending_launches"`
	Depth           *int   `json:"depth"`
	Source          string `json:"source"`
}

type action struct {
	Type   string   `json:"type"`
	Count  int      `json:"count,omitempty"`
	IDs    []string `json:"ids,omitempty"`
	Reason string   `json:"reason,omitempty"`
}

type output struct {
	Reason  string   `json:"reason"`
	Actions []action `json:"actions"`
	Target  int      `json:"target"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		// stderr and a non-zero exit make the exec engine log this and
		// take no action.
		fmt.Fprintln(os.Stderr, "exec-engine:", err)
		os.Exit(1)
	}
}

func run(r io.Reader, w io.Writer) error {
	var in input
	if err := json.NewDecoder(r).Decode(&in); err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	if in.Version != 1 {
		return fmt.Errorf("read snapshot: protocol version %d, want 1", in.Version)
	}
	return json.NewEncoder(w).Encode(decide(in))
}

func decide(in input) output {
	per, most := in.Config.PerWorker, in.Config.Max
	if per <= 0 {
		per = 10
	}
	if most <= 0 {
		most = 4
	}
	out := output{Actions: []action{}}
	type member struct {
		id   string
		busy bool
		at   time.Time
	}
	var members []member
	var dead, drained []string
	for _, i := range in.Instances {
		switch {
		case i.State != "requested" && i.State != "pending" && i.State != "started" && i.State != "running":
			// terminating or gone: does not count
		case i.Health == "missing" || i.Health == "never_heard" || i.Health == "zombie" || i.Health == "process_error":
			dead = append(dead, i.ID)
		case !i.DrainingSince.IsZero():
			if !i.Busy {
				drained = append(drained, i.ID)
			}
		default:
			members = append(members, member{i.ID, i.Busy, i.LaunchedAt})
		}
	}
	if len(dead) > 0 {
		out.Actions = append(out.Actions, action{Type: "terminate", IDs: dead, Reason: "unhealthy"})
	}
	if len(drained) > 0 {
		out.Actions = append(out.Actions, action{Type: "terminate", IDs: drained, Reason: "drained"})
	}
	have := len(members) + in.PendingLaunches
	want := have + len(dead) // hold, replacing the dead, when the depth is unknown
	if in.Depth != nil && in.Source != "" {
		want = min((*in.Depth+per-1)/per, most)
		out.Reason = fmt.Sprintf("depth %d / %d per worker = %d (max %d), have %d", *in.Depth, per, want, most, have)
	} else {
		out.Reason = fmt.Sprintf("depth unavailable: hold at %d", want)
	}
	out.Target = want
	switch {
	case want > have:
		out.Actions = append(out.Actions, action{Type: "launch", Count: want - have})
	case want < have:
		// Idle before busy, newest first.
		slices.SortFunc(members, func(a, b member) int {
			if a.busy != b.busy {
				if a.busy {
					return 1
				}
				return -1
			}
			return cmp.Or(b.at.Compare(a.at), cmp.Compare(b.id, a.id))
		})
		var idle, busy []string
		for _, m := range members[:min(have-want, len(members))] {
			if m.busy {
				busy = append(busy, m.id)
			} else {
				idle = append(idle, m.id)
			}
		}
		if len(idle) > 0 {
			out.Actions = append(out.Actions, action{Type: "terminate", IDs: idle, Reason: "scale in"})
		}
		if len(busy) > 0 {
			out.Actions = append(out.Actions, action{Type: "drain", IDs: busy, Reason: "scale in, busy"})
		}
	}
	return out
}
