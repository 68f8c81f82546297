package mgmt

import (
	"sort"

	"nightshift/launchplan"
)

// EC2Place is one region and endpoint a run may have instances in.
type EC2Place struct {
	Region      string
	EndpointURL string
}

// String names the place for a person.
func (p EC2Place) String() string {
	s := p.Region
	if s == "" {
		s = "default region"
	}
	if p.EndpointURL != "" {
		s += " at " + p.EndpointURL
	}
	return s
}

// EC2Places lists every region and endpoint that any service or job of the
// plan names, so that teardown's tag sweep looks everywhere the run may have
// gone, with the provisioner dead too: each ec2 service's table, every
// `instance` table (a job's workers) anywhere in a built-in type's config,
// and the plan's `region` and `worker_region` globals. Values are expanded
// against the plan's globals; an empty endpoint takes defaultEndpoint (the
// launcher's AWS_ENDPOINT_URL). Nil when nothing in the plan is on EC2.
func EC2Places(p *launchplan.Plan, defaultEndpoint string) []EC2Place {
	scope := launchplan.Scope{Globals: p.Globals}
	str := func(m map[string]any, k string) string {
		v, _ := m[k].(string)
		if x, err := scope.Expand(v); err == nil {
			return x
		}
		return v
	}
	seen := map[EC2Place]bool{}
	var endpoints []string
	add := func(region, endpoint string) {
		if endpoint == "" {
			endpoint = defaultEndpoint
		}
		seen[EC2Place{Region: region, EndpointURL: endpoint}] = true
		endpoints = append(endpoints, endpoint)
	}
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, c := range t {
				if inst, ok := c.(map[string]any); ok && k == "instance" {
					add(str(inst, "region"), str(inst, "endpoint_url"))
				}
				walk(c)
			}
		case []any:
			for _, c := range t {
				walk(c)
			}
		case []map[string]any:
			for _, c := range t {
				walk(c)
			}
		}
	}
	for _, l := range p.Levels {
		for _, s := range l.Services {
			if s.Driver == launchplan.DriverEC2 {
				add(str(s.EC2, "region"), str(s.EC2, "endpoint_url"))
			}
			walk(s.TypeConfig)
		}
	}
	if len(seen) == 0 {
		return nil
	}
	// Workers and services may sit in the regions the plan's globals name
	// (plans/prod.toml's region and worker_region), at any endpoint in use.
	for _, g := range []string{"region", "worker_region"} {
		if r := p.Globals[g]; r != "" {
			for _, e := range endpoints {
				add(r, e)
			}
		}
	}
	out := make([]EC2Place, 0, len(seen))
	for pl := range seen {
		out = append(out, pl)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].EndpointURL != out[j].EndpointURL {
			return out[i].EndpointURL < out[j].EndpointURL
		}
		return out[i].Region < out[j].Region
	})
	return out
}
