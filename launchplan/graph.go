package launchplan

import "sort"

// Edge says that service From references an attribute of service To.
// Ref is the reference as written, e.g. "${db.port}".
type Edge struct {
	From string `json:"from"`
	To   string `json:"to"`
	Ref  string `json:"ref"`
}

// Service returns the service with the given name (a replica by its
// replica name, e.g. "web-0").
func (p *Plan) Service(name string) (*Service, bool) {
	for i := range p.Levels {
		for j := range p.Levels[i].Services {
			if p.Levels[i].Services[j].Name == name {
				return &p.Levels[i].Services[j], true
			}
		}
	}
	return nil, false
}

// Graph returns every service-to-service reference of the plan, sorted and
// without duplicates, for --dry-run output.
func (p *Plan) Graph() []Edge {
	seen := map[Edge]bool{}
	var edges []Edge
	for _, l := range p.Levels {
		for i := range l.Services {
			s := &l.Services[i]
			s.eachTemplate(func(tmpl string) {
				refs, err := References(tmpl)
				if err != nil {
					return
				}
				for _, r := range refs {
					if r.Kind != RefService {
						continue
					}
					e := Edge{From: s.Name, To: r.Service, Ref: r.String()}
					if !seen[e] {
						seen[e] = true
						edges = append(edges, e)
					}
				}
			})
		}
	}
	sort.Slice(edges, func(i, j int) bool {
		a, b := edges[i], edges[j]
		if a.From != b.From {
			return a.From < b.From
		}
		if a.To != b.To {
			return a.To < b.To
		}
		return a.Ref < b.Ref
	})
	return edges
}

// eachTemplate calls fn with every template field of s: the same set
// ExpandService expands.
func (s *Service) eachTemplate(fn func(string)) {
	for _, k := range sortedKeys(s.Attributes) {
		fn(s.Attributes[k])
	}
	for _, k := range sortedKeys(s.Env) {
		fn(s.Env[k])
	}
	fn(s.WorkDir)
	for _, p := range []*Program{s.Boot, s.Ready, s.Terminate} {
		if p != nil {
			for _, a := range p.Args {
				fn(a)
			}
		}
	}
	if s.SSH != nil {
		fn(s.SSH.Host)
		fn(s.SSH.User)
	}
	walkStrings("", s.TypeConfig, func(_, v string) { fn(v) })
	walkStrings("", s.EC2, func(_, v string) { fn(v) })
}
