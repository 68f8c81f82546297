package launchplan

import (
	"sort"
	"strings"
)

// expandGlobals resolves globals that refer to other globals
// (worker_region = "${global.region}"), after every source is merged, so a
// default follows whatever -g set the global it names to. A value holding
// any other kind of reference, or no valid template, stays as written:
// globals are otherwise plain strings. A cycle is an error at the global.
func (b *builder) expandGlobals(globals map[string]string) {
	names := make([]string, 0, len(globals))
	for k, v := range globals {
		if strings.Contains(v, "${global.") {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	done := map[string]bool{}
	var resolve func(name string, stack []string) bool
	resolve = func(name string, stack []string) bool {
		if done[name] {
			return true
		}
		for _, s := range stack {
			if s == name {
				b.errs.add(b.globalPos[name], "globals."+name, "refers to itself through %s", strings.Join(append(stack, name), " -> "))
				return false
			}
		}
		refs, err := References(globals[name])
		if err != nil {
			done[name] = true
			return true
		}
		for _, r := range refs {
			if r.Kind != RefGlobal {
				done[name] = true // not a globals-only template: kept as written
				return true
			}
		}
		for _, r := range refs {
			if _, ok := globals[r.Name]; !ok {
				b.errs.add(b.globalPos[name], "globals."+name, "unknown global %s", r)
				return false
			}
			if !resolve(r.Name, append(stack, name)) {
				return false
			}
		}
		v, err := Scope{Globals: globals}.Expand(globals[name])
		if err != nil {
			b.errs.add(b.globalPos[name], "globals."+name, "%v", err)
			return false
		}
		globals[name] = v
		done[name] = true
		return true
	}
	for _, n := range names {
		resolve(n, nil)
	}
}
