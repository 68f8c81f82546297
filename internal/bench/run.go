package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
)

// Scenario is one benchmark of the harness. Scenarios are independent so
// that each can run alone (-run NAME) and one whose component is not ready
// yet reports "not measured" without stopping the others.
type Scenario struct {
	Name  string // what -run selects, e.g. "boot"
	Title string // heading in BENCHMARKS.md
	// Reproduce is the command that runs this scenario alone.
	Reproduce string
	Run       func(ctx context.Context) (Result, error)
}

// Result is what a scenario measured. A scenario may return a partial
// Result together with a NotMeasured error (e.g. its own figures but no
// peer); both are kept.
type Result struct {
	Figures []Figure `json:"figures,omitempty"`
	Series  []Series `json:"series,omitempty"`
	Notes   []string `json:"notes,omitempty"`
}

// NotMeasuredError says why a scenario has no figure: the component is not
// ready, a service is missing. It is a normal outcome, not a failure.
type NotMeasuredError struct{ Why string }

func (e *NotMeasuredError) Error() string { return "not measured: " + e.Why }

// NotMeasured builds a NotMeasuredError.
func NotMeasured(format string, args ...any) error {
	return &NotMeasuredError{Why: fmt.Sprintf(format, args...)}
}

// Scenario outcomes.
const (
	StatusMeasured    = "measured"
	StatusNotMeasured = "not measured"
	StatusFailed      = "failed"
)

// Outcome is a scenario's result with its status.
type Outcome struct {
	Scenario  string        `json:"scenario"`
	Title     string        `json:"title"`
	Status    string        `json:"status"`
	Reason    string        `json:"reason,omitempty"`
	Reproduce string        `json:"reproduce"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	// Meta is the run that produced this outcome, set in a merged report
	// whose outcomes come from several runs.
	Meta *Meta `json:"meta,omitempty"`
	// Stale says which later run ran the scenario without refreshing it.
	Stale string `json:"stale,omitempty"`
	Result
}

// Select picks the scenarios named in a comma-separated list, in the
// harness's order; an empty list or "all" selects every one. An unknown
// name is an error listing the known ones.
func Select(all []Scenario, list string) ([]Scenario, error) {
	list = strings.TrimSpace(list)
	if list == "" || list == "all" {
		return all, nil
	}
	want := map[string]bool{}
	var known []string
	for _, s := range all {
		known = append(known, s.Name)
	}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if !slices.Contains(known, n) {
			return nil, fmt.Errorf("-run: unknown scenario %q (known: %s)", n, strings.Join(known, ", "))
		}
		want[n] = true
	}
	var out []Scenario
	for _, s := range all {
		if want[s.Name] {
			out = append(out, s)
		}
	}
	return out, nil
}

// Execute runs one scenario and classifies its end. Every series gets its
// linearity verdict here so that no scenario can forget it.
func Execute(ctx context.Context, clock clockwork.Clock, s Scenario) Outcome {
	o := Outcome{Scenario: s.Name, Title: s.Title, Reproduce: s.Reproduce}
	t0 := clock.Now()
	res, err := s.Run(ctx)
	o.Elapsed = clock.Since(t0)
	o.Result = res
	var nm *NotMeasuredError
	switch {
	case err == nil:
		o.Status = StatusMeasured
	case errors.As(err, &nm):
		o.Status, o.Reason = StatusNotMeasured, nm.Why
	default:
		o.Status, o.Reason = StatusFailed, err.Error()
	}
	for i := range o.Series {
		o.Series[i].judge()
	}
	return o
}
