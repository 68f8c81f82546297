// Command customengine shows how to write a pool policy in Go and plug it
// into a decision.Registry: it registers a "spare" engine (keep a fixed
// number of idle workers beside the busy ones), configures it as a
// controller would from a TOML table, and prints its decision for a sample
// snapshot.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"nightshift"
	"nightshift/decision"
)

// spareConfig is the engine's parsed configuration.
type spareConfig struct {
	Spare      int // idle workers to keep ready
	Max        int // 0: no cap
	configured bool
	Spec       decision.LaunchSpec
}

func parseSpare(m map[string]any) (spareConfig, error) {
	f := decision.NewFields("spare", m)
	c := spareConfig{configured: true}
	var err error
	if c.Spare, err = f.IntMin("spare", 1, 0); err != nil {
		return c, err
	}
	if c.Max, err = f.IntMin("max_instances", 0, 0); err != nil {
		return c, err
	}
	if c.Spec, err = f.Spec(); err != nil {
		return c, err
	}
	return c, f.Unknown()
}

func renderSpare(c spareConfig) map[string]any {
	if !c.configured {
		return map[string]any{}
	}
	m := map[string]any{"spare": c.Spare, "max_instances": c.Max}
	decision.SpecConfig(c.Spec, m)
	return m
}

// spare is a decision.Engine: configuration in a Holder, decisions from a
// pure function of (config, snapshot).
type spare struct{ h *decision.Holder[spareConfig] }

func newSpare() decision.Engine {
	return &spare{h: decision.NewHolder(spareConfig{}, parseSpare, renderSpare)}
}

func (e *spare) Name() string                         { return "spare" }
func (e *spare) Configure(cfg map[string]any) error   { return e.h.Configure(cfg) }
func (e *spare) Reconfigure(cfg map[string]any) error { return e.h.Reconfigure(cfg) }
func (e *spare) Config() map[string]any               { return e.h.Config() }
func (e *spare) Decide(s decision.Snapshot) decision.Decision {
	return decideSpare(e.h.Current(), s)
}

// decideSpare keeps Spare idle workers on top of the busy ones and replaces
// unhealthy ones. It only grows; shrinking is left out to keep the example
// short.
func decideSpare(c spareConfig, s decision.Snapshot) decision.Decision {
	d := decision.Decision{Engine: "spare"}
	if !c.configured {
		d.Reason = "not configured: no action"
		return d
	}
	busy, have := 0, s.PendingLaunches
	var dead []string
	for _, in := range s.Instances {
		if in.State.Live() && in.State != nightshift.StateTerminating && in.Health.Unhealthy() {
			dead = append(dead, in.ID)
		}
		if !in.State.Live() || in.State == nightshift.StateTerminating || in.Health.Unhealthy() || in.Draining() {
			continue
		}
		have++
		if in.Busy {
			busy++
		}
	}
	want := busy + c.Spare
	if c.Max > 0 && want > c.Max {
		want = c.Max
	}
	d.Target = max(want, have)
	if len(dead) > 0 {
		d.Actions = append(d.Actions, decision.Terminate{IDs: dead, Reason: "unhealthy"})
	}
	if want <= have {
		d.Reason = fmt.Sprintf("%d busy + %d spare = %d, have %d: hold", busy, c.Spare, want, have)
		return d
	}
	d.Reason = fmt.Sprintf("%d busy + %d spare = %d, have %d: +%d", busy, c.Spare, want, have, want-have)
	d.Actions = append(d.Actions, decision.Launch{Count: want - have, Spec: c.Spec, Reason: "keep spare capacity"})
	return d
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "customengine:", err)
		os.Exit(1)
	}
}

func run() error {
	reg := decision.NewRegistry()
	if err := reg.Register("spare", newSpare); err != nil {
		return err
	}
	e, err := reg.New("spare")
	if err != nil {
		return err
	}
	// As decoded from a TOML table: [pool.engine] spare = 2, max_instances = 5, ...
	if err := e.Configure(map[string]any{"spare": int64(2), "max_instances": int64(5), "deployable": "worker"}); err != nil {
		return fmt.Errorf("configure spare: %w", err)
	}
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	s := decision.Snapshot{Pool: "work", Now: now, Instances: []decision.Instance{
		{ID: "i-1", State: nightshift.StateRunning, Health: nightshift.HealthOK, Busy: true, LaunchedAt: now.Add(-time.Hour)},
		{ID: "i-2", State: nightshift.StateRunning, Health: nightshift.HealthOK, Busy: true, LaunchedAt: now.Add(-time.Minute)},
		{ID: "i-3", State: nightshift.StateRunning, Health: nightshift.HealthMissing, LaunchedAt: now.Add(-time.Minute)},
	}}
	d := e.Decide(s)
	fmt.Println(d.Reason)
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}
