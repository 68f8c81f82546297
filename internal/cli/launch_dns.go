package cli

import (
	"fmt"
	"maps"
	"slices"

	"nightshift/internal/jobspec"
	"nightshift/launchplan"
)

// dryDNS is what `launch --dry-run` shows of a job's dns table: the names
// its first workers (as many as its policy's n, at most maxDryNames) and
// its pool record would get.
type dryDNS struct {
	Job   string   `json:"job"`
	Zone  string   `json:"zone"`
	Names []string `json:"names"`
	Pool  string   `json:"pool,omitempty"`
	Error string   `json:"error,omitempty"`
}

const maxDryNames = 10

// planDNSNames renders every job's dns table against the plan's globals
// and the run's name, as the provisioner's type and the provisioner would.
func planDNSNames(p *launchplan.Plan, run string) []dryDNS {
	scope := launchplan.Scope{Globals: p.Globals, Self: map[string]string{"run": run}}
	var out []dryDNS
	for _, l := range p.Levels {
		for _, s := range l.Services {
			jobs, _ := s.TypeConfig["jobs"].(map[string]any)
			for _, job := range slices.Sorted(maps.Keys(jobs)) {
				t, _ := jobs[job].(map[string]any)
				raw, ok := t[jobspec.DNSKey].(map[string]any)
				if !ok {
					continue
				}
				out = append(out, dryJobDNS(scope, job, run, t, raw))
			}
		}
	}
	return out
}

func dryJobDNS(scope launchplan.Scope, job, run string, t, raw map[string]any) dryDNS {
	d := dryDNS{Job: job, Names: []string{}}
	fail := func(err error) dryDNS { d.Error = err.Error(); return d }
	exp := map[string]any{}
	for k, v := range raw {
		if s, ok := v.(string); ok {
			x, err := scope.Expand(s)
			if err != nil {
				return fail(fmt.Errorf("dns.%s: %w", k, err))
			}
			v = x
		}
		exp[k] = v
	}
	spec, err := jobspec.FromTable(map[string]any{jobspec.DNSKey: exp})
	if err != nil {
		return fail(err)
	}
	dns := spec.DNS
	d.Zone = dns.Zone
	n := 1
	if pol, ok := t["policy"].(map[string]any); ok {
		switch v := pol["n"].(type) {
		case int64:
			n = int(v)
		case float64:
			n = int(v)
		}
	}
	n = max(1, min(n, maxDryNames))
	for i := range n {
		name, err := jobspec.RenderName(dns.Name, job, run, i)
		if err != nil {
			return fail(err)
		}
		d.Names = append(d.Names, name)
	}
	if dns.Pool != "" {
		if d.Pool, err = jobspec.RenderName(dns.Pool, job, run, 0); err != nil {
			return fail(err)
		}
	}
	return d
}
