package cli

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"nightshift/bootlevel"
	"nightshift/internal/jobspec"
	"nightshift/internal/service/builtin"
	"nightshift/launchplan"
)

// specKeys are the keys of a job table a rollout changes: its worker spec.
// Every other key (engine, policy, health, queue, dns, ...) is the
// controller's or the provisioner's, fixed for the run's life.
var specKeys = []string{"driver", "instance", "worker"}

// planJob is a job's table in a plan and the controller service that
// declares it.
type planJob struct {
	svc   *launchplan.Service
	table map[string]any
}

// findPlanJob finds job among the [config.jobs.NAME] tables of a plan's
// controller services (the first that declares it: a run's controllers
// define a job only identically).
func findPlanJob(p *launchplan.Plan, job string) (planJob, []string) {
	var names []string
	for _, l := range p.Levels {
		for i := range l.Services {
			svc := &l.Services[i]
			if svc.Type != "controller" {
				continue
			}
			tables, _ := svc.TypeConfig["jobs"].(map[string]any)
			if t, ok := tables[job].(map[string]any); ok {
				return planJob{svc: svc, table: t}, nil
			}
			for n := range tables {
				if !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
		}
	}
	slices.Sort(names)
	return planJob{}, names
}

// planErr is a problem of the edited plan, placed at its file, line and
// key as the plan loader places its own.
func planErr(pj planJob, job, key, format string, args ...any) error {
	k := "config.jobs." + job
	if key != "" {
		k += "." + key
	}
	return &launchplan.Error{Pos: pj.svc.Pos, Key: k, Msg: fmt.Sprintf(format, args...)}
}

// specFromPlan is the worker spec job has in the edited plan p, resolved
// against the run's services (recs) as the provisioner's type resolves it
// at boot, so an unchanged plan gives the revision the run booted. booted
// is the plan the run booted (nil when its store has none), engine the
// job's engine as its controller runs it and driver its spec's driver ("":
// unknown): a plan that changes anything a rollout cannot (the engine, the
// driver, or any key but instance and worker) is refused, naming what
// differs.
func specFromPlan(p *launchplan.Plan, booted *launchplan.Plan, recs []bootlevel.ServiceRecord, run, job, engine, driver string) (jobspec.Spec, error) {
	pj, names := findPlanJob(p, job)
	if pj.svc == nil {
		return jobspec.Spec{}, &launchplan.Error{Pos: launchplan.Pos{File: p.Path}, Key: "config.jobs." + job,
			Msg: fmt.Sprintf("plan %s has no job %s on a controller service (its jobs: %s)", p.Name, job, orNone(names))}
	}
	if e, _ := pj.table["engine"].(string); engine != "" && e != engine {
		return jobspec.Spec{}, planErr(pj, job, "engine", "%q is not the run's %q: a rollout changes the worker spec, not the engine (relaunch for that)", e, engine)
	}
	if booted != nil {
		if bj, _ := findPlanJob(booted, job); bj.svc != nil {
			if diff := otherKeysDiffer(bj.table, pj.table); len(diff) > 0 {
				hint := "relaunch the run for that"
				if slices.Contains(diff, "policy") {
					hint = "change policy with mgmt reconfigure, anything else by relaunching"
				}
				return jobspec.Spec{}, planErr(pj, job, diff[0], "differs from the run's plan (%s): a rollout changes only the worker spec (instance and worker); %s",
					strings.Join(diff, ", "), hint)
			}
		}
	}
	self := map[string]string{}
	lookup := map[string]map[string]string{}
	for _, r := range recs {
		lookup[r.Name] = r.Attributes
		if r.Name == pj.svc.Name {
			maps.Copy(self, r.Attributes)
		}
	}
	self[launchplan.AttrRun] = run
	scope := launchplan.Scope{Self: self, Globals: p.Globals, Service: func(svc, attr string) (string, bool) {
		v, ok := lookup[svc][attr]
		return v, ok
	}}
	spec, err := builtin.JobSpec(pj.table, scope.Expand)
	if err != nil {
		return jobspec.Spec{}, planErr(pj, job, "", "%v", err)
	}
	if driver != "" && spec.Driver != driver {
		return jobspec.Spec{}, planErr(pj, job, "driver", "%q is not the run's %q: a rollout changes what a worker runs, not where", spec.Driver, driver)
	}
	// The dns table is the provisioner's, fixed for the run (compared
	// above), and no part of what a worker runs.
	spec.DNS = nil
	return spec, nil
}

// otherKeysDiffer lists the keys outside specKeys whose values differ
// between two job tables (compared as JSON, so a number read as an integer
// and as a float agree).
func otherKeysDiffer(a, b map[string]any) []string {
	norm := func(v any) any {
		raw, err := json.Marshal(v)
		if err != nil {
			return v
		}
		var out any
		if json.Unmarshal(raw, &out) != nil {
			return v
		}
		return out
	}
	var diff []string
	keys := slices.Sorted(maps.Keys(a))
	for k := range b {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if slices.Contains(specKeys, k) {
			continue
		}
		if !reflect.DeepEqual(norm(a[k]), norm(b[k])) {
			diff = append(diff, k)
		}
	}
	return diff
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// specDiff lists how two worker specs differ, one changed key a line
// ("- worker.env.VERSION = \"1\"", "+ worker.env.VERSION = \"2\""), keys
// sorted; values are JSON. Empty when they are alike.
func specDiff(from, to jobspec.Spec) []string {
	flat := func(s jobspec.Spec) map[string]string {
		if s.Driver == "" {
			s.Driver = jobspec.DriverLocal
		}
		s.DNS = nil
		out := map[string]string{}
		raw, err := json.Marshal(s)
		if err != nil {
			return out
		}
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return out
		}
		flatten("", v, out)
		return out
	}
	a, b := flat(from), flat(to)
	keys := slices.Sorted(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		av, inA := a[k]
		bv, inB := b[k]
		if inA && inB && av == bv {
			continue
		}
		if inA {
			out = append(out, fmt.Sprintf("- %s = %s", k, av))
		}
		if inB {
			out = append(out, fmt.Sprintf("+ %s = %s", k, bv))
		}
	}
	return out
}

// flatten writes v's leaves by dotted key; a list is one leaf, as JSON.
func flatten(prefix string, v any, out map[string]string) {
	if m, ok := v.(map[string]any); ok && (len(m) > 0 || prefix == "") {
		for k, e := range m {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			flatten(key, e, out)
		}
		return
	}
	raw, err := json.Marshal(v)
	if err != nil {
		raw = []byte(fmt.Sprint(v))
	}
	out[prefix] = string(raw)
}
