package mgmt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/procscan"
)

// Sweeper finds and destroys what is left of a run by looking at the world,
// not at records: local ownership markers, process environments, EC2 tags.
// That is what makes teardown work after a provisioner or its database died.
type Sweeper interface {
	Name() string
	// Sweep destroys (with dryRun, only lists) what is left of run and
	// returns what it destroyed and what it could not.
	Sweep(ctx context.Context, run string, dryRun bool) (destroyed, remaining []string, err error)
}

// PoolStopper freezes a run's controllers and has its provisioner terminate
// every worker. The controllers' issue provides it.
type PoolStopper interface {
	// Freeze stops new launches: engines no longer act.
	Freeze(ctx context.Context, run string) error
	// TerminateAll terminates every worker and waits until none is live,
	// calling progress with the number still live.
	TerminateAll(ctx context.Context, run string, progress func(live int)) (destroyed []string, err error)
}

// Teardown destroys a run: pools first (so no engine replaces what the level
// teardown kills), then the levels in reverse, then sweeps.
type Teardown struct {
	Engine   *bootlevel.Engine
	Store    bootlevel.Store
	Pools    PoolStopper // nil when the run has no pools or they are unreachable
	Sweepers []Sweeper
	Out      io.Writer // progress for a person; nil discards
}

// TeardownReport says what was destroyed and what remains.
type TeardownReport struct {
	Run       string   `json:"run"`
	DryRun    bool     `json:"dry_run"`
	Destroyed []Item   `json:"destroyed"`
	Remaining []Item   `json:"remaining"`
	Notes     []string `json:"notes,omitempty"`
}

// Item is one thing teardown destroyed, would destroy, or left behind,
// structured so that a script reads fields instead of parsing text.
type Item struct {
	// Kind is what it is: "worker", "service", or the sweeper that found
	// it ("process", "worker", "broker-user", "ec2", "ssm-parameter").
	Kind string `json:"kind"`
	// ID names it within its kind: a worker's instance id, a service's
	// name, an EC2 instance id, a pid, a broker user, a parameter name.
	ID string `json:"id"`
	// Where is the place a sweeper looked (region and endpoint), when it
	// has one.
	Where string `json:"where,omitempty"`
	// Detail is what else is known (level and state, tags, the job).
	Detail string `json:"detail,omitempty"`
}

// String is the item as one line for a person.
func (i Item) String() string {
	var b strings.Builder
	b.WriteString(i.Kind)
	if i.Where != "" {
		b.WriteString(" (" + i.Where + ")")
	}
	b.WriteString(" " + i.ID)
	if i.Detail != "" {
		b.WriteString(" (" + i.Detail + ")")
	}
	return b.String()
}

// ItemStrings renders items one per string.
func ItemStrings(items []Item) []string {
	out := make([]string, 0, len(items))
	for _, i := range items {
		out = append(out, i.String())
	}
	return out
}

// sweptItems turns a sweeper's lines into items. Sweepers name what they
// found as "<id>" or "<id> (<detail>)", and name themselves "<kind>" or
// "<kind> (<where>)".
func sweptItems(sweeper string, found []string) []Item {
	kind, where := splitParen(sweeper)
	out := make([]Item, 0, len(found))
	for _, f := range found {
		id, detail := splitParen(f)
		out = append(out, Item{Kind: kind, ID: id, Where: where, Detail: detail})
	}
	return out
}

// splitParen splits "a (b)" into "a" and "b"; anything else is all head.
func splitParen(s string) (head, paren string) {
	i := strings.Index(s, " (")
	if i < 0 || !strings.HasSuffix(s, ")") {
		return s, ""
	}
	return s[:i], s[i+2 : len(s)-1]
}

func itemsOf(kind string, ids []string) []Item {
	out := make([]Item, 0, len(ids))
	for _, id := range ids {
		out = append(out, Item{Kind: kind, ID: id})
	}
	return out
}

// ErrRemains is returned when something of the run could not be destroyed.
var ErrRemains = errors.New("teardown left resources behind")

// Run tears run down. It is idempotent: a second call finds nothing to do
// and succeeds. It keeps going past failures and reports them all.
func (t *Teardown) Run(ctx context.Context, run string, dryRun bool) (*TeardownReport, error) {
	rep := &TeardownReport{Run: run, DryRun: dryRun, Destroyed: []Item{}, Remaining: []Item{}}
	r, err := t.Store.GetRun(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("teardown %q: %w", run, err)
	}
	if dryRun {
		return t.dryRun(ctx, r, rep)
	}

	if t.Pools != nil {
		t.say("freezing controllers of %s", run)
		if err := t.Pools.Freeze(ctx, run); err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("could not freeze controllers (%v); relying on the sweep", err))
		}
		t.say("terminating every worker")
		gone, err := t.Pools.TerminateAll(ctx, run, func(live int) { t.say("  %d workers still live", live) })
		rep.Destroyed = append(rep.Destroyed, itemsOf("worker", gone)...)
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("provisioner terminate_all failed (%v); relying on the sweep", err))
		}
	}

	t.say("terminating levels in reverse")
	before, _ := t.Store.Services(ctx, run)
	trep, terr := t.Engine.Terminate(ctx, run)
	if terr != nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("level teardown: %v", terr))
	}
	live := map[string]bool{}
	for _, s := range before {
		if s.State != bootlevel.ServiceTerminated && s.State != bootlevel.ServicePending {
			live[s.Name] = true
		}
	}
	if trep != nil {
		stuck := map[string]bool{}
		for _, n := range trep.Remaining {
			stuck[n] = true
			rep.Remaining = append(rep.Remaining, Item{Kind: "service", ID: n})
		}
		for _, s := range before {
			if live[s.Name] && !stuck[s.Name] {
				rep.Destroyed = append(rep.Destroyed, Item{Kind: "service", ID: s.Name})
			}
		}
	}

	for _, sw := range t.Sweepers {
		t.say("sweeping %s", sw.Name())
		d, rem, err := sw.Sweep(ctx, run, false)
		rep.Destroyed = append(rep.Destroyed, sweptItems(sw.Name(), d)...)
		rep.Remaining = append(rep.Remaining, sweptItems(sw.Name(), rem)...)
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("sweep %s: %v", sw.Name(), err))
		}
	}
	if len(rep.Remaining) > 0 {
		return rep, fmt.Errorf("teardown %q: %w: %d left", run, ErrRemains, len(rep.Remaining))
	}
	if r.State != bootlevel.RunTerminated {
		if cur, err := t.Store.GetRun(ctx, run); err == nil && cur.State != bootlevel.RunTerminated {
			cur.State = bootlevel.RunTerminated
			cur.Updated = time.Now().UTC()
			if err := t.Store.UpdateRun(ctx, cur); err != nil {
				return rep, fmt.Errorf("teardown %q: record terminated: %w", run, err)
			}
		}
	}
	return rep, nil
}

func (t *Teardown) dryRun(ctx context.Context, r bootlevel.Run, rep *TeardownReport) (*TeardownReport, error) {
	recs, err := t.Store.Services(ctx, r.Name)
	if err != nil {
		return nil, fmt.Errorf("teardown %q: %w", r.Name, err)
	}
	for i := len(recs) - 1; i >= 0; i-- { // reverse: the order teardown would use
		s := recs[i]
		if s.State != bootlevel.ServiceTerminated && s.State != bootlevel.ServicePending {
			rep.Destroyed = append(rep.Destroyed, Item{Kind: "service", ID: s.Name, Detail: fmt.Sprintf("level %d, %s", s.Level, s.State)})
		}
	}
	for _, sw := range t.Sweepers {
		d, _, err := sw.Sweep(ctx, r.Name, true)
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("sweep %s: %v", sw.Name(), err))
		}
		rep.Destroyed = append(rep.Destroyed, sweptItems(sw.Name(), d)...)
	}
	return rep, nil
}

func (t *Teardown) say(format string, args ...any) {
	if t.Out != nil {
		fmt.Fprintf(t.Out, format+"\n", args...)
	}
}

// ProcessSweeper kills every process on this machine whose environment
// marks it as the run's (NIGHTSHIFT_HOME and NIGHTSHIFT_RUN), which catches
// daemons whose terminate program failed or whose records were lost.
type ProcessSweeper struct {
	Home     string
	ProcRoot string        // "" means /proc
	Wait     time.Duration // how long killed processes get to vanish
}

// Name implements Sweeper.
func (p ProcessSweeper) Name() string { return "process" }

// Sweep implements Sweeper.
func (p ProcessSweeper) Sweep(ctx context.Context, run string, dryRun bool) (destroyed, remaining []string, err error) {
	if dryRun {
		found, err := procscan.Find(p.ProcRoot, p.Home, run)
		return procNames(found), nil, err
	}
	wait := p.Wait
	if wait == 0 {
		wait = 3 * time.Second
	}
	killed, rem, err := procscan.Kill(p.ProcRoot, p.Home, run, wait)
	return procNames(killed), procNames(rem), err
}

func procNames(ps []procscan.Proc) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}
