package mgmt

import (
	"maps"
	"slices"
	"sort"

	"nightshift/launchplan"
)

// DNSZone is one hosted zone, at one endpoint, where a run's jobs keep DNS
// records (a job's dns table, docs/jobs.md).
type DNSZone struct {
	Zone        string // id or name, as the plan says
	EndpointURL string // the job's instance endpoint_url ("" for AWS)
}

// DNSZones lists every hosted zone any job of the plan, or any ec2
// service, names in a dns table, so that teardown sweeps the run's records there with the
// provisioner and its ledger gone (the records carry the run's TXT owner).
// Values are expanded against the plan's globals; an empty endpoint takes
// defaultEndpoint (the launcher's AWS_ENDPOINT_URL).
func DNSZones(p *launchplan.Plan, defaultEndpoint string) []DNSZone {
	scope := launchplan.Scope{Globals: p.Globals}
	str := func(m map[string]any, k string) string {
		v, _ := m[k].(string)
		if x, err := scope.Expand(v); err == nil {
			return x
		}
		return v
	}
	seen := map[DNSZone]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			if dns, ok := t["dns"].(map[string]any); ok {
				if z := str(dns, "zone"); z != "" {
					inst, _ := t["instance"].(map[string]any)
					e := str(inst, "endpoint_url")
					if e == "" {
						e = defaultEndpoint
					}
					seen[DNSZone{Zone: z, EndpointURL: e}] = true
				}
			}
			for _, k := range slices.Sorted(maps.Keys(t)) {
				walk(t[k])
			}
		case []any:
			for _, c := range t {
				walk(c)
			}
		}
	}
	for _, l := range p.Levels {
		for _, s := range l.Services {
			if jobs, ok := s.TypeConfig["jobs"]; ok {
				walk(jobs)
			}
			// An ec2 service's own record (its ec2 table's dns key).
			if s.Driver != launchplan.DriverEC2 {
				continue
			}
			if dns, ok := s.EC2["dns"].(map[string]any); ok {
				if z := str(dns, "zone"); z != "" {
					e := str(s.EC2, "endpoint_url")
					if e == "" {
						e = defaultEndpoint
					}
					seen[DNSZone{Zone: z, EndpointURL: e}] = true
				}
			}
		}
	}
	out := make([]DNSZone, 0, len(seen))
	for z := range seen {
		out = append(out, z)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].EndpointURL != out[j].EndpointURL {
			return out[i].EndpointURL < out[j].EndpointURL
		}
		return out[i].Zone < out[j].Zone
	})
	return out
}
